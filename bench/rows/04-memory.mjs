// Row 4, Memory: peak memory of the receiving browser for 1 GiB and 4 GiB downloads.

import { notMeasured, writeResult } from '../lib/common.mjs'

await writeResult(notMeasured(4, 'memory', 'Memory: receiver peak, 1 GiB against 4 GiB', 'difference < 50 MB',
  'needs the extension and the transfer (issues 3 and 4). Plan: sample the proportional set size (PSS, from' +
  ' /proc/<pid>/smaps_rollup) of every process of the receiving Chromium every 100 ms during a 1 GiB and a 4 GiB' +
  ' download, take the peak of the sum, and report the 4 GiB peak against the 1 GiB peak (the anchor); three runs.'))
