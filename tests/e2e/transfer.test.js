// Peer-assisted transfer end to end: Chromium instances with the built
// extension, each with its own fresh profile, and the availability server on
// loopback. A sends three files of random bytes; B opens the share link and
// downloads from A and the server at once; the files B saves to disk have the
// originals' SHA-256; then A and B leave and C downloads from the server
// alone; a peer-to-peer-only bundle goes from A to B through the tracker;
// three receivers download at once while A is online; a recipient's bundle
// page shows the sender's thumbnails.
//
// The first bundle is the issue's 300 MB; the peer-to-peer one a third and
// the three receivers' one half of 60 MB (of 300 MB with SWARMDROP_E2E_BIG=1).
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launchChromium } from './lib/chromium.js';
import { DRAW_JPEG, makeFiles } from './lib/files.js';
import { SCREENSHOTS, builtExtension } from './lib/paths.js';
import { BUNDLE_BYTES, ISSUE_BUNDLE_BYTES, randomFiles, saveIntact, startServer, tempDir, testSettings, until } from './net/support.js';

const MB = 1e6;
let server;
let extension;
const open = [];

/** Runs the extension's message call in one of its pages. */
function call(page, type, fields = {}) {
  return page.evaluate(
    async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields),
    [type, fields],
  );
}

/** A Chromium with the extension pointed at the test server; its popup page. */
async function browser(label, { uploadToServer = true } = {}) {
  const downloads = tempDir(`downloads-${label}-`);
  const b = await launchChromium(extension, { downloads });
  open.push(b);
  b.label = label;
  b.downloads = downloads;
  b.context.on('weberror', (e) => console.log(`[${label}] ${e.error()}`));
  const popup = await b.context.newPage();
  await popup.setViewportSize({ width: 440, height: 640 });
  await popup.goto(`${b.base}popup.html`);
  await popup.evaluate((settings) => chrome.storage.local.set({ settings }), testSettings(server, { uploadToServer }));
  b.popup = popup;
  b.close = async () => {
    await b.context.close().catch(() => {});
    open.splice(open.indexOf(b), 1);
  };
  return b;
}

/** Picks files in A's popup ("Send files…"); resolves to the send's view once it is shared. */
async function send(a, files) {
  await a.popup.locator('#pick-files').setInputFiles(files.map((f) => f.path));
  let list = [];
  try {
    return await until(
      async () => {
        list = await call(a.popup, 'transfers.list');
        const t = list.find((x) => x.role === 'send' && x.link && x.state === 'sharing');
        return t ?? null;
      },
      { timeoutMs: 180_000, what: `${a.label} to hash and share the bundle` },
    );
  } catch (err) {
    // What the popup shows and which transfers exist tell a refused pick from a stalled hashing.
    const notice = await a.popup.locator('#notice').textContent().catch(() => null);
    const seen = list.map((t) => `${t.role} ${t.state}${t.phase ? `/${t.phase}` : ''}${t.error ? ` (${t.error})` : ''}`);
    throw new Error(`${err.message}; transfers: ${seen.join(', ') || 'none'}; popup notice: ${notice ?? 'none'}`);
  }
}

/** Opens a link (share link or magnet) in B's bundle page; resolves to the transfer id. */
async function receive(b, { link, magnet }) {
  const page = await b.context.newPage();
  const query = link ? `link=${encodeURIComponent(link)}` : `magnet=${encodeURIComponent(magnet)}`;
  await page.goto(`${b.base}bundle.html?${query}`);
  await page.waitForURL(/bundle\.html\?id=/, { timeout: 60_000 });
  b.bundlePage = page;
  return new URL(page.url()).searchParams.get('id');
}

async function completed(b, id) {
  return until(
    async () => {
      const t = await call(b.popup, 'transfer.get', { id });
      if (t.state === 'error') throw new Error(`${b.label}: ${t.error}`);
      return t.state === 'complete' ? t : null;
    },
    { timeoutMs: 600_000, what: `${b.label} to complete` },
  );
}

/** Saves every file from the bundle page and checks the saved bytes against the originals. */
async function saveAndVerify(b, view, files) {
  const page = b.bundlePage;
  await page.locator('article.tile').first().waitFor();
  // The page refreshes itself once a second while the transfer runs.
  await page.reload();
  await page.locator('article.tile').first().waitFor();
  await saveIntact(page, {
    label: b.label,
    downloads: b.downloads,
    name: view.name,
    files,
    screenshot: join(SCREENSHOTS, `transfer-bundle-${b.label}.png`),
  });
}

function mbps(bytes, ms) {
  return ((bytes / MB) * 1000) / ms;
}

before(async () => {
  extension = builtExtension('chrome');
  server = await startServer();
  mkdirSync(SCREENSHOTS, { recursive: true });
});

after(async () => {
  for (const b of [...open]) await b.close();
  server?.stop();
});

function sizes(total) {
  const a = Math.floor(total * 0.5) + 12_345;
  const b = Math.floor(total * 0.3) - 7;
  return [a, b, total - a - b];
}

test('A sends; B downloads from A and the server at once; C from the server alone', { timeout: 1_200_000 }, async () => {
  const files = await randomFiles(tempDir('files-'), sizes(ISSUE_BUNDLE_BYTES));
  const a = await browser('A');
  const t0 = Date.now();
  const sent = await send(a, files);
  const hashed = Date.now();
  console.log(`A: hashed and shared ${(sent.totalLength / MB).toFixed(1)} MB in ${(hashed - t0) / 1000} s: ${sent.link}`);
  await until(async () => (await server.bundle(sent.infoHash)).info_hash, { what: 'the bundle on the server' });

  const b = await browser('B');
  const t1 = Date.now();
  const id = await receive(b, { link: sent.link });
  const got = await completed(b, id);
  const ms = Date.now() - t1;
  console.log(
    `B: ${(got.totalLength / MB).toFixed(1)} MB in ${(ms / 1000).toFixed(1)} s (${mbps(got.totalLength, ms).toFixed(1)} MB/s); ` +
      `from peers ${(got.fromPeers / MB).toFixed(1)} MB, from the server ${(got.fromServer / MB).toFixed(1)} MB`,
  );
  await saveAndVerify(b, got, files);
  assert.ok(got.fromPeers > 0, 'B received bytes from A');
  assert.ok(got.fromServer > 0, 'B received bytes from the server');

  // The popups show where the bytes came from (and went to).
  for (const x of [a, b]) {
    await x.popup.reload();
    const split = x.popup.locator('article.transfer .stat[title="Bytes from the server and from peers"]').first();
    await split.waitFor();
    const text = await split.textContent();
    console.log(`${x.label}'s popup, server · peers: ${text}`);
    assert.doesNotMatch(text, /^0 B · 0 B$/);
    await x.popup.locator('body').screenshot({ path: join(SCREENSHOTS, `transfer-popup-${x.label}.png`) });
  }

  const up = await until(
    async () => {
      const t = await call(a.popup, 'transfer.get', { id: sent.id });
      return t.upload?.phase === 'done' ? t : null;
    },
    { timeoutMs: 600_000, what: "A's upload to the server" },
  );
  console.log(`A: upload to the server done ${((Date.now() - hashed) / 1000).toFixed(1)} s after sharing began`);
  assert.equal(up.upload.piecesDone, up.upload.piecesTotal);
  assert.equal((await server.bundle(sent.infoHash)).complete, true);

  // A closes after its upload; B leaves too: only the server is left.
  await a.close();
  await b.close();
  const egress0 = (await server.stats()).bytes_served;
  const c = await browser('C');
  const t2 = Date.now();
  const cid = await receive(c, { link: sent.link });
  const gotC = await completed(c, cid);
  const msC = Date.now() - t2;
  const egress = (await server.stats()).bytes_served - egress0;
  console.log(
    `C: ${(gotC.totalLength / MB).toFixed(1)} MB from the server alone in ${(msC / 1000).toFixed(1)} s ` +
      `(${mbps(gotC.totalLength, msC).toFixed(1)} MB/s); server egress ${(egress / MB).toFixed(1)} MB`,
  );
  assert.equal(gotC.fromPeers, 0);
  assert.equal(gotC.fromServer, gotC.totalLength);
  await saveAndVerify(c, gotC, files);
  await c.close();
});

test('peer-to-peer only: no upload; B downloads from A alone through the tracker', { timeout: 900_000 }, async () => {
  const files = await randomFiles(tempDir('files-p2p-'), sizes(Math.floor(BUNDLE_BYTES / 3)));
  const a = await browser('A2', { uploadToServer: false });
  const sent = await send(a, files);
  assert.equal(sent.upload, null, 'no upload was started');
  const onServer = await fetch(`${server.url}/api/bundles/${sent.infoHash}`);
  assert.equal(onServer.status, 404, 'the server never got the bundle');
  const b = await browser('B2');
  const t0 = Date.now();
  const id = await receive(b, { magnet: sent.magnet });
  const got = await completed(b, id);
  const ms = Date.now() - t0;
  console.log(
    `B2: ${(got.totalLength / MB).toFixed(1)} MB peer-to-peer in ${(ms / 1000).toFixed(1)} s (${mbps(got.totalLength, ms).toFixed(1)} MB/s)`,
  );
  assert.equal(got.fromServer, 0);
  assert.equal(got.fromPeers, got.totalLength);
  await saveAndVerify(b, got, files);
  await b.close();
  await a.close();
});

test('three receivers at once while A is online', { timeout: 1_200_000 }, async () => {
  const files = await randomFiles(tempDir('files-3-'), sizes(Math.floor(BUNDLE_BYTES / 2)));
  const a = await browser('A3');
  const sent = await send(a, files);
  await until(async () => (await server.bundle(sent.infoHash)).info_hash, { what: 'the bundle on the server' });
  const receivers = [];
  for (const label of ['R1', 'R2', 'R3']) receivers.push(await browser(label));
  const egress0 = (await server.stats()).bytes_served;
  const t0 = Date.now();
  const ids = await Promise.all(receivers.map((r) => receive(r, { link: sent.link })));
  const views = await Promise.all(receivers.map((r, i) => completed(r, ids[i])));
  const ms = Date.now() - t0;
  const egress = (await server.stats()).bytes_served - egress0;
  const total = views[0].totalLength;
  console.log(
    `three receivers: ${(total / MB).toFixed(1)} MB each in ${(ms / 1000).toFixed(1)} s; server egress ${(egress / MB).toFixed(1)} MB ` +
      `(${((egress / (3 * total)) * 100).toFixed(0)}% of what the server alone would send); ` +
      views.map((v, i) => `R${i + 1} peers ${(v.fromPeers / MB).toFixed(1)} MB / server ${(v.fromServer / MB).toFixed(1)} MB`).join('; '),
  );
  for (const [i, r] of receivers.entries()) await saveAndVerify(r, views[i], files);
  // Web seeds hold back while peers deliver: the receivers take each piece
  // from the server about once and trade the rest (three lone receivers
  // would take three copies).
  assert.ok(egress < 2 * total, `the server sent ${(egress / total).toFixed(2)} copies of the bundle`);
  for (const v of views) assert.ok(v.fromPeers > 0, 'every receiver got bytes from peers');
  for (const r of receivers) await r.close();
  await a.close();
});

test("a recipient's bundle page shows the sender's thumbnails, from the bundle itself", { timeout: 600_000 }, async () => {
  // Peers only (no upload): the thumbnails travel in the bundle's manifest,
  // not through the server.
  const a = await browser('A4', { uploadToServer: false });
  const files = makeFiles(tempDir('files-thumbs-'), await a.popup.evaluate(DRAW_JPEG));
  const sent = await send(a, files);
  const made = (await call(a.popup, 'bundle.get', { id: sent.id })).files.find((f) => f.path === 'sunset.jpg');
  assert.match(made.thumbnail, /^data:image\/jpeg;base64,/);

  const b = await browser('B4');
  const id = await receive(b, { magnet: sent.magnet });
  const page = b.bundlePage;
  const thumb = page.locator('article.tile[data-path="sunset.jpg"] .visual img');
  await thumb.waitFor({ timeout: 120_000 });
  assert.equal(await thumb.getAttribute('src'), made.thumbnail, "the sender's thumbnail, unchanged");
  await page.waitForFunction(() => document.querySelector('article.tile[data-path="sunset.jpg"] .visual img')?.naturalWidth > 0, null, {
    timeout: 30_000,
  });
  assert.equal(await page.locator('article.tile[data-path="data.bin"] .visual img').count(), 0, 'a type icon, not an image');
  const got = await completed(b, id);
  assert.equal(got.fromServer, 0, 'nothing came from the server');

  // Refreshes after the first leave the thumbnails out: the tile and its
  // enlarging keep them (and the image's size, from the manifest).
  await page.waitForFunction(() => document.querySelector('#state')?.classList.contains('complete'), null, { timeout: 30_000 });
  // Setting the bundle's caps makes the page ask again, without thumbnails by
  // now; the test waits until such an answer has come (and been shown).
  await page.evaluate(() => {
    const send = chrome.runtime.sendMessage.bind(chrome.runtime);
    window.bareAnswers = 0;
    chrome.runtime.sendMessage = async (msg, ...rest) => {
      const answer = await send(msg, ...rest);
      if (msg?.type === 'bundle.get' && msg.thumbnails === false) window.bareAnswers++;
      return answer;
    };
  });
  await page.locator('#caps-set').click();
  await page.waitForFunction(() => window.bareAnswers > 0, null, { timeout: 30_000 });
  assert.equal(await thumb.getAttribute('src'), made.thumbnail);
  await thumb.click();
  await page.locator('#lightbox').waitFor({ state: 'visible' });
  assert.match(await page.locator('#lb-caption').textContent(), /sunset\.jpg · 1200 × 800/);
  await page.waitForFunction(
    () => {
      const img = document.getElementById('lb-img');
      return img.dataset.full === '1' && img.complete && img.naturalWidth === 1200;
    },
    null,
    { timeout: 30_000 },
  );
  await page.screenshot({ path: join(SCREENSHOTS, 'transfer-recipient-thumbnails.png') });
  await b.close();
  await a.close();
});
