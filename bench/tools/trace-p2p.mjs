// Traces row 2's Swarmdrop run second by second: the receiver's progress and the CPU of both browsers.
//
//   SWARMDROP_SERVER=target/release/swarmdrop-server \
//     flock /tmp/swarmdrop-browsers.lock node bench/tools/trace-p2p.mjs [MiB] [runs]
//
// The same setup as row 2 (bench/rows/02-p2p.mjs: two Chromium instances
// with the release build, fresh profiles, upload off, the release server as
// tracker only). Every second it prints the bytes the receiver has, the rate
// over that second and the CPU-seconds each browser's process tree used in
// it, so a slow run shows whether it is slow throughout (CPU-bound) or
// stalls (idle CPU, no bytes); after each run, the time to the first bytes,
// the share of the machine the hypervisor stole meanwhile and each side's
// CPU by thread. TRACE_CLOSE_PAGE=1 closes the receiver's bundle page once
// the download is under way. Not a benchmark: the per-second polling adds
// its own load.
import { performance } from 'node:perf_hooks'
import { fmt, removeDir, tempDir } from '../lib/common.mjs'
import { cpuBetween, cpuGrowth, cpuSnapshot, machineTimes, stolenShare, threadCpu } from '../lib/procs.mjs'
import { call, closeAll, extensionBrowser, receive, send, startServer } from '../lib/swarmdrop.mjs'
import { randomFileSet, threadsText } from '../lib/transfer.mjs'

const TOTAL = Number(process.argv[2] ?? 256) * 2 ** 20
const RUNS = Number(process.argv[3] ?? 1)
const MB = 1e6

const server = await startServer()
const dir = await tempDir('trace-p2p-')
try {
  const files = await randomFileSet(dir, 4, TOTAL / 4)
  for (let run = 1; run <= RUNS; run++) {
    const a = await extensionBrowser('trace', 'sender', server, { uploadToServer: false })
    const b = await extensionBrowser('trace', 'receiver', server)
    try {
      const sent = await send(a, files)
      await a.closePopup()
      const threads0 = await Promise.all([a.pid, b.pid].map(threadCpu))
      const times0 = await machineTimes()
      const t0 = performance.now()
      let last = await cpuSnapshot([a.pid, b.pid])
      let lastBytes = 0
      let lastT = t0
      const id = await receive('trace', b, { magnet: sent.magnet })
      // The progress is asked for through the bundle page (row 2 has no
      // popup open). TRACE_CLOSE_PAGE=1: the bundle page is closed once the
      // download is under way (what its drawing costs the transfer), and the
      // asking goes through the popup again (with its own refresh).
      let asker = b.bundlePage
      if (process.env.TRACE_CLOSE_PAGE === '1') {
        await b.bundlePage.close()
        await b.popup.goto(`${b.base}popup.html`)
        asker = b.popup
      }
      const rows = []
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 1000))
        const t = await call(asker, 'transfer.get', { id })
        const now = performance.now()
        const cpu = await cpuSnapshot([a.pid, b.pid])
        const [cs, cr] = cpuBetween(last, cpu)
        const bytes = t.progressBytes ?? 0
        const dt = (now - lastT) / 1000
        rows.push({ s: (now - t0) / 1000, mb: bytes / MB })
        console.log(`${fmt((now - t0) / 1000, 1).padStart(6)} s ${fmt(bytes / MB, 1).padStart(7)} MB ${fmt((bytes - lastBytes) / MB / dt, 1).padStart(5)} MB/s  cpu sender ${fmt(cs.seconds / dt, 2)} receiver ${fmt(cr.seconds / dt, 2)}  ${t.state}`)
        last = cpu
        lastBytes = bytes
        lastT = now
        if (t.state === 'complete') break
        if (t.state === 'error') throw new Error(t.error)
      }
      const threads1 = await Promise.all([a.pid, b.pid].map(threadCpu))
      const stolen = stolenShare(times0, await machineTimes())
      const seconds = rows.at(-1).s
      const firstByte = rows.find((r) => r.mb > 0)?.s
      console.log(`run ${run}: ${fmt(TOTAL / MB / seconds, 1)} MB/s over ${fmt(seconds, 1)} s; first bytes by ${fmt(firstByte, 1)} s; ${fmt(100 * stolen, 1)} % of the machine stolen`)
      for (const [i, side] of ['sender', 'receiver'].entries()) {
        console.log(`  ${side} threads: ${threadsText(Object.fromEntries(cpuGrowth(threads0[i], threads1[i], 0.05)), 0.2)}`)
      }
    } finally {
      await closeAll()
    }
  }
} finally {
  await server.stop?.()
  await removeDir(dir)
}
