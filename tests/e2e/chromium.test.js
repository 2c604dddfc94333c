// End-to-end: Chromium with the built extension, a fresh profile, a local test page.
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { transmissionShow, verifyWithHashlib } from './lib/checks.js';
import { launchChromium } from './lib/chromium.js';
import { DRAW_JPEG, makeFiles, sha256 } from './lib/files.js';
import { ROOT, SCREENSHOTS, WORK, builtExtension } from './lib/paths.js';
import { serveSite } from './lib/site.js';

const BUNDLE_NAME = 'sunset and 2 more';
// Poll on a timer: requestAnimationFrame (Playwright's default) stops in background tabs.
const POLL = { polling: 100 };

/** Evaluates an async function in `page` until it returns something truthy. */
async function until(page, fn, arg, timeout = 30_000) {
  const end = Date.now() + timeout;
  for (;;) {
    const value = await page.evaluate(fn, arg);
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${fn}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** In the page: dispatches a drag event carrying the given files (synthesized, as no OS drag exists headless). */
function pageDrag(page, type, selector, { x, y } = {}) {
  return page.evaluate(
    ([type, selector, x, y]) => {
      const dt = new DataTransfer();
      dt.items.add(new File(['page file'], 'page.txt', { type: 'text/plain' }));
      const target = selector ? document.querySelector(selector) : document.body;
      const r = target.getBoundingClientRect();
      target.dispatchEvent(
        new DragEvent(type, {
          bubbles: true,
          cancelable: true,
          dataTransfer: dt,
          clientX: x ?? r.left + r.width / 2,
          clientY: y ?? r.top + r.height / 2,
        }),
      );
    },
    [type, selector, x ?? null, y ?? null],
  );
}

test('Chromium: drop zone, bundle, popup, .torrent, bundle page, pause/resume', { timeout: 240_000 }, async (t) => {
  const extension = builtExtension('chrome');
  const site = await serveSite();
  const downloads = join(WORK, `chromium-downloads-${Date.now()}`);
  const { context, base, profile } = await launchChromium(extension, { downloads });
  t.after(async () => {
    await context.close();
    await site.close();
    rmSync(profile, { recursive: true, force: true });
  });
  const errors = [];
  context.on('weberror', (e) => errors.push(String(e.error())));

  const page = await context.newPage();
  await page.goto(site.url);
  const files = makeFiles(join(WORK, `chromium-files-${Date.now()}`), await page.evaluate(DRAW_JPEG));
  const totalSize = files.reduce((s, f) => s + f.size, 0);
  let transferId;

  await t.test('dragging files over the page shows the zone; leaving the window hides it', async () => {
    const zone = page.locator('swarmdrop-zone');
    await pageDrag(page, 'dragenter', '#page-target');
    await zone.waitFor({ state: 'visible', timeout: 5000 });
    const box = await zone.boundingBox();
    assert.ok(box.width >= 300 && box.width <= 400, `zone width ${box.width}`);
    assert.ok(box.x > 640 && box.y > 400, 'the zone sits in the bottom-right corner, not over the page');
    await pageDrag(page, 'dragleave', null, { x: 0, y: 0 });
    await zone.waitFor({ state: 'hidden', timeout: 5000 });
  });

  await t.test("the page's own drop target still receives a drop outside the zone", async () => {
    await pageDrag(page, 'dragenter', '#page-target');
    await page.locator('swarmdrop-zone').waitFor({ state: 'visible' });
    await pageDrag(page, 'dragover', '#page-target');
    await pageDrag(page, 'drop', '#page-target');
    const drops = await page.evaluate(() => window.pageDrops);
    assert.deepEqual(drops, [['page.txt (9 bytes)']]);
    await page.locator('swarmdrop-zone').waitFor({ state: 'hidden', timeout: 5000 });
  });

  await t.test('dropping three files on the zone makes a bundle and shows its link', async () => {
    await pageDrag(page, 'dragenter', '#page-target');
    // Browsers keep firing dragover while a drag lasts; so do we, until the drop.
    const keepDragging = setInterval(() => pageDrag(page, 'dragover', 'h1').catch(() => {}), 150);
    try {
      await page.locator('swarmdrop-zone').waitFor({ state: 'visible' });
      const frame = page.frames().find((f) => f.url() === `${base}drop.html`);
      assert.ok(frame, 'the zone is an extension-origin frame');
      await frame.locator('#target').waitFor();
      await page.screenshot({ path: join(SCREENSHOTS, 'chromium-drop-zone.png') });
      // The drop lands in the extension frame, with File objects made there.
      await frame.evaluate((payload) => {
        const dt = new DataTransfer();
        for (const f of payload) {
          const bytes = Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0));
          dt.items.add(new File([bytes], f.name, { type: f.type }));
        }
        const target = document.getElementById('target');
        for (const type of ['dragenter', 'dragover', 'drop']) {
          target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
        }
      }, files.map(({ name, type, base64 }) => ({ name, type, base64 })));
    } finally {
      clearInterval(keepDragging);
    }
    const frame = page.frames().find((f) => f.url() === `${base}drop.html`);
    await frame.locator('#b-link-row').waitFor({ state: 'visible', timeout: 60_000 });
    const link = await frame.locator('#b-link').inputValue();
    assert.match(link, /^http:\/\/127\.0\.0\.1:8750\/b\/[0-9a-f]{40}$/);
    assert.equal(await frame.locator('#b-name').textContent(), BUNDLE_NAME);
    // The panel stays after the drag is over.
    await page.waitForTimeout(1500);
    assert.ok(await page.locator('swarmdrop-zone').isVisible(), 'the panel stays after the drop');
    await page.screenshot({ path: join(SCREENSHOTS, 'chromium-drop-zone-link.png') });
    // The panel's button opens the bundle page in a new tab.
    const [opened] = await Promise.all([context.waitForEvent('page'), frame.locator('#b-open').click()]);
    await opened.waitForURL(/bundle\.html\?id=/);
    await opened.locator('#name').waitFor();
    assert.equal(await opened.locator('#name').textContent(), BUNDLE_NAME);
    await opened.close();
  });

  const popup = await context.newPage();
  await popup.setViewportSize({ width: 440, height: 640 });
  await popup.goto(`${base}popup.html`);
  const card = popup.locator('article.transfer');

  await t.test('the popup lists the bundle with its name, size and file count', async () => {
    await card.first().waitFor();
    assert.equal(await card.count(), 1);
    transferId = await card.getAttribute('data-id');
    assert.equal(await card.locator('.t-name').textContent(), BUNDLE_NAME);
    const meta = await card.locator('.t-meta').textContent();
    const expectedSize = await popup.evaluate(
      async (n) => (await import('./js/common/format.js')).bytes(n),
      totalSize,
    );
    assert.equal(meta, `3 files · ${expectedSize}`);
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'sharing', null, POLL);
    assert.equal(await card.locator('.chip').textContent(), 'Sharing');
    const worker = context.serviceWorkers().find((w) => w.url().startsWith(base));
    await until(worker, () => chrome.action.getBadgeText({}).then((text) => text === '1'));
    await popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'chromium-popup.png') });
  });

  let torrentPath;
  let manifestBytes;
  await t.test('the exported .torrent is read correctly by transmission-show', async () => {
    await card.locator('[data-action=torrent]').click();
    const item = await until(popup, async () => {
      const [d] = await chrome.downloads.search({ filenameRegex: '\\.torrent$', state: 'complete' });
      return d ? { filename: d.filename, mime: d.mime } : null;
    });
    torrentPath = item.filename;
    const shown = transmissionShow(torrentPath);
    assert.equal(shown.name, BUNDLE_NAME);
    const files = shown.files.map((f) => f.replace(`${BUNDLE_NAME}/`, ''));
    assert.deepEqual(files.sort(), ['.swarmdrop/manifest.json', 'data.bin', 'notes.txt', 'sunset.jpg']);
    const view = await popup.evaluate(
      async (id) => (await import('./js/common/messages.js')).call('transfer.get', { id }),
      transferId,
    );
    assert.equal(shown.hash, view.infoHash);
    assert.equal(shown.pieceCount, Math.ceil(view.totalLength / (16 * 1024)));
    manifestBytes = Buffer.from(
      await popup.evaluate(async (id) => {
        const blob = await (await import('./js/common/channel.js')).fetchFile(id, '.swarmdrop/manifest.json');
        return Array.from(new Uint8Array(await blob.arrayBuffer()));
      }, transferId),
    );
  });

  await t.test('the dropped files verify against the piece hashes (Python hashlib)', async () => {
    const report = verifyWithHashlib(torrentPath, BUNDLE_NAME, files, manifestBytes, join(WORK, `chromium-verify-${Date.now()}`));
    assert.deepEqual(report.problems, []);
    assert.equal(report.verified, report.pieces);
    assert.ok(report.pieces > 150, `${report.pieces} pieces`);
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    assert.deepEqual(
      manifest.files.map((f) => [f.path, f.size, f.type]),
      files.map((f) => [f.name, f.size, f.type]),
    );
    assert.match(manifest.files[0].thumbnail, /^data:image\/jpeg;base64,/);
    assert.equal(manifest.files[0].width, 1200);
  });

  await t.test('the bundle page shows a thumbnail for the image and enlarges it on click', async () => {
    const [bundle] = await Promise.all([context.waitForEvent('page'), card.locator('[data-action=open]').click()]);
    await bundle.setViewportSize({ width: 1100, height: 760 });
    await bundle.waitForLoadState();
    const tile = bundle.locator('article.tile[data-path="sunset.jpg"]');
    await tile.waitFor();
    assert.equal(await bundle.locator('article.tile').count(), 3);
    const thumb = tile.locator('.visual img');
    assert.match(await thumb.getAttribute('src'), /^data:image\/jpeg;base64,/);
    await bundle.waitForFunction(() => document.querySelector('.visual img')?.naturalWidth > 0, null, POLL);
    assert.equal(await bundle.locator('article.tile[data-path="data.bin"] .visual img').count(), 0, 'a type icon, not an image');
    await bundle.screenshot({ path: join(SCREENSHOTS, 'chromium-bundle-page.png') });
    await thumb.click();
    await bundle.locator('#lightbox').waitFor({ state: 'visible' });
    await bundle.waitForFunction(() => {
      const img = document.getElementById('lb-img');
      return img.dataset.full === '1' && img.complete && img.naturalWidth === 1200;
    }, null, POLL);
    const shown = await bundle.locator('#lb-img').boundingBox();
    assert.ok(shown.width > 600, `the enlarged image is ${shown.width}px wide`);
    await bundle.waitForTimeout(300); // the fade-in
    await bundle.screenshot({ path: join(SCREENSHOTS, 'chromium-bundle-lightbox.png') });
    await bundle.keyboard.press('Escape');
    await bundle.locator('#lightbox').waitFor({ state: 'hidden' });

    // Save the selected files through the downloads API; they match the originals.
    await bundle.locator('#save').click();
    await bundle.locator('#message').waitFor({ state: 'visible' });
    const paths = await until(bundle, async () => {
      const items = await chrome.downloads.search({ state: 'complete' });
      const ours = items.filter((d) => !d.filename.endsWith('.torrent'));
      return ours.length >= 3 ? ours.map((d) => d.filename) : null;
    });
    for (const f of files) {
      const path = paths.find((p) => p.endsWith(f.name));
      assert.ok(path, `${f.name} saved`);
      assert.equal(sha256(readFileSync(path)), f.sha256, `${f.name} saved intact`);
    }
    await bundle.close();
  });

  await t.test('pause and resume change the state, and it survives reopening the popup and the engine host', async () => {
    const state = () => popup.locator('article.transfer .chip');
    await card.locator('[data-action=pause]').click();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused', null, POLL);
    assert.equal(await state().textContent(), 'Paused');
    await popup.reload();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused', null, POLL);
    await popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'chromium-popup-paused.png') });
    await card.locator('[data-action=resume]').click();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'sharing', null, POLL);
    await popup.reload();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'sharing', null, POLL);

    // Paused, then the engine host closed: the record comes back from IndexedDB, still paused.
    await card.locator('[data-action=pause]').click();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused', null, POLL);
    const worker = context.serviceWorkers().find((w) => w.url().startsWith(base));
    await worker.evaluate(() => chrome.offscreen.closeDocument());
    await popup.reload();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused', null, POLL);
    assert.equal(await state().textContent(), 'Paused');
  });

  await t.test('a .torrent opened from the popup becomes a download shown on the bundle page', async () => {
    const vector = join(ROOT, 'tests/vectors/transmission-tree-16k.torrent');
    const [bundle] = await Promise.all([
      context.waitForEvent('page'),
      popup.locator('#pick-torrent').setInputFiles(vector),
    ]);
    await bundle.waitForLoadState();
    await bundle.locator('article.tile').nth(5).waitFor();
    assert.equal(await bundle.locator('article.tile').count(), 6);
    assert.equal(await bundle.locator('#name').textContent(), 'bundle');
    assert.equal(await bundle.locator('#state').textContent(), 'Downloading');
    assert.ok(await bundle.locator('article.tile[data-path="photos/2024/img 1.jpg"][data-kind=image]').count());
    await bundle.setViewportSize({ width: 1100, height: 760 });
    await bundle.screenshot({ path: join(SCREENSHOTS, 'chromium-bundle-download.png') });
    await bundle.close();
    await popup.waitForFunction(() => document.querySelectorAll('article.transfer').length === 2, null, POLL);
    const line = await popup.locator('article.transfer[data-state=downloading] .t-line').first().textContent();
    assert.match(line, /Looking for peers/);
  });

  await t.test('a magnet link opens the bundle page with the name from the link', async () => {
    const magnet = 'magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=Holiday%20photos';
    const bundle = await context.newPage();
    await bundle.goto(`${base}bundle.html?magnet=${encodeURIComponent(magnet)}`);
    await bundle.waitForURL(/bundle\.html\?id=/);
    await bundle.locator('#name').waitFor();
    assert.equal(await bundle.locator('#name').textContent(), 'Holiday photos');
    assert.match(await bundle.locator('#message').textContent(), /Fetching the list of files/);
    await bundle.close();
  });

  await t.test('a folder chosen in the popup keeps its structure', async () => {
    const folder = join(WORK, `chromium-folder-${Date.now()}`, 'Trip');
    mkdirSync(join(folder, 'day 1'), { recursive: true });
    mkdirSync(join(folder, 'day 2/evening'), { recursive: true });
    copyFileSync(files[0].path, join(folder, 'day 1/sunset.jpg'));
    copyFileSync(files[1].path, join(folder, 'day 2/evening/notes.txt'));
    writeFileSync(join(folder, 'readme.md'), '# Trip\n');
    await popup.locator('#pick-folder').setInputFiles(folder);
    const trip = popup.locator('article.transfer', { has: popup.locator('.t-name', { hasText: /^Trip$/ }) });
    await trip.waitFor();
    assert.equal(await popup.locator('article.transfer').first().getAttribute('data-id'), await trip.getAttribute('data-id'), 'newest first');
    assert.equal(await trip.locator('.t-meta').textContent(), `3 files · ${await popup.evaluate(
      async (n) => (await import('./js/common/format.js')).bytes(n),
      files[0].size + files[1].size + 7,
    )}`);
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'sharing', null, POLL);
    const id = await trip.getAttribute('data-id');
    const { base64 } = await popup.evaluate(
      async (id) => (await import('./js/common/messages.js')).call('transfer.torrent', { id }),
      id,
    );
    const torrent = join(WORK, `trip-${Date.now()}.torrent`);
    writeFileSync(torrent, Buffer.from(base64, 'base64'));
    const shown = transmissionShow(torrent);
    assert.equal(shown.name, 'Trip');
    assert.deepEqual(
      shown.files.map((f) => f.replace('Trip/', '')).sort(),
      ['.swarmdrop/manifest.json', 'day 1/sunset.jpg', 'day 2/evening/notes.txt', 'readme.md'],
    );
  });

  await t.test('cancel removes a transfer after a confirming second click', async () => {
    const magnetCard = popup.locator('article.transfer', { hasText: 'Holiday photos' });
    await magnetCard.waitFor();
    await magnetCard.locator('[data-action=cancel]').click();
    assert.equal(await magnetCard.locator('[data-action=cancel]').textContent(), 'Cancel?');
    await magnetCard.locator('[data-action=cancel]').click();
    await magnetCard.waitFor({ state: 'detached' });
    await popup.reload();
    await popup.locator('article.transfer').first().waitFor();
    assert.equal(await magnetCard.count(), 0, 'gone for good');
  });

  await t.test('pause all and resume all; a send paused across an engine restart asks for its files', async () => {
    const states = () =>
      popup.evaluate(() =>
        Object.fromEntries([...document.querySelectorAll('article.transfer')].map((a) => [a.querySelector('.t-name').textContent, a.dataset.state])),
      );
    await popup.locator('#pause-all[data-action=pause-all]').click();
    await popup.waitForFunction(() => [...document.querySelectorAll('article.transfer')].every((a) => a.dataset.state === 'paused'), null, POLL);
    await popup.locator('#pause-all[data-action=resume-all]').click();
    await popup.waitForFunction(() => ![...document.querySelectorAll('article.transfer')].some((a) => a.dataset.state === 'paused'), null, POLL);
    assert.deepEqual(await states(), {
      Trip: 'sharing',
      bundle: 'downloading',
      // Its files were known to the engine host that was closed: they must be chosen again.
      [BUNDLE_NAME]: 'needs-files',
    });
    assert.equal(
      await popup.locator('article.transfer[data-state=needs-files] .t-line').first().textContent(),
      'Choose the same files again to keep sharing',
    );
  });

  await t.test('hashing a large file shows progress, and pausing really stops it', async () => {
    const BIG_FILE = 2 * 1024 * 1024 * 1024;
    // 2 GiB of zeros (a sparse file: instant to make, hashed like any other):
    // large enough that the hashing (about 1 GB/s here, BENCHMARKS.md row 1)
    // is still under way when the test sees progress and pauses it.
    const big = join(WORK, `chromium-big-${Date.now()}`, 'video.bin');
    mkdirSync(dirname(big), { recursive: true });
    closeSync(openSync(big, 'w'));
    truncateSync(big, BIG_FILE);
    await popup.locator('#pick-files').setInputFiles(big);
    const card = popup.locator('article.transfer', { has: popup.locator('.t-name', { hasText: /^video$/ }) });
    await card.waitFor();
    const id = await card.getAttribute('data-id');
    const view = () =>
      popup.evaluate(async (id) => (await import('./js/common/messages.js')).call('transfer.get', { id }), id);
    await until(popup, async (id) => {
      const v = await (await import('./js/common/messages.js')).call('transfer.get', { id });
      return v.progressBytes > 0;
    }, id);
    await popup.waitForFunction(() => /Hashing [1-9]\d* % · [1-9]/.test(document.querySelector('article.transfer .t-line')?.textContent), null, POLL);
    await popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'chromium-popup-hashing.png') });

    await card.locator('[data-action=pause]').click();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused', null, POLL);
    await popup.waitForTimeout(1500); // batches already handed to workers finish
    const p1 = (await view()).progressBytes;
    await popup.waitForTimeout(2000);
    const p2 = (await view()).progressBytes;
    assert.equal(p2, p1, 'no hashing while paused');
    assert.ok(p1 < BIG_FILE, 'paused before the end');
    assert.match(await card.locator('.t-line').first().textContent(), /Paused while preparing, at \d+ %/);

    await card.locator('[data-action=resume]').click();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'sharing', null, { ...POLL, timeout: 180_000 });
    // The hashes made before and after the pause verify (Python hashlib).
    const { base64 } = await popup.evaluate(
      async (id) => (await import('./js/common/messages.js')).call('transfer.torrent', { id }),
      id,
    );
    const torrent = join(WORK, `video-${Date.now()}.torrent`);
    writeFileSync(torrent, Buffer.from(base64, 'base64'));
    const manifest = Buffer.from(
      await popup.evaluate(async (id) => {
        const blob = await (await import('./js/common/channel.js')).fetchFile(id, '.swarmdrop/manifest.json');
        return Array.from(new Uint8Array(await blob.arrayBuffer()));
      }, id),
    );
    const report = verifyWithHashlib(torrent, 'video', [{ name: 'video.bin', path: big }], manifest, join(WORK, `chromium-verify-big-${Date.now()}`));
    assert.deepEqual(report.problems, []);
    assert.equal(report.verified, report.pieces);
    rmSync(dirname(big), { recursive: true, force: true });
  });

  await t.test('settings are validated, saved, and used for new bundles', async () => {
    await popup.locator('article.transfer').first().waitFor();
    await popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'chromium-popup-transfers.png') });
    await popup.locator('#settings-btn').click();
    await popup.locator('#settings').waitFor();
    assert.equal(await popup.locator('#s-server').inputValue(), 'http://127.0.0.1:8750');
    await popup.locator('#s-server').fill('ftp://example.org');
    await popup.locator('#s-save').click();
    assert.match(await popup.locator('#s-msg').textContent(), /must start with http/);
    await popup.locator('#s-server').fill('http://localhost:9000/');
    await popup.locator('#s-up').fill('500');
    await popup.locator('#s-trackers').fill('wss://tracker.example.org');
    await popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'chromium-popup-settings.png') });
    await popup.locator('#s-save').click();
    await popup.locator('#settings').waitFor({ state: 'hidden' });
    await popup.reload();
    await popup.locator('#settings-btn').click();
    assert.equal(await popup.locator('#s-server').inputValue(), 'http://localhost:9000');
    assert.equal(await popup.locator('#s-up').inputValue(), '500');
    assert.equal(await popup.locator('#s-trackers').inputValue(), 'wss://tracker.example.org');
    await popup.locator('#s-cancel').click();

    // A new bundle announces to the server's tracker and the extra one, and links to the server.
    await popup.locator('#pick-files').setInputFiles(files[1].path);
    const card = popup.locator('article.transfer', { has: popup.locator('.t-name', { hasText: /^notes$/ }) });
    await card.waitFor();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'sharing', null, POLL);
    const view = await popup.evaluate(
      async (id) => (await import('./js/common/messages.js')).call('transfer.get', { id }),
      await card.getAttribute('data-id'),
    );
    assert.match(view.link, /^http:\/\/localhost:9000\/b\/[0-9a-f]{40}$/);
    assert.match(view.magnet, /tr=ws%3A%2F%2Flocalhost%3A9000%2Fannounce/);
    assert.match(view.magnet, /tr=wss%3A%2F%2Ftracker\.example\.org/);

    // With the drop zone turned off, dragging over a page shows nothing.
    await popup.locator('#settings-btn').click();
    await popup.locator('#s-zone').uncheck();
    await popup.locator('#s-save').click();
    await popup.locator('#settings').waitFor({ state: 'hidden' });
    await page.bringToFront();
    await page.locator('swarmdrop-zone').evaluate((zone) => zone.remove()); // the old panel
    await pageDrag(page, 'dragenter', '#page-target');
    await page.waitForTimeout(1000);
    assert.equal(await page.locator('swarmdrop-zone').count(), 0, 'no zone when turned off');
  });

  assert.deepEqual(errors, [], 'no uncaught errors in extension pages');
});

test('Chromium: files sent while the engine host document is still loading reach it', { timeout: 240_000 }, async (t) => {
  const extension = builtExtension('chrome');
  const downloads = join(WORK, `chromium-downloads-${Date.now()}`);
  const { context, worker, base, profile } = await launchChromium(extension, { downloads });
  t.after(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  });
  const popup = await context.newPage();
  await popup.goto(`${base}popup.html`);
  // The offscreen document is listed (chrome.runtime.getContexts) from the
  // start of its creation, before its scripts listen on the file channel: a
  // send picked in that window was lost. Another request (the popup's
  // refresh) starts the creation; the send follows after a sweep of delays
  // that crosses the window (about 20-80 ms here, longer on a busy machine).
  for (const delay of [0, 10, 20, 30, 40, 50, 60, 80, 120]) {
    await worker.evaluate(async () => {
      const open = await chrome.runtime.getContexts({ contextTypes: ['OFFSCREEN_DOCUMENT'] });
      if (open.length) await chrome.offscreen.closeDocument();
    });
    const result = await popup.evaluate(async (delay) => {
      const { call } = await import('./js/common/messages.js');
      const { sendFiles } = await import('./js/common/channel.js');
      call('transfers.list').catch(() => {});
      await new Promise((r) => setTimeout(r, delay));
      try {
        return { id: await sendFiles([{ file: new File([new Uint8Array(1000)], 'x.bin'), path: 'x.bin' }]) };
      } catch (err) {
        return { error: err.message };
      }
    }, delay);
    assert.equal(result.error, undefined, `a send picked ${delay} ms after the host began to load`);
    const sent = await until(popup, async (id) => {
      const { call } = await import('./js/common/messages.js');
      return (await call('transfers.list')).find((x) => x.id === id && x.state === 'sharing');
    }, result.id);
    assert.ok(sent, `the send picked ${delay} ms after the host began to load is shared`);
  }
});
