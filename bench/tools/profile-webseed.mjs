// Profiles a download from the server's web seed alone (row 3 and 4's receive path): the CPU profile of the receiving offscreen document and its threads' CPU.
//
//   flock /tmp/swarmdrop-browsers.lock node bench/tools/profile-webseed.mjs [MiB]
//
// A sender (built extension, dist/chrome) sends random files and uploads
// them to the release server, then closes; a receiver with a DevTools port
// opens the share link and downloads from the web seed alone. In the
// receiver's offscreen document it counts IndexedDB transactions and Blobs
// made and runs the V8 sampling profiler for the download; it also prints
// the CPU-seconds of every thread of the receiver's processes (from
// /proc/<pid>/task) over the download. Not a benchmark: numbers move with
// the profiler on; it says where the time goes.
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { ROOT, fmt, removeDir, tempDir } from '../lib/common.mjs'
import { browserPid, cpuGrowth, threadCpu } from '../lib/procs.mjs'
import { MB, browser, call, offscreen, summary } from '../lib/profiling.mjs'
import { randomFileSet } from '../lib/transfer.mjs'

const { startServer, until } = await import(path.join(ROOT, 'tests/e2e/net/support.js'))

const TOTAL = Number(process.argv[2] ?? 256) * 2 ** 20

const server = await startServer()
const dir = await tempDir('profile-webseed-')
const opened = []
try {
  const files = await randomFileSet(dir, 4, TOTAL / 4)
  const a = await browser('prof-sender', server, true)
  opened.push(a)
  await a.popup.locator('#pick-files').setInputFiles(files)
  const sent = await until(async () => {
    const t = (await call(a.popup, 'transfers.list')).find((x) => x.role === 'send')
    return t?.link && t.state === 'sharing' && t.upload?.phase === 'done' ? t : null
  }, { timeoutMs: 900_000, everyMs: 500, what: 'the send and its upload' })
  await a.context.close()
  opened.shift()
  await removeDir(a.profile)
  const b = await browser('prof-receiver', server, false)
  opened.push(b)
  const cb = await offscreen(b)
  const pid = await browserPid(b.profile)
  const before = await threadCpu(pid)
  await cb.send('Profiler.start')
  const t0 = performance.now()
  const page = await b.context.newPage()
  await page.goto(`${b.base}bundle.html?link=${encodeURIComponent(sent.link)}`, { waitUntil: 'commit' })
  const id = await until(async () => new URL(page.url()).searchParams.get('id'), { timeoutMs: 120_000, everyMs: 100, what: 'the bundle page' })
  await until(async () => {
    const t = await call(b.popup, 'transfer.get', { id })
    if (t.state === 'error') throw new Error(t.error)
    return t.state === 'complete' ? t : null
  }, { timeoutMs: 1_800_000, everyMs: 250, what: 'the download' })
  const seconds = (performance.now() - t0) / 1000
  const after = await threadCpu(pid)
  const pb = (await cb.send('Profiler.stop')).profile
  const counts = (await cb.send('Runtime.evaluate', { expression: 'globalThis.__counts', returnByValue: true })).result.value
  counts.receivedBytes = TOTAL
  console.log(`${fmt(TOTAL / MB, 1)} MB in ${fmt(seconds, 1)} s: ${fmt(TOTAL / MB / seconds, 1)} MB/s`)
  summary('receiver', pb, counts, seconds)
  const used = cpuGrowth(before, after, 0.05)
  const rows = used.filter(([k]) => k.includes('/'))
  const total = used.filter(([k]) => !k.includes('/')).reduce((s, [, v]) => s + v, 0)
  console.log(`\n== receiver threads: ${fmt(total, 1)} CPU-s over the download (${fmt(total / (TOTAL / 2 ** 30), 1)} per GiB)`)
  for (const [k, v] of rows.slice(0, 30)) console.log(`   ${fmt(v, 2).padStart(7)} s  ${k}`)
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
