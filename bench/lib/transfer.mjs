// Shared by the transfer rows: the test files, what one timed transfer is
// measured by (time, CPU, the server's egress), and formatting of the split
// of CPU time by process kind.

import { randomFill } from 'node:crypto'
import { open } from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'
import { fmt, median } from './common.mjs'
import { cpuBetween, cpuGrowth, cpuSnapshot, machineTimes, processKind, stolenShare, threadCpu } from './procs.mjs'

/** Writes `count` files of `bytes` random bytes each in `dir`; returns their paths. */
export async function randomFileSet (dir, count, bytes) {
  const chunk = Buffer.allocUnsafe(Math.min(bytes, 16 * 2 ** 20))
  const out = []
  for (let i = 0; i < count; i++) {
    const file = path.join(dir, `file-${String(i + 1).padStart(2, '0')}.bin`)
    const fh = await open(file, 'w')
    for (let done = 0; done < bytes; done += chunk.length) {
      await promisify(randomFill)(chunk)
      await fh.write(chunk, 0, Math.min(chunk.length, bytes - done))
    }
    await fh.close()
    out.push(file)
  }
  return out
}

/**
 * Starts CPU accounting of the browsers (pids of their browser processes);
 * `stop()` resolves to the CPU seconds of each tree in between and its
 * split by process kind (`kinds`) and by thread (`threads`, keyed
 * `kind/thread`, thread names as /proc gives them: `chromium` is a
 * process's main thread).
 */
export async function cpuMeter (pids) {
  const before = await cpuSnapshot(pids)
  const threadsBefore = await Promise.all(pids.map(threadCpu))
  return {
    async stop () {
      const after = await cpuSnapshot(pids)
      const threadsAfter = await Promise.all(pids.map(threadCpu))
      const used = cpuBetween(before, after)
      const trees = []
      for (const [i, u] of used.entries()) {
        const kinds = {}
        for (const { pid, seconds } of u.split) {
          const k = await processKind(pid)
          kinds[k] = (kinds[k] ?? 0) + seconds
        }
        // Per `kind/thread` (threads that ended count only in their process's kind).
        const threads = Object.fromEntries(cpuGrowth(threadsBefore[i], threadsAfter[i], 0.05).filter(([k]) => k.includes('/')))
        // BENCH_THREADS=1: print them (for finding where two runs differ).
        if (process.env.BENCH_THREADS === '1') console.error(`  threads of browser ${i + 1}: ${threadsText(threads, 0.1)}`)
        trees.push({ seconds: u.seconds, kinds, threads })
      }
      return trees
    }
  }
}

/** "renderer:extension/chromium 4.1 s, …" for the threads using at least `min` seconds. */
export function threadsText (threads, min = 0.3) {
  return Object.entries(threads)
    .filter(([, s]) => s >= min)
    .sort((a, b) => b[1] - a[1])
    .map(([k, s]) => `${k} ${fmt(s, 1)} s`)
    .join(', ')
}

/**
 * Measures one run of a transfer: `transfer()` is timed, and over the same
 * interval, with `pids` (the browser processes of [sender, receiver]), the
 * CPU of each one's process tree (as `cpuMeter`), and with `server`, the
 * bytes it served. Resolves to {value: what `transfer()` resolved to,
 * seconds, cpu: [{seconds, kinds, threads}] or null, egress: bytes or null}.
 */
export async function timedRun (transfer, { pids, server } = {}) {
  const meter = pids ? await cpuMeter(pids) : null
  const served = server ? (await server.stats()).bytes_served : 0
  const times0 = await machineTimes()
  const t0 = performance.now()
  const value = await transfer()
  const seconds = (performance.now() - t0) / 1000
  // The share of the machine stolen over the run: a run slowed by it is
  // told apart from a slow run.
  const stolen = stolenShare(times0, await machineTimes())
  const cpu = meter ? await meter.stop() : null
  const egress = server ? (await server.stats()).bytes_served - served : null
  return { value, seconds, cpu, egress, stolen }
}

/** The median throughput in MB/s of runs of {bytes, seconds}. */
export function medianRate (runs) {
  return median(runs.map((x) => x.bytes / 1e6 / x.seconds))
}

/** "renderer:extension 41.2 s, gpu-process 3.1 s, …" for the kinds using at least 0.5 s. */
export function kindsText (kinds) {
  return Object.entries(kinds)
    .filter(([, s]) => s >= 0.5)
    .sort((a, b) => b[1] - a[1])
    .map(([k, s]) => `${k} ${fmt(s, 1)} s`)
    .join(', ')
}

/** Adds up kind → seconds maps. */
export function addKinds (...maps) {
  const out = {}
  for (const m of maps) for (const [k, s] of Object.entries(m)) out[k] = (out[k] ?? 0) + s
  return out
}
