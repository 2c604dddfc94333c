// Turns the rows' JSON results into the table printed on the terminal and
// into BENCHMARKS.md (machine, date, command, then each row).
//
//   node report.mjs --results DIR --out FILE --command CMD --started DATE
//                   --load "1 5 15" --load "1 5 15" --rows "01-a 02-b" --selected "02-b"
//                   [--cpu-stat "<first line of /proc/stat>" --cpu-stat "<the same, at the end>"]
// BENCH_NOTE, when set, is added to the header (what else loaded the machine).

import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { fmt } from './common.mjs'
import { parseMachineTimes, stolenShare } from './procs.mjs'

const { values: args } = parseArgs({
  options: {
    results: { type: 'string' },
    out: { type: 'string' },
    command: { type: 'string' },
    started: { type: 'string' },
    load: { type: 'string', multiple: true, default: [] },
    'cpu-stat': { type: 'string', multiple: true, default: [] },
    rows: { type: 'string' },
    selected: { type: 'string', default: '' }
  }
})
const ROWS_DIR = path.join(import.meta.dirname, '..', 'rows')
const ROOT = path.resolve(import.meta.dirname, '..', '..')
const rowNames = args.rows.trim().split(/\s+/)
const selected = new Set(args.selected.trim().split(/\s+/).filter(Boolean))

function tryRun (cmd, argv) {
  try {
    return execFileSync(cmd, argv, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return null
  }
}

/** Number and title of a row from its script's first line: `// Row 6, Tracker: ...`. */
function rowHeader (name) {
  const file = ['.mjs', '.sh'].map(ext => path.join(ROWS_DIR, name + ext)).find(existsSync)
  const first = file ? readFileSync(file, 'utf8').split('\n')[0] : ''
  const m = /Row (\d+), ([^:]+):/.exec(first)
  return { row: m ? Number(m[1]) : Number(name.slice(0, 2)), title: m ? m[2].trim() : name.slice(3) }
}

function loadResult (name) {
  const file = path.join(args.results, `${name}.json`)
  const { row, title } = rowHeader(name)
  const key = name.slice(3)
  if (!selected.has(name)) {
    return { row, key, title, status: 'not_run', reason: `not run in this invocation (\`bench/run.sh ${key}\`)` }
  }
  if (!existsSync(file)) {
    const log = path.relative(ROOT, path.join(args.results, `${key}.log`))
    return { row, key, title, status: 'failed', reason: `the row script failed; see \`${log}\`` }
  }
  return JSON.parse(readFileSync(file, 'utf8'))
}

const results = rowNames.map(loadResult)

const value = r => {
  if (r.status === 'not_run') return 'not run'
  if (r.status === 'failed') return 'failed'
  if (r.value === null || r.value === undefined) return 'not measured yet'
  return `${fmt(r.value, r.value < 100 ? 1 : 0)} ${r.unit}`
}
const anchor = r => r.anchor && r.anchor.value !== null && r.anchor.value !== undefined
  ? `${fmt(r.anchor.value, r.anchor.value < 100 ? 1 : 0)} ${r.anchor.unit}`
  : '—'
// A row with more than one comparison gives the others in `extra`.
const ratio = r => r.ratio === null || r.ratio === undefined ? '—' : `${fmt(r.ratio, 2)}×${r.extra ? `; ${r.extra}` : ''}`
const target = r => r.target?.text ?? '—'
const met = r => r.target?.met === true ? 'yes' : r.target?.met === false ? 'no' : '—'

const header = ['#', 'Row', 'Swarmdrop', 'Anchor (same run)', 'Ratio', 'Target', 'Met']
// The table uses each row's short title (from its script); sections the full one.
const table = results.map((r, i) => [String(r.row), rowHeader(rowNames[i]).title, value(r), anchor(r), ratio(r), target(r), met(r)])

// Terminal: aligned plain text.
const widths = header.map((h, i) => Math.max(h.length, ...table.map(row => row[i].length)))
const line = cells => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
process.stdout.write('\n' + [line(header), line(widths.map(w => '-'.repeat(w))), ...table.map(line)].join('\n') + '\n\n')

// BENCHMARKS.md
const cpuModel = os.cpus()[0]?.model?.trim() ?? 'unknown'
const commit = tryRun('git', ['rev-parse', '--short', 'HEAD'])
const dirty = tryRun('git', ['status', '--porcelain', '--untracked-files=no'])
const rustc = tryRun('rustc', ['--version'])
const [loadBefore, loadAfter] = args.load
const md = []
md.push('# Benchmarks', '')
md.push('Written by `bench/run.sh` (through `./build.sh bench`); do not edit by hand. Each row is one script in',
  '`bench/rows/`; each ratio is against an anchor measured in the same invocation, on the same machine, and each',
  'figure is the median of the runs listed. Benchmarks are not tests: nothing fails because a machine is slow.', '')
md.push(`- **Date**: ${args.started}`)
md.push(`- **Command**: \`${args.command}\``)
if (commit) md.push(`- **Commit**: ${commit}${dirty ? ' (with uncommitted changes)' : ''}`)
md.push(`- **Machine**: ${os.availableParallelism()} cores (nproc), ${fmt(os.totalmem() / 2 ** 30, 1)} GiB memory, ${cpuModel}; Linux ${os.release()}`)
md.push(`- **Tools**: Node.js ${process.version}${rustc ? `, ${rustc}` : ''}`)
if (loadBefore) md.push(`- **Load average** (1, 5, 15 min): ${loadBefore} before, ${loadAfter ?? '?'} after`)
{
  // On a virtual machine, the time the hypervisor gave the machine's CPUs
  // to others ("steal" in /proc/stat): the same code runs slower and its
  // figures vary more when it is high.
  const [a, b] = args['cpu-stat'].map(parseMachineTimes)
  const stolen = a?.length === 8 && b?.length === 8 ? stolenShare(a, b) : null
  if (stolen != null) md.push(`- **CPU stolen by the hypervisor** (steal in /proc/stat, over the invocation): ${fmt(100 * stolen, 1)} % of the machine's CPU time`)
}
if (process.env.BENCH_NOTE) md.push(`- **Note**: ${process.env.BENCH_NOTE}`)
md.push('')
md.push(`| ${header.join(' | ')} |`, `|${header.map((_, i) => i < 2 ? '---' : '---:').join('|')}|`)
for (const row of table) md.push(`| ${row.join(' | ')} |`)
md.push('')

for (const r of results) {
  md.push(`## ${r.row}. ${r.title}`, '')
  if (r.status === 'not_run' || r.status === 'failed') {
    md.push(`${r.status === 'failed' ? 'Failed: ' : ''}${r.reason[0].toUpperCase()}${r.reason.slice(1)}.`, '')
    continue
  }
  md.push(`- **Measured**: ${value(r)}`)
  md.push(`- **Anchor**: ${r.anchor ? `${anchor(r)} — ${r.anchor.name}` : '—'}`)
  md.push(`- **Ratio**: ${ratio(r)}; **target** ${target(r)}; **met**: ${met(r)}`)
  if (r.reason) md.push(`- **Not measured yet**: ${r.reason}`)
  for (const d of r.details ?? []) md.push(`- ${d}`)
  if (r.runs?.length) {
    const keys = Object.keys(r.runs[0])
    md.push('', `| run | ${keys.join(' | ')} |`, `|---|${keys.map(() => '---:').join('|')}|`)
    // A column of numbers shows as many decimals as its most precise value (at most 2).
    const decimals = Object.fromEntries(keys.map(k => [k, Math.min(2, Math.max(0, ...r.runs.map(run =>
      typeof run[k] === 'number' && !Number.isInteger(run[k]) ? String(run[k]).split('.')[1].length : 0)))]))
    r.runs.forEach((run, i) => md.push(`| ${i + 1} | ${keys.map(k => typeof run[k] === 'number' ? fmt(run[k], decimals[k]) : String(run[k] ?? '—')).join(' | ')} |`))
  }
  if (r.target?.met === false && r.limit) md.push('', `**What limits it**: ${r.limit}`)
  md.push('')
}

writeFileSync(args.out, md.join('\n'))
