// Storage end to end (issue 5), Chromium with the built extension:
// - the upgrade from schema 1 (records in `swarmdrop` v1, pieces in
//   `swarmdrop-engine` v1) to the one database of schema 2: a profile with
//   schema 1 data is opened by the new build, and every record, handle,
//   piece, bit and token is there, the old database is gone, and a migrated
//   download's file reads back byte for byte.
// - a full disk (the receiving profile on a small tmpfs, filled by a
//   ballast file) pauses a download with a clear message instead of failing
//   it, keeping every verified piece; with the ballast deleted, resume
//   completes it and the saved bytes match; IndexedDB is never let fill the
//   disk to its end. So does a disk that fills up
//   while a download writes its piece file: every piece its have record
//   marks reads back from the file, the worker leaves room for IndexedDB,
//   and resume fetches only the pieces that were not stored.
// - freeing: a finished download's "Free space" and a cancelled download
//   delete their pieces (no key left, navigator.storage.estimate() drops).
// - per-bundle caps: kept in the bundle's record, they hold before and
//   after a restart of the browser on the same profile.
// - pause, in Chromium and Firefox: a paused download moves no bytes for 10 s (its counters and the
//   server's web seed egress stay flat), then resume completes it; Firefox keeps the pieces where
//   the piece file worker's probe says (a piece file where sync access handles work).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { launchBrowser, launchChromium } from './lib/chromium.js';
import { SCREENSHOTS, WORK, builtExtension } from './lib/paths.js';
import { stored } from './lib/stored.js';
import { startFirefox } from './lib/webdriver.js';
import { sha256File, startServer, tempDir, testSettings, until } from './net/support.js';

/** Canonical bencoding of strings, byte arrays, integers, lists and dictionaries. */
function bencode(v) {
  if (typeof v === 'number') return Buffer.from(`i${v}e`);
  if (typeof v === 'string') v = Buffer.from(v);
  if (Buffer.isBuffer(v)) return Buffer.concat([Buffer.from(`${v.length}:`), v]);
  if (Array.isArray(v)) return Buffer.concat([Buffer.from('l'), ...v.map(bencode), Buffer.from('e')]);
  const keys = Object.keys(v).sort();
  return Buffer.concat([Buffer.from('d'), ...keys.flatMap((k) => [bencode(k), bencode(v[k])]), Buffer.from('e')]);
}

/** A single-file torrent of `data`: its bytes, info hash and pieces. */
function torrentOf(name, data, pieceLength) {
  const pieces = [];
  for (let o = 0; o < data.length; o += pieceLength) pieces.push(data.subarray(o, o + pieceLength));
  const info = {
    length: data.length,
    name,
    'piece length': pieceLength,
    pieces: Buffer.concat(pieces.map((p) => createHash('sha1').update(p).digest())),
  };
  const infoHash = createHash('sha1').update(bencode(info)).digest('hex');
  return { bytes: bencode({ announce: 'ws://127.0.0.1:9/announce', info }), infoHash, pieces };
}

const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const sha1Hex = (b) => createHash('sha1').update(b).digest('hex');

/**
 * The old build at `dir`: the real build's files under a lower version, plus
 * a page to write schema 1's databases from (its background starts no engine
 * host: nothing was running). A stand-in with other files (an empty classic
 * service worker) is no faithful old build: Chrome then kept refusing to
 * start the new build's worker for extension events after the relaunch
 * ("DidStartWorkerFail ...: 18" in chrome_debug.log), so the popup's
 * messages never reached the background and no engine host was made.
 */
function writeSeedExtension(dir) {
  rmSync(dir, { recursive: true, force: true });
  cpSync(builtExtension('chrome'), dir, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, version: '0.0.1' }));
  writeFileSync(join(dir, 'seed.html'), '<!doctype html><title>seed</title>');
}

/**
 * In an extension page: schema 1 exactly as the old build wrote it (the
 * JS store.js's `swarmdrop` v1 and the glue's `swarmdrop-engine` v1).
 */
async function seedSchema1({ records, handleId, pieces, have, upload }) {
  const open = (name, upgrade) =>
    new Promise((resolve, reject) => {
      const req = indexedDB.open(name, 1);
      req.onupgradeneeded = () => upgrade(req.result);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  const write = (db, stores, fn) =>
    new Promise((resolve, reject) => {
      const tx = db.transaction(stores, 'readwrite');
      fn(tx);
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    });
  const root = await navigator.storage.getDirectory();
  const handle = await root.getFileHandle('picked.bin', { create: true });
  const recordsDb = await open('swarmdrop', (db) => {
    db.createObjectStore('bundles', { keyPath: 'id' });
    db.createObjectStore('handles', { keyPath: 'id' });
  });
  await write(recordsDb, ['bundles', 'handles'], (tx) => {
    for (const r of records) {
      if (r.torrent) r.torrent = new Uint8Array(r.torrent);
      tx.objectStore('bundles').put(r);
    }
    tx.objectStore('handles').put({ id: handleId, handles: [handle] });
  });
  recordsDb.close();
  const engineDb = await open('swarmdrop-engine', (db) => {
    db.createObjectStore('pieces');
    db.createObjectStore('have');
    db.createObjectStore('uploads');
  });
  await write(engineDb, ['pieces', 'have', 'uploads'], (tx) => {
    pieces.data.forEach((p, i) => tx.objectStore('pieces').put(new Blob([new Uint8Array(p)]), [pieces.infoHash, i]));
    tx.objectStore('have').put({ pieces: have.pieces, bits: new Uint8Array(have.bits) }, pieces.infoHash);
    tx.objectStore('uploads').put({ server: upload.server, token: upload.token }, upload.infoHash);
  });
  engineDb.close();
  return (await indexedDB.databases()).map((d) => `${d.name} v${d.version}`).sort();
}

/** In an extension page: everything in the one database, for the checks. */
async function readSchema2({ receiveHash, sendHash, handleId }) {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open('swarmdrop-engine');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  // Never hold up the engine host's upgrade.
  db.onversionchange = () => db.close();
  const stores = [...db.objectStoreNames].sort();
  if (!stores.includes('bundles')) {
    db.close();
    return { version: db.version, stores, databases: (await indexedDB.databases()).map((d) => d.name).sort() };
  }
  const tx = db.transaction(stores, 'readonly');
  const get = (store, fn) =>
    new Promise((resolve, reject) => {
      const req = fn(tx.objectStore(store));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  const bundles = await get('bundles', (s) => s.getAll());
  const handles = await get('handles', (s) => s.get(handleId));
  const pieceKeys = await get('pieces', (s) => s.getAllKeys());
  const have = await get('have', (s) => s.get(receiveHash));
  const upload = await get('uploads', (s) => s.get(sendHash));
  const pieceBlobs = await get('pieces', (s) => s.getAll());
  // Pieces are stored as bytes (a Blob when written before 2026-11-21).
  const pieceBytes = await Promise.all(
    pieceBlobs.map(async (b) => [...(b instanceof Blob ? new Uint8Array(await b.arrayBuffer()) : new Uint8Array(b))])
  );
  db.close();
  return {
    version: db.version,
    stores,
    databases: (await indexedDB.databases()).map((d) => d.name).sort(),
    bundles: bundles.map((b) => ({ ...b, torrent: b.torrent ? [...b.torrent] : null })),
    handle: handles ? { count: handles.handles.length, kind: handles.handles[0]?.kind, name: handles.handles[0]?.name } : null,
    pieceKeys,
    pieceBytes,
    have: have ? { pieces: have.pieces, bits: [...have.bits] } : null,
    upload,
  };
}

test('schema 1 data (two databases) is upgraded into the one database of schema 2', {
  timeout: 180_000,
}, async (t) => {
  const dir = join(WORK, `upgrade-extension-${Date.now()}`);
  let profile = null;
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  // A finished download of three pieces (the last one short) and a paused send.
  const data = randomBytes(2 * 32768 + 1234);
  const received = torrentOf('old download.bin', data, 32768);
  const sent = torrentOf('old send.bin', randomBytes(40000), 32768);
  const receiveId = 'aaaaaaaa-0000-4000-8000-000000000001';
  const sendId = 'aaaaaaaa-0000-4000-8000-000000000002';
  const now = Date.now();
  const stats = { uploaded: 0, downloaded: data.length, fromServer: 0, fromPeers: data.length };
  const receiveRecord = {
    id: receiveId,
    role: 'receive',
    state: 'complete',
    phase: null,
    name: 'old download.bin',
    size: data.length,
    fileCount: 1,
    files: [{ path: 'old download.bin', length: data.length, offset: 0, type: 'application/octet-stream' }],
    totalLength: data.length,
    pieceLength: 32768,
    pieceCount: 3,
    infoHash: received.infoHash,
    torrent: [...received.bytes],
    magnet: null,
    link: `http://127.0.0.1:9/b/${received.infoHash}`,
    selection: ['old download.bin'],
    createdAt: now - 2000,
    updatedAt: now - 1000,
    stats,
  };
  const sendRecord = {
    id: sendId,
    role: 'send',
    state: 'paused',
    resumeState: 'sharing',
    phase: null,
    name: 'old send.bin',
    size: 40000,
    fileCount: 1,
    files: [{ path: 'old send.bin', length: 40000, offset: 0, type: 'application/octet-stream' }],
    totalLength: 40000,
    pieceLength: 32768,
    pieceCount: 2,
    infoHash: sent.infoHash,
    torrent: [...sent.bytes],
    magnet: 'magnet:?xt=urn:btih:' + sent.infoHash,
    link: `http://127.0.0.1:9/b/${sent.infoHash}`,
    createdAt: now - 3000,
    updatedAt: now - 3000,
    stats: { uploaded: 0, downloaded: 0, fromServer: 0, fromPeers: 0 },
  };
  const seed = {
    records: [receiveRecord, sendRecord],
    handleId: sendId,
    pieces: { infoHash: received.infoHash, data: received.pieces.map((p) => [...p]) },
    have: { pieces: 3, bits: [0b1110_0000] },
    upload: { infoHash: sent.infoHash, server: 'http://127.0.0.1:9', token: 'owner-token-1' },
  };

  // Schema 1, written by a stand-in of the old build at the same path (an
  // unpacked extension's id comes from its path: same id, same origin).
  writeSeedExtension(dir);
  {
    const old = await launchChromium(dir);
    profile = old.profile;
    const page = await old.context.newPage();
    await page.goto(`${old.base}seed.html`);
    const databases = await page.evaluate(seedSchema1, seed);
    assert.deepEqual(databases, ['swarmdrop v1', 'swarmdrop-engine v1']);
    await old.context.close();
  }

  // The new build, same path and profile.
  rmSync(dir, { recursive: true, force: true });
  cpSync(builtExtension('chrome'), dir, { recursive: true });
  const b = await launchChromium(dir, { profile });
  t.after(() => b.context.close());
  const popup = await b.context.newPage();
  await popup.goto(`${b.base}popup.html`);
  // On a hang: which extension contexts exist, and what Chrome logged of the
  // extension's service worker and pages.
  const diagnosis = async () => {
    const contexts = await popup
      .evaluate(async () => (await chrome.runtime.getContexts({})).map((c) => c.contextType).join(', '))
      .catch((e) => String(e));
    const log = (() => {
      try {
        return readFileSync(join(profile, 'chrome_debug.log'), 'utf8')
          .split('\n')
          .filter((l) => /service_worker|CONSOLE|offscreen/i.test(l))
          .slice(-20);
      } catch {
        return [];
      }
    })();
    return `contexts: ${contexts}; browser log:\n${log.join('\n')}`;
  };

  await t.test('the popup lists both transfers in the state they had', async () => {
    const cards = popup.locator('article.transfer');
    // The engine host starts (wasm compiled, database upgraded) on the popup's first call.
    await popup
      .waitForFunction(() => document.querySelectorAll('article.transfer').length === 2, null, {
        polling: 100,
        timeout: 90_000,
      })
      .catch(async (err) => {
        // What the popup was told (a blocked upgrade says so there).
        const notice = await popup.locator('#notice').textContent().catch(() => null);
        throw new Error(`${err.message}; the popup says: ${notice || '(nothing)'}; ${await diagnosis()}`);
      });
    const states = await cards.evaluateAll((a) => a.map((x) => [x.querySelector('.t-name')?.textContent ?? x.textContent, x.dataset.state]));
    assert.equal(states.length, 2);
    const byState = Object.fromEntries(states.map(([, s]) => [s, true]));
    assert.ok(byState.complete && byState.paused, `states ${JSON.stringify(states)}`);
    const text = await popup.locator('body').textContent();
    assert.match(text, /old download\.bin/);
    assert.match(text, /old send\.bin/);
  });

  await t.test('every record, handle, piece, bit and token is in schema 2, and the old database is gone', async () => {
    // The old database is deleted once the copy is committed.
    let seen;
    for (let i = 0; i < 50; i++) {
      seen = await popup.evaluate(readSchema2, { receiveHash: received.infoHash, sendHash: sent.infoHash, handleId: sendId });
      if (seen.version === 2 && !seen.databases.includes('swarmdrop')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(seen.databases, ['swarmdrop-engine'], 'one database left');
    assert.equal(seen.version, 2);
    assert.deepEqual(seen.stores, ['bundles', 'handles', 'have', 'pieces', 'uploads']);
    const recv = seen.bundles.find((r) => r.id === receiveId);
    const send = seen.bundles.find((r) => r.id === sendId);
    assert.ok(recv && send, 'both records migrated');
    assert.deepEqual(recv.torrent, receiveRecord.torrent, 'the download keeps its .torrent');
    assert.deepEqual(recv.selection, receiveRecord.selection);
    assert.equal(recv.infoHash, received.infoHash);
    assert.equal(send.state, 'paused');
    assert.equal(send.resumeState, 'sharing');
    assert.deepEqual(send.torrent, sendRecord.torrent);
    assert.deepEqual(seen.handle, { count: 1, kind: 'file', name: 'picked.bin' }, 'the send keeps its file handle');
    assert.deepEqual(
      seen.pieceKeys,
      [0, 1, 2].map((i) => [received.infoHash, i]),
    );
    seen.pieceBytes.forEach((p, i) => assert.equal(sha256(Buffer.from(p)), sha256(received.pieces[i]), `piece ${i}`));
    assert.deepEqual(seen.have, { pieces: 3, bits: [0b1110_0000] });
    assert.deepEqual(seen.upload, { server: 'http://127.0.0.1:9', token: 'owner-token-1' });
  });

  await t.test("the migrated download's file reads back byte for byte from its stored pieces", async () => {
    const bytes = await popup.evaluate(async (id) => {
      const { fetchFile } = await import('./js/common/channel.js');
      const blob = await fetchFile(id, 'old download.bin');
      return [...new Uint8Array(await blob.arrayBuffer())];
    }, receiveId);
    assert.equal(bytes.length, data.length);
    assert.equal(sha256(Buffer.from(bytes)), sha256(data));
  });
});

test('an upgrade blocked by a connection that stays open says so in the popup, and goes on once it closes', {
  timeout: 180_000,
}, async (t) => {
  const b = await launchChromium(builtExtension('chrome'));
  t.after(async () => {
    await b.context.close().catch(() => {});
    rmSync(b.profile, { recursive: true, force: true });
  });
  // A page of the extension's origin that holds schema 1's database open
  // and never closes it on versionchange (as an older build's page would).
  // Nothing has started the engine host yet: no transfer was running.
  const blocker = await b.context.newPage();
  await blocker.goto(`${b.base}manifest.json`);
  const version = await blocker.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const req = indexedDB.open('swarmdrop-engine', 1);
        req.onupgradeneeded = () => ['pieces', 'have', 'uploads'].forEach((s) => req.result.createObjectStore(s));
        req.onsuccess = () => {
          window.heldOpen = req.result;
          resolve(req.result.version);
        };
        req.onerror = () => reject(req.error);
      }),
  );
  assert.equal(version, 1);

  const popup = await b.context.newPage();
  await popup.goto(`${b.base}popup.html`);
  await popup.waitForFunction(() => /blocked/.test(document.querySelector('#notice')?.textContent), null, {
    polling: 100,
    timeout: 60_000,
  });
  const notice = await popup.locator('#notice').textContent();
  console.log(`the popup says: ${notice}`);
  assert.match(notice, /upgrade of swarmdrop-engine to version 2 is blocked/);
  assert.match(notice, /Close the other Swarmdrop tabs/);
  await popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'storage-popup-upgrade-blocked.png') });

  // The blocker goes: the host's next try upgrades, and the popup works.
  await blocker.evaluate(() => window.heldOpen.close());
  await popup.waitForFunction(() => document.querySelector('#notice').hidden, null, { polling: 100, timeout: 60_000 });
  assert.deepEqual(await call(popup, 'transfers.list'), []);
  const seen = await blocker.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const req = indexedDB.open('swarmdrop-engine');
        req.onsuccess = () => {
          const db = req.result;
          resolve({ version: db.version, stores: [...db.objectStoreNames].sort() });
          db.close();
        };
        req.onerror = () => reject(req.error);
      }),
  );
  assert.deepEqual(seen, { version: 2, stores: ['bundles', 'handles', 'have', 'pieces', 'uploads'] });
});

// ------------------------------------------------------------ network tests

/** Puts a bundle on the server through its API (as a sender's upload would). */
async function onServer(server, torrent) {
  const created = await fetch(`${server.url}/api/bundles`, { method: 'POST', body: torrent.bytes });
  assert.equal(created.status, 201, await created.clone().text());
  const { owner_token: token } = await created.json();
  for (const [i, piece] of torrent.pieces.entries()) {
    const put = await fetch(`${server.url}/api/bundles/${torrent.infoHash}/pieces/${i}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}` },
      body: piece,
    });
    assert.ok(put.ok, `piece ${i}: ${put.status} ${await put.text()}`);
  }
}

/** Runs the extension's message call in one of its pages. */
function call(page, type, fields = {}) {
  return page.evaluate(async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields), [type, fields]);
}

/** A Chromium with the extension pointed at `server`; its popup page. */
async function receiver(t, server, { downloadLimitKBps = 0, extension = builtExtension('chrome'), workDir = WORK } = {}) {
  const downloads = tempDir('storage-downloads-');
  const b = await launchBrowser({ extension, downloads, workDir });
  b.downloads = downloads;
  t.after(async () => {
    await b.context.close().catch(() => {});
    rmSync(b.profile, { recursive: true, force: true });
    rmSync(downloads, { recursive: true, force: true });
  });
  b.context.on('weberror', (e) => console.log(`[receiver] ${e.error()}`));
  const popup = await b.context.newPage();
  await popup.setViewportSize({ width: 440, height: 640 });
  await popup.goto(`${b.base}popup.html`);
  await popup.evaluate((settings) => chrome.storage.local.set({ settings }), testSettings(server, { downloadLimitKBps }));
  b.popup = popup;
  return b;
}

/** Opens a share link in the bundle page; resolves to the transfer id. */
async function open(b, link) {
  const page = await b.context.newPage();
  await page.goto(`${b.base}bundle.html?link=${encodeURIComponent(link)}`);
  await page.waitForURL(/bundle\.html\?id=/, { timeout: 60_000 });
  b.bundlePage = page;
  return new URL(page.url()).searchParams.get('id');
}

async function view(b, id) {
  const v = await call(b.popup, 'transfer.get', { id });
  if (v.state === 'error') throw new Error(`the transfer failed: ${v.error}`);
  return v;
}

/** Saves the bundle's one file from its bundle page and checks its SHA-256. */
async function saveAndCheck(b, name, expected) {
  const page = b.bundlePage;
  await page.reload();
  await page.locator('article.tile').first().waitFor();
  await page.locator('#save').click();
  await until(async () => /^Saved/.test((await page.locator('#message').textContent()) ?? ''), {
    timeoutMs: 60_000,
    what: 'the bundle page to save the file',
  });
  const path = join(b.downloads, name, name);
  await until(async () => (await sha256File(path).catch(() => null)) === expected, {
    timeoutMs: 60_000,
    what: `${path} saved with the original's SHA-256`,
  });
}

/** Why the full-disk tests need root. */
const NEEDS_ROOT = process.getuid?.() === 0 ? false : 'needs root: the receiving profile lives on a small tmpfs (mount -t tmpfs)';

/**
 * A receiver (as `receiver` makes it) whose profile lives on a small disk
 * of its own: a 192 MiB tmpfs, unmounted after the test. The build is the
 * real one (with unlimitedStorage, so the origin's quota is the disk's free
 * space). `b.disk.fill(room)` writes a ballast file that leaves `room`
 * bytes free, `b.disk.empty()` deletes the ballast (the user freeing
 * space), `b.disk.free()` is the free bytes now.
 */
async function onSmallDisk(t, server, options = {}) {
  const disk = join(WORK, `tmpfs-${Date.now()}`);
  mkdirSync(disk, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=192m', 'tmpfs', disk]);
  t.after(() => {
    execFileSync('umount', ['-l', disk]);
    rmSync(disk, { recursive: true, force: true });
  });
  const b = await receiver(t, server, { ...options, workDir: disk });
  const ballast = [];
  const free = () => {
    const s = statfsSync(disk);
    return s.bavail * s.bsize;
  };
  b.disk = {
    free,
    fill(room) {
      const path = join(disk, `ballast-${ballast.length}.bin`);
      writeFileSync(path, Buffer.alloc(Math.max(0, free() - room)));
      ballast.push(path);
    },
    empty() {
      for (const path of ballast.splice(0)) rmSync(path);
    },
  };
  return b;
}

/**
 * The download paused on a full disk, once its figures stay put: pieces whose
 * writes were under way when the disk filled up are counted as they land (a
 * piece file takes the pieces that fit, in order).
 */
async function pausedOnFullDisk(b, id) {
  await until(
    async () => {
      const v = await view(b, id);
      return v.state === 'paused' && v.diskFull ? v : null;
    },
    { timeoutMs: 120_000, what: 'the download to pause on a full disk' },
  );
  return until(
    async () => {
      const v = await view(b, id);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const again = await view(b, id);
      return again.progressBytes === v.progressBytes && again.state === 'paused' ? again : null;
    },
    { timeoutMs: 30_000, what: 'the paused download to settle' },
  );
}

test('a full disk pauses a download with a clear message; with room again it completes; freeing deletes its pieces', {
  timeout: 300_000,
  skip: NEEDS_ROOT,
}, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const data = randomBytes(24 * 1024 * 1024 + 4321);
  const torrent = torrentOf('disk full.bin', data, 256 * 1024);
  await onServer(server, torrent);
  // A really full disk: the receiving profile on a small tmpfs, filled up
  // by a ballast file but for room for about a third of the bundle.
  const b = await onSmallDisk(t, server);
  b.disk.fill(8 * 1024 * 1024);
  console.log(`tmpfs: ${b.disk.free()} bytes free for a bundle of ${data.length} bytes`);
  const id = await open(b, `${server.url}/b/${torrent.infoHash}`);
  let pausedAt = null;

  await t.test('the download pauses (not fails) with "Not enough disk space" in the popup and the bundle page', async () => {
    const paused = await pausedOnFullDisk(b, id);
    assert.match(paused.error, /^Not enough disk space: .*Free some space, then resume\.$/);
    assert.ok(paused.progress > 0 && paused.progress < 1, `paused part way (${paused.progress})`);
    pausedAt = paused;
    const card = b.popup.locator('article.transfer');
    await b.popup.waitForFunction(() => /Not enough disk space/.test(document.querySelector('article.transfer .t-error')?.textContent), null, {
      polling: 100,
      timeout: 10_000,
    });
    assert.equal(await card.getAttribute('data-state'), 'paused');
    await b.popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'storage-popup-disk-full.png') });
    await b.bundlePage.waitForFunction(() => /Not enough disk space/.test(document.querySelector('#message')?.textContent), null, {
      polling: 100,
      timeout: 10_000,
    });
    await b.bundlePage.screenshot({ path: join(SCREENSHOTS, 'storage-bundle-disk-full.png') });
    // IndexedDB stopped short of the disk's end: Chromium can find a
    // backing store that ran out of disk corrupt, and delete it with every
    // piece in it (seen with Chromium 148 before the engine kept room).
    const free = b.disk.free();
    console.log(`paused at ${(paused.progress * 100).toFixed(1)} %: ${free} bytes free on the disk`);
    assert.ok(free >= 2 * 1024 * 1024, `the pieces left room on the disk: ${free} bytes free`);
    // Every piece counted as verified is stored (nothing verified is lost).
    const kept = await b.popup.evaluate(stored, torrent.infoHash);
    assert.equal(kept.keys, Math.ceil(paused.progressBytes / (256 * 1024)), 'the stored pieces are the verified ones');
    // With less room than the bundle when its first pieces came, they went
    // to IndexedDB: a piece file counts against the quota up to its last
    // piece, holes included.
    assert.equal(kept.inFile, false, 'a bundle larger than the room left keeps its pieces in IndexedDB');
    b.disk.empty();
    const still = await view(b, id);
    assert.equal(still.state, 'paused', 'room coming back does not resume it by itself');
    assert.equal(still.progressBytes, paused.progressBytes, 'nothing was stored while paused');
    assert.equal((await b.popup.evaluate(stored, torrent.infoHash)).keys, kept.keys, 'the stored pieces are all still there');
  });

  await t.test('with room again, resume from the popup completes it and the saved bytes match', async () => {
    await b.popup.locator('article.transfer [data-action=resume]').click();
    // It carries on from what it had: no verified piece is fetched again.
    const resumed = await view(b, id);
    assert.ok(resumed.progressBytes >= pausedAt.progressBytes, 'resumed from the pieces it had');
    await until(async () => (await view(b, id)).state === 'complete', { timeoutMs: 180_000, what: 'the download to complete' });
    const done = await view(b, id);
    assert.equal(done.error, null, 'the disk-full message is gone');
    await saveAndCheck(b, 'disk full.bin', sha256(data));
  });

  await t.test('"Free space" after saving deletes its pieces: no key left and the usage drops', async () => {
    const full = await b.popup.evaluate(stored, torrent.infoHash);
    assert.equal(full.keys, torrent.pieces.length, 'every piece stored before freeing');
    const free = b.popup.locator('article.transfer [data-action=free]');
    await free.click();
    await free.click(); // the confirming second click
    await until(async () => (await view(b, id)).freed, { timeoutMs: 30_000, what: 'the download to be freed' });
    const freed = await until(
      async () => {
        const s = await b.popup.evaluate(stored, torrent.infoHash);
        return s.keys === 0 && full.usage - s.usage >= 0.9 * data.length ? s : null;
      },
      { timeoutMs: 60_000, what: 'the pieces to be deleted and the usage to drop' },
    );
    console.log(`usage ${full.usage} -> ${freed.usage} bytes after freeing ${data.length} bytes`);
    const v = await view(b, id);
    assert.equal(v.state, 'complete', 'the record stays, complete');
    await b.popup.waitForFunction(() => /space freed/.test(document.querySelector('article.transfer')?.textContent), null, {
      polling: 100,
      timeout: 10_000,
    });
  });
});

/**
 * In an extension page: the SHA-1 (hex) of every piece a bundle's have
 * record marks, read from its piece file while the engine host keeps it
 * open (a paused download writes nothing): `{marked: [piece...], sha1:
 * [hex...]}`, or null when its pieces are not in a piece file.
 */
async function filePieceSha1s({ infoHash, pieceLength }) {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open('swarmdrop-engine');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  db.onversionchange = () => db.close();
  const have = await new Promise((resolve, reject) => {
    const req = db.transaction('have', 'readonly').objectStore('have').get(infoHash);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  db.close();
  if (!have?.file) return null;
  const marked = [];
  for (let i = 0; i < have.pieces; i++) if (have.bits[i >> 3] & (0x80 >> (i & 7))) marked.push(i);
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('swarmdrop-pieces');
  const file = await (await dir.getFileHandle(infoHash)).getFile();
  const sha1 = [];
  for (const i of marked) {
    const bytes = await file.slice(i * pieceLength, (i + 1) * pieceLength).arrayBuffer();
    const hash = new Uint8Array(await crypto.subtle.digest('SHA-1', bytes));
    sha1.push([...hash].map((b) => b.toString(16).padStart(2, '0')).join(''));
  }
  return { marked, sha1 };
}

test('a disk that fills up while a download writes its piece file pauses it; every verified piece is in the file; with room again it completes without fetching them again', {
  timeout: 300_000,
  skip: NEEDS_ROOT,
}, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const pieceLength = 256 * 1024;
  const data = randomBytes(24 * 1024 * 1024 + 4321);
  const torrent = torrentOf('filled up.bin', data, pieceLength);
  await onServer(server, torrent);
  // Room for the whole bundle when it starts, so its pieces go to a piece
  // file; capped at 1.5 MB/s, so that the disk fills up while it runs.
  const b = await onSmallDisk(t, server, { downloadLimitKBps: 1500 });
  console.log(`tmpfs: ${b.disk.free()} bytes free for a bundle of ${data.length} bytes`);
  const id = await open(b, `${server.url}/b/${torrent.infoHash}`);
  const before = await until(
    async () => {
      const v = await view(b, id);
      return v.progress >= 0.25 ? v : null;
    },
    { timeoutMs: 120_000, what: '25 % downloaded' },
  );
  const early = await b.popup.evaluate(stored, torrent.infoHash);
  assert.equal(early.inFile, true, 'with room for the whole bundle, its pieces go to its piece file');
  assert.ok(early.keys > 0, 'pieces are stored in the piece file before the disk fills up');
  // Another program fills the disk but for 6 MB.
  b.disk.fill(6 * 1024 * 1024);
  console.log(`at ${(before.progress * 100).toFixed(1)} % (${early.keys} pieces stored): the disk filled up, ${b.disk.free()} bytes free`);

  let pausedAt = null;
  let kept = null;
  await t.test('the download pauses (not fails) with "Not enough disk space", and every verified piece is in the piece file', async () => {
    const paused = await pausedOnFullDisk(b, id);
    assert.match(paused.error, /^Not enough disk space: .*Free some space, then resume\.$/);
    assert.ok(paused.progressBytes >= before.progressBytes && paused.progress < 1, `paused part way (${paused.progress})`);
    // The piece file stops short of the last megabyte: IndexedDB, which
    // records the pieces (and every transfer), needs room to open its files.
    const free = b.disk.free();
    kept = await b.popup.evaluate(stored, torrent.infoHash);
    console.log(`paused at ${(paused.progress * 100).toFixed(1)} % (${paused.progressBytes} bytes), ${free} bytes free: ${JSON.stringify(kept)}`);
    assert.ok(free >= 512 * 1024, `the pieces left room for IndexedDB: ${free} bytes free`);
    assert.equal(kept.inFile, true, 'the pieces are in the piece file');
    assert.equal(kept.idbKeys, 0, 'no piece in IndexedDB');
    assert.equal(kept.keys, Math.ceil(paused.progressBytes / pieceLength), 'the pieces marked stored are the verified ones');
    // What the have record marks is in the file, byte for byte.
    const inFile = await b.popup.evaluate(filePieceSha1s, { infoHash: torrent.infoHash, pieceLength });
    assert.equal(inFile.marked.length, kept.keys);
    assert.deepEqual(
      inFile.sha1,
      inFile.marked.map((i) => sha1Hex(torrent.pieces[i])),
      'every piece marked stored reads back from the piece file intact',
    );
    pausedAt = paused;
    await b.popup.waitForFunction(() => /Not enough disk space/.test(document.querySelector('article.transfer .t-error')?.textContent), null, {
      polling: 100,
      timeout: 10_000,
    });
    assert.equal(await b.popup.locator('article.transfer').getAttribute('data-state'), 'paused');
  });

  await t.test('with room again, resume completes it without fetching the stored pieces again, and the saved bytes match', async () => {
    assert.ok(pausedAt, 'paused first');
    const served = (await server.stats()).bytes_served;
    b.disk.empty();
    await b.popup.locator('article.transfer [data-action=resume]').click();
    await until(async () => (await view(b, id)).state === 'complete', { timeoutMs: 180_000, what: 'the download to complete' });
    const done = await view(b, id);
    assert.equal(done.error, null, 'the disk-full message is gone');
    const after = (await server.stats()).bytes_served - served;
    const missing = data.length - pausedAt.progressBytes;
    console.log(`resumed: the server's web seed served ${after} bytes; ${missing} were not stored at the pause`);
    assert.ok(after <= missing, `fetched ${after} bytes after the resume, more than the ${missing} not stored`);
    const full = await b.popup.evaluate(stored, torrent.infoHash);
    assert.deepEqual(
      { inFile: full.inFile, idbKeys: full.idbKeys, keys: full.keys, fileBytes: full.fileBytes },
      { inFile: true, idbKeys: 0, keys: torrent.pieces.length, fileBytes: data.length },
      'every piece in the piece file',
    );
    await saveAndCheck(b, 'filled up.bin', sha256(data));
  });
});

test('cancelling a download deletes its pieces', { timeout: 240_000 }, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const data = randomBytes(12 * 1024 * 1024 + 99);
  const torrent = torrentOf('removed.bin', data, 256 * 1024);
  await onServer(server, torrent);
  const b = await receiver(t, server);
  const id = await open(b, `${server.url}/b/${torrent.infoHash}`);
  await until(async () => (await view(b, id)).state === 'complete', { timeoutMs: 120_000, what: 'the download to complete' });
  const full = await b.popup.evaluate(stored, torrent.infoHash);
  assert.equal(full.keys, torrent.pieces.length);
  // Every piece in the bundle's piece file, none in IndexedDB.
  assert.equal(full.inFile, true, 'the pieces are in the piece file');
  assert.equal(full.idbKeys, 0, 'no piece in IndexedDB');
  assert.equal(full.fileBytes, data.length, 'the piece file holds the whole bundle');
  const cancel = b.popup.locator('article.transfer [data-action=cancel]');
  await cancel.click();
  await cancel.click();
  await until(async () => (await call(b.popup, 'transfers.list')).length === 0, { timeoutMs: 30_000, what: 'the transfer to go' });
  const after = await until(
    async () => {
      const s = await b.popup.evaluate(stored, torrent.infoHash);
      return s.keys === 0 && full.usage - s.usage >= 0.9 * data.length ? s : null;
    },
    { timeoutMs: 60_000, what: 'the pieces to be deleted and the usage to drop' },
  );
  console.log(`usage ${full.usage} -> ${after.usage} bytes after removing ${data.length} bytes`);
});

test("a bundle's own caps are kept in its record and hold again after a restart", { timeout: 300_000 }, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const data = randomBytes(48 * 1024 * 1024 + 313);
  const torrent = torrentOf('capped.bin', data, 256 * 1024);
  await onServer(server, torrent);
  const extension = builtExtension('chrome');
  // A global cap of 4 MB/s keeps the download going while the bundle's caps
  // are set (uncapped, loopback brings the 48 MiB before the page is used);
  // the bundle's 1 MB/s is below it, so the rates below are the bundle's.
  const b = await receiver(t, server, { downloadLimitKBps: 4000 });
  const id = await open(b, `${server.url}/b/${torrent.infoHash}`);
  // Set on the bundle page, as the user does.
  const caps = { uploadKBps: 300, downloadKBps: 1000 };
  const page = b.bundlePage;
  await page.locator('#caps').waitFor();
  await page.fill('#cap-up', String(caps.uploadKBps));
  await page.fill('#cap-down', String(caps.downloadKBps));
  await page.click('#caps-set');
  await page.waitForFunction(() => /^Caps for this bundle: upload 300 KB\/s, download 1000 KB\/s\.$/.test(document.querySelector('#message')?.textContent), null, {
    polling: 100,
    timeout: 10_000,
  });
  assert.deepEqual((await view(b, id)).limits, caps);
  // Verified bytes over a window: the bundle's cap, not loopback's speed.
  const rate = async (page) => {
    const a = await call(page, 'transfer.get', { id });
    await new Promise((r) => setTimeout(r, 6000));
    const z = await call(page, 'transfer.get', { id });
    assert.ok(z.progress < 1, `still downloading at the end of the window (${z.progress})`);
    return (z.progressBytes - a.progressBytes) / 6;
  };
  const capBytes = caps.downloadKBps * 1000;
  // One piece of slack: progress counts whole verified pieces.
  const ceiling = 1.15 * capBytes + (256 * 1024) / 6;
  // Requests made before the caps (at loopback speed) land first.
  await new Promise((r) => setTimeout(r, 3000));
  const before = await rate(b.popup);
  console.log(`capped at ${capBytes} B/s: ${before.toFixed(0)} B/s before the restart`);
  assert.ok(before > 0.3 * capBytes && before <= ceiling, `rate ${before} B/s with a cap of ${capBytes} B/s`);

  // A clean restart on the same profile: the host comes back by itself.
  await b.context.close();
  const again = await launchChromium(extension, { downloads: b.downloads, profile: b.profile });
  t.after(() => again.context.close().catch(() => {}));
  const popup = await again.context.newPage();
  await popup.goto(`${again.base}popup.html`);
  const first = await until(async () => call(popup, 'transfer.get', { id }).catch(() => null), {
    timeoutMs: 60_000,
    what: 'the engine host to answer after the restart',
  });
  const restored = await until(
    async () => {
      const v = await call(popup, 'transfer.get', { id });
      return v.state === 'downloading' && v.progressBytes > first.progressBytes ? v : null;
    },
    { timeoutMs: 60_000, what: 'the download to run again after the restart' },
  );
  assert.deepEqual(restored.limits, caps, 'the caps came back with the record');
  const after = await rate(popup);
  console.log(`capped at ${capBytes} B/s: ${after.toFixed(0)} B/s after the restart`);
  assert.ok(after > 0.3 * capBytes && after <= ceiling, `rate ${after} B/s with a cap of ${capBytes} B/s after the restart`);

  // Lifting the caps is kept too.
  const lifted = await call(popup, 'transfer.limits', { id, uploadKBps: 0, downloadKBps: 0 });
  assert.deepEqual(lifted.limits, { uploadKBps: 0, downloadKBps: 0 });
  await until(async () => (await call(popup, 'transfer.get', { id })).state === 'complete', {
    timeoutMs: 120_000,
    what: 'the download to complete once uncapped',
  });
  await again.context.close();
});

test('Chromium: a paused download moves no bytes for 10 s, then resume completes it', { timeout: 300_000 }, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const data = randomBytes(30 * 1024 * 1024 + 777);
  const torrent = torrentOf('paused.bin', data, 256 * 1024);
  await onServer(server, torrent);
  // Capped at 2 MB/s so that the pause lands part way.
  const b = await receiver(t, server, { downloadLimitKBps: 2000 });
  const id = await open(b, `${server.url}/b/${torrent.infoHash}`);
  await until(async () => (await view(b, id)).progress >= 0.1, { timeoutMs: 120_000, what: '10 % downloaded' });
  await b.popup.locator('article.transfer [data-action=pause]').click();
  await b.popup.waitForFunction(() => document.querySelector('article.transfer')?.dataset.state === 'paused', null, {
    polling: 100,
    timeout: 10_000,
  });
  // Responses already on the wire land; then nothing moves.
  await new Promise((r) => setTimeout(r, 1500));
  const v1 = await view(b, id);
  const s1 = await server.stats();
  await new Promise((r) => setTimeout(r, 10_000));
  const v2 = await view(b, id);
  const s2 = await server.stats();
  console.log(
    `paused at ${(v1.progress * 100).toFixed(1)} %: downloaded ${v1.downloaded} -> ${v2.downloaded}, ` +
      `server egress ${s1.bytes_served} -> ${s2.bytes_served} over 10 s`,
  );
  assert.ok(v1.progress < 1, 'paused before the end');
  assert.equal(v2.downloaded, v1.downloaded, 'no byte downloaded while paused');
  assert.equal(v2.progressBytes, v1.progressBytes, 'no piece completed while paused');
  assert.equal(s2.bytes_served, s1.bytes_served, 'the server sent nothing while paused');
  assert.equal(v2.state, 'paused');
  await b.popup.locator('article.transfer [data-action=resume]').click();
  await until(async () => (await view(b, id)).state === 'complete', { timeoutMs: 180_000, what: 'the download to complete' });
  await saveAndCheck(b, 'paused.bin', sha256(data));
});

test('Firefox: a paused download moves no bytes for 10 s, then resume completes it', { timeout: 300_000 }, async (t) => {
  const ADDON_ID = 'swarmdrop@swarmdrop.dev';
  const UUID = '5e0c7a1d-2b3c-4d5e-8f60-718293a4b5c6';
  const BASE = `moz-extension://${UUID}/`;
  const server = await startServer();
  t.after(() => server.stop());
  const data = randomBytes(30 * 1024 * 1024 + 555);
  const torrent = torrentOf('paused in firefox.bin', data, 256 * 1024);
  await onServer(server, torrent);
  const downloads = tempDir('ff-storage-downloads-');
  const ff = await startFirefox({
    'extensions.webextensions.uuids': JSON.stringify({ [ADDON_ID]: UUID }),
    'browser.download.folderList': 2,
    'browser.download.dir': downloads,
    'browser.download.useDownloadDir': true,
    'browser.download.start_downloads_in_tmp_dir': false,
    'browser.download.always_ask_before_handling_new_types': false,
  });
  t.after(async () => {
    await ff.close().catch(() => {});
    rmSync(downloads, { recursive: true, force: true });
  });
  assert.equal(await ff.installAddon(builtExtension('firefox')), ADDON_ID);
  await ff.goto(`${BASE}popup.html`);
  await ff.execAsync(`(s) => browser.storage.local.set({ settings: s })`, [testSettings(server, { downloadLimitKBps: 2000 })]);
  const call = (type, fields = {}) =>
    ff.execAsync(`async (t, f) => (await import('${BASE}js/common/messages.js')).call(t, f)`, [type, fields]);
  await ff.goto(`${BASE}bundle.html?link=${encodeURIComponent(`${server.url}/b/${torrent.infoHash}`)}`);
  const id = await until(async () => new URL(await ff.url()).searchParams.get('id'), { timeoutMs: 60_000, what: 'the bundle page to open the link' });
  await ff.goto(`${BASE}popup.html`);
  const view = async () => {
    const v = await call('transfer.get', { id });
    if (v.state === 'error') throw new Error(`the transfer failed: ${v.error}`);
    return v;
  };
  await until(async () => (await view()).progress >= 0.1, { timeoutMs: 120_000, what: '10 % downloaded' });
  await ff.click(await ff.find('article.transfer [data-action=pause]'));
  await ff.until(`() => document.querySelector('article.transfer')?.dataset.state === 'paused'`);
  await new Promise((r) => setTimeout(r, 1500));
  const v1 = await view();
  const s1 = await server.stats();
  await new Promise((r) => setTimeout(r, 10_000));
  const v2 = await view();
  const s2 = await server.stats();
  console.log(
    `Firefox paused at ${(v1.progress * 100).toFixed(1)} %: downloaded ${v1.downloaded} -> ${v2.downloaded}, ` +
      `server egress ${s1.bytes_served} -> ${s2.bytes_served} over 10 s`,
  );
  assert.ok(v1.progress < 1, 'paused before the end');
  assert.equal(v2.downloaded, v1.downloaded, 'no byte downloaded while paused');
  assert.equal(v2.progressBytes, v1.progressBytes, 'no piece completed while paused');
  assert.equal(s2.bytes_served, s1.bytes_served, 'the server sent nothing while paused');
  await ff.click(await ff.find('article.transfer [data-action=resume]'));
  await until(async () => (await view()).state === 'complete', { timeoutMs: 180_000, what: 'the download to complete' });
  // The stored pieces read back as the original file.
  const digest = await ff.execAsync(
    `async (id, path) => {
      const blob = await (await import('${BASE}js/common/channel.js')).fetchFile(id, path);
      const d = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
      return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
    }`,
    [id, 'paused in firefox.bin'],
  );
  assert.equal(digest, sha256(data));
  // Where Firefox keeps the pieces: in the bundle's piece file where the
  // piece file worker's probe finds sync access handles (and the origin had
  // room for the bundle: its quota is gigabytes), else in IndexedDB.
  const probed = await ff.execAsync(
    `() => new Promise((resolve, reject) => {
      const worker = new Worker('${BASE}js/host/piece-worker.js', { type: 'module' });
      worker.onmessage = ({ data }) => { worker.terminate(); data.ok ? resolve(data.result) : reject(new Error(data.message)); };
      worker.onerror = (e) => reject(new Error('the piece file worker did not load: ' + e.message));
      worker.postMessage({ id: 1, op: 'probe' });
    })`,
  );
  const kept = await ff.execAsync(String(stored), [torrent.infoHash]);
  console.log(`Firefox: the piece file worker's probe says ${probed}; the pieces are kept ${JSON.stringify(kept)}`);
  if (probed) {
    assert.deepEqual(
      { inFile: kept.inFile, idbKeys: kept.idbKeys, keys: kept.keys, fileBytes: kept.fileBytes },
      { inFile: true, idbKeys: 0, keys: torrent.pieces.length, fileBytes: data.length },
      'every piece in the piece file, none in IndexedDB',
    );
  } else {
    assert.deepEqual({ inFile: kept.inFile, keys: kept.keys }, { inFile: false, keys: torrent.pieces.length }, 'every piece in IndexedDB');
  }
});

// ------------------------------------------------------------ pieces read back wrong

/**
 * In an extension page: overwrites the stored piece `piece` of a bundle with
 * other bytes of the same length, its have-bit kept (a damaged IndexedDB
 * entry, or damaged bytes in its piece file, with the engine host closed
 * first). Resolves to where it was.
 */
async function damagePiece({ infoHash, piece, pieceLength }) {
  const scramble = (bytes) => {
    for (let i = 0; i < bytes.length; i += 97) bytes[i] ^= 0x5a;
    return bytes;
  };
  const open = () =>
    new Promise((resolve, reject) => {
      const req = indexedDB.open('swarmdrop-engine');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  const haveDb = await open();
  const have = await new Promise((resolve, reject) => {
    const req = haveDb.transaction('have', 'readonly').objectStore('have').get(infoHash);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  haveDb.close();
  if (have?.file) {
    await chrome.offscreen.closeDocument().catch(() => {});
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('swarmdrop-pieces');
    const handle = await dir.getFileHandle(infoHash);
    for (let tries = 0; ; tries++) {
      try {
        const file = await handle.getFile();
        const at = piece * pieceLength;
        const bytes = scramble(new Uint8Array(await file.slice(at, at + pieceLength).arrayBuffer()));
        const w = await handle.createWritable({ keepExistingData: true });
        await w.write({ type: 'write', position: at, data: bytes });
        await w.close();
        return 'piece file';
      } catch (e) {
        if (tries > 50 || !['NoModificationAllowedError', 'InvalidStateError', 'NotReadableError'].includes(e?.name)) throw e;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
  const db = await open();
  db.onversionchange = () => db.close();
  const run = (mode, fn) =>
    new Promise((resolve, reject) => {
      const req = fn(db.transaction('pieces', mode).objectStore('pieces'));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  const stored = await run('readonly', (s) => s.get([infoHash, piece]));
  if (!stored) throw new Error(`piece ${piece} is not stored`);
  // Stored as bytes (a Blob when written before 2026-11-21); put back in the same form.
  const wasBlob = stored instanceof Blob;
  const bytes = scramble(wasBlob ? new Uint8Array(await stored.arrayBuffer()) : new Uint8Array(stored));
  await run('readwrite', (s) => s.put(wasBlob ? new Blob([bytes]) : bytes, [infoHash, piece]));
  db.close();
  return 'IndexedDB';
}

/**
 * In an extension page: the SHA-1 (hex) of a stored piece, or null when it is
 * not stored; a piece in a piece file is read with the engine host closed
 * (its worker holds the file locked).
 */
async function storedPieceSha1({ infoHash, piece, pieceLength }) {
  const open = () =>
    new Promise((resolve, reject) => {
      const req = indexedDB.open('swarmdrop-engine');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  const db = await open();
  db.onversionchange = () => db.close();
  const get = (store, key) =>
    new Promise((resolve, reject) => {
      const req = db.transaction(store, 'readonly').objectStore(store).get(key);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  const have = await get('have', infoHash);
  const value = have?.file ? null : await get('pieces', [infoHash, piece]);
  db.close();
  let bytes = null;
  if (have?.file) {
    if (!(have.bits[piece >> 3] & (0x80 >> (piece & 7)))) return null;
    await chrome.offscreen.closeDocument().catch(() => {});
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('swarmdrop-pieces');
    const handle = await dir.getFileHandle(infoHash);
    for (let tries = 0; bytes === null; tries++) {
      try {
        const at = piece * pieceLength;
        bytes = await (await handle.getFile()).slice(at, at + pieceLength).arrayBuffer();
      } catch (e) {
        if (tries > 50 || !['NoModificationAllowedError', 'InvalidStateError', 'NotReadableError'].includes(e?.name)) throw e;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } else if (value) {
    bytes = value instanceof Blob ? await value.arrayBuffer() : value;
  } else {
    return null;
  }
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-1', bytes));
  return [...hash].map((b) => b.toString(16).padStart(2, '0')).join('');
}


/**
 * A completed download of 12 MiB in 256 KiB pieces, whose stored piece
 * `pieceOf(torrent)` is then spoiled behind the engine's back by `spoil`
 * (run in the popup with `{infoHash, piece, pieceLength}`, resolving to where
 * it was). Saving the file must give the original bytes, having fetched that
 * piece, and only it, again from the server, and stored it right.
 */
async function savedDespiteSpoiledPiece(t, { name, pieceOf, spoil, what }) {
  const server = await startServer();
  t.after(() => server.stop());
  const pieceLength = 256 * 1024;
  const data = randomBytes(12 * 1024 * 1024 + 4321);
  const torrent = torrentOf(name, data, pieceLength);
  await onServer(server, torrent);
  const b = await receiver(t, server);
  const id = await open(b, `${server.url}/b/${torrent.infoHash}`);
  await until(async () => (await view(b, id)).state === 'complete', { timeoutMs: 120_000, what: 'the download to complete' });
  const piece = pieceOf(torrent);
  const right = sha1Hex(torrent.pieces[piece]);
  const length = torrent.pieces[piece].length;
  const where = await b.popup.evaluate(spoil, { infoHash: torrent.infoHash, piece, pieceLength });
  assert.notEqual(await b.popup.evaluate(storedPieceSha1, { infoHash: torrent.infoHash, piece, pieceLength }), right, 'the stored piece is spoiled');
  // A piece file is spoiled with the engine host closed: the figures to
  // compare with are the new host's (its session's bytes, fewer than the
  // bundle's), not those kept from before in the record.
  const before = await until(
    async () => {
      const v = await view(b, id);
      return v.state === 'complete' && v.fromServer < data.length ? v : null;
    },
    { timeoutMs: 60_000, what: 'the engine host to be back with the download' },
  );
  const served = (await server.stats()).bytes_served;

  await saveAndCheck(b, name, sha256(data));

  const after = await until(
    async () => {
      const v = await view(b, id);
      return v.state === 'complete' && v.damaged === 0 ? v : null;
    },
    { timeoutMs: 60_000, what: 'the download to be complete again' },
  );
  const refetched = (await server.stats()).bytes_served - served;
  console.log(
    `piece ${piece} (${length} bytes) ${what} in its ${where}: saving fetched it again, the server's web seed served ${refetched} bytes, ` +
      `the transfer's bytes from the server went ${before.fromServer} -> ${after.fromServer}`,
  );
  assert.ok(refetched >= length && refetched < length + pieceLength, `about the piece served again: ${refetched}`);
  assert.equal(after.fromServer - before.fromServer, length, 'the transfer fetched the piece again');
  assert.equal(
    await b.popup.evaluate(storedPieceSha1, { infoHash: torrent.infoHash, piece, pieceLength }),
    right,
    'the piece stored again is the right one',
  );
}

test('a stored piece damaged after the download is fetched again when the file is saved, and the saved file is intact', {
  timeout: 300_000,
}, (t) => savedDespiteSpoiledPiece(t, { name: 'damaged.bin', pieceOf: () => 17, spoil: damagePiece, what: 'damaged' }));

/**
 * In an extension page: makes the stored piece `piece` of a bundle lost, its
 * have-bit kept (what a browser that deletes data behind the engine's back
 * leaves): its IndexedDB entry deleted, or, in a piece file, the file cut
 * short at the piece's start, with the engine host closed first (`piece`
 * is then the last one, so only it is lost). Resolves to where it was.
 */
async function losePiece({ infoHash, piece, pieceLength }) {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open('swarmdrop-engine');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  db.onversionchange = () => db.close();
  const run = (store, mode, fn) =>
    new Promise((resolve, reject) => {
      const req = fn(db.transaction(store, mode).objectStore(store));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  const have = await run('have', 'readonly', (s) => s.get(infoHash));
  if (!have?.file) {
    if (!(await run('pieces', 'readonly', (s) => s.getKey([infoHash, piece])))) throw new Error(`piece ${piece} is not stored`);
    await run('pieces', 'readwrite', (s) => s.delete([infoHash, piece]));
    db.close();
    return 'IndexedDB';
  }
  db.close();
  await chrome.offscreen.closeDocument().catch(() => {});
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('swarmdrop-pieces');
  const handle = await dir.getFileHandle(infoHash);
  for (let tries = 0; ; tries++) {
    try {
      const w = await handle.createWritable({ keepExistingData: true });
      await w.truncate(piece * pieceLength);
      await w.close();
      return 'piece file';
    } catch (e) {
      if (tries > 50 || !['NoModificationAllowedError', 'InvalidStateError', 'NotReadableError'].includes(e?.name)) throw e;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

test('a stored piece lost after the download (its bytes gone, its have-bit kept) is fetched again when the file is saved, and the saved file is intact', {
  timeout: 300_000,
}, (t) =>
  savedDespiteSpoiledPiece(t, {
    name: 'lost.bin',
    // The last piece: a piece file cut at its start loses only it.
    pieceOf: (torrent) => torrent.pieces.length - 1,
    spoil: losePiece,
    what: 'lost',
  }));

/**
 * A completed download A, seeding, has its piece `pieceOf(torrent)` spoiled
 * behind the engine's back by `spoil` (an extension-page function resolving
 * to where the piece was), then a new engine host (nothing of the download
 * in its memory: every piece served is read back from storage). B, knowing
 * only the info hash, downloads from A alone: checks that B completes from
 * peers only with the right bytes, that A fetched that piece, and only it,
 * again from the server's web seed, and that A stored it right.
 */
async function servedDespiteSpoiledPiece(t, { name, pieceOf, spoil, what }) {
  const server = await startServer();
  t.after(() => server.stop());
  const pieceLength = 256 * 1024;
  const data = randomBytes(12 * 1024 * 1024 + 4321);
  const torrent = torrentOf(name, data, pieceLength);
  await onServer(server, torrent);
  const a = await receiver(t, server);
  const aid = await open(a, `${server.url}/b/${torrent.infoHash}`);
  await until(async () => (await view(a, aid)).state === 'complete', { timeoutMs: 120_000, what: "A's download to complete" });
  const piece = pieceOf(torrent);
  const length = torrent.pieces[piece].length;
  const where = await a.popup.evaluate(spoil, { infoHash: torrent.infoHash, piece, pieceLength });
  // (A piece file was spoiled with the host closed already.)
  await a.popup.evaluate(() => chrome.offscreen.closeDocument().catch(() => {}));
  await until(async () => (await view(a, aid)).state === 'complete', { timeoutMs: 60_000, what: "A's download to come back" });
  const served = (await server.stats()).bytes_served;

  const b = await receiver(t, server);
  const page = await b.context.newPage();
  await page.goto(`${b.base}bundle.html?magnet=${encodeURIComponent(`magnet:?xt=urn:btih:${torrent.infoHash}&dn=${name}`)}`);
  await page.waitForURL(/bundle\.html\?id=/, { timeout: 60_000 });
  b.bundlePage = page;
  const bid = new URL(page.url()).searchParams.get('id');
  const got = await until(async () => ((await view(b, bid)).state === 'complete' ? view(b, bid) : null), {
    timeoutMs: 180_000,
    what: "B's download from A to complete",
  });
  const refetched = (await server.stats()).bytes_served - served;
  const av = await view(a, aid);
  console.log(
    `piece ${piece} (${length} bytes) ${what} in A's ${where}: B got ${got.fromPeers} bytes from peers and ${got.fromServer} from the server; ` +
      `A fetched ${refetched} bytes again from the server's web seed, and is ${av.state}`,
  );
  assert.equal(got.fromServer, 0, 'B downloaded from A only');
  assert.ok(refetched >= length && refetched < length + pieceLength, `A fetched about the one piece again: ${refetched}`);
  assert.equal(
    await a.popup.evaluate(storedPieceSha1, { infoHash: torrent.infoHash, piece, pieceLength }),
    sha1Hex(torrent.pieces[piece]),
    "A's piece stored again is the right one",
  );
  await saveAndCheck(b, name, sha256(data));
}

test('a damaged stored piece is never served to a peer: the seeding download fetches it again and the peer completes intact', {
  timeout: 360_000,
}, (t) => servedDespiteSpoiledPiece(t, { name: 'served.bin', pieceOf: () => 23, spoil: damagePiece, what: 'damaged' }));

test('a stored piece lost while seeding (its bytes gone, its have-bit kept) is fetched again when a peer asks, and the peer completes intact', {
  timeout: 360_000,
}, (t) =>
  servedDespiteSpoiledPiece(t, {
    name: 'served-lost.bin',
    // The last piece: a piece file cut at its start loses only it.
    pieceOf: (torrent) => torrent.pieces.length - 1,
    spoil: losePiece,
    what: 'lost',
  }));
