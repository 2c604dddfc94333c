// Row 2, P2P transfer: 1 GiB between two Chromium instances, peers only, against a raw data channel and WebTorrent 3.

import { notMeasured, writeResult } from '../lib/common.mjs'

await writeResult(notMeasured(2, 'p2p', 'P2P transfer: 1 GiB between two Chromium instances, peers only',
  '≥ 0.95× raw channel, ≥ 1.1× WebTorrent; CPU-s/GiB ≤ 1.1× raw',
  'needs the extension and the WebRTC transfer (issues 3 and 4, on other branches). Plan: two headless Chromium' +
  ' instances with separate profiles and the server on loopback as tracker only; in the same run, (a) a raw sender' +
  ' page that only pushes 1 GiB through one ordered data channel with bufferedAmount backpressure (the anchor),' +
  ' (b) WebTorrent 3 (its browser bundle in a plain page) seeding and downloading the same files through the same' +
  ' tracker, (c) Swarmdrop sending and receiving them; three runs each, medians of MB/s, and the CPU-seconds of all' +
  ' browser processes per GiB from /proc.'))
