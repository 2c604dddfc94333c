// Row 7, Size: the zipped extension package in KB.
// bench-needs: dist
//
// Reads the store zips that ./build.sh leaves in dist/ (one per browser); the
// figure is the larger one, in kB of 1,000 bytes, with the entries that
// weigh most in it.

import { readFile, readdir, stat } from 'node:fs/promises'
import path from 'node:path'
import { ROOT, fmt, notMeasured, run, writeResult } from '../lib/common.mjs'

const TARGET_KB = 400
const dist = path.join(ROOT, 'dist')
const zips = []
try {
  for (const name of await readdir(dist)) {
    if (name.endsWith('.zip')) zips.push({ name, bytes: (await stat(path.join(dist, name))).size })
  }
} catch {
  // No dist/ yet.
}

if (zips.length === 0) {
  await writeResult(notMeasured(7, 'size', 'Size: zipped extension package', `≤ ${TARGET_KB} KB`,
    'no dist/*.zip: the extension and its packaging (`./build.sh`, branch h-ext) are not merged yet. Once they are,' +
    ' this row builds them and reports the size of each store zip.'))
} else {
  const largest = zips.reduce((a, b) => (b.bytes > a.bytes ? b : a))
  const kb = largest.bytes / 1000
  const met = kb <= TARGET_KB
  const heaviest = await largestEntries(path.join(dist, largest.name))
  const wasm = await wasmSections(path.join(dist, 'chrome', 'wasm', 'swarmdrop_bg.wasm'))
  await writeResult({
    row: 7,
    key: 'size',
    title: 'Size: zipped extension package',
    status: 'measured',
    value: kb,
    unit: 'KB',
    anchor: null,
    ratio: null,
    target: { text: `≤ ${TARGET_KB} KB`, met },
    runs: [],
    details: [
      ...zips.map(z => `dist/${z.name}: ${fmt(z.bytes)} bytes (${fmt(z.bytes / 1000, 1)} KB)`),
      ...(heaviest ? [`heaviest entries of dist/${largest.name} (compressed): ${heaviest}`] : []),
      ...(wasm ? [`dist/chrome/wasm/swarmdrop_bg.wasm uncompressed: ${wasm}`] : [])
    ],
    limit: met
      ? null
      : `the largest package, dist/${largest.name}, is ${fmt(kb, 1)} KB${heaviest ? `; its heaviest entries: ${heaviest}` : ''}.` +
        (wasm ? ` The engine's wasm is almost all of it, and in it the code section (${wasm}).` : '') +
        ' The release profile already has lto, codegen-units = 1 and panic = "abort", and build.sh runs wasm-opt -O3;' +
        ' wasm-opt -Oz on the built module made it no smaller (1,127,353 bytes against 1,130,741, 405,846 bytes gzipped' +
        ' against 404,923; tried by hand on 2026-11-21), so wasm-opt\'s settings will not move it: what is compiled in must.' +
        ' A size profile of the module (twiggy top / dominators) is the next step, to see which crates and generic' +
        ' instantiations hold the code (the JSON and bencode (de)serialisation, formatting and panics are the usual weight),' +
        ' then opt-level = "s" or "z" for the wasm build and trimming what the profile points at.',
    reason: null
  })
}

/** The sizes of the sections of a wasm module, largest first, or null when it is missing. */
async function wasmSections (file) {
  let d
  try {
    d = await readFile(file)
  } catch {
    return null
  }
  const names = { 0: 'custom', 1: 'type', 2: 'import', 3: 'function', 4: 'table', 5: 'memory', 6: 'global', 7: 'export', 8: 'start', 9: 'element', 10: 'code', 11: 'data', 12: 'datacount' }
  const leb = (i) => {
    let r = 0
    let shift = 0
    for (;;) {
      const b = d[i++]
      r += (b & 0x7f) * 2 ** shift
      shift += 7
      if (b < 0x80) return [r, i]
    }
  }
  const sizes = {}
  for (let i = 8; i < d.length;) {
    const id = d[i]
    const [n, j] = leb(i + 1)
    const name = names[id] ?? `section ${id}`
    sizes[name] = (sizes[name] ?? 0) + n
    i = j + n
  }
  const top = Object.entries(sizes).sort((a, b) => b[1] - a[1]).slice(0, 3)
  return `${fmt(d.length)} bytes; sections: ${top.map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`
}

/** The five entries of a zip that take most room in it, or null without python3. */
async function largestEntries (zip) {
  const script = [
    'import sys, zipfile',
    'z = zipfile.ZipFile(sys.argv[1])',
    'for i in sorted(z.infolist(), key=lambda i: -i.compress_size)[:5]:',
    '    print(i.compress_size, i.filename)'
  ].join('\n')
  try {
    const out = await run('python3', ['-c', script, zip])
    return out.trim().split('\n').map(l => {
      const [bytes, ...name] = l.split(' ')
      return `${name.join(' ')} ${fmt(Number(bytes) / 1000, 1)} KB`
    }).join(', ')
  } catch {
    return null
  }
}
