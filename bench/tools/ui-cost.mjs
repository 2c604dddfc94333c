// What the extension's pages cost a browser with one transfer and no traffic: CPU-seconds per second of its process tree.
//
//   SWARMDROP_SERVER=target/release/swarmdrop-server \
//     flock /tmp/swarmdrop-browsers.lock node bench/tools/ui-cost.mjs [seconds]
//
// One Chromium with the release build shares 4 MiB, then for `seconds`
// (20) each: the popup open (its 700 ms refresh), the popup open and a
// `transfer.get` every 250 ms through it (how the transfer rows used to wait
// for completion), the popup and a bundle page open (its 1 s refresh), and
// no page open; twice over, with the threads that used the time. The
// differences are what a transfer row pays for each while it runs, on both
// cores it shares with the transfer.
import { performance } from 'node:perf_hooks'
import { fmt, removeDir, tempDir } from '../lib/common.mjs'
import { call, closeAll, extensionBrowser, send, startServer } from '../lib/swarmdrop.mjs'
import { cpuMeter, randomFileSet, threadsText } from '../lib/transfer.mjs'

const SECS = Number(process.argv[2] ?? 20)
const server = await startServer()
const dir = await tempDir('ui-cost-')
try {
  const files = await randomFileSet(dir, 4, 2 ** 20)
  const a = await extensionBrowser('ui-cost', 'browser', server, { uploadToServer: false })
  const sent = await send(a, files)
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
  const measure = async (label, during) => {
    const meter = await cpuMeter([a.pid])
    const s = performance.now()
    let stop = false
    const loop = during ? during(() => stop) : Promise.resolve()
    await sleep(SECS * 1000)
    stop = true
    await loop
    const [c] = await meter.stop()
    const dt = (performance.now() - s) / 1000
    console.log(`${label}: ${fmt(c.seconds / dt, 3)} CPU-s per s; ${threadsText(c.threads, 0.05)}`)
  }
  // What the transfer rows did before: ask through the popup every `ms`.
  const poll = (ms) => async (stopped) => {
    while (!stopped()) {
      await call(a.popup, 'transfer.get', { id: sent.id })
      await sleep(ms)
    }
  }
  for (let i = 0; i < 2; i++) {
    await measure('popup open', null)
    await measure('popup open + poll 250 ms', poll(250))
    const other = await a.context.newPage()
    await other.goto(`${a.base}bundle.html?id=${sent.id}`)
    await measure('popup + bundle page', null)
    await other.close()
    await a.popup.goto('about:blank')
    await measure('nothing open', null)
    await a.popup.goto(`${a.base}popup.html`)
  }
} finally {
  await closeAll()
  await server.stop?.()
  await removeDir(dir)
}
