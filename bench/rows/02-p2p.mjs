// Row 2, P2P transfer: 1 GiB between two Chromium instances, peers only, against a raw data channel and WebTorrent 3.
// bench-needs: npm server dist
//
// The server (release build) on loopback is the tracker only: nothing is
// uploaded to it and no web seed is given. Each run, for each of three
// senders, two Chromium instances with fresh profiles (no shared state, like
// two machines), back to back:
//   - raw (the transport's limit): two plain pages (bench/pages/raw.html), one
//     ordered RTCDataChannel signalled by the harness; the sender does nothing
//     but send 1 GiB in messages of RAW_MESSAGE bytes with bufferedAmount
//     backpressure, the receiver counts bytes;
//   - WebTorrent 3 (bench/node_modules/webtorrent/dist/webtorrent.min.js in
//     bench/pages/webtorrent.html): the sender seeds the files (picked in a
//     file input, hashed before the clock starts), the receiver adds its
//     .torrent and downloads through the Swarmdrop server's tracker;
//   - Swarmdrop: the release build of the extension in both, upload to the
//     server off; the sender sends the files from the popup (hashed before
//     the clock starts), the receiver opens the magnet link in the bundle page.
// Time runs from the receiver being handed the link (raw: the first send) to
// the last byte stored (raw: counted). CPU is user + system time of every
// process of both browsers (the whole process trees, from /proc) over the same
// interval, per GiB moved.

import { availableParallelism } from 'node:os'
import { performance } from 'node:perf_hooks'
import { RUNS, fmt, log, median, removeDir, tempDir, writeResult } from '../lib/common.mjs'
import { closePages, pageBrowser, startPages } from '../lib/pages.mjs'
import { closeAll, completed, extensionBrowser, receive, send, startServer } from '../lib/swarmdrop.mjs'
import { addKinds, kindsText, medianRate, randomFileSet, threadsText, timedRun } from '../lib/transfer.mjs'

const ROW = 'p2p'
const GiB = 2 ** 30
const TOTAL = Number(process.env.BENCH_P2P_BYTES ?? GiB)
const FILES = 4
const RAW_MESSAGE = Number(process.env.BENCH_RAW_MESSAGE ?? 64 * 1024)
const RAW_LOW = 1024 * 1024
const RAW_HIGH = 4 * 1024 * 1024
const TARGET_RAW = 0.95
const TARGET_WT = 1.1
const TARGET_CPU = 1.1
const MB = 1e6

async function rawRun (pages) {
  const s = await pageBrowser(ROW, 'raw-sender', `${pages.url}/raw.html`, 'window.raw')
  const r = await pageBrowser(ROW, 'raw-receiver', `${pages.url}/raw.html`, 'window.raw')
  try {
    const offer = await s.page.evaluate(() => window.raw.offer())
    const answer = await r.page.evaluate((sdp) => window.raw.answer(sdp), offer)
    await s.page.evaluate((sdp) => window.raw.accept(sdp), answer)
    await r.page.evaluate(() => window.raw.ready())
    let sent
    const { value: got, seconds, stolen, cpu: [cs, cr] } = await timedRun(() => {
      sent = s.page.evaluate(([t, m, lo, hi]) => window.raw.send(t, m, lo, hi), [TOTAL, RAW_MESSAGE, RAW_LOW, RAW_HIGH])
      return r.page.evaluate((t) => window.raw.until(t), TOTAL)
    }, { pids: [s.pid, r.pid] })
    await sent
    if (got !== TOTAL) throw new Error(`raw: received ${got} bytes, not ${TOTAL}`)
    return { seconds, stolen, bytes: TOTAL, cpu: cs.seconds + cr.seconds, sender: cs, receiver: cr }
  } finally {
    await s.close()
    await r.close()
  }
}

async function webtorrentRun (pages, server, files) {
  const s = await pageBrowser(ROW, 'wt-sender', `${pages.url}/webtorrent.html`, 'window.wt?.ready')
  const r = await pageBrowser(ROW, 'wt-receiver', `${pages.url}/webtorrent.html`, 'window.wt?.ready')
  try {
    await s.page.locator('#files').setInputFiles(files)
    const h0 = performance.now()
    const seeded = await s.page.evaluate((a) => window.wt.seed(a), server.tracker)
    log(ROW, `WebTorrent: seeding ${fmt(seeded.length / MB, 1)} MB in pieces of ${seeded.pieceLength} bytes (hashed in ${fmt((performance.now() - h0) / 1000, 1)} s)`)
    let said = performance.now()
    const progress = setInterval(async () => {
      if (performance.now() - said < 15_000) return
      said = performance.now()
      const st = await r.page.evaluate(() => window.wt.stats()).catch(() => null)
      if (st) log(ROW, `WebTorrent receiver: ${fmt(st.downloaded / MB, 1)} MB, ${st.peers} peers`)
    }, 1000)
    let run
    try {
      run = await timedRun(() => r.page.evaluate(([t, a]) => window.wt.download(t, a), [seeded.torrent, server.tracker]), {
        pids: [s.pid, r.pid]
      })
    } finally {
      clearInterval(progress)
    }
    const { value: done, seconds, stolen, cpu: [cs, cr] } = run
    if (done.length !== seeded.length) throw new Error(`WebTorrent: got ${done.length} bytes, not ${seeded.length}`)
    return { seconds, stolen, bytes: done.length, cpu: cs.seconds + cr.seconds, sender: cs, receiver: cr, pieceLength: seeded.pieceLength }
  } finally {
    await s.close()
    await r.close()
  }
}

async function swarmdropRun (server, files) {
  const a = await extensionBrowser(ROW, 'sd-sender', server, { uploadToServer: false })
  const b = await extensionBrowser(ROW, 'sd-receiver', server)
  try {
    const sent = await send(a, files)
    await a.closePopup()
    let id
    const { value: got, seconds, stolen, cpu: [cs, cr] } = await timedRun(async () => {
      id = await receive(ROW, b, { magnet: sent.magnet })
      return completed(ROW, b, id)
    }, { pids: [a.pid, b.pid] })
    if (got.fromServer !== 0) throw new Error(`Swarmdrop: ${got.fromServer} bytes came from the server`)
    if (got.totalLength !== sent.totalLength) throw new Error(`Swarmdrop: got ${got.totalLength} bytes`)
    return { seconds, stolen, bytes: got.totalLength, cpu: cs.seconds + cr.seconds, sender: cs, receiver: cr, pieceLength: got.pieceLength ?? null }
  } finally {
    await closeAll()
  }
}

const server = await startServer()
const pages = await startPages()
const dir = await tempDir('p2p-')
try {
  log(ROW, `writing ${FILES} files of ${fmt(TOTAL / FILES / 2 ** 20)} MiB of random bytes`)
  const files = await randomFileSet(dir, FILES, TOTAL / FILES)
  const runs = []
  const all = { raw: [], wt: [], sd: [] }
  for (let i = 0; i < RUNS; i++) {
    const raw = await rawRun(pages)
    log(ROW, `run ${i + 1}/${RUNS}: raw ${fmt(raw.bytes / MB / raw.seconds, 1)} MB/s, CPU ${fmt(raw.cpu, 1)} s, ${fmt(100 * (raw.stolen ?? 0), 1)} % of the machine stolen`)
    const wt = await webtorrentRun(pages, server, files)
    log(ROW, `run ${i + 1}/${RUNS}: WebTorrent ${fmt(wt.bytes / MB / wt.seconds, 1)} MB/s, CPU ${fmt(wt.cpu, 1)} s, ${fmt(100 * (wt.stolen ?? 0), 1)} % of the machine stolen`)
    const sd = await swarmdropRun(server, files)
    log(ROW, `run ${i + 1}/${RUNS}: Swarmdrop ${fmt(sd.bytes / MB / sd.seconds, 1)} MB/s, CPU ${fmt(sd.cpu, 1)} s, ${fmt(100 * (sd.stolen ?? 0), 1)} % of the machine stolen`)
    all.raw.push(raw)
    all.wt.push(wt)
    all.sd.push(sd)
    const perGiB = (x) => x.cpu / (x.bytes / GiB)
    runs.push({
      swarmdrop_mb_s: Number((sd.bytes / MB / sd.seconds).toFixed(1)),
      raw_mb_s: Number((raw.bytes / MB / raw.seconds).toFixed(1)),
      webtorrent_mb_s: Number((wt.bytes / MB / wt.seconds).toFixed(1)),
      swarmdrop_cpu_s_gib: Number(perGiB(sd).toFixed(1)),
      raw_cpu_s_gib: Number(perGiB(raw).toFixed(1)),
      webtorrent_cpu_s_gib: Number(perGiB(wt).toFixed(1)),
      swarmdrop_cpu_send_recv: `${fmt(sd.sender.seconds, 1)} / ${fmt(sd.receiver.seconds, 1)}`,
      webtorrent_cpu_send_recv: `${fmt(wt.sender.seconds, 1)} / ${fmt(wt.receiver.seconds, 1)}`,
      raw_cpu_send_recv: `${fmt(raw.sender.seconds, 1)} / ${fmt(raw.receiver.seconds, 1)}`,
      stolen_pct_sd_raw_wt: [sd, raw, wt].map((x) => (x.stolen == null ? '?' : fmt(100 * x.stolen, 1))).join(' / ')
    })
  }
  const cpuGiB = (xs) => median(xs.map((x) => x.cpu / (x.bytes / GiB)))
  // Cores both browsers kept busy over the timed transfer (of availableParallelism()).
  const cores = (xs) => median(xs.map((x) => x.cpu / x.seconds))
  const sdRate = medianRate(all.sd)
  const rawRate = medianRate(all.raw)
  const wtRate = medianRate(all.wt)
  const vsRaw = sdRate / rawRate
  const vsWt = sdRate / wtRate
  const cpuRatio = cpuGiB(all.sd) / cpuGiB(all.raw)
  const met = { raw: vsRaw >= TARGET_RAW, wt: vsWt >= TARGET_WT, cpu: cpuRatio <= TARGET_CPU }
  const medianKinds = (xs, role) => {
    // The run with the median total CPU, its split by process kind.
    const sorted = [...xs].sort((p, q) => p.cpu - q.cpu)
    return kindsText(sorted[sorted.length >> 1][role].kinds)
  }
  const sdMid = [...all.sd].sort((p, q) => p.cpu - q.cpu)[all.sd.length >> 1]
  const rawMid = [...all.raw].sort((p, q) => p.cpu - q.cpu)[all.raw.length >> 1]
  const limits = []
  if (!met.raw || !met.cpu) {
    // Where Swarmdrop spends CPU above the raw channel, per side (median
    // runs), by process kind or by thread: [key, seconds] pairs. The raw
    // pages' renderer is a plain one, named here as the extension's.
    const aboveRaw = (role, field) => {
      const sd = sdMid[role][field]
      const raw = Object.fromEntries(Object.entries(rawMid[role][field]).map(([k, v]) => [k.replace(/^renderer(?=$|\/)/, 'renderer:extension'), v]))
      return Object.keys({ ...sd, ...raw }).map((k) => [k, (sd[k] ?? 0) - (raw[k] ?? 0)])
    }
    const aboveText = (pairs, min) => pairs
      .filter(([, d]) => Math.abs(d) >= min)
      .sort((a, b) => b[1] - a[1])
      .map(([k, d]) => `${k} ${d >= 0 ? '+' : ''}${fmt(d, 1)} s`)
      .join(', ')
    const extra = (role) => aboveText(aboveRaw(role, 'kinds'), 0.5)
    const threadExtra = (role) => aboveRaw(role, 'threads')
    const extraThreads = (role) => aboveText(threadExtra(role), 0.3)
    // The threads that carry the channel in both: the network service's IO
    // thread (UDP sockets), the renderer's WebRTC network thread (SCTP,
    // DTLS) and its IO thread.
    const CHANNEL = ['utility:mojom.NetworkService/Chrome_ChildIOT', 'renderer:extension/WebRTC_W_and_N', 'renderer:extension/Chrome_ChildIOT']
    const split = (role) => {
      const e = threadExtra(role)
      const channel = e.filter(([k]) => CHANNEL.includes(k)).reduce((t, [, d]) => t + d, 0)
      const main = e.filter(([k]) => k === 'renderer:extension/chromium').reduce((t, [, d]) => t + d, 0)
      const all = e.reduce((t, [, d]) => t + d, 0)
      return `${fmt(all, 1)} s, of which ${fmt(channel, 1)} s in the threads that carry the channel and ${fmt(main, 1)} s in` +
        ` the extension renderer's main thread`
    }
    limits.push(
      `Swarmdrop moved ${fmt(sdRate, 1)} MB/s against the raw channel's ${fmt(rawRate, 1)} MB/s and used` +
        ` ${fmt(cpuGiB(all.sd), 1)} CPU-s per GiB against ${fmt(cpuGiB(all.raw), 1)}. In the median runs the CPU went:` +
        ` Swarmdrop sender ${fmt(sdMid.sender.seconds, 1)} s (${kindsText(sdMid.sender.kinds)}), receiver` +
        ` ${fmt(sdMid.receiver.seconds, 1)} s (${kindsText(sdMid.receiver.kinds)}); raw sender` +
        ` ${fmt(rawMid.sender.seconds, 1)} s (${kindsText(rawMid.sender.kinds)}), receiver ${fmt(rawMid.receiver.seconds, 1)} s` +
        ` (${kindsText(rawMid.receiver.kinds)}). Swarmdrop above raw: sender ${extra('sender')}; receiver ${extra('receiver')}.` +
        ` By thread (\`chromium\` is a process's main thread): sender ${extraThreads('sender')}; receiver ${extraThreads('receiver')}.` +
        ` Swarmdrop above raw, sender: ${split('sender')}; receiver: ${split('receiver')}. The threads that carry the` +
        ' channel (the network service\'s IO thread with the UDP sockets, the renderer\'s WebRTC network thread with SCTP and' +
        ' DTLS, the renderer\'s IO thread) carry the same bytes in both; Swarmdrop also sends requests back and its transfer' +
        ' runs longer, and this measurement does not split their extra further. The main thread runs the engine in wasm and' +
        ' its glue and the bundle page,' +
        ' and on the sender the calls that read pieces from the files (`Blob.slice().arrayBuffer()` per piece, measured on' +
        ' 2026-11-22 at 1.5 to 1.8 CPU-s per 256 MiB read in 512 KiB slices against 0.8 to 0.9 in 4 MiB slices, the rest of' +
        ' that in the browser process); the compositor and the GPU process draw the receiver\'s pages.' +
        ` The throughput gap has two factors: Swarmdrop's CPU per GiB (${fmt(cpuRatio, 2)}× raw's) and how much of the` +
        ` ${availableParallelism()} cores the two browsers keep busy (medians: Swarmdrop ${fmt(cores(all.sd), 2)}, raw ${fmt(cores(all.raw), 2)},` +
        ` WebTorrent ${fmt(cores(all.wt), 2)}); ${fmt(vsRaw, 2)}× ≈ (1 / ${fmt(cpuRatio, 2)}) × (${fmt(cores(all.sd), 2)} /` +
        ` ${fmt(cores(all.raw), 2)}). The idle share is not the sender running dry: sampled every 20 ms in a 512 MiB transfer` +
        ' (bench/tools/profile-p2p.mjs with PROFILE=0, 2026-11-22), the sender\'s channel held more than 1 MiB in 95 % of the' +
        ' samples and was empty in under 1 %, and a request pipeline of 8 MiB with a send budget of 8 MiB (from 4 MiB and 4' +
        ' MiB) moved nothing in three paired runs (bench/tools/trace-p2p.mjs). With its buffer as full as raw\'s, the channel' +
        ' itself runs slower while the engine\'s threads work: its threads (SCTP, DTLS, the UDP sockets) wait for a core more' +
        ' often, and each of their round trips takes longer. What would move both figures is less work beside the channel:' +
        ' on the sender, reading several pieces per call (measured on a branch: its main thread\'s busy time 11.4 to 6.1 s per' +
        ' 256 MiB, about 3 CPU-s per GiB of the' +
        ` ${fmt(cpuGiB(all.sd) - cpuGiB(all.raw), 0)} above raw, no ratio moved beyond this row's noise); on the receiver, its` +
        ' page drawn less often (closing the bundle page during a transfer saved about 1 CPU-s per 256 MiB in two paired runs:' +
        ' about 0.5 s of its main thread and most of the GPU process\'s 0.6 s).'
    )
  }
  if (!met.wt) limits.push(`WebTorrent moved ${fmt(wtRate, 1)} MB/s, Swarmdrop ${fmt(vsWt, 2)}× that.`)
  await writeResult({
    row: 2,
    key: ROW,
    title: 'P2P transfer: 1 GiB between two Chromium instances, peers only',
    status: 'measured',
    value: sdRate,
    unit: 'MB/s',
    anchor: { name: `raw data channel (${RAW_MESSAGE / 1024} KiB messages), same browsers and machine`, value: rawRate, unit: 'MB/s' },
    ratio: vsRaw,
    target: {
      text: `≥ ${TARGET_RAW}× raw, ≥ ${TARGET_WT}× WebTorrent; CPU-s/GiB ≤ ${TARGET_CPU}× raw`,
      met: met.raw && met.wt && met.cpu
    },
    extra: `${fmt(vsWt, 2)}× WebTorrent (${fmt(wtRate, 1)} MB/s); CPU ${fmt(cpuRatio, 2)}× raw`,
    runs,
    details: [
      `throughput (medians): Swarmdrop ${fmt(sdRate, 1)} MB/s, raw channel ${fmt(rawRate, 1)} MB/s, WebTorrent ${fmt(wtRate, 1)} MB/s;` +
        ` Swarmdrop ${fmt(vsRaw, 2)}× raw (target ≥ ${TARGET_RAW}: ${met.raw ? 'met' : 'missed'}),` +
        ` ${fmt(vsWt, 2)}× WebTorrent (target ≥ ${TARGET_WT}: ${met.wt ? 'met' : 'missed'})`,
      `CPU-seconds per GiB of both browsers' process trees (medians): Swarmdrop ${fmt(cpuGiB(all.sd), 1)}, raw` +
        ` ${fmt(cpuGiB(all.raw), 1)}, WebTorrent ${fmt(cpuGiB(all.wt), 1)}; Swarmdrop ${fmt(cpuRatio, 2)}× raw` +
        ` (target ≤ ${TARGET_CPU}: ${met.cpu ? 'met' : 'missed'})`,
      `${fmt(TOTAL / 2 ** 20)} MiB in ${FILES} files of random bytes; two Chromium instances (/usr/bin/chromium, headless=new)` +
        ' with fresh profiles per sender and run; the Swarmdrop server (release build, loopback) as tracker only; no web seed, nothing uploaded',
      `raw: one ordered RTCDataChannel, ${RAW_MESSAGE / 1024} KiB messages, sending while bufferedAmount ≤ ${RAW_HIGH / 2 ** 20} MiB,` +
        ` resuming on bufferedamountlow at ${RAW_LOW / 2 ** 20} MiB; timed from the first send to the last byte counted`,
      `WebTorrent ${'3.0.21'} (dist/webtorrent.min.js, its OPFS chunk store) in plain pages, no ICE servers; pieces of` +
        ` ${fmt(all.wt[0].pieceLength)} bytes; timed from adding the .torrent to its 'done' event`,
      `Swarmdrop: release build of the extension (dist/chrome), upload to the server off, the magnet link opened in the` +
        ` receiver's bundle page; timed from opening it to that page showing the transfer complete (checked in the page` +
        ' every 100 ms; the engine host tells open pages of a state change at once); no popup open during the transfer' +
        ' (the sender\'s is closed once the link is shared, as a toolbar popup closes)',
      'stolen_pct_sd_raw_wt: the share of the machine\'s CPU time the hypervisor gave to others (steal in /proc/stat)' +
        ' during the Swarmdrop, raw and WebTorrent transfers of each run: a run with more is slower for that, not for its code',
      `cores kept busy by both browsers over the transfer (CPU-seconds over seconds, medians): Swarmdrop ${fmt(cores(all.sd), 2)},` +
        ` raw ${fmt(cores(all.raw), 2)}, WebTorrent ${fmt(cores(all.wt), 2)} (of ${availableParallelism()})`,
      `CPU split by process kind, median run: Swarmdrop sender ${medianKinds(all.sd, 'sender')}; receiver ${medianKinds(all.sd, 'receiver')};` +
        ` WebTorrent sender ${medianKinds(all.wt, 'sender')}; receiver ${medianKinds(all.wt, 'receiver')}`,
      `CPU by thread, median run (at least 0.3 s): Swarmdrop sender ${threadsText(sdMid.sender.threads)}; receiver` +
        ` ${threadsText(sdMid.receiver.threads)}; raw sender ${threadsText(rawMid.sender.threads)}; receiver ${threadsText(rawMid.receiver.threads)}`,
      `all kinds summed over the runs: Swarmdrop ${kindsText(addKinds(...all.sd.flatMap((x) => [x.sender.kinds, x.receiver.kinds])))};` +
        ` raw ${kindsText(addKinds(...all.raw.flatMap((x) => [x.sender.kinds, x.receiver.kinds])))}`
    ],
    limit: limits.length ? limits.join(' ') : null,
    reason: null
  })
} finally {
  await closeAll()
  await closePages()
  pages.close()
  server.stop()
  await removeDir(server.dataDir)
  await removeDir(dir)
}
