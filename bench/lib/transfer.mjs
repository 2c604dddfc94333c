// Shared by the transfer rows: the test files, what one timed transfer is
// measured by (time, CPU, the server's egress), and formatting of the split
// of CPU time by process kind.

import { randomFill } from 'node:crypto'
import { open } from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'
import { fmt, median } from './common.mjs'
import { cpuBetween, cpuGrowth, cpuSnapshot, processKind, threadCpu } from './procs.mjs'

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
 * `stop()` resolves to the CPU seconds of each tree in between and the
 * split by process kind of each.
 */
export async function cpuMeter (pids) {
  const before = await cpuSnapshot(pids)
  // BENCH_THREADS=1: also print, per browser, the CPU of each thread kind
  // (for finding where two runs differ; not part of any row's figures).
  const threads = process.env.BENCH_THREADS === '1' ? await Promise.all(pids.map(threadCpu)) : null
  return {
    async stop () {
      const after = await cpuSnapshot(pids)
      if (threads) {
        const now = await Promise.all(pids.map(threadCpu))
        now.forEach((t, i) => {
          const top = cpuGrowth(threads[i], t, 0.1).filter(([k]) => k.includes('/'))
          console.error(`  threads of browser ${i + 1}: ${top.map(([k, v]) => `${k} ${fmt(v, 1)}`).join(', ')}`)
        })
      }
      const used = cpuBetween(before, after)
      const trees = []
      for (const u of used) {
        const kinds = {}
        for (const { pid, seconds } of u.split) {
          const k = await processKind(pid)
          kinds[k] = (kinds[k] ?? 0) + seconds
        }
        trees.push({ seconds: u.seconds, kinds })
      }
      return trees
    }
  }
}

/**
 * Measures one run of a transfer: `transfer()` is timed, and over the same
 * interval, with `pids` (the browser processes of [sender, receiver]), the
 * CPU of each one's process tree (as `cpuMeter`), and with `server`, the
 * bytes it served. Resolves to {value: what `transfer()` resolved to,
 * seconds, cpu: [{seconds, kinds}] or null, egress: bytes or null}.
 */
export async function timedRun (transfer, { pids, server } = {}) {
  const meter = pids ? await cpuMeter(pids) : null
  const served = server ? (await server.stats()).bytes_served : 0
  const t0 = performance.now()
  const value = await transfer()
  const seconds = (performance.now() - t0) / 1000
  const cpu = meter ? await meter.stop() : null
  const egress = server ? (await server.stats()).bytes_served - served : null
  return { value, seconds, cpu, egress }
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
