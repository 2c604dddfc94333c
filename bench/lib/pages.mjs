// Plain pages for the anchors of the transfer rows (bench/pages: the raw data
// channel, WebTorrent 3), served on loopback, each in its own Chromium with a
// fresh profile, launched by the tests' one launcher (tests/e2e/lib/chromium.js)
// with the flags the extension's browsers get.

import path from 'node:path'
import { ROOT, log, removeDir, tempDir } from './common.mjs'
import { browserPid } from './procs.mjs'
import { startServer } from './swarmdrop.mjs'

const { startStatic } = await import(path.join(ROOT, 'tests/e2e/net/support.js'))
const { launchBrowser } = await import(path.join(ROOT, 'tests/e2e/lib/chromium.js'))

/** Serves bench/pages at / and WebTorrent's browser bundle at /wt/. */
export function startPages () {
  return startStatic({
    '/wt/': path.join(ROOT, 'bench/node_modules/webtorrent/dist'),
    '/': path.join(ROOT, 'bench/pages')
  })
}

export { startServer }

const open = new Set()

/** Chromium (fresh profile, no extension) with `url` open; resolves once `readyExpr` is truthy. */
export async function pageBrowser (row, label, url, readyExpr) {
  const profile = await tempDir(`chromium-${label}-`)
  const { context, page } = await launchBrowser({ label, profile })
  const b = { label, context, profile }
  open.add(b)
  b.pid = await browserPid(profile)
  page.on('console', (m) => {
    if (m.type() === 'error') log(row, `${label}: console: ${m.text()}`)
  })
  page.on('pageerror', (e) => log(row, `${label}: page error: ${e.message}`))
  await page.goto(url)
  await page.waitForFunction(readyExpr, null, { timeout: 60_000 })
  b.page = page
  b.close = async () => {
    if (!open.delete(b)) return
    await context.close().catch(() => {})
    await removeDir(profile)
  }
  return b
}

export async function closePages () {
  for (const b of [...open]) await b.close()
}
