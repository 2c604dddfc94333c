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
      ...(wasm ? [`dist/chrome/wasm/swarmdrop_bg.wasm uncompressed: ${wasm}`] : []),
      ...(met ? [`${fmt(TARGET_KB - kb, 1)} KB under the target; the engine's wasm is most of the package (see the heaviest entries), so` +
        ' it is what the next features will grow: the BTreeMap/BTreeSet instantiations (about 30 % of its code in a twiggy' +
        ' profile of 2026-11-21, some 7 kB per key and value type) are where it would shrink next. Every sort already goes' +
        ' through one shared copy (src/engine/sort.rs), and BTree sets and maps are built by inserting, not by collect()' +
        ' (which sorts first): together 15.3 kB off the zipped wasm'] : []),
      'the wasm: cargo profile wasm-release (opt-level "z", SHA-1 at 3), wasm-opt -O3 --converge; the JavaScript (the extension\'s' +
        ' modules and the wasm-bindgen glue) minified file by file with esbuild; the zips: deflate, recompressed with' +
        ' zopfli (advzip) by ./build.sh'
    ],
    limit: met
      ? null
      : `the largest package, dist/${largest.name}, is ${fmt(kb, 1)} KB${heaviest ? `; its heaviest entries: ${heaviest}` : ''}.` +
        (wasm ? ` The engine's wasm is almost all of it, and in it the code section (${wasm}).` : '') +
        ' The wasm is built with the wasm-release profile (Cargo.toml: opt-level "z", lto, codegen-units = 1,' +
        ' panic = "abort"; SHA-1 at opt-level 3), wasm-opt -O3 --converge, the JavaScript is minified with esbuild, and the zips' +
        ' are recompressed with zopfli (advzip).' +
        ' A size profile (twiggy top on the module before wasm-opt, 2026-11-21) puts about 30 % of the code in' +
        ' BTreeMap/BTreeSet instantiations (some 30 key and value types in the engine, about 7 kB each after wasm-opt):' +
        ' fewer distinct map types (or one map keyed by integers) are what would move it next. Every sort already goes' +
        ' through one shared copy (src/engine/sort.rs), and BTree sets and maps are built by inserting, not by collect().',
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
