// Process trees of browsers from /proc: finding a Chromium by its profile
// directory, CPU seconds of the whole tree and of each thread, proportional set size (PSS) of the
// whole tree, and a sampler of the PSS peak.

import { readdir, readFile } from 'node:fs/promises'

// USER_HZ is 100 on every Linux architecture this runs on.
const CLOCK_TICKS = 100

async function stat (pid) {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces) start after ')'.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return {
      pid,
      ppid: Number(f[1]),
      // utime + stime of the process, and of its children it has waited for
      // (processes that ended during a measurement land there).
      cpu: (Number(f[11]) + Number(f[12])) / CLOCK_TICKS,
      childCpu: (Number(f[13]) + Number(f[14])) / CLOCK_TICKS
    }
  } catch {
    return null // gone
  }
}

async function allStats () {
  const out = new Map()
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const s = await stat(Number(name))
    if (s) out.set(s.pid, s)
  }
  return out
}

/**
 * The arguments of a process. Chromium's child processes rewrite their title,
 * which joins the arguments with spaces into one string.
 */
async function cmdline (pid) {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split(/[\0 ]/).filter(Boolean)
}

/** The machine's CPU time counters: the first line of /proc/stat (user, nice, system, idle, iowait, irq, softirq, steal). */
export async function machineTimes () {
  return parseMachineTimes((await readFile('/proc/stat', 'utf8')).split('\n')[0])
}

/** The counters of a first line of /proc/stat ("cpu  user nice …"), as `machineTimes` gives them. */
export function parseMachineTimes (line) {
  return line.trim().split(/\s+/).slice(1, 9).map(Number)
}

/**
 * The share of the machine's CPU time the hypervisor gave to others (steal)
 * between two `machineTimes`, or null when no time passed.
 */
export function stolenShare (before, after) {
  const d = after.map((v, i) => v - before[i])
  const total = d.reduce((t, v) => t + v, 0)
  return total > 0 ? d[7] / total : null
}

/** The pid of the Chromium browser process started with `--user-data-dir=<profile>`. */
export async function browserPid (profile) {
  const found = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let cmd
    try {
      cmd = await cmdline(name)
    } catch {
      continue
    }
    if (!cmd.includes(`--user-data-dir=${profile}`)) continue
    // The browser process is the one without --type= (renderers, GPU, utility have it).
    if (cmd.some((a) => a.startsWith('--type='))) continue
    found.push(Number(name))
  }
  if (!found.length) throw new Error(`no browser process with the profile ${profile}`)
  // The browser starts first: the lowest pid (pids do not wrap within a run here).
  return Math.min(...found)
}

/** Pids of `root` and all its descendants. */
export async function treePids (root, stats = null) {
  stats ??= await allStats()
  const children = new Map()
  for (const s of stats.values()) {
    if (!children.has(s.ppid)) children.set(s.ppid, [])
    children.get(s.ppid).push(s.pid)
  }
  const out = []
  const todo = [root]
  while (todo.length) {
    const p = todo.pop()
    if (!stats.has(p)) continue
    out.push(p)
    todo.push(...(children.get(p) ?? []))
  }
  return out
}

/**
 * A snapshot of the CPU time of the trees under `roots`: per pid, its own CPU
 * seconds and those of its reaped children. `cpuBetween` turns two snapshots
 * into the CPU seconds the trees used in between, per tree.
 */
export async function cpuSnapshot (roots) {
  const stats = await allStats()
  const trees = []
  for (const root of roots) {
    const m = new Map()
    for (const pid of await treePids(root, stats)) {
      const s = stats.get(pid)
      // A pid and its start are one process; pids are not reused within a run here.
      m.set(pid, { cpu: s.cpu, childCpu: s.childCpu, ppid: s.ppid })
    }
    trees.push(m)
  }
  return trees
}

/**
 * CPU seconds used by each tree between two snapshots: the growth of every
 * process alive at the end (from zero for new ones), plus the growth of the
 * reaped-children time (processes that ended in between); processes that ended
 * without being reaped by a process of the tree are missed (none are here).
 * Also returns the split by process for the largest users.
 */
export function cpuBetween (before, after) {
  return after.map((tree, i) => {
    const b = before[i] ?? new Map()
    let total = 0
    const split = []
    for (const [pid, s] of tree) {
      const old = b.get(pid)
      const d = s.cpu - (old?.cpu ?? 0) + (s.childCpu - (old?.childCpu ?? 0))
      total += d
      split.push({ pid, seconds: d })
    }
    split.sort((x, y) => y.seconds - x.seconds)
    return { seconds: total, split }
  })
}

/** What a Chromium process is, from its command line: browser, renderer, gpu-process, utility (network, storage), zygote. */
export async function processKind (pid) {
  try {
    const cmd = await cmdline(pid)
    const type = cmd.find((a) => a.startsWith('--type='))?.slice(7) ?? 'browser'
    const sub = cmd.find((a) => a.startsWith('--utility-sub-type='))?.slice(19)
    const ext = cmd.find((a) => a.startsWith('--extension-process'))
    return sub ? `${type}:${sub.split('.').slice(-2).join('.')}` : ext ? `${type}:extension` : type
  } catch {
    return 'gone'
  }
}

/**
 * CPU seconds so far of every thread of the tree under `root`, keyed
 * `kind/thread` (thread names without their trailing numbers, so a pool's
 * threads add up), and of every process, keyed `kind`. Threads that ended
 * count in their process's total only.
 */
export async function threadCpu (root) {
  const out = new Map()
  const add = (key, text) => {
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
    out.set(key, (out.get(key) ?? 0) + (Number(f[11]) + Number(f[12])) / CLOCK_TICKS)
  }
  for (const pid of await treePids(root)) {
    const kind = await processKind(pid)
    try {
      add(kind, await readFile(`/proc/${pid}/stat`, 'utf8'))
      for (const task of await readdir(`/proc/${pid}/task`)) {
        const text = await readFile(`/proc/${pid}/task/${task}/stat`, 'utf8')
        const name = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')).replace(/\d+$/, '')
        add(`${kind}/${name}`, text)
      }
    } catch {
      // It ended meanwhile.
    }
  }
  return out
}

/** What each key of `threadCpu` grew by from `before` to `after`, largest first, those under `min` seconds left out. */
export function cpuGrowth (before, after, min = 0.02) {
  return [...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]).filter(([, v]) => v >= min).sort((x, y) => y[1] - x[1])
}

/** PSS in bytes of one process (from smaps_rollup); 0 if it is gone. */
async function pss (pid) {
  try {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8')
    const m = /^Pss:\s+(\d+) kB/m.exec(text)
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** PSS in bytes summed over the tree under `root`. */
export async function treePss (root) {
  let sum = 0
  for (const pid of await treePids(root)) sum += await pss(pid)
  return sum
}

/**
 * Samples the PSS of the tree under `root` every `everyMs` until stopped;
 * `stop()` resolves to {peak, samples, last, atPeak, kindPeaks}: `atPeak` is
 * the split of the peak sample by process kind (browser, renderer:extension,
 * utility:mojom.StorageService, …), `kindPeaks` each kind's own peak.
 */
export function pssSampler (root, everyMs = 200) {
  let peak = 0
  let samples = 0
  let last = 0
  let atPeak = {}
  const kindPeaks = {}
  const kinds = new Map()
  let running = true
  const loop = (async () => {
    while (running) {
      const t = Date.now()
      const by = {}
      let sum = 0
      for (const pid of await treePids(root)) {
        if (!kinds.has(pid)) kinds.set(pid, await processKind(pid))
        const k = kinds.get(pid)
        const v = await pss(pid)
        by[k] = (by[k] ?? 0) + v
        sum += v
      }
      last = sum
      samples++
      for (const [k, v] of Object.entries(by)) kindPeaks[k] = Math.max(kindPeaks[k] ?? 0, v)
      if (last > peak) {
        peak = last
        atPeak = by
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, everyMs - (Date.now() - t))))
    }
  })()
  return {
    peakSoFar: () => peak,
    async stop () {
      running = false
      await loop
      return { peak, samples, last, atPeak, kindPeaks }
    }
  }
}

/** "browser 310 MB, renderer:extension 240 MB, …" for kinds of at least 1 MB, largest first. */
export function pssKindsText (kinds) {
  return Object.entries(kinds)
    .filter(([, b]) => b >= 1e6)
    .sort((a, b) => b[1] - a[1])
    .map(([k, b]) => `${k} ${Math.round(b / 1e6)} MB`)
    .join(', ')
}
