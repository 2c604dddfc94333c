// Row 3, Peer-assisted download: sender online plus the server's web seed, Swarmdrop against WebTorrent.

import { notMeasured, writeResult } from '../lib/common.mjs'

await writeResult(notMeasured(3, 'assisted', 'Peer-assisted download: sender online plus web seed', '≥ 3× WebTorrent',
  'needs the extension, the WebRTC transfer and the web-seed peer in the glue (issue 4, on other branches). Plan:' +
  ' the bundle uploaded to the server on loopback, the sender online in one Chromium profile, and a receiver in' +
  ' another downloading from both; the anchor is WebTorrent 3 in the same browsers given the same peer and the' +
  ' same web seed (url-list), in the same run; medians of three runs of the download time.'))
