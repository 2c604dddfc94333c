// Row 5, Server offload: four receivers at once with the sender online, the server's egress against the bundle size.
// bench-needs: server dist
//
// The server (release build) on loopback; a sender, Chromium with the release
// build of the extension (dist/chrome) and a fresh profile, sends a bundle of
// 256 MiB of random bytes in three files and uploads it to the server; once
// the upload is done, and with the sender still online, each run starts four
// receivers (Chromium, a fresh profile each) that open the share link
// together, as tests/e2e/transfer.test.js does for three. The server's egress
// is the difference of `bytes_served` (GET /api/stats) from just before the
// receivers open the link to when all four have completed; the figure is that
// egress over the bundle size (the anchor), median of the runs. 1× would be the
// server sending the bundle once and the peers sharing the rest; 4× would be
// the server serving every receiver alone.

import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { ROOT, RUNS, fmt, log, median, removeDir, tempDir, writeResult } from '../lib/common.mjs'

if (process.env.BENCH_SERVER_BIN) process.env.SWARMDROP_SERVER ??= process.env.BENCH_SERVER_BIN
const { launchChromium } = await import(path.join(ROOT, 'tests/e2e/lib/chromium.js'))
const { builtExtension } = await import(path.join(ROOT, 'tests/e2e/lib/paths.js'))
const { randomFiles, startServer, until } = await import(path.join(ROOT, 'tests/e2e/net/support.js'))

const ROW = 'offload'
const RECEIVERS = 4
const BUNDLE = 256 * 2 ** 20
const TARGET = 1.5
const MB = 1e6

/** Runs the extension's message call in one of its pages. */
function call (page, type, fields = {}) {
  return page.evaluate(
    async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields),
    [type, fields]
  )
}

const open = []

/** A Chromium with the extension pointed at the server; its popup page. */
async function browser (label, extension, server) {
  const downloads = await tempDir(`downloads-${label}-`)
  const b = await launchChromium(extension, { downloads })
  open.push(b)
  b.label = label
  b.downloads = downloads
  const popup = await b.context.newPage()
  await popup.goto(`${b.base}popup.html`)
  await popup.evaluate(
    (settings) => chrome.storage.local.set({ settings }),
    { serverUrl: server.url, trackers: [], uploadLimitKBps: 0, downloadLimitKBps: 0, dropZone: true, uploadToServer: true }
  )
  b.popup = popup
  b.close = async () => {
    await b.context.close().catch(() => {})
    open.splice(open.indexOf(b), 1)
    await removeDir(b.profile)
    await removeDir(downloads)
  }
  return b
}

/** Opens the share link in the receiver's bundle page; resolves to the transfer id. */
async function receive (b, link) {
  const page = await b.context.newPage()
  log(ROW, `${b.label}: opening the link`)
  await page.goto(`${b.base}bundle.html?link=${encodeURIComponent(link)}`)
  // The page swaps its URL for the transfer's (history.replaceState: no load event to wait for).
  return until(() => new URL(page.url()).searchParams.get('id'), { timeoutMs: 60_000, what: `${b.label}'s bundle page to start the transfer` })
}

async function completed (b, id) {
  let said = performance.now()
  return until(
    async () => {
      const t = await call(b.popup, 'transfer.get', { id })
      if (t.state === 'error') throw new Error(`${b.label}: ${t.error}`)
      if (performance.now() - said > 15_000) {
        said = performance.now()
        log(ROW, `${b.label}: ${t.state}, ${fmt((t.progressBytes ?? 0) / MB, 1)} MB, from peers ${fmt((t.fromPeers ?? 0) / MB, 1)} MB, from the server ${fmt((t.fromServer ?? 0) / MB, 1)} MB`)
      }
      return t.state === 'complete' ? t : null
    },
    { timeoutMs: 1_200_000, what: `${b.label} to complete` }
  )
}

const server = await startServer()
const dir = await tempDir('offload-')
try {
  const extension = builtExtension('chrome')
  const a = BUNDLE * 0.5 + 12_345
  const bsz = Math.floor(BUNDLE * 0.3) - 7
  const files = await randomFiles(dir, [a, bsz, BUNDLE - a - bsz])

  const sender = await browser('sender', extension, server)
  await sender.popup.locator('#pick-files').setInputFiles(files.map((f) => f.path))
  const sent = await until(
    async () => (await call(sender.popup, 'transfers.list')).find((x) => x.role === 'send' && x.link && x.state === 'sharing') ?? null,
    { timeoutMs: 600_000, what: 'the sender to hash and share the bundle' }
  )
  log(ROW, `sender shares ${fmt(sent.totalLength / MB, 1)} MB: ${sent.link}`)
  const t0 = performance.now()
  await until(
    async () => {
      const t = await call(sender.popup, 'transfer.get', { id: sent.id })
      return t.upload?.phase === 'done' ? t : null
    },
    { timeoutMs: 1_200_000, what: "the sender's upload to the server" }
  )
  log(ROW, `upload to the server done in ${fmt((performance.now() - t0) / 1000, 1)} s`)
  if ((await server.bundle(sent.infoHash)).complete !== true) throw new Error('the server does not hold the whole bundle')

  const runs = []
  for (let i = 0; i < RUNS; i++) {
    const receivers = []
    for (let r = 0; r < RECEIVERS; r++) receivers.push(await browser(`run${i + 1}-R${r + 1}`, extension, server))
    log(ROW, `run ${i + 1}/${RUNS}: ${RECEIVERS} receivers launched`)
    const egress0 = (await server.stats()).bytes_served
    const t1 = performance.now()
    const ids = await Promise.all(receivers.map((r) => receive(r, sent.link)))
    const views = await Promise.all(receivers.map((r, k) => completed(r, ids[k])))
    const seconds = (performance.now() - t1) / 1000
    const egress = (await server.stats()).bytes_served - egress0
    for (const v of views) if (v.totalLength !== sent.totalLength) throw new Error(`a receiver got ${v.totalLength} bytes`)
    const run = {
      egress_mb: Number((egress / MB).toFixed(1)),
      ratio: Number((egress / sent.totalLength).toFixed(3)),
      seconds: Number(seconds.toFixed(1)),
      from_peers_mb: views.map((v) => (v.fromPeers / MB).toFixed(0)).join(' / '),
      from_server_mb: views.map((v) => (v.fromServer / MB).toFixed(0)).join(' / ')
    }
    runs.push(run)
    log(ROW, `run ${i + 1}/${RUNS}: egress ${run.egress_mb} MB = ${fmt(run.ratio, 2)}× the bundle; ${run.seconds} s; ` +
      `from peers ${run.from_peers_mb} MB; from the server ${run.from_server_mb} MB`)
    for (const r of receivers) await r.close()
  }
  const ratio = median(runs.map((r) => r.ratio))
  const met = ratio <= TARGET
  await writeResult({
    row: 5,
    key: ROW,
    title: 'Server offload: four receivers at once',
    status: 'measured',
    value: ratio * sent.totalLength / MB,
    unit: 'MB served',
    anchor: { name: 'the bundle size', value: sent.totalLength / MB, unit: 'MB' },
    ratio,
    target: { text: `≤ ${TARGET}× the bundle size`, met },
    runs,
    details: [
      `bundle: ${fmt(sent.totalLength / MB, 1)} MB of random bytes in 3 files, fully uploaded to the server (release build, loopback) before the runs; the sender stays online`,
      `each run: ${RECEIVERS} fresh Chromium profiles (release build of the extension) open the share link together; egress is the change of \`bytes_served\` (GET /api/stats) until all have completed`,
      `median time for the four downloads: ${fmt(median(runs.map((r) => r.seconds)), 1)} s`
    ],
    limit: met
      ? null
      : `the server sent ${fmt(ratio, 2)}× the bundle: the receivers took from the web seed what they did not get from the sender` +
        ' or from each other (see the per-run split between peers and the server); a receiver preferring peers for pieces' +
        ' another receiver already holds, and fetching from the server only the rarest pieces, would move it.',
    reason: null
  })
} finally {
  for (const b of [...open]) await b.close()
  server.stop()
  await removeDir(dir)
}
