// End-to-end: Firefox ESR through geckodriver, the built extension installed as
// a temporary add-on, a fresh profile, a local test page.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { transmissionShow, verifyWithHashlib } from './lib/checks.js';
import { DRAW_JPEG, makeFiles, sha256 } from './lib/files.js';
import { SCREENSHOTS, WORK, builtExtension } from './lib/paths.js';
import { serveSite } from './lib/site.js';
import { startFirefox } from './lib/webdriver.js';

const ADDON_ID = 'swarmdrop@swarmdrop.dev';
// A fixed internal UUID, so the test knows the extension's moz-extension:// origin.
const UUID = '5a3f0c1e-9b7d-4e2a-8c6f-0d1e2f3a4b5c';
const BASE = `moz-extension://${UUID}/`;
const BUNDLE_NAME = 'sunset and 2 more';

/** Page script: dispatches a synthesized drag event carrying a file (no OS drag exists headless). */
const PAGE_DRAG = `(type, selector, x, y) => {
  const dt = new DataTransfer();
  dt.items.add(new File(['page file'], 'page.txt', { type: 'text/plain' }));
  const target = selector ? document.querySelector(selector) : document.body;
  const r = target.getBoundingClientRect();
  target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt,
    clientX: x ?? r.left + r.width / 2, clientY: y ?? r.top + r.height / 2 }));
}`;
const ZONE_SHOWN = `() => { const z = document.querySelector('swarmdrop-zone'); return !!z && getComputedStyle(z).display !== 'none'; }`;
const ZONE_HIDDEN = `() => { const z = document.querySelector('swarmdrop-zone'); return !z || getComputedStyle(z).display === 'none'; }`;
const CARD_STATE = `(state) => document.querySelector('article.transfer')?.dataset.state === state`;

test('Firefox ESR: drop zone, bundle, popup, .torrent, bundle page, pause/resume, file picker', { timeout: 300_000 }, async (t) => {
  const extension = builtExtension('firefox');
  const site = await serveSite();
  const downloads = join(WORK, `firefox-downloads-${Date.now()}`);
  const ff = await startFirefox({
    'extensions.webextensions.uuids': JSON.stringify({ [ADDON_ID]: UUID }),
    'browser.download.folderList': 2,
    'browser.download.dir': downloads,
    'browser.download.useDownloadDir': true,
    'browser.download.start_downloads_in_tmp_dir': false,
    'browser.download.always_ask_before_handling_new_types': false,
    'media.peerconnection.ice.obfuscate_host_addresses': false,
    // Unload an idle event page after 8 s instead of 30 s, to prove the engine
    // host keeps itself alive while transfers run.
    'extensions.background.idle.timeout': 8000,
  });
  t.after(async () => {
    await ff.close();
    await site.close();
  });
  assert.equal(await ff.installAddon(extension), ADDON_ID);
  await ff.setRect({ width: 1280, height: 900 });
  await ff.goto(site.url);
  await ff.until(`() => document.readyState === 'complete'`);
  const files = makeFiles(join(WORK, `firefox-files-${Date.now()}`), await ff.execAsync(`() => ${DRAW_JPEG}`));
  const totalSize = files.reduce((s, f) => s + f.size, 0);
  const pageTab = (await ff.handles())[0];

  await t.test('dragging files over the page shows the zone; leaving the window hides it', async () => {
    // The content script is injected at document_idle; retry the drag until it listens.
    await ff.until(`async () => { (${PAGE_DRAG})('dragenter', '#page-target'); return (${ZONE_SHOWN})(); }`);
    await ff.execAsync(PAGE_DRAG, ['dragleave', null, 0, 0]);
    await ff.until(ZONE_HIDDEN);
  });

  await t.test("the page's own drop target still receives a drop outside the zone", async () => {
    await ff.execAsync(PAGE_DRAG, ['dragenter', '#page-target']);
    await ff.until(ZONE_SHOWN);
    await ff.execAsync(PAGE_DRAG, ['dragover', '#page-target']);
    await ff.execAsync(PAGE_DRAG, ['drop', '#page-target']);
    assert.deepEqual(await ff.execAsync(`() => window.pageDrops`), [['page.txt (9 bytes)']]);
    await ff.until(ZONE_HIDDEN);
  });

  await t.test('dropping three files on the zone makes a bundle and shows its link', async () => {
    await ff.execAsync(PAGE_DRAG, ['dragenter', '#page-target']);
    // Browsers keep firing dragover while a drag lasts; so does the page, until the drop.
    await ff.execAsync(`() => { window.keepDragging = setInterval(() => (${PAGE_DRAG})('dragover', 'h1'), 150); }`);
    await ff.until(ZONE_SHOWN);
    // The zone is the page's only frame: an extension-origin document.
    await ff.frame(0);
    assert.equal(await ff.execAsync(`() => location.href`), `${BASE}drop.html`);
    await ff.until(`() => document.getElementById('target') && !document.getElementById('target').hidden`);
    await ff.frame(null);
    writeFileSync(join(SCREENSHOTS, 'firefox-drop-zone.png'), await ff.screenshot());
    await ff.frame(0);
    await ff.execAsync(
      `(payload) => {
        const dt = new DataTransfer();
        for (const f of payload) {
          const bytes = Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0));
          dt.items.add(new File([bytes], f.name, { type: f.type }));
        }
        const target = document.getElementById('target');
        for (const type of ['dragenter', 'dragover', 'drop']) {
          target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
        }
      }`,
      [files.map(({ name, type, base64 }) => ({ name, type, base64 }))],
    );
    const link = await ff.until(
      `() => !document.getElementById('b-link-row').hidden && document.getElementById('b-link').value`,
      [],
      60_000,
    );
    assert.match(link, /^http:\/\/127\.0\.0\.1:8750\/b\/[0-9a-f]{40}$/);
    assert.equal(await ff.execAsync(`() => document.getElementById('b-name').textContent`), BUNDLE_NAME);
    await ff.frame(null);
    await ff.execAsync(`() => clearInterval(window.keepDragging)`);
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(await ff.execAsync(ZONE_SHOWN), 'the panel stays after the drop');
    writeFileSync(join(SCREENSHOTS, 'firefox-drop-zone-link.png'), await ff.screenshot());
  });

  await ff.newTab();
  const popupTab = (await ff.handles()).find((h) => h !== pageTab);
  await ff.switchTo(popupTab);
  await ff.goto(`${BASE}popup.html`);
  let transferId;

  await t.test('the popup lists the bundle with its name, size and file count', async () => {
    await ff.until(CARD_STATE, ['sharing']);
    const cards = await ff.findAll('article.transfer');
    assert.equal(cards.length, 1);
    transferId = await ff.attr(cards[0], 'data-id');
    assert.equal(await ff.text(await ff.find('article.transfer .t-name')), BUNDLE_NAME);
    const expectedSize = await ff.execAsync(
      `async (n) => (await import('${BASE}js/common/format.js')).bytes(n)`,
      [totalSize],
    );
    assert.equal(await ff.text(await ff.find('article.transfer .t-meta')), `3 files · ${expectedSize}`);
    assert.equal(await ff.text(await ff.find('article.transfer .chip')), 'Sharing');
    writeFileSync(join(SCREENSHOTS, 'firefox-popup.png'), await ff.screenshot(await ff.find('body')));
  });

  let torrentPath;
  let manifestBytes;
  await t.test('the event page hosting the engine stays alive while a transfer runs', async () => {
    // Were the page unloaded, the engine host would restart without the files
    // and the send would need them again; it stays "sharing". No extension
    // page is open meanwhile (their requests would count as activity).
    await ff.goto('about:blank');
    await new Promise((r) => setTimeout(r, 20_000));
    await ff.goto(`${BASE}popup.html`);
    await ff.until(CARD_STATE, ['sharing']);
  });

  await t.test('the exported .torrent is read correctly by transmission-show', async () => {
    await ff.click(await ff.find('article.transfer [data-action=torrent]'));
    torrentPath = await ff.until(`async () => {
      const [d] = await browser.downloads.search({ filenameRegex: '\\\\.torrent$', state: 'complete' });
      return d ? d.filename : null;
    }`);
    const shown = transmissionShow(torrentPath);
    assert.equal(shown.name, BUNDLE_NAME);
    assert.deepEqual(
      shown.files.map((f) => f.replace(`${BUNDLE_NAME}/`, '')).sort(),
      ['.swarmdrop/manifest.json', 'data.bin', 'notes.txt', 'sunset.jpg'],
    );
    const view = await ff.execAsync(
      `async (id) => (await import('${BASE}js/common/messages.js')).call('transfer.get', { id })`,
      [transferId],
    );
    assert.equal(shown.hash, view.infoHash);
    assert.equal(shown.pieceCount, Math.ceil(view.totalLength / (16 * 1024)));
    manifestBytes = Buffer.from(
      await ff.execAsync(
        `async (id) => {
          const blob = await (await import('${BASE}js/common/channel.js')).fetchFile(id, '.swarmdrop/manifest.json');
          return Array.from(new Uint8Array(await blob.arrayBuffer()));
        }`,
        [transferId],
      ),
    );
  });

  await t.test('the dropped files verify against the piece hashes (Python hashlib)', async () => {
    const report = verifyWithHashlib(torrentPath, BUNDLE_NAME, files, manifestBytes, join(WORK, `firefox-verify-${Date.now()}`));
    assert.deepEqual(report.problems, []);
    assert.equal(report.verified, report.pieces);
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    assert.deepEqual(
      manifest.files.map((f) => [f.path, f.size, f.type]),
      files.map((f) => [f.name, f.size, f.type]),
    );
    assert.match(manifest.files[0].thumbnail, /^data:image\/jpeg;base64,/);
  });

  await t.test('the bundle page shows a thumbnail for the image and enlarges it on click', async () => {
    const before = await ff.handles();
    await ff.click(await ff.find('article.transfer [data-action=open]'));
    let bundleTab;
    for (let i = 0; i < 100 && !bundleTab; i++) {
      bundleTab = (await ff.handles()).find((h) => !before.includes(h));
      if (!bundleTab) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(bundleTab, 'the bundle page opened in a new tab');
    await ff.switchTo(bundleTab);
    await ff.until(`() => document.querySelectorAll('article.tile').length === 3`);
    const src = await ff.attr(await ff.find('article.tile[data-path="sunset.jpg"] .visual img'), 'src');
    assert.match(src, /^data:image\/jpeg;base64,/);
    await ff.until(`() => document.querySelector('.visual img').naturalWidth > 0`);
    assert.equal((await ff.findAll('article.tile[data-path="data.bin"] .visual img')).length, 0);
    writeFileSync(join(SCREENSHOTS, 'firefox-bundle-page.png'), await ff.screenshot());
    await ff.click(await ff.find('article.tile[data-path="sunset.jpg"] .visual'));
    await ff.until(`() => {
      const img = document.getElementById('lb-img');
      return !document.getElementById('lightbox').hidden && img.dataset.full === '1' && img.complete && img.naturalWidth === 1200;
    }`);
    const width = await ff.execAsync(`() => document.getElementById('lb-img').getBoundingClientRect().width`);
    assert.ok(width > 600, `the enlarged image is ${width}px wide`);
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(join(SCREENSHOTS, 'firefox-bundle-lightbox.png'), await ff.screenshot());
    await ff.click(await ff.find('#lightbox'));
    await ff.until(`() => document.getElementById('lightbox').hidden`);

    await ff.click(await ff.find('#save'));
    const paths = await ff.until(`async () => {
      const items = await browser.downloads.search({ state: 'complete' });
      const ours = items.filter((d) => !d.filename.endsWith('.torrent'));
      return ours.length >= 3 ? ours.map((d) => d.filename) : null;
    }`);
    for (const f of files) {
      const path = paths.find((p) => p.endsWith(f.name));
      assert.ok(path, `${f.name} saved`);
      assert.equal(sha256(readFileSync(path)), f.sha256, `${f.name} saved intact`);
    }
    await ff.cmd('DELETE', '/window');
    await ff.switchTo(popupTab);
  });

  await t.test('pause and resume change the state, and it survives reopening the popup', async () => {
    await ff.click(await ff.find('article.transfer [data-action=pause]'));
    await ff.until(CARD_STATE, ['paused']);
    assert.equal(await ff.text(await ff.find('article.transfer .chip')), 'Paused');
    await ff.goto(`${BASE}popup.html`);
    await ff.until(CARD_STATE, ['paused']);
    await ff.click(await ff.find('article.transfer [data-action=resume]'));
    await ff.until(CARD_STATE, ['sharing']);
    await ff.goto(`${BASE}popup.html`);
    await ff.until(CARD_STATE, ['sharing']);
  });

  await t.test("the send page's file picker makes a bundle (send keys to the file input)", async () => {
    // Firefox closes the toolbar popup when a file picker opens, so the
    // popup's "Send files…" opens the send page in a tab; there the picker
    // gets real paths.
    const before = await ff.handles();
    await ff.click(await ff.find('#send-files'));
    let sendTab;
    for (let i = 0; i < 100 && !sendTab; i++) {
      sendTab = (await ff.handles()).find((h) => !before.includes(h));
      if (!sendTab) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(sendTab, 'the send page opened in a new tab');
    await ff.switchTo(sendTab);
    await ff.until(`() => location.href === '${BASE}drop.html' && document.readyState === 'complete'`);
    const input = await ff.find('#pick-files');
    await ff.sendKeys(input, files.map((f) => f.path).join('\n'));
    const link = await ff.until(
      `() => !document.getElementById('b-link-row').hidden && document.getElementById('b-link').value`,
      [],
      60_000,
    );
    assert.match(link, /\/b\/[0-9a-f]{40}$/);
    writeFileSync(join(SCREENSHOTS, 'firefox-send-page.png'), await ff.screenshot());
    await ff.goto(`${BASE}popup.html`);
    await ff.until(`() => document.querySelectorAll('article.transfer').length === 2`);
  });
});
