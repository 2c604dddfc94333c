// Row 1, Bundle creation: hashing 1 GiB of files into a bundle in the extension (Chromium) against sha1sum.
//
// Measured now: the anchor, `sha1sum` over the same 1 GiB of files (16 files
// of 64 MiB of random bytes, created in a temporary directory; one unmeasured
// pass first so every run reads from the page cache, as the extension's would
// right after the files were written). Not measured yet: the extension's side.

import { randomFill } from 'node:crypto'
import { open } from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'
import { RUNS, fmt, log, median, notMeasured, removeDir, run, tempDir, writeResult } from '../lib/common.mjs'

const ROW = 'create'
const FILES = 16
const FILE_BYTES = 64 * 2 ** 20
const TOTAL = FILES * FILE_BYTES // 1 GiB

const dir = await tempDir('create-')
try {
  log(ROW, `writing ${FILES} files of ${FILE_BYTES / 2 ** 20} MiB of random bytes`)
  const buf = Buffer.allocUnsafe(FILE_BYTES)
  const files = []
  for (let i = 0; i < FILES; i++) {
    await promisify(randomFill)(buf)
    const file = path.join(dir, `file-${String(i).padStart(2, '0')}.bin`)
    const fh = await open(file, 'w')
    await fh.write(buf)
    await fh.close()
    files.push(file)
  }

  await run('sha1sum', files) // warm the page cache, unmeasured
  const seconds = []
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now()
    const out = await run('sha1sum', files)
    seconds.push((performance.now() - t0) / 1000)
    if (out.trim().split('\n').length !== FILES) throw new Error('sha1sum did not hash every file')
    log(ROW, `sha1sum run ${i + 1}/${RUNS}: ${fmt(seconds[i], 2)} s (${fmt(TOTAL / 1e6 / seconds[i])} MB/s)`)
  }
  const anchor = TOTAL / 1e6 / median(seconds)

  const result = notMeasured(1, ROW, 'Bundle creation: hashing 1 GiB of files', '≥ 1.2× sha1sum',
    'the extension (branch h-ext) is not merged yet. Plan: start Chromium (playwright-core) with the built extension' +
    ' and a fresh profile, drop the same 1 GiB of files on the drop zone, and time from the drop to the share link' +
    ' being ready (bundle created, every piece hashed), three runs, against this sha1sum anchor measured in the same run.')
  result.status = 'partial'
  result.anchor = { name: 'sha1sum (coreutils), one process, same files, page cache warm', value: anchor, unit: 'MB/s' }
  result.runs = seconds.map(s => ({ sha1sum_seconds: Number(s.toFixed(2)), sha1sum_mb_per_s: Math.round(TOTAL / 1e6 / s) }))
  result.details = [`1 GiB in ${FILES} files of ${FILE_BYTES / 2 ** 20} MiB, random bytes; sha1sum median ${fmt(median(seconds), 2)} s`]
  await writeResult(result)
} finally {
  await removeDir(dir)
}
