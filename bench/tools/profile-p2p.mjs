// Profiles a peer-to-peer transfer between two Chromium instances (row 2's Swarmdrop run): the CPU profile of each offscreen document and the counts behind it.
//
//   flock /tmp/swarmdrop-browsers.lock node bench/tools/profile-p2p.mjs [MiB]
//
// Launches a sender and a receiver with the built extension (dist/chrome)
// and the release server as tracker, each with a DevTools port; in both
// offscreen documents (the engine host) it counts data channel messages
// sent and received (and their bytes), IndexedDB transactions and Blobs
// made, samples how full the send buffer is every 20 ms, and runs the V8
// sampling profiler for the transfer (not with PROFILE=0, which leaves the
// counts and samples alone). Prints, per side, the counts per MB moved and
// the functions with the most self time (Blink's work called from JS is
// counted in the JS caller's frame, or in "(program)" when no JS is on the
// stack). Not a benchmark: numbers move with the profiler on; it says where
// the time goes.
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { ROOT, fmt, removeDir, tempDir } from '../lib/common.mjs'
import { MB, browser, call, offscreen, summary } from '../lib/profiling.mjs'
import { randomFileSet } from '../lib/transfer.mjs'

const { startServer, until } = await import(path.join(ROOT, 'tests/e2e/net/support.js'))

const TOTAL = Number(process.argv[2] ?? 256) * 2 ** 20

const server = await startServer()
const dir = await tempDir('profile-p2p-')
const opened = []
try {
  const files = await randomFileSet(dir, 4, TOTAL / 4)
  const a = await browser('prof-sender', server, false)
  opened.push(a)
  const b = await browser('prof-receiver', server, true)
  opened.push(b)
  const [ca, cb] = [await offscreen(a), await offscreen(b)]
  await a.popup.locator('#pick-files').setInputFiles(files)
  const sent = await until(async () => {
    const t = (await call(a.popup, 'transfers.list')).find((x) => x.role === 'send')
    return t?.link && t.state === 'sharing' ? t : null
  }, { timeoutMs: 600_000, everyMs: 200, what: 'the send' })
  // PROFILE=0: the counts without the profiler (which slows the transfer).
  const profiling = process.env.PROFILE !== '0'
  if (profiling) await ca.send('Profiler.start')
  if (profiling) await cb.send('Profiler.start')
  const t0 = performance.now()
  const page = await b.context.newPage()
  await page.goto(`${b.base}bundle.html?magnet=${encodeURIComponent(sent.magnet)}`, { waitUntil: 'commit' })
  const id = await until(async () => new URL(page.url()).searchParams.get('id'), { timeoutMs: 120_000, everyMs: 100, what: 'the bundle page' })
  await until(async () => {
    const t = await call(b.popup, 'transfer.get', { id })
    if (t.state === 'error') throw new Error(t.error)
    return t.state === 'complete' ? t : null
  }, { timeoutMs: 1_800_000, everyMs: 250, what: 'the download' })
  const seconds = (performance.now() - t0) / 1000
  const empty = { nodes: [], samples: [], timeDeltas: [] }
  const [pa, pb] = profiling ? [(await ca.send('Profiler.stop')).profile, (await cb.send('Profiler.stop')).profile] : [empty, empty]
  const counts = async (c) => (await c.send('Runtime.evaluate', { expression: 'globalThis.__counts', returnByValue: true })).result.value
  console.log(`${fmt(TOTAL / MB, 1)} MB in ${fmt(seconds, 1)} s: ${fmt(TOTAL / MB / seconds, 1)} MB/s`)
  summary('sender', pa, await counts(ca), seconds)
  summary('receiver', pb, await counts(cb), seconds)
  ca.close()
  cb.close()
} finally {
  for (const b of opened) {
    await b.context.close().catch(() => {})
    await removeDir(b.profile)
  }
  server.stop()
  await removeDir(server.dataDir)
  await removeDir(dir)
}
