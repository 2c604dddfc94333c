// What the profiling tools (bench/tools/profile-*.mjs) share: Chromium with
// the built extension and a DevTools port, counters and the V8 sampling
// profiler in its offscreen document (the engine host), and a summary of
// the profile. Two switches for a closer look: PROFILE_COLUMNS=1 names each
// function by line and column (the built wasm glue is one line), and
// PROFILE_CALLERS=<text> lists the callers of the functions whose name
// contains <text> (e.g. PROFILE_CALLERS=:1:8399).
import path from 'node:path'
import { ROOT, fmt } from './common.mjs'
import WebSocket from 'ws'

process.env.SWARMDROP_SERVER ??= path.join(ROOT, 'target/release/swarmdrop-server')
const { launchBrowser } = await import(path.join(ROOT, 'tests/e2e/lib/chromium.js'))
const { builtExtension } = await import(path.join(ROOT, 'tests/e2e/lib/paths.js'))
const { until } = await import(path.join(ROOT, 'tests/e2e/net/support.js'))

export const MB = 1e6

/** Counters installed in the offscreen document before any peer exists. */
export function instrument () {
  const c = (globalThis.__counts = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0, small: 0, idbTx: 0, blobs: 0, blobBytes: 0 })
  const send = RTCDataChannel.prototype.send
  // How full the send buffers are: every 20 ms, the largest bufferedAmount
  // of the channels that sent, counted in buckets (MiB upper bounds).
  const channels = new Set()
  c.buffered = { 0: 0, 0.25: 0, 1: 0, 2: 0, 4: 0, more: 0 }
  setInterval(() => {
    if (!channels.size) return
    const most = Math.max(...[...channels].map((ch) => ch.bufferedAmount)) / 2 ** 20
    const k = most === 0 ? 0 : most <= 0.25 ? 0.25 : most <= 1 ? 1 : most <= 2 ? 2 : most <= 4 ? 4 : 'more'
    c.buffered[k]++
  }, 20)
  RTCDataChannel.prototype.send = function (data) {
    channels.add(this)
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
  c.reads = 0
  c.fetches = 0
  const read = ReadableStreamBYOBReader.prototype.read
  ReadableStreamBYOBReader.prototype.read = function (...a) {
    c.reads++
    return read.apply(this, a)
  }
  const f = globalThis.fetch
  globalThis.fetch = function (...a) {
    c.fetches++
    return f.apply(this, a)
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

/** A DevTools protocol connection to one target. */
export class Cdp {
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

/** Chromium with the built extension and a DevTools port, its settings naming `server`; its popup page is `b.popup`. */
export async function browser (label, server, uploadToServer) {
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

/** Runs the extension's message call in one of its pages. */
export function call (page, type, fields = {}) {
  return page.evaluate(async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields), [type, fields])
}

/** The DevTools session of a browser's offscreen document (host.html), once it exists. */
export async function offscreen (b) {
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

/** Prints the busiest functions of a V8 CPU profile (self time) and the counts `instrument` kept. */
export function summary (label, profile, counts, seconds) {
  const self = new Map()
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const dt = profile.timeDeltas
  const total = new Map()
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i])
    const f = n.callFrame
    const key = `${f.functionName || '(anonymous)'} ${f.url ? `${f.url.split('/').pop()}:${f.lineNumber + 1}${process.env.PROFILE_COLUMNS ? ':' + f.columnNumber : ''}` : ''}`.trim()
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0))
    total.set('all', (total.get('all') ?? 0) + (dt[i] ?? 0))
  }
  const all = total.get('all')
  const idle = self.get('(idle)') ?? 0
  const mb = Math.max(counts.receivedBytes, counts.sentBytes) / MB
  const busy = all ? `main thread busy ${fmt((all - idle) / 1e6, 1)} s of ${fmt(all / 1e6, 1)} s sampled` : 'not profiled'
  console.log(`\n== ${label}: ${fmt(seconds, 1)} s; ${busy}`)
  console.log(`   data channel: sent ${counts.sent} messages (${fmt(counts.sentBytes / MB, 1)} MB, ${counts.small} under 1 KiB), received ${counts.received} (${fmt(counts.receivedBytes / MB, 1)} MB)`)
  console.log(`   reads ${counts.reads} fetches ${counts.fetches}`)
  const buffered = Object.entries(counts.buffered ?? {})
  if (buffered.some(([, v]) => v)) console.log(`   send buffer (bufferedAmount) every 20 ms, samples at most so many MiB: ${buffered.map(([k, v]) => `${k}: ${v}`).join(', ')}`)
  console.log(`   IndexedDB transactions ${counts.idbTx}, Blobs made ${counts.blobs} (${fmt(counts.blobBytes / MB, 1)} MB); per MB moved: ${fmt(counts.sent / mb, 2)} sends, ${fmt(counts.received / mb, 2)} receives`)
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)
  for (const [k, us] of rows) console.log(`   ${fmt(us / 1e6, 2).padStart(7)} s ${fmt((100 * us) / (all - idle || 1), 1).padStart(5)} %  ${k}`)
  if (process.env.PROFILE_CALLERS) {
    const parent = new Map()
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n)
    const name = (n) => n ? `${n.callFrame.functionName || '(anonymous)'}:${n.callFrame.lineNumber + 1}:${n.callFrame.columnNumber}` : '-'
    const by = new Map()
    for (let i = 0; i < profile.samples.length; i++) {
      const n = byId.get(profile.samples[i])
      if (!name(n).includes(process.env.PROFILE_CALLERS)) continue
      let chain = []
      for (let p = parent.get(n.id), d = 0; p && d < 4; p = parent.get(p.id), d++) chain.push(name(p))
      const k = chain.join(' < ')
      by.set(k, (by.get(k) ?? 0) + (dt[i] ?? 0))
    }
    for (const [k, us] of [...by].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`   callers ${fmt(us / 1e6, 2)} s: ${k}`)
  }
}
