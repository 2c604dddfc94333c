// Profiles the hashing of row 1 (bundle creation) in a plain page: wall time and the CPU of every Chromium process and thread.
//
//   flock /tmp/swarmdrop-browsers.lock node bench/tools/profile-create.mjs [runs] [-- chromium flags...]
//
// Writes 16 files of 64 MiB of random bytes (row 1's set) and reads them once,
// so the page cache is warm; serves the extension's own js/host modules from
// the source tree on loopback; then each run launches a fresh Chromium
// (no extension), hands it the files through a file input and runs
// hasher.js's hashPieces over them, 512 KiB pieces, as the engine host does
// for a send (without the manifest, the record or the engine). Prints per run
// the wall time and the CPU seconds by process kind and by thread name
// (/proc/<pid>/task; threads that ended, the hashing workers, count in their
// process's total only), and a digest of the piece hashes, the same every
// run. Extra Chromium flags after `--` (e.g.
// --enable-features=BlobDataPipeTuning:chunk_bytes/8192) show what a browser
// setting changes. Not a benchmark: it says where the time goes.
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'
import { ROOT, fmt, removeDir, run, tempDir } from '../lib/common.mjs'
import { randomFileSet } from '../lib/transfer.mjs'
import { browserPid, cpuGrowth, threadCpu } from '../lib/procs.mjs'

const { launchBrowser } = await import(path.join(ROOT, 'tests/e2e/lib/chromium.js'))

const dash = process.argv.indexOf('--')
const RUNS = Number(process.argv[2] && process.argv[2] !== '--' ? process.argv[2] : 3)
const FLAGS = dash >= 0 ? process.argv.slice(dash + 1) : []
const HOST = path.join(ROOT, 'extension/js/host')

const PAGE = `<!doctype html><input type="file" id="files" multiple>
<script type="module">
import { hashPieces } from '/host/hasher.js';
window.hashAll = async () => {
  const files = [...document.getElementById('files').files].map((blob) => ({ blob }));
  const pieceLength = 512 * 1024;
  const pieceCount = Math.ceil(files.reduce((s, f) => s + f.blob.size, 0) / pieceLength);
  const hashes = new Uint8Array(pieceCount * 20);
  const t0 = performance.now();
  await hashPieces({ files, pieceLength, pieceCount, hashes, done: new Uint8Array(pieceCount),
    onProgress: () => {}, gate: async () => {}, signal: new AbortController().signal });
  const seconds = (performance.now() - t0) / 1000;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-1', hashes));
  return { seconds, digest: [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join('') };
};
</script>`

const dir = await tempDir('profile-create-')
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x').pathname
  if (url === '/') return res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE)
  const file = path.join(HOST, path.normalize(url.replace(/^\/host\//, '/')))
  if (!url.startsWith('/host/') || !file.startsWith(HOST + path.sep)) return res.writeHead(404).end()
  try {
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(await readFile(file))
  } catch {
    res.writeHead(404).end()
  }
})
try {
  const files = await randomFileSet(dir, 16, 64 * 2 ** 20)
  await run('sha1sum', files) // warm the page cache
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  for (let i = 0; i < RUNS; i++) {
    const b = await launchBrowser({ label: 'profile-create', workDir: dir, args: FLAGS })
    try {
      await b.page.goto(`http://127.0.0.1:${server.address().port}/`)
      await b.page.locator('#files').setInputFiles(files)
      const root = await browserPid(b.profile)
      const before = await threadCpu(root)
      const { seconds, digest } = await b.page.evaluate(() => window.hashAll())
      const after = await threadCpu(root)
      const used = cpuGrowth(before, after)
      const kinds = used.filter(([k]) => !k.includes('/'))
      const threads = used.filter(([k]) => k.includes('/'))
      const total = kinds.reduce((s, [, v]) => s + v, 0)
      console.log(`run ${i + 1}: ${fmt(seconds, 2)} s, ${fmt(total, 2)} CPU-s, hashes ${digest}, load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`)
      console.log(`  processes: ${kinds.map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')}`)
      console.log(`  threads: ${threads.map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')}`)
    } finally {
      await b.context.close().catch(() => {})
      await removeDir(b.profile)
    }
  }
} finally {
  server.close()
  await removeDir(dir)
}
