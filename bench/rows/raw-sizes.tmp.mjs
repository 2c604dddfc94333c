// Throwaway: raw channel throughput and CPU by message size.
import { performance } from 'node:perf_hooks'
import { fmt, log } from '../lib/common.mjs'
import { closePages, pageBrowser, startPages } from '../lib/pages.mjs'
import { cpuMeter, kindsText } from '../lib/transfer.mjs'
const TOTAL = 512 * 2 ** 20
const pages = await startPages()
try {
  for (const [size, low, high] of [[16 * 1024 + 13, 256 * 1024, 1024 * 1024], [64 * 1024, 256 * 1024, 1024 * 1024], [16 * 1024 + 13, 1 << 20, 4 << 20], [64 * 1024, 1 << 20, 4 << 20]]) {
    const s = await pageBrowser('raw', 's', `${pages.url}/raw.html`, 'window.raw')
    const r = await pageBrowser('raw', 'r', `${pages.url}/raw.html`, 'window.raw')
    const offer = await s.page.evaluate(() => window.raw.offer())
    const answer = await r.page.evaluate((sdp) => window.raw.answer(sdp), offer)
    await s.page.evaluate((sdp) => window.raw.accept(sdp), answer)
    await r.page.evaluate(() => window.raw.ready())
    const cpu = await cpuMeter([s.pid, r.pid])
    const t0 = performance.now()
    const sent = s.page.evaluate(([t, m, lo, hi]) => window.raw.send(t, m, lo, hi), [TOTAL, size, low, high])
    await r.page.evaluate((t) => window.raw.until(t), TOTAL)
    const sec = (performance.now() - t0) / 1000
    const [cs, cr] = await cpu.stop()
    await sent
    log('raw', `message ${size} B, low ${low} high ${high}: ${fmt(TOTAL / 1e6 / sec, 1)} MB/s, CPU/GiB ${fmt((cs.seconds + cr.seconds) * 2, 1)} s (send ${kindsText(cs.kinds)}; recv ${kindsText(cr.kinds)})`)
    await s.close(); await r.close()
  }
} finally { await closePages(); pages.close() }
