// Row 5, Server offload: four receivers at once with the sender online, the server's egress against the bundle size.

import { notMeasured, writeResult } from '../lib/common.mjs'

await writeResult(notMeasured(5, 'offload', 'Server offload: four receivers at once', '≤ 1.5× the bundle size',
  'the harness for it is written (commit 7f22748, `git show 7f22748:bench/rows/05-offload.mjs`) but does not finish yet.' +
  ' It starts the server (release build) on loopback, a sender in Chromium (release build of the extension, fresh' +
  ' profile) that hashes a 256 MiB bundle of random bytes and uploads it to the server (4 to 5 s), then four receivers' +
  ' with fresh profiles that open the share link together (`bundle.html?link=…`, as tests/e2e/transfer.test.js does for' +
  ' three); the egress is the change of `bytes_served` (GET /api/stats) over the bundle size. In three tries on' +
  ' 2026-11-21 the receivers\' bundle pages did not finish loading: twice `page.goto` never returned, once it' +
  ' returned and the page went on to `bundle.html?id=…` but its load event never came (Playwright\'s `waitForURL` timed' +
  ' out after 60 s); in the tries where it was checked the server saw 5 connections, 1 peer in the swarm, 0 offers' +
  ' relayed and 0 bytes served after more than a minute: the receivers never announced or fetched a piece. Still to find: whether the bundle page stalls when four receivers open the' +
  ' link at once, or this harness differs from the end-to-end test (it waits for the upload to be done first, and' +
  ' opens the link in a new page of each receiver right after its settings are written); one receiver first, then' +
  ' two, is the next step.'))
