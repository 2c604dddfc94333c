// Interop with WebTorrent 3 (npm `webtorrent`, its browser bundle in a plain
// page of a Chromium profile without the extension), through the Swarmdrop
// server's tracker on loopback:
// - Swarmdrop (Chromium with the extension) sends a bundle peer-to-peer
//   only; WebTorrent opens its magnet link, gets the metadata (BEP 9) and
//   every byte from the Swarmdrop peer (no web seed, no other tracker), and
//   the files it holds have the originals' SHA-256;
// - WebTorrent seeds files; Swarmdrop opens WebTorrent's magnet link, gets
//   the metadata from WebTorrent, downloads and saves; the saved files have
//   the originals' SHA-256.
import assert from 'node:assert/strict';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { DISABLED_FEATURES, launchChromium } from './lib/chromium.js';
import { builtExtension } from './lib/paths.js';
import {
  ROOT,
  randomFiles,
  saveIntact,
  startServer,
  startStatic,
  tempDir,
  testSettings,
  until,
} from './net/support.js';

const MB = 1e6;
/** Tens of MB each way; SWARMDROP_E2E_BIG=1 moves more. */
const BYTES = process.env.SWARMDROP_E2E_BIG === '1' ? 200 * 1024 * 1024 : 40 * 1024 * 1024;
const PEER_ID_PREFIX = Buffer.from('-SD0100-').toString('hex');

let server;
let site;
let extension;
const open = [];

function sizes(total) {
  const a = Math.floor(total * 0.5) + 12_345;
  const b = Math.floor(total * 0.3) - 7;
  return [a, b, total - a - b];
}

function mbps(bytes, ms) {
  return ((bytes / MB) * 1000) / ms;
}

/** Runs the extension's message call in one of its pages. */
function call(page, type, fields = {}) {
  return page.evaluate(
    async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields),
    [type, fields],
  );
}

/** A Chromium with the extension pointed at the test server; its popup page. */
async function swarmdrop(label, { uploadToServer }) {
  const downloads = tempDir(`downloads-${label}-`);
  const b = await launchChromium(extension, { downloads });
  b.label = label;
  b.downloads = downloads;
  b.close = async () => {
    await b.context.close().catch(() => {});
    open.splice(open.indexOf(b), 1);
  };
  open.push(b);
  b.context.on('weberror', (e) => console.log(`[${label}] ${e.error()}`));
  const popup = await b.context.newPage();
  await popup.goto(`${b.base}popup.html`);
  await popup.evaluate((settings) => chrome.storage.local.set({ settings }), testSettings(server, { uploadToServer }));
  b.popup = popup;
  return b;
}

/** Chromium without the extension, a fresh profile, on the WebTorrent page. */
async function webtorrent(label, { webSeeds = false } = {}) {
  const context = await chromium.launchPersistentContext(tempDir(`chromium-${label}-`), {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: false,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
      '--no-first-run',
      `--disable-features=${DISABLED_FEATURES.join(',')}`,
    ],
  });
  const b = { label, context };
  b.close = async () => {
    await context.close().catch(() => {});
    open.splice(open.indexOf(b), 1);
  };
  open.push(b);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') console.log(`[${label}] ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`[${label}] page error: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) console.log(`[${label}] ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  await page.goto(`${site.url}/webtorrent.html`);
  await page.evaluate(() => window.wt.ready);
  b.peerId = await page.evaluate((o) => window.wt.start(o), { webSeeds });
  b.page = page;
  return b;
}

async function wtLog(w) {
  return (await w.page.evaluate(() => window.wt.log)).map((e) => `${e.at} ${e.kind}: ${e.message}`).join('\n');
}

before(async () => {
  extension = builtExtension('chrome');
  server = await startServer();
  site = await startStatic({
    '/webtorrent/': join(ROOT, 'node_modules/webtorrent/dist'),
    '/': join(ROOT, 'tests/e2e/net'),
  });
});

after(async () => {
  for (const b of [...open]) await b.close();
  site?.close();
  server?.stop();
});

/** Files of random bytes under the given names (a name may be empty: 0 bytes). */
async function namedFiles(prefix, specs) {
  const dir = tempDir(prefix);
  const made = await randomFiles(dir, specs.map((s) => s.size));
  return made.map((f, i) => {
    const path = join(dir, specs[i].name);
    renameSync(f.path, path);
    return { ...f, name: specs[i].name, path };
  });
}

/** Picks files in Swarmdrop's popup; resolves to the send's view once it is shared. */
async function swarmdropSend(a, files) {
  await a.popup.locator('#pick-files').setInputFiles(files.map((f) => f.path));
  try {
    return await until(
      async () => {
        const list = await call(a.popup, 'transfers.list');
        return list.find((x) => x.role === 'send' && x.magnet && x.state === 'sharing') ?? null;
      },
      { timeoutMs: 180_000, what: `${a.label} to hash and share the bundle` },
    );
  } catch (e) {
    console.log(`${a.label}'s transfers: ${JSON.stringify(await call(a.popup, 'transfers.list'))}`);
    throw e;
  }
}

/** Opens a magnet link in Swarmdrop's bundle page; resolves to {page, id}. */
async function swarmdropOpen(b, magnet) {
  const page = await b.context.newPage();
  await page.goto(`${b.base}bundle.html?magnet=${encodeURIComponent(magnet)}`);
  await page.waitForURL(/bundle\.html\?id=/, { timeout: 60_000 });
  return { page, id: new URL(page.url()).searchParams.get('id') };
}

async function swarmdropCompleted(b, id, onTimeout) {
  try {
    return await until(
      async () => {
        const t = await call(b.popup, 'transfer.get', { id });
        if (t.state === 'error') throw new Error(`${b.label}: ${t.error}`);
        return t.state === 'complete' ? t : null;
      },
      { timeoutMs: 600_000, what: `${b.label} to complete the download` },
    );
  } catch (e) {
    console.log(JSON.stringify(await call(b.popup, 'transfer.get', { id })));
    await onTimeout?.();
    throw e;
  }
}

/** Saves every file from the bundle page; each saved file has the original's SHA-256. */
async function swarmdropSave(b, page, name, files) {
  await page.reload();
  await page.locator('article.tile').first().waitFor();
  await saveIntact(page, { label: b.label, downloads: b.downloads, name, files });
}

/** WebTorrent seeds the files; resolves to {infoHash, magnetURI, pieceLength}. */
async function wtSeed(w, files, name) {
  await w.page.setInputFiles(
    '#files',
    files.map((f) => f.path),
  );
  return w.page.evaluate(([n, tr]) => window.wt.seed(n, [tr]), [name, server.tracker]);
}

/** Waits for WebTorrent to finish `infoHash`; resolves to its status. */
async function wtDone(w, infoHash) {
  try {
    return await until(
      async () => {
        const s = await w.page.evaluate((h) => window.wt.status(h), infoHash);
        return s.done ? s : null;
      },
      { timeoutMs: 600_000, what: `${w.label} to finish the download` },
    );
  } catch (e) {
    await dumpWt(w, infoHash);
    throw e;
  }
}

async function dumpWt(w, infoHash) {
  console.log(`${w.label}'s log:\n${await wtLog(w)}`);
  console.log(JSON.stringify(await w.page.evaluate((h) => window.wt.status(h), infoHash)));
}

/** WebTorrent holds the originals' bytes under `dir/`. */
async function wtHasFiles(w, infoHash, dir, files) {
  const got = await w.page.evaluate((h) => window.wt.fileHashes(h), infoHash);
  for (const f of files) {
    const path = dir ? `${dir}/${f.name}` : f.name;
    assert.deepEqual(got[path], { size: f.size, sha256: f.sha256 }, `${path} arrived intact`);
  }
}

test('WebTorrent 3 downloads a Swarmdrop bundle from the Swarmdrop peer through the Swarmdrop tracker', { timeout: 900_000 }, async () => {
  const files = await randomFiles(tempDir('files-wt-in-'), sizes(BYTES));
  const a = await swarmdrop('SD-send', { uploadToServer: false });
  const sent = await swarmdropSend(a, files);
  assert.equal(sent.upload, null, 'peer-to-peer only: nothing goes to the server');
  assert.match(sent.magnet, /[?&]tr=ws%3A%2F%2F127\.0\.0\.1/, 'the magnet names the Swarmdrop tracker');
  assert.doesNotMatch(sent.magnet, /[?&](ws|xs|as)=/, 'the magnet names no web seed');
  console.log(`Swarmdrop shares ${(sent.totalLength / MB).toFixed(1)} MB: ${sent.magnet}`);

  const w = await webtorrent('WT-get');
  const t0 = Date.now();
  const infoHash = await w.page.evaluate(([m, tr]) => window.wt.add(m, [tr]), [sent.magnet, server.tracker]);
  assert.equal(infoHash, sent.infoHash);
  const status = await wtDone(w, infoHash);
  const ms = Date.now() - t0;
  // A slow start is a bug to find: say what happened when.
  if (ms > 30_000) console.log(`slow; WebTorrent's log:\n${await wtLog(w)}\nserver: ${JSON.stringify(await server.stats())}`);
  console.log(
    `WebTorrent: ${(status.length / MB).toFixed(1)} MB from Swarmdrop in ${(ms / 1000).toFixed(1)} s ` +
      `(${mbps(status.length, ms).toFixed(1)} MB/s, metadata included); wires: ${JSON.stringify(status.wires)}`,
  );

  // Every byte came over wires to the Swarmdrop peer: no web seed, no other peer.
  assert.ok(status.wires.length > 0, 'WebTorrent had a peer');
  for (const wire of status.wires) {
    assert.equal(wire.type, 'webrtc', 'the only peers were WebRTC peers');
    assert.ok(wire.peerId.startsWith(PEER_ID_PREFIX), `peer ${wire.peerId} is a Swarmdrop peer`);
  }
  const fromSwarmdrop = status.wires.reduce((n, x) => n + x.downloaded, 0);
  assert.ok(fromSwarmdrop >= status.length, `${fromSwarmdrop} bytes from Swarmdrop cover the ${status.length} of the torrent`);
  // The bytes WebTorrent holds are the originals.
  await wtHasFiles(w, infoHash, sent.name, files);

  // Swarmdrop counts what it served.
  const seen = await until(
    async () => {
      const t = await call(a.popup, 'transfer.get', { id: sent.id });
      return t.fromPeers >= status.length ? t : null;
    },
    { timeoutMs: 30_000, what: 'Swarmdrop to count the bytes it served' },
  );
  console.log(`Swarmdrop served ${(seen.fromPeers / MB).toFixed(1)} MB to peers`);
  await w.close();
  await a.close();
});

test('Swarmdrop downloads, from its magnet link, a torrent WebTorrent 3 seeds', { timeout: 900_000 }, async () => {
  const files = await randomFiles(tempDir('files-wt-out-'), sizes(BYTES));
  const w = await webtorrent('WT-seed');
  const name = 'seeded by webtorrent';
  const seeded = await wtSeed(w, files, name);
  console.log(`WebTorrent seeds ${seeded.infoHash} (pieces of ${seeded.pieceLength} B): ${seeded.magnetURI}`);
  assert.match(seeded.magnetURI, /[?&]tr=ws%3A%2F%2F127\.0\.0\.1/);

  const b = await swarmdrop('SD-get', { uploadToServer: false });
  const t0 = Date.now();
  const { page, id } = await swarmdropOpen(b, seeded.magnetURI);
  const got = await swarmdropCompleted(b, id, () => dumpWt(w, seeded.infoHash));
  const ms = Date.now() - t0;
  console.log(
    `Swarmdrop: ${(got.totalLength / MB).toFixed(1)} MB from WebTorrent in ${(ms / 1000).toFixed(1)} s ` +
      `(${mbps(got.totalLength, ms).toFixed(1)} MB/s, metadata included); from peers ${got.fromPeers}, from the server ${got.fromServer}`,
  );
  assert.equal(got.name, name);
  assert.equal(got.fromServer, 0);
  assert.equal(got.fromPeers, got.totalLength);
  const st = await w.page.evaluate((h) => window.wt.status(h), seeded.infoHash);
  assert.ok(st.uploaded >= got.totalLength, `WebTorrent uploaded ${st.uploaded} bytes`);
  await swarmdropSave(b, page, name, files);
  await b.close();
  await w.close();
});

test('Swarmdrop downloads WebTorrent torrents of one file, and with an empty file and non-ASCII names', { timeout: 900_000 }, async () => {
  const single = await namedFiles('files-wt-one-', [{ name: 'café ☕ 1.bin', size: 5_000_001 }]);
  const several = await namedFiles('files-wt-names-', [
    { name: 'ünïcödé — naïve.bin', size: 3_000_000 },
    { name: 'empty.txt', size: 0 },
    { name: 'z.bin', size: 17 },
    { name: 'b.bin', size: 2_000_000 },
  ]);
  const w = await webtorrent('WT-names');
  const b = await swarmdrop('SD-names', { uploadToServer: false });
  // One file: a single-file torrent (no `files` list), named after the file.
  const one = await wtSeed(w, single, undefined);
  const first = await swarmdropOpen(b, one.magnetURI);
  const gotOne = await swarmdropCompleted(b, first.id, () => dumpWt(w, one.infoHash));
  assert.equal(gotOne.name, single[0].name);
  assert.equal(gotOne.totalLength, single[0].size);
  await swarmdropSave(b, first.page, gotOne.name, single);
  // Several files, one of them empty, names outside ASCII.
  const many = await wtSeed(w, several, 'ünï bundle');
  const second = await swarmdropOpen(b, many.magnetURI);
  const gotMany = await swarmdropCompleted(b, second.id, () => dumpWt(w, many.infoHash));
  assert.equal(gotMany.name, 'ünï bundle');
  assert.equal(gotMany.fromPeers, gotMany.totalLength);
  await swarmdropSave(b, second.page, gotMany.name, several.filter((f) => f.size > 0));
  await b.close();
  await w.close();
});

test('a mixed swarm: Swarmdrop seeds; WebTorrent and another Swarmdrop download at once and trade pieces', { timeout: 900_000 }, async () => {
  const files = await randomFiles(tempDir('files-wt-mixed-'), sizes(BYTES));
  const a = await swarmdrop('SD-mixed-seed', { uploadToServer: false });
  const sent = await swarmdropSend(a, files);
  const w = await webtorrent('WT-mixed');
  const b = await swarmdrop('SD-mixed-get', { uploadToServer: false });
  const t0 = Date.now();
  const infoHash = await w.page.evaluate(([m, tr]) => window.wt.add(m, [tr]), [sent.magnet, server.tracker]);
  // WebTorrent is in the swarm (it has the metadata from the seed) before
  // the second Swarmdrop announces, so that one's offers reach it.
  await until(async () => (await w.page.evaluate((h) => window.wt.status(h), infoHash)).ready, {
    timeoutMs: 60_000,
    what: 'WebTorrent to get the metadata from the seed',
  });
  const { page, id } = await swarmdropOpen(b, sent.magnet);
  const [st, got] = await Promise.all([wtDone(w, infoHash), swarmdropCompleted(b, id, () => dumpWt(w, infoHash))]);
  const ms = Date.now() - t0;
  const peers = new Set(st.wires.map((x) => x.peerId));
  console.log(
    `mixed swarm: both done in ${(ms / 1000).toFixed(1)} s; WebTorrent's wires: ${JSON.stringify(st.wires)}; ` +
      `Swarmdrop receiver: from peers ${got.fromPeers}, uploaded ${got.uploaded}`,
  );
  assert.equal(peers.size, 2, 'WebTorrent connected to both Swarmdrop peers');
  const seedId = st.wires[0].peerId;
  const withReceiver = st.wires.filter((x) => x.peerId !== seedId);
  const traded = withReceiver.reduce((n, x) => n + x.downloaded + x.uploaded, 0);
  assert.ok(traded > 0, 'WebTorrent and the Swarmdrop receiver traded pieces');
  assert.equal(got.fromPeers, got.totalLength);
  await wtHasFiles(w, infoHash, sent.name, files);
  await swarmdropSave(b, page, sent.name, files);
  await b.close();
  await w.close();
  await a.close();
});

test('WebTorrent 3 downloads a Swarmdrop bundle from the server\'s web seed alone (the server\'s .torrent, BEP 19)', { timeout: 900_000 }, async () => {
  const files = await namedFiles('files-x5-', [
    { name: 'ünï café 1.bin', size: 6_000_000 },
    { name: 'b c.bin', size: 3_000_123 },
  ]);
  const a = await swarmdrop('SD-x5', { uploadToServer: true });
  const sent = await swarmdropSend(a, files);
  await until(
    async () => {
      const t = await call(a.popup, 'transfer.get', { id: sent.id });
      return t.upload?.phase === 'done' ? t : null;
    },
    { timeoutMs: 300_000, what: 'the upload' },
  );
  await a.close();
  const torrent = new Uint8Array(await (await fetch(`${server.url}/api/bundles/${sent.infoHash}/torrent`)).arrayBuffer());
  const w = await webtorrent('WT-x5', { webSeeds: true });
  const infoHash = await w.page.evaluate(([t, tr]) => window.wt.add(t, [tr]), [Array.from(torrent), server.tracker]);
  const t0 = Date.now();
  const st = await wtDone(w, infoHash);
  const ms = Date.now() - t0;
  console.log(`WebTorrent: ${(st.length / MB).toFixed(1)} MB from the web seed in ${(ms / 1000).toFixed(1)} s (${mbps(st.length, ms).toFixed(1)} MB/s)`);
  assert.ok(st.wires.length > 0);
  for (const wire of st.wires) assert.equal(wire.type, 'webSeed', 'the web seed was the only source');
  await wtHasFiles(w, infoHash, sent.name, files);
  await w.close();
});
