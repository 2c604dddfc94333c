// Row 1, Bundle creation: hashing 1 GiB of files into a bundle in the extension (Chromium) against sha1sum.
// bench-needs: server dist
//
// 16 files of 64 MiB of random bytes are written to a temporary directory and
// read once by sha1sum, unmeasured, so every run reads them from the page
// cache. Each run then times, back to back on the same files:
//   - the anchor: `sha1sum` over the 16 files (one process);
//   - Swarmdrop: Chromium (playwright-core, the release build in dist/chrome,
//     a fresh profile per run, launched before the clock starts) is handed the
//     files through the popup's "Send files…" input with `setInputFiles`, as
//     the end-to-end tests do; the time runs from handing them over to the
//     send being listed with its share link and in the `sharing` state (the
//     bundle made, every piece hashed). The server on loopback is the
//     configured server, with the upload to it turned off, so only the hashing
//     is timed.
// The figure is 1 GiB over the median time, in MB/s; the ratio is against the
// sha1sum median of the same runs. The CPU time of each is recorded too
// (user + system, from /proc): sha1sum's, and that of every Chromium process
// alive at the end of the run (browser, renderers, utilities), so the report
// can say whether the hashing is short of CPU or waiting.

import { randomFill } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { cpus } from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'
import { ROOT, RUNS, fmt, log, median, removeDir, run, tempDir, writeResult } from '../lib/common.mjs'

if (process.env.BENCH_SERVER_BIN) process.env.SWARMDROP_SERVER ??= process.env.BENCH_SERVER_BIN
const { launchChromium } = await import(path.join(ROOT, 'tests/e2e/lib/chromium.js'))
const { builtExtension } = await import(path.join(ROOT, 'tests/e2e/lib/paths.js'))
const { startServer } = await import(path.join(ROOT, 'tests/e2e/net/support.js'))

const ROW = 'create'
const FILES = 16
const FILE_BYTES = 64 * 2 ** 20
const TOTAL = FILES * FILE_BYTES // 1 GiB
const TARGET = 1.2

const TICKS = Number(await run('getconf', ['CLK_TCK']))

/** The user and system time of this process's finished children, in seconds (sha1sum's once it has exited). */
function childrenCpuSeconds () {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[13]) + Number(f[14])) / TICKS
}

/** The user and system time so far of the live Chromium processes started under this one, in seconds. */
function chromiumCpuSeconds () {
  const children = new Map()
  const procs = new Map()
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    let stat
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      continue // it ended meanwhile
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    procs.set(pid, { name, ticks: Number(f[11]) + Number(f[12]) })
    if (!children.has(f[1])) children.set(f[1], [])
    children.get(f[1]).push(pid)
  }
  let ticks = 0
  const walk = (pid) => {
    for (const child of children.get(pid) ?? []) {
      if (procs.get(child).name.startsWith('chrom')) ticks += procs.get(child).ticks
      walk(child)
    }
  }
  walk(String(process.pid))
  return ticks / TICKS
}

/** Runs the extension's message call in one of its pages. */
function call (page, type, fields = {}) {
  return page.evaluate(
    async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields),
    [type, fields]
  )
}

/** One Swarmdrop run: seconds from handing the files over to the share link being ready. */
async function swarmdropRun (extension, server, files) {
  const b = await launchChromium(extension)
  try {
    const popup = await b.context.newPage()
    await popup.goto(`${b.base}popup.html`)
    await popup.evaluate(
      (settings) => chrome.storage.local.set({ settings }),
      { serverUrl: server.url, trackers: [], uploadLimitKBps: 0, downloadLimitKBps: 0, dropZone: true, uploadToServer: false }
    )
    await popup.waitForTimeout(500) // the settings reach the service worker
    const cpu0 = chromiumCpuSeconds()
    const t0 = performance.now()
    await popup.locator('#pick-files').setInputFiles(files)
    let firstProgress = null // when the first hashed bytes were reported
    let lastProgress = null // when progress first reached the whole bundle
    for (;;) {
      const list = await call(popup, 'transfers.list')
      const t = list.find((x) => x.role === 'send')
      if (t?.state === 'error') throw new Error(`the send failed: ${t.error}`)
      const now = performance.now()
      if (t?.progressBytes > 0 && firstProgress === null) firstProgress = now
      if (t?.progressBytes >= TOTAL && lastProgress === null) lastProgress = now
      if (t?.link && t.state === 'sharing') {
        const seconds = (now - t0) / 1000
        const phases = {
          before: ((firstProgress ?? now) - t0) / 1000,
          hashing: ((lastProgress ?? now) - (firstProgress ?? now)) / 1000,
          after: (now - (lastProgress ?? now)) / 1000
        }
        // The bundle holds the files and its manifest (.swarmdrop/manifest.json).
        if (t.totalLength < TOTAL || t.totalLength > TOTAL + 2 ** 20) {
          throw new Error(`the bundle holds ${t.totalLength} bytes, not the ${TOTAL} of the files and a manifest`)
        }
        return { seconds, phases, link: t.link, totalLength: t.totalLength, cpu: chromiumCpuSeconds() - cpu0 }
      }
      if (performance.now() - t0 > 900_000) throw new Error('no share link after 15 minutes')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  } finally {
    await b.context.close().catch(() => {})
    await removeDir(b.profile)
  }
}

const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
const dir = await tempDir('create-')
const server = await startServer()
try {
  const extension = builtExtension('chrome')
  log(ROW, `writing ${FILES} files of ${FILE_BYTES / 2 ** 20} MiB of random bytes`)
  const buf = Buffer.allocUnsafe(FILE_BYTES)
  const files = []
  for (let i = 0; i < FILES; i++) {
    await promisify(randomFill)(buf)
    const file = path.join(dir, `file-${String(i).padStart(2, '0')}.bin`)
    const fh = await open(file, 'w')
    await fh.write(buf)
    await fh.close()
    files.push(file)
  }

  await run('sha1sum', files) // warm the page cache, unmeasured
  const sha = []
  const sd = []
  const links = new Set()
  const phases = []
  const shaCpu = []
  const sdCpu = []
  let bundleBytes = 0
  for (let i = 0; i < RUNS; i++) {
    const c0 = childrenCpuSeconds()
    const t0 = performance.now()
    const out = await run('sha1sum', files)
    sha.push((performance.now() - t0) / 1000)
    shaCpu.push(childrenCpuSeconds() - c0)
    if (out.trim().split('\n').length !== FILES) throw new Error('sha1sum did not hash every file')
    log(ROW, `run ${i + 1}/${RUNS}: sha1sum ${fmt(sha[i], 2)} s (${fmt(TOTAL / 1e6 / sha[i])} MB/s)`)
    const r = await swarmdropRun(extension, server, files)
    sd.push(r.seconds)
    sdCpu.push(r.cpu)
    phases.push(r.phases)
    links.add(r.link)
    bundleBytes = r.totalLength
    log(ROW, `run ${i + 1}/${RUNS}: Swarmdrop ${fmt(sd[i], 2)} s (${fmt(TOTAL / 1e6 / sd[i])} MB/s)`)
  }
  const anchor = TOTAL / 1e6 / median(sha)
  const value = TOTAL / 1e6 / median(sd)
  const ratio = value / anchor
  const met = ratio >= TARGET
  const load = (await run('cat', ['/proc/loadavg'])).split(' ').slice(0, 3).join(' ')
  // Other work on the machine at the start: more runnable threads than cores.
  const busy = Number(loadBefore.split(' ')[0]) > cpus().length
  await writeResult({
    row: 1,
    key: ROW,
    title: 'Bundle creation: hashing 1 GiB of files',
    status: 'measured',
    value,
    unit: 'MB/s',
    anchor: { name: 'sha1sum (coreutils), one process, same files, page cache warm', value: anchor, unit: 'MB/s' },
    ratio,
    target: { text: `≥ ${TARGET}× sha1sum`, met },
    runs: sha.map((s, i) => ({
      swarmdrop_seconds: Number(sd[i].toFixed(2)),
      swarmdrop_mb_per_s: Math.round(TOTAL / 1e6 / sd[i]),
      sha1sum_seconds: Number(s.toFixed(2)),
      sha1sum_mb_per_s: Math.round(TOTAL / 1e6 / s),
      ratio: Number((s / sd[i]).toFixed(2)),
      to_first_progress_s: Number(phases[i].before.toFixed(2)),
      progress_s: Number(phases[i].hashing.toFixed(2)),
      after_progress_s: Number(phases[i].after.toFixed(2)),
      swarmdrop_cpu_s: Number(sdCpu[i].toFixed(2)),
      sha1sum_cpu_s: Number(shaCpu[i].toFixed(2))
    })),
    details: [
      `1 GiB in ${FILES} files of ${FILE_BYTES / 2 ** 20} MiB, random bytes, page cache warm; each run: sha1sum, then Swarmdrop`,
      'Swarmdrop: headless Chromium (playwright-core) with the release build of the extension (dist/chrome) and a fresh' +
        ' profile per run; the files handed to the popup\'s "Send files…" input (`setInputFiles`); timed until the send is' +
        ' listed with its share link in the `sharing` state (every piece hashed), polled every 50 ms; upload to the server off',
      `medians: Swarmdrop ${fmt(median(sd), 2)} s, sha1sum ${fmt(median(sha), 2)} s; share links: ${[...links].join(', ')}`,
      `the bundle: ${fmt(bundleBytes)} bytes, the files and its manifest (${fmt(bundleBytes - TOTAL)} bytes)`,
      `where the time goes (medians, from the send's progress polled every 50 ms): ${fmt(median(phases.map((p) => p.before)), 2)} s from handing` +
        ` the files over to the first hashed bytes, ${fmt(median(phases.map((p) => p.hashing)), 2)} s of hashing progress` +
        ` (${fmt(TOTAL / 1e6 / median(phases.map((p) => p.hashing)))} MB/s while it ran), ${fmt(median(phases.map((p) => p.after)), 2)} s from the last` +
        ' piece to the share link',
      `CPU time (user + system, medians): Chromium ${fmt(median(sdCpu), 2)} s over ${fmt(median(sd), 2)} s (${fmt(median(sdCpu) / median(sd), 2)}` +
        ` cores busy on average), sha1sum ${fmt(median(shaCpu), 2)} s over ${fmt(median(sha), 2)} s`,
      `1-minute load average at the end: ${load} (2 cores)`
    ],
    limit: met
      ? null
      : `Swarmdrop made the bundle at ${fmt(value)} MB/s, ${fmt(ratio, 2)}× sha1sum; its browser used` +
        ` ${fmt(median(sdCpu), 2)} CPU-seconds for the GiB where sha1sum used ${fmt(median(shaCpu), 2)}.` +
        (median(sdCpu) > (2 * median(sha)) / TARGET
          ? ` ${TARGET}× sha1sum means ${fmt(median(sha) / TARGET, 2)} s, at most ${fmt((2 * median(sha)) / TARGET, 2)}` +
            ' CPU-seconds on 2 cores: the cost per GiB must fall, more parallelism cannot do it.'
          : ` The CPU-seconds would fit in ${fmt(median(sha) / TARGET, 2)} s on 2 cores` +
            (busy ? `, but the cores were not all Swarmdrop's: other work kept them busy (load average ${loadBefore} at the start).` : ': the workers also wait.')) +
        ' The hashing (js/host/hasher.js, hash-worker.js, pieces.js streamRun) runs one worker per core and one' +
        ' more on a machine of 2 cores or fewer (3 here), each handed a batch of consecutive pieces at a time (32 MiB,' +
        ' shrinking to 8 MiB as the pieces left run out, so the workers end together); a batch is read as one Blob' +
        ' stream into one reused 4 MiB buffer of whole pieces (a BYOB reader, each read taking all the bytes the browser' +
        ' has ready, up to the buffer\'s end) and each piece goes to WebCrypto SHA-1 as soon as its bytes are in (digest' +
        ' copies it, so the buffer is refilled while earlier pieces are digested); the engine picks 512 KiB pieces for' +
        ' this bundle (libtorrent\'s rule: total / 2048 rounded up to a power of two). The work is short of CPU, and' +
        ' most of the CPU goes to reading the files, which the page cannot make cheaper. Profiles per process and' +
        ' thread (/proc/<pid>/task, 2026-11-21, Chromium 156, the same hasher.js, hash-worker.js and pieces.js in a' +
        ' plain page over the same 16 files, load average 9 to 18 on the 2 cores, so the figures spread) put 2.1 to 2.8' +
        ' CPU-s on the GiB: the browser process 0.85 to 1.9 (its IO thread 0.35 to 0.75 and its thread pool 0.4 to' +
        ' 1.2), the renderer 1.2 to 1.4 (its IO thread 0.1 to 0.3, the rest the hashing workers). With the digests' +
        ' left out, reading alone cost 1.6 to 2.0 CPU-s per GiB (browser 0.9 to 1.2, renderer 0.6 to 0.8), and WebCrypto' +
        ' SHA-1 of 1 GiB in 512 KiB pieces, its copy included, 0.62 to 0.71 CPU-s (the CPU has SHA-NI). The browser' +
        ' reads a file Blob 64 KiB at a time (MojoBlobReader bounds each read by BlobUtils::GetDataPipeChunkSize(),' +
        ' 64 KiB, a feature parameter, BlobDataPipeTuning:chunk_bytes, not the page\'s choice): 16,384 reads per GiB,' +
        ' each a round trip between its IO thread and its thread pool; with 8 KiB chunks the same GiB cost 9.2 CPU-s,' +
        ' and asking for 1 MiB chunks did not lower the cost (the data pipe takes at most 64 KiB per write). The other' +
        ' read paths cost more: the default reader (each chunk copied into the buffer) about 0.5 CPU-s more in the' +
        ' renderer, and File.slice().arrayBuffer() of 4 MiB at a time with one read ahead 3.3 to 3.7 CPU-s in all. At' +
        ` about 2.1 CPU-s per GiB at best, ${TARGET}× sha1sum on an otherwise idle machine (sha1sum 1.29 s for the GiB` +
        ` at load average 2, 2026-11-21; at most 2 × 1.29 / ${TARGET} = 2.15 CPU-seconds on 2 cores) needs both cores` +
        ' busy with nothing but this from the first byte to the last, so 2 cores cannot meet it; more cores could' +
        ' (the browser\'s one IO thread, under 0.75 CPU-s per GiB, would bound it next), and so would a cheaper read' +
        ' path in the browser. On a machine busy with other work the ratio moves with the share of the cores each' +
        ' gets: sha1sum is one thread, the hashing several. On 2 cores the third worker keeps the cores busier while' +
        ' the browser reads: in 5 invocations each, alternated on the same shared machine (load average 5 to 12,' +
        ' 2026-11-21 16:12-16:39 UTC), the median Swarmdrop time of the 15 runs was 2.11 s with it and the shrinking' +
        ' batches against 2.61 s with 2 workers and 32 MiB batches (sha1sum 2.35 s and 2.23 s; Chromium CPU 2.84 and' +
        ' 3.21 s; the invocations\' ratios 0.84, 1.09, 1.11, 1.11, 1.26× against 0.79, 0.85, 0.86, 0.87, 1.13×).' +
        ` ${fmt(median(phases.map((p) => p.before)), 2)} s pass before the first hashed bytes are reported (the` +
        ' request to the engine host, the record saved, the manifest made, then a first group of 8 MiB of pieces' +
        ' hashed by each worker; in runs instrumented with marks in the host, 2026-11-21: 45-110 ms' +
        ' for the test driver\'s setInputFiles to reach the page, 15-35 ms for the request, the record saved and the' +
        ' settings read, 65-140 ms for the first group; starting the workers earlier and saving the record while the' +
        ' hashing starts did not measurably shorten it). The machine was shared with other work' +
        ` (load average ${load} on 2 cores).`,
    reason: null
  })
} finally {
  server.stop()
  await removeDir(dir)
}
