// Profiles a download from the server's web seed alone (row 3 and 4's receive path): the CPU profile of the receiving offscreen document and its threads' CPU.
//
//   flock /tmp/swarmdrop-browsers.lock node bench/tools/profile-webseed.mjs [MiB]
//
// A sender (built extension, dist/chrome) sends random files and uploads
// them to the release server, then closes; a receiver with a DevTools port
// opens the share link and downloads from the web seed alone. In the
// receiver's offscreen document it counts IndexedDB transactions and Blobs
// made and runs the V8 sampling profiler for the download; it also prints
// the CPU-seconds of every thread of the receiver's processes (from
// /proc/<pid>/task) over the download. Not a benchmark: numbers move with
// the profiler on; it says where the time goes.
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { ROOT, fmt, removeDir, tempDir } from '../lib/common.mjs'
import { randomFileSet } from '../lib/transfer.mjs'
import WebSocket from 'ws'
import { readdir, readFile } from 'node:fs/promises'
import { browserPid, treePids } from '../lib/procs.mjs'

process.env.SWARMDROP_SERVER ??= path.join(ROOT, 'target/release/swarmdrop-server')
const { launchBrowser } = await import(path.join(ROOT, 'tests/e2e/lib/chromium.js'))
const { builtExtension } = await import(path.join(ROOT, 'tests/e2e/lib/paths.js'))
const { startServer, until } = await import(path.join(ROOT, 'tests/e2e/net/support.js'))

const MiB = 2 ** 20
const TOTAL = Number(process.argv[2] ?? 256) * MiB
const MB = 1e6

/** Counters installed in the offscreen document before any peer exists. */
function instrument () {
  const c = (globalThis.__counts = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0, small: 0, idbTx: 0, blobs: 0, blobBytes: 0 })
  const send = RTCDataChannel.prototype.send
  RTCDataChannel.prototype.send = function (data) {
    const n = data.byteLength ?? data.length ?? 0
    c.sent++
    c.sentBytes += n
    if (n < 1024) c.small++
    return send.call(this, data)
  }
  const add = EventTarget.prototype.addEventListener
  EventTarget.prototype.addEventListener = function (type, fn, opts) {
    if (type === 'message' && this instanceof RTCDataChannel) {
      add.call(this, type, (e) => {
        c.received++
        c.receivedBytes += e.data.byteLength ?? e.data.length ?? 0
      }, opts)
    }
    return add.call(this, type, fn, opts)
  }
  const tx = IDBDatabase.prototype.transaction
  IDBDatabase.prototype.transaction = function (...a) {
    c.idbTx++
    return tx.apply(this, a)
  }
  // A Proxy, not a subclass: `instanceof Blob` must still hold for Files.
  globalThis.Blob = new Proxy(globalThis.Blob, {
    construct (target, args, newTarget) {
      const blob = Reflect.construct(target, args, newTarget)
      c.blobs++
      c.blobBytes += blob.size
      return blob
    }
  })
}

class Cdp {
  constructor (url) {
    this.ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 30 })
    this.id = 0
    this.waiting = new Map()
    this.ws.on('message', (m) => {
      const msg = JSON.parse(m)
      const w = this.waiting.get(msg.id)
      if (!w) return
      this.waiting.delete(msg.id)
      if (msg.error) w.reject(new Error(msg.error.message))
      else w.resolve(msg.result)
    })
    this.open = new Promise((resolve, reject) => this.ws.once('open', resolve).once('error', reject))
  }

  async send (method, params = {}) {
    await this.open
    const id = ++this.id
    this.ws.send(JSON.stringify({ id, method, params }))
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }))
  }

  close () {
    this.ws.close()
  }
}

let port = 9420
async function browser (label, server, uploadToServer) {
  const debugPort = port++
  const b = await launchBrowser({ extension: builtExtension('chrome'), label, args: [`--remote-debugging-port=${debugPort}`] })
  b.debugPort = debugPort
  const popup = await b.context.newPage()
  await popup.goto(`${b.base}popup.html`)
  await popup.evaluate(
    (settings) => chrome.storage.local.set({ settings }),
    { serverUrl: server.url, trackers: [], uploadLimitKBps: 0, downloadLimitKBps: 0, dropZone: true, uploadToServer }
  )
  await popup.waitForTimeout(300)
  b.popup = popup
  return b
}

function call (page, type, fields = {}) {
  return page.evaluate(async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields), [type, fields])
}

/** The DevTools session of a browser's offscreen document (host.html), once it exists. */
async function offscreen (b) {
  const target = await until(async () => {
    const list = await (await fetch(`http://127.0.0.1:${b.debugPort}/json/list`)).json()
    return list.find((t) => t.url.endsWith('/host.html')) ?? null
  }, { timeoutMs: 30_000, everyMs: 200, what: 'the offscreen document' })
  const cdp = new Cdp(target.webSocketDebuggerUrl)
  await cdp.send('Runtime.enable')
  const r = await cdp.send('Runtime.evaluate', { expression: `(${instrument})()` })
  if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails))
  await cdp.send('Profiler.enable')
  await cdp.send('Profiler.setSamplingInterval', { interval: 500 })
  return cdp
}

function summary (label, profile, counts, seconds) {
  const self = new Map()
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const dt = profile.timeDeltas
  const total = new Map()
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i])
    const f = n.callFrame
    const key = `${f.functionName || '(anonymous)'} ${f.url ? `${f.url.split('/').pop()}:${f.lineNumber + 1}` : ''}`.trim()
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0))
    total.set('all', (total.get('all') ?? 0) + (dt[i] ?? 0))
  }
  const all = total.get('all')
  const idle = self.get('(idle)') ?? 0
  const mb = Math.max(counts.receivedBytes, counts.sentBytes) / MB
  console.log(`\n== ${label}: ${fmt(seconds, 1)} s; main thread busy ${fmt((all - idle) / 1e6, 1)} s of ${fmt(all / 1e6, 1)} s sampled`)
  console.log(`   data channel: sent ${counts.sent} messages (${fmt(counts.sentBytes / MB, 1)} MB, ${counts.small} under 1 KiB), received ${counts.received} (${fmt(counts.receivedBytes / MB, 1)} MB)`)
  console.log(`   IndexedDB transactions ${counts.idbTx}, Blobs made ${counts.blobs} (${fmt(counts.blobBytes / MB, 1)} MB); per MB moved: ${fmt(counts.sent / mb, 2)} sends, ${fmt(counts.received / mb, 2)} receives`)
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)
  for (const [k, us] of rows) console.log(`   ${fmt(us / 1e6, 2).padStart(7)} s ${fmt((100 * us) / (all - idle || 1), 1).padStart(5)} %  ${k}`)
}

/** CPU-seconds of every thread of `pids`, by "process kind / thread name". */
async function threadCpu (pids) {
  const out = new Map()
  for (const pid of pids) {
    let kind = 'browser'
    try {
      const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split(/[\0 ]/)
      const t = cmd.find((a) => a.startsWith('--type='))
      if (t) kind = t.slice(7) + (cmd.includes('--extension-process') ? ':extension' : '')
      for (const tid of await readdir(`/proc/${pid}/task`)) {
        const text = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => null)
        if (!text) continue
        const name = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')).replace(/\d+$/, '#')
        const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
        const key = `${pid} ${kind} / ${name}`
        out.set(key, (out.get(key) ?? 0) + (Number(f[11]) + Number(f[12])) / 100)
      }
    } catch {}
  }
  return out
}

const server = await startServer()
const dir = await tempDir('profile-webseed-')
const opened = []
try {
  const files = await randomFileSet(dir, 4, TOTAL / 4)
  const a = await browser('prof-sender', server, true)
  opened.push(a)
  await a.popup.locator('#pick-files').setInputFiles(files)
  const sent = await until(async () => {
    const t = (await call(a.popup, 'transfers.list')).find((x) => x.role === 'send')
    return t?.link && t.state === 'sharing' && t.upload?.phase === 'done' ? t : null
  }, { timeoutMs: 900_000, everyMs: 500, what: 'the send and its upload' })
  await a.context.close()
  opened.shift()
  await removeDir(a.profile)
  const b = await browser('prof-receiver', server, false)
  opened.push(b)
  const cb = await offscreen(b)
  const pid = await browserPid(b.profile)
  const before = await threadCpu(await treePids(pid))
  await cb.send('Profiler.start')
  const t0 = performance.now()
  const page = await b.context.newPage()
  await page.goto(`${b.base}bundle.html?link=${encodeURIComponent(sent.link)}`, { waitUntil: 'commit' })
  const id = await until(async () => new URL(page.url()).searchParams.get('id'), { timeoutMs: 120_000, everyMs: 100, what: 'the bundle page' })
  await until(async () => {
    const t = await call(b.popup, 'transfer.get', { id })
    if (t.state === 'error') throw new Error(t.error)
    return t.state === 'complete' ? t : null
  }, { timeoutMs: 1_800_000, everyMs: 250, what: 'the download' })
  const seconds = (performance.now() - t0) / 1000
  const after = await threadCpu(await treePids(pid))
  const pb = (await cb.send('Profiler.stop')).profile
  const counts = (await cb.send('Runtime.evaluate', { expression: 'globalThis.__counts', returnByValue: true })).result.value
  counts.receivedBytes = TOTAL
  console.log(`${fmt(TOTAL / MB, 1)} MB in ${fmt(seconds, 1)} s: ${fmt(TOTAL / MB / seconds, 1)} MB/s`)
  summary('receiver', pb, counts, seconds)
  const rows = [...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]).filter(([, v]) => v >= 0.05).sort((x, y) => y[1] - x[1])
  const total = rows.reduce((s, [, v]) => s + v, 0)
  console.log(`\n== receiver threads: ${fmt(total, 1)} CPU-s over the download (${fmt(total / (TOTAL / 2 ** 30), 1)} per GiB)`)
  for (const [k, v] of rows.slice(0, 30)) console.log(`   ${fmt(v, 2).padStart(7)} s  ${k}`)
  cb.close()
} finally {
  for (const b of opened) {
    await b.context.close().catch(() => {})
    await removeDir(b.profile)
  }
  server.stop()
  await removeDir(server.dataDir)
  await removeDir(dir)
}
