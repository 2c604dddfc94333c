// Firefox and Chromium exchange a bundle over WebRTC, both ways, with the
// built extension in each (Firefox ESR through geckodriver, Chromium through
// playwright-core), fresh profiles, and the server on loopback as the
// tracker. The sends are peer-to-peer only, so every byte crosses between the
// two browsers; the receiver saves the files and their SHA-256 must match.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launchChromium } from './lib/chromium.js';
import { builtExtension } from './lib/paths.js';
import { startFirefox } from './lib/webdriver.js';
import { BUNDLE_BYTES, randomFiles, sha256File, startServer, tempDir, testSettings, until } from './net/support.js';

const ADDON_ID = 'swarmdrop@swarmdrop.dev';
const UUID = '7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f';
const FF_BASE = `moz-extension://${UUID}/`;
const MB = 1e6;
/** A third of the default bundle: the two browsers share the machine with the server. */
const SIZE = Math.floor(BUNDLE_BYTES / 3);

let server;
const cleanup = [];

async function firefox() {
  const downloads = tempDir('ff-downloads-');
  const ff = await startFirefox({
    'extensions.webextensions.uuids': JSON.stringify({ [ADDON_ID]: UUID }),
    'browser.download.folderList': 2,
    'browser.download.dir': downloads,
    'browser.download.useDownloadDir': true,
    'browser.download.start_downloads_in_tmp_dir': false,
    'browser.download.always_ask_before_handling_new_types': false,
    'media.peerconnection.ice.obfuscate_host_addresses': false,
  });
  cleanup.push(() => ff.close());
  assert.equal(await ff.installAddon(builtExtension('firefox')), ADDON_ID);
  await ff.goto(`${FF_BASE}popup.html`);
  await ff.execAsync(`(s) => browser.storage.local.set({ settings: s })`, [testSettings(server, { uploadToServer: false })]);
  const call = (type, fields = {}) =>
    ff.execAsync(`async (t, f) => (await import('${FF_BASE}js/common/messages.js')).call(t, f)`, [type, fields]);
  return { ff, downloads, call };
}

async function chromium() {
  const downloads = tempDir('cr-downloads-');
  const b = await launchChromium(builtExtension('chrome'), { downloads });
  cleanup.push(() => b.context.close());
  const popup = await b.context.newPage();
  await popup.goto(`${b.base}popup.html`);
  await popup.evaluate((s) => chrome.storage.local.set({ settings: s }), testSettings(server, { uploadToServer: false }));
  const call = (type, fields = {}) =>
    popup.evaluate(
      async ([t, f]) => (await import('./js/common/messages.js')).call(t, f),
      [type, fields],
    );
  return { ...b, popup, downloads, call };
}

async function shared(call, what) {
  let list = [];
  try {
    return await until(
      async () => {
        list = await call('transfers.list');
        return list.find((t) => t.role === 'send' && t.state === 'sharing' && t.magnet) ?? null;
      },
      { timeoutMs: 180_000, what },
    );
  } catch (err) {
    const seen = list.map((t) => `${t.role} ${t.state}${t.error ? ` (${t.error})` : ''}`).join(', ');
    throw new Error(`${err.message}; transfers: ${seen || 'none'}`);
  }
}

async function complete(call, id, what) {
  return until(
    async () => {
      const t = await call('transfer.get', { id });
      if (t.state === 'error') throw new Error(t.error);
      return t.state === 'complete' ? t : null;
    },
    { timeoutMs: 600_000, what },
  );
}

async function verifySaved(downloads, name, files) {
  for (const f of files) {
    const path = join(downloads, name, f.name);
    await until(async () => (await sha256File(path).catch(() => null)) === f.sha256, {
      timeoutMs: 120_000,
      what: `${path} saved with the original's SHA-256`,
    });
  }
}

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
  server?.stop();
});

test('Firefox sends, Chromium receives (peer-to-peer)', { timeout: 900_000 }, async () => {
  const files = await randomFiles(tempDir('x-files-'), [Math.floor(SIZE / 2) + 3, Math.ceil(SIZE / 2) - 3, 4096]);
  const { ff, call: ffCall } = await firefox();
  // Firefox's popup closes when a file picker opens: files are picked on the send page.
  await ff.goto(`${FF_BASE}drop.html`);
  await ff.sendKeys(await ff.find('#pick-files'), files.map((f) => f.path).join('\n'));
  await ff.goto(`${FF_BASE}popup.html`);
  const sent = await shared(ffCall, 'Firefox to share the bundle');
  const cr = await chromium();
  const page = await cr.context.newPage();
  const t0 = Date.now();
  await page.goto(`${cr.base}bundle.html?magnet=${encodeURIComponent(sent.magnet)}`);
  await page.waitForURL(/bundle\.html\?id=/, { timeout: 60_000 });
  const id = new URL(page.url()).searchParams.get('id');
  const got = await complete(cr.call, id, 'Chromium to complete');
  const ms = Date.now() - t0;
  console.log(`Firefox → Chromium: ${(got.totalLength / MB).toFixed(1)} MB in ${(ms / 1000).toFixed(1)} s`);
  assert.equal(got.fromServer, 0);
  assert.equal(got.fromPeers, got.totalLength);
  await page.reload();
  await page.locator('article.tile').first().waitFor();
  await page.locator('#save').click();
  await page.locator('#message', { hasText: 'Saved' }).waitFor({ timeout: 120_000 });
  await verifySaved(cr.downloads, got.name, files);
});

test('Chromium sends, Firefox receives (peer-to-peer)', { timeout: 900_000 }, async () => {
  const files = await randomFiles(tempDir('x-files-'), [Math.floor(SIZE / 2) + 5, Math.ceil(SIZE / 2) - 5, 777]);
  const cr = await chromium();
  await cr.popup.locator('#pick-files').setInputFiles(files.map((f) => f.path));
  const sent = await shared(cr.call, 'Chromium to share the bundle');
  const { ff, downloads, call: ffCall } = await firefox();
  const t0 = Date.now();
  await ff.goto(`${FF_BASE}bundle.html?magnet=${encodeURIComponent(sent.magnet)}`);
  const id = await until(async () => new URL(await ff.url()).searchParams.get('id'), {
    timeoutMs: 60_000,
    what: 'the bundle page to open the transfer',
  });
  const got = await complete(ffCall, id, 'Firefox to complete');
  const ms = Date.now() - t0;
  console.log(`Chromium → Firefox: ${(got.totalLength / MB).toFixed(1)} MB in ${(ms / 1000).toFixed(1)} s`);
  assert.equal(got.fromServer, 0);
  assert.equal(got.fromPeers, got.totalLength);
  await ff.goto(`${FF_BASE}bundle.html?id=${encodeURIComponent(id)}`);
  await ff.until(`() => document.querySelectorAll('article.tile').length > 0`);
  await ff.click(await ff.find('#save'));
  await ff.until(`() => /^Saved/.test(document.getElementById('message').textContent)`, [], 120_000);
  await verifySaved(downloads, got.name, files);
});
