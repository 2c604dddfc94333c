// End-to-end: Chromium with the built extension, a fresh profile, a local test page.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { transmissionShow, verifyWithHashlib } from './lib/checks.js';
import { launchChromium } from './lib/chromium.js';
import { DRAW_JPEG, makeFiles, sha256 } from './lib/files.js';
import { ROOT, SCREENSHOTS, WORK, builtExtension } from './lib/paths.js';
import { serveSite } from './lib/site.js';

const BUNDLE_NAME = 'sunset and 2 more';

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
  const { context, base } = await launchChromium(extension, { downloads });
  t.after(async () => {
    await context.close();
    await site.close();
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
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'sharing');
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
    await bundle.waitForFunction(() => document.querySelector('.visual img')?.naturalWidth > 0);
    assert.equal(await bundle.locator('article.tile[data-path="data.bin"] .visual img').count(), 0, 'a type icon, not an image');
    await bundle.screenshot({ path: join(SCREENSHOTS, 'chromium-bundle-page.png') });
    await thumb.click();
    await bundle.locator('#lightbox').waitFor({ state: 'visible' });
    await bundle.waitForFunction(() => {
      const img = document.getElementById('lb-img');
      return img.dataset.full === '1' && img.complete && img.naturalWidth === 1200;
    });
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
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused');
    assert.equal(await state().textContent(), 'Paused');
    await popup.reload();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused');
    await popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'chromium-popup-paused.png') });
    await card.locator('[data-action=resume]').click();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'sharing');
    await popup.reload();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'sharing');

    // Paused, then the engine host closed: the record comes back from IndexedDB, still paused.
    await card.locator('[data-action=pause]').click();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused');
    const worker = context.serviceWorkers().find((w) => w.url().startsWith(base));
    await worker.evaluate(() => chrome.offscreen.closeDocument());
    await popup.reload();
    await popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused');
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
    await bundle.close();
    await popup.waitForFunction(() => document.querySelectorAll('article.transfer').length === 2);
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

  assert.deepEqual(errors, [], 'no uncaught errors in extension pages');
});
