// Helpers shared by the benchmark rows: the result record, medians, child
// processes, CPU time of a process, temporary directories.
//
// A row script is run by bench/run.sh with these environment variables:
//   BENCH_ROOT    the repository root (absolute)
//   BENCH_RESULT  where to write the row's result (JSON, see `writeResult`)
//   BENCH_RUNS    how many runs to take the median of (at least 3)
//   BENCH_WORK    a scratch directory for this invocation (removed afterwards)
// and, set by hand, BENCH_THREADS=1 prints the CPU of each browser's thread
// kinds after every timed transfer (bench/lib/transfer.mjs), for finding
// where two runs differ; it changes no figure. Each row script
// prints its progress on stderr.

import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'

export const ROOT = process.env.BENCH_ROOT || path.resolve(import.meta.dirname, '..', '..')
export const RUNS = Math.max(3, Number.parseInt(process.env.BENCH_RUNS || '3', 10) || 3)
export const WORK = process.env.BENCH_WORK || tmpdir()

/** Progress line on stderr, prefixed with the row. */
export function log (row, ...parts) {
  process.stderr.write(`[${row}] ${parts.join(' ')}\n`)
}

/** Median of a non-empty list of numbers (mean of the middle two for even lengths). */
export function median (values) {
  if (values.length === 0) throw new Error('median of nothing')
  const s = [...values].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/**
 * Writes the row's result for the report. Fields:
 *   row, key, title            row number, selector name, title
 *   status                     'measured' | 'partial' | 'not_measured'
 *   value, unit                the measured figure (median), or null
 *   anchor: {name, value, unit} the reference measured in the same run, or null
 *   ratio                      value / anchor (or the row's own definition), or null
 *   extra                      other comparisons of the row, in words (optional)
 *   target: {text, met}        the goal in words and whether it is met (null: unknown)
 *   runs                       the per-run figures the medians come from
 *   details                    lines of context (absolute figures, CPU, settings)
 *   limit                      what limits the figure when the target is missed
 *   reason                     for parts not measured: why, and the plan
 */
export async function writeResult (result) {
  const out = process.env.BENCH_RESULT
  const text = JSON.stringify(result, null, 2) + '\n'
  if (out) await writeFile(out, text)
  else process.stdout.write(text)
}

/** A row that cannot be measured yet, with the reason and the plan. */
export function notMeasured (row, key, title, target, reason) {
  return {
    row,
    key,
    title,
    status: 'not_measured',
    value: null,
    unit: null,
    anchor: null,
    ratio: null,
    target: { text: target, met: null },
    runs: [],
    details: [],
    limit: null,
    reason
  }
}

/** A fresh temporary directory under the invocation's scratch directory. */
export function tempDir (prefix) {
  return mkdtemp(path.join(WORK, prefix))
}

export async function removeDir (dir) {
  await rm(dir, { recursive: true, force: true })
}

/** CPU seconds (user + system) a process has used so far, from /proc; null if gone. */
export async function processCpuSeconds (pid) {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces) start after ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const utime = Number(fields[11])
    const stime = Number(fields[12])
    return (utime + stime) / CLOCK_TICKS
  } catch {
    return null
  }
}

/**
 * Scheduler times of a process, summed over its threads, in seconds: on a
 * CPU, and runnable but waiting for one (from /proc/<pid>/task/<tid>/schedstat).
 * The second one tells a process starved of CPU by others from one that is
 * idle. Null if the process is gone or the kernel does not keep them.
 */
export async function processSchedSeconds (pid) {
  try {
    let onCpu = 0
    let waiting = 0
    for (const tid of await readdir(`/proc/${pid}/task`)) {
      const text = await readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => null)
      if (text === null) continue // the thread ended meanwhile
      const [run, wait] = text.trim().split(' ').map(Number)
      onCpu += run / 1e9
      waiting += wait / 1e9
    }
    return { onCpu, waiting }
  } catch {
    return null
  }
}

// USER_HZ is 100 on every Linux architecture this runs on.
const CLOCK_TICKS = 100

/**
 * Spawns a child in its own process group, with its output collected, and a
 * hard deadline after which the whole group is killed.
 */
export function startChild (command, args, { env, cwd, deadlineMs, onStdoutLine } = {}) {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true
  })
  let stdout = ''
  let stderr = ''
  let pending = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stdout.on('data', chunk => {
    stdout = (stdout + chunk).slice(-64 * 1024)
    if (onStdoutLine) {
      pending += chunk
      let nl
      while ((nl = pending.indexOf('\n')) >= 0) {
        onStdoutLine(pending.slice(0, nl))
        pending = pending.slice(nl + 1)
      }
    }
  })
  child.stderr.on('data', chunk => { stderr = (stderr + chunk).slice(-64 * 1024) })
  // 'close' comes after the output is drained, unlike 'exit'.
  const exited = new Promise(resolve => child.on('close', (code, signal) => resolve({ code, signal })))
  const timer = deadlineMs
    ? setTimeout(() => killGroup(child, 'SIGKILL'), deadlineMs).unref()
    : null
  exited.then(() => clearTimeout(timer))
  return {
    child,
    exited,
    output: () => ({ stdout, stderr }),
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return exited
      killGroup(child, 'SIGTERM')
      const forced = setTimeout(() => killGroup(child, 'SIGKILL'), 5000)
      const r = await exited
      clearTimeout(forced)
      return r
    }
  }
}

function killGroup (child, signal) {
  try {
    process.kill(-child.pid, signal)
  } catch {
    // Already gone.
  }
}

/** Runs a command to completion; rejects with its stderr when it fails. */
export function run (command, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    child.on('error', reject)
    child.on('exit', code => {
      if (code === 0) resolve(stdout)
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${stderr.trim()}`))
    })
  })
}

/** Formats a number with a thousands separator and `digits` decimals. */
export function fmt (n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—'
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}
