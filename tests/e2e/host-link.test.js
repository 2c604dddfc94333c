// Chrome's engine host link (platform/chrome/host-link.js, as built into
// dist/chrome), tested in Node with a stand-in `chrome`: a file channel
// request goes out only once the offscreen document listens.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { builtExtension } from './lib/paths.js';

/** A stand-in for the offscreen API: the document is listed as soon as its creation starts, as Chrome does. */
const offscreen = { listed: false, creations: 0, finish: null };
globalThis.chrome = {
  runtime: {
    getURL: (path) => `chrome-extension://swarmdrop/${path}`,
    getContexts: async () => (offscreen.listed ? [{ contextType: 'OFFSCREEN_DOCUMENT' }] : []),
  },
  offscreen: {
    createDocument: () => {
      offscreen.creations++;
      offscreen.listed = true;
      return new Promise((resolve) => {
        offscreen.finish = resolve;
      });
    },
  },
};
const { ensureHost } = await import(pathToFileURL(join(builtExtension('chrome'), 'js/platform/host-link.js')).href);

const ticks = (ms) => new Promise((r) => setTimeout(r, ms));

test('ensureHost waits for a host still being created, though it is listed already', async () => {
  // The popup's first refresh starts the creation...
  const first = ensureHost();
  await ticks(10);
  assert.equal(offscreen.listed, true, 'the document is listed while it loads');
  // ...and a send picked meanwhile asks for the host too: it must not be
  // told the host is there before the document has loaded (and listens).
  let secondDone = false;
  const second = ensureHost().then(() => {
    secondDone = true;
  });
  await ticks(50);
  assert.equal(secondDone, false, 'a host still loading was taken for one that listens');
  offscreen.finish();
  await Promise.all([first, second]);
  assert.equal(secondDone, true);
  assert.equal(offscreen.creations, 1, 'one document was created');
  // Loaded: the next caller is answered at once, without another creation.
  await ensureHost();
  assert.equal(offscreen.creations, 1);
});
