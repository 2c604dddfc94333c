// Memory of a running Chromium: the proportional set size (PSS, from
// /proc/<pid>/smaps_rollup) summed over the browser process and all its
// descendants (zygotes, renderers, GPU, utility processes), so pages shared
// between them count once. Linux only.
import { readFileSync, readdirSync } from 'node:fs';

function readText(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null; // the process went away
  }
}

/** pid → parent pid of every process. */
function parents() {
  const out = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readText(`/proc/${name}/stat`);
    if (!stat) continue;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(Number(name), Number(rest[1]));
  }
  return out;
}

/** The browser process started with this profile (`--user-data-dir`), and every descendant. */
export function browserProcesses(profile) {
  const tree = parents();
  const roots = [];
  for (const pid of tree.keys()) {
    const cmd = readText(`/proc/${pid}/cmdline`);
    if (!cmd) continue;
    const args = cmd.split('\0');
    if (args.includes(`--user-data-dir=${profile}`) && !args.some((a) => a.startsWith('--type='))) roots.push(pid);
  }
  const all = new Set(roots);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of tree) {
      if (!all.has(pid) && all.has(ppid)) {
        all.add(pid);
        grew = true;
      }
    }
  }
  return [...all];
}

/** Sum of PSS (bytes) over the processes; ones that exit meanwhile count 0. */
export function pssBytes(pids) {
  let kb = 0;
  for (const pid of pids) {
    const m = /^Pss:\s+(\d+) kB/m.exec(readText(`/proc/${pid}/smaps_rollup`) ?? '');
    if (m) kb += Number(m[1]);
  }
  return kb * 1024;
}

/**
 * Samples the PSS of a browser's processes every `everyMs` until stopped
 * (processes started meanwhile are picked up); `stop()` resolves to
 * `{peak, last, samples}` in bytes.
 */
export function sampleMemory(profile, everyMs = 100) {
  let peak = 0;
  let last = 0;
  let samples = 0;
  let pids = browserProcesses(profile);
  let round = 0;
  const tick = () => {
    if (++round % 10 === 0) pids = browserProcesses(profile);
    last = pssBytes(pids);
    peak = Math.max(peak, last);
    samples++;
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      return { peak, last, samples, processes: pids.length };
    },
  };
}
