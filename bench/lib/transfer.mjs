// Shared by the transfer rows: the test files, CPU accounting around a timed
// transfer, and formatting of the split of CPU time by process kind.

import { randomFill } from 'node:crypto'
import { open } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { fmt } from './common.mjs'
import { cpuBetween, cpuSnapshot, processKind } from './procs.mjs'

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
  return {
    async stop () {
      const after = await cpuSnapshot(pids)
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
