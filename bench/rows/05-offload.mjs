// Row 5, Server offload: four receivers at once with the sender online, the server's egress against the bundle size.

import { notMeasured, writeResult } from '../lib/common.mjs'

await writeResult(notMeasured(5, 'offload', 'Server offload: four receivers at once', '≤ 1.5× the bundle size',
  'needs the extension and the peer-assisted transfer (issue 4). Plan: the bundle fully uploaded to the server on' +
  ' loopback, the sender online, four Chromium receivers with separate profiles started together; the server\'s' +
  ' egress is the difference of `bytes_served` from `GET /api/stats` before and after, divided by the bundle size' +
  ' (the anchor); three runs.'))
