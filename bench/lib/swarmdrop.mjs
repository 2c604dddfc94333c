// Driving the extension (release build, dist/chrome) in Chromium for the
// transfer rows, as tests/e2e/transfer.test.js does: a browser with a fresh
// profile pointed at the server, sending files from the popup, opening a
// share link or magnet in the bundle page, waiting for completion.

import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { ROOT, fmt, log, removeDir, tempDir } from './common.mjs'
import { browserPid } from './procs.mjs'

if (process.env.BENCH_SERVER_BIN) process.env.SWARMDROP_SERVER ??= process.env.BENCH_SERVER_BIN
const { launchChromium } = await import(path.join(ROOT, 'tests/e2e/lib/chromium.js'))
const { builtExtension } = await import(path.join(ROOT, 'tests/e2e/lib/paths.js'))
const support = await import(path.join(ROOT, 'tests/e2e/net/support.js'))
export const { startServer, until, randomFiles, launchHarness } = support
export { builtExtension }

const MB = 1e6

/** Runs the extension's message call in one of its pages. */
export function call (page, type, fields = {}) {
  return page.evaluate(
    async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields),
    [type, fields]
  )
}

/** Browsers still open, closed by `closeAll` in a row's `finally`. */
const open = new Set()

/** A Chromium with the extension pointed at `server`; its popup page and browser pid. */
export async function extensionBrowser (row, label, server, { uploadToServer = true } = {}) {
  const downloads = await tempDir(`downloads-${label}-`)
  const b = await launchChromium(builtExtension('chrome'), { downloads })
  open.add(b)
  b.label = label
  b.pid = await browserPid(b.profile)
  b.context.on('weberror', (e) => log(row, `${label}: ${e.error()}`))
  const popup = await b.context.newPage()
  await popup.goto(`${b.base}popup.html`)
  await popup.evaluate(
    (settings) => chrome.storage.local.set({ settings }),
    { serverUrl: server.url, trackers: [], uploadLimitKBps: 0, downloadLimitKBps: 0, dropZone: true, uploadToServer }
  )
  await popup.waitForTimeout(300) // the settings reach the service worker and the host
  b.popup = popup
  // A toolbar popup closes when its user looks elsewhere: a transfer is
  // timed without one open (its 700 ms refresh would add CPU).
  b.closePopup = () => popup.goto('about:blank')
  b.close = async () => {
    if (!open.delete(b)) return
    await b.context.close().catch(() => {})
    await removeDir(b.profile)
    await removeDir(downloads)
  }
  return b
}

export async function closeAll () {
  for (const b of [...open]) await b.close()
}

/** Picks `paths` in the popup's "Send files…"; resolves to the send once it is shared. */
export async function send (b, paths) {
  await b.popup.locator('#pick-files').setInputFiles(paths)
  return until(
    async () => {
      const t = (await call(b.popup, 'transfers.list')).find((x) => x.role === 'send')
      if (t?.state === 'error') throw new Error(`${b.label}: the send failed: ${t.error}`)
      return t?.link && t.state === 'sharing' ? t : null
    },
    { timeoutMs: 900_000, everyMs: 200, what: `${b.label} to hash and share the bundle` }
  )
}

/** Waits for the send's upload to the server to be done. */
export async function uploaded (b, id) {
  return until(
    async () => {
      const t = await call(b.popup, 'transfer.get', { id })
      return t.upload?.phase === 'done' ? t : null
    },
    { timeoutMs: 1_800_000, everyMs: 500, what: `${b.label}'s upload to the server` }
  )
}

/**
 * Opens a share link or magnet in a bundle page of `b`; resolves to the
 * transfer id once the page has replaced its URL with the transfer's.
 */
export async function receive (row, b, { link, magnet }) {
  await b.closePopup()
  const page = await b.context.newPage()
  const query = link ? `link=${encodeURIComponent(link)}` : `magnet=${encodeURIComponent(magnet)}`
  await page.goto(`${b.base}bundle.html?${query}`, { waitUntil: 'commit' })
  b.bundlePage = page
  return until(
    async () => {
      const id = new URL(page.url()).searchParams.get('id')
      if (id) return id
      const msg = await page.locator('#message').textContent().catch(() => null)
      if (msg && /cannot be opened/.test(msg)) throw new Error(`${b.label}: ${msg}`)
      return null
    },
    { timeoutMs: 120_000, everyMs: 100, what: `${b.label}'s bundle page to open the link` }
  )
}

/**
 * Waits until the transfer completes as its user sees it: the state on `b`'s
 * bundle page reads complete (the host tells open pages of a state change
 * at once, js/common/events.js). The check runs in the page every 100 ms,
 * so the wait sends the extension no messages (a poll through the popup
 * would add CPU the user's browser does not spend); progress is logged
 * every 15 s. Resolves to the transfer's view.
 */
export async function completed (row, b, id, { timeoutMs = 1_800_000 } = {}) {
  const page = b.bundlePage
  const start = performance.now()
  const settled = () => {
    const chip = document.getElementById('state')
    return chip && (chip.classList.contains('complete') || chip.classList.contains('error'))
  }
  for (;;) {
    const over = await page.waitForFunction(settled, null, { polling: 100, timeout: 15_000 }).then(
      () => true,
      (err) => {
        if (err.name === 'TimeoutError') return false
        throw err
      }
    )
    const t = await call(page, 'transfer.get', { id })
    if (t.state === 'error') throw new Error(`${b.label}: ${t.error}`)
    if (over && t.state === 'complete') return t
    if (performance.now() - start > timeoutMs) throw new Error(`${b.label} did not complete in ${fmt(timeoutMs / 1000)} s (${t.state})`)
    log(row, `${b.label}: ${t.state}, ${fmt((t.progressBytes ?? 0) / MB, 1)} MB, from peers ${fmt((t.fromPeers ?? 0) / MB, 1)} MB, from the server ${fmt((t.fromServer ?? 0) / MB, 1)} MB`)
  }
}
