// Row 7, Size: the zipped extension package in KB.
// bench-needs: dist
//
// Reads the store zips that ./build.sh leaves in dist/ (one per browser); the
// figure is the larger one, in kB of 1,000 bytes, with the entries that
// weigh most in it.

import { readdir, stat } from 'node:fs/promises'
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
      ...(heaviest ? [`heaviest entries of dist/${largest.name} (compressed): ${heaviest}`] : [])
    ],
    limit: met ? null : `the largest package, dist/${largest.name}, is ${fmt(kb, 1)} KB${heaviest ? `; its heaviest entries: ${heaviest}` : ''}.`,
    reason: null
  })
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
