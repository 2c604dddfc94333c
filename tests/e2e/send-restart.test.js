// A send across a restart of the browser on the same profile, end to end in
// Chromium with the built extension and the server on loopback:
// - the "upload to the server" choice is the send's own, kept in its
//   record: a send made peer-to-peer only does not upload after a restart,
//   though the settings now say to;
// - the upload figures saved before the restart are not shown as current:
//   the popup says the upload is resuming until the server has answered
//   (the server is held with SIGSTOP meanwhile), then the upload goes on
//   from what the server holds and completes;
// - the server is the send's own too: a send made with server 1 goes on
//   uploading to server 1 after a restart, though the settings now name
//   server 2; its share link still names server 1, and it is announced on
//   server 1's tracker only.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { launchBrowser } from './lib/chromium.js';
import { SCREENSHOTS, builtExtension } from './lib/paths.js';
import { WORK, randomFiles, startServer, storedRecord, tempDir, testSettings, until } from './net/support.js';

/** Runs the extension's message call in one of its pages. */
function call(page, type, fields = {}) {
  return page.evaluate(async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields), [type, fields]);
}

/** Chromium with the extension on `profile` (a fresh one if not given); its popup page. */
async function start(t, label, profile) {
  const b = await launchBrowser({ extension: builtExtension('chrome'), label, workDir: WORK, profile });
  t.after(() => b.context.close().catch(() => {}));
  b.context.on('weberror', (e) => console.log(`[${label}] ${e.error()}`));
  const popup = await b.context.newPage();
  await popup.setViewportSize({ width: 440, height: 640 });
  await popup.goto(`${b.base}popup.html`);
  b.popup = popup;
  return b;
}

const setSettings = (page, settings) => page.evaluate((settings) => chrome.storage.local.set({ settings }), settings);

/** Picks `files` in the popup; resolves to the send's view once it is shared. */
async function send(b, files) {
  await b.popup.locator('#pick-files').setInputFiles(files.map((f) => f.path));
  return until(
    async () => (await call(b.popup, 'transfers.list')).find((x) => x.role === 'send' && x.state === 'sharing' && x.infoHash) ?? null,
    { timeoutMs: 120_000, what: 'the send to be shared' },
  );
}

/** After a restart: waits for the send to ask for its files, picks them again, and waits until it shares. */
async function pickAgain(b, id, files) {
  const waiting = await until(
    async () => {
      const v = await call(b.popup, 'transfer.get', { id }).catch(() => null);
      return v?.state === 'needs-files' && v.access === 'pick' ? v : null;
    },
    { timeoutMs: 60_000, what: 'the send to ask for its files after the restart' },
  );
  await b.popup.locator(`article[data-id="${id}"] input[type=file]`).setInputFiles(files.map((f) => f.path));
  await until(async () => (await call(b.popup, 'transfer.get', { id })).state === 'sharing', {
    timeoutMs: 120_000,
    what: 'the send to share again with the files picked again',
  });
  return waiting;
}

const onServer = async (server, infoHash) => (await fetch(`${server.url}/api/bundles/${infoHash}`)).status;

/** Servers for one test, stopped (and let go if held) and their directories removed when it ends. */
async function servers(t, count) {
  const list = [];
  for (let i = 0; i < count; i++) list.push(await startServer());
  for (const s of list) s.held = false;
  t.after(async () => {
    for (const s of list) if (s.held) hold(s, false);
    for (const s of list) s.stop();
    // A server still writing what it was sent would refill its directory.
    const exited = (s) => (s.child.exitCode !== null || s.child.signalCode !== null ? null : new Promise((r) => s.child.once('exit', r)));
    await Promise.all(list.map(exited));
    for (const s of list) rmSync(s.dataDir, { recursive: true, force: true });
  });
  return list;
}

/** Stops (SIGSTOP) or lets go (SIGCONT) a server's process. */
function hold(server, on) {
  server.child.kill(on ? 'SIGSTOP' : 'SIGCONT');
  server.held = on;
}

/**
 * Picks `files` in the popup of `b`, whose settings name `server`, and holds
 * the server once part of the bundle is on it; resolves to the send and its
 * upload figures as the popup shows them last, 2.5 s later.
 */
async function sendUntilHeld(b, server, files, what) {
  await b.popup.locator('#pick-files').setInputFiles(files.map((f) => f.path));
  const sent = await until(
    async () => {
      const s = (await call(b.popup, 'transfers.list')).find((x) => x.role === 'send');
      const up = s?.upload;
      if (up?.phase === 'done') throw new Error('the upload ended before the server could be held');
      if (up && up.bytesDone > 0) {
        hold(server, true);
        return s;
      }
      return null;
    },
    { timeoutMs: 180_000, everyMs: 20, what: `part of the bundle to be on ${what}` },
  );
  await new Promise((r) => setTimeout(r, 2500));
  const before = (await call(b.popup, 'transfer.get', { id: sent.id })).upload;
  console.log(`held ${what} at ${before.bytesDone} of ${before.bytesTotal} bytes (${before.phase})`);
  assert.ok(before.bytesDone > 0 && before.bytesDone < before.bytesTotal, 'part of the bundle, not all, was on the server');
  return { sent, before };
}

/** Waits until the send `id` in `b` has uploaded everything; its view. */
function uploadDone(b, id, timeoutMs, what) {
  return until(
    async () => {
      const v = await call(b.popup, 'transfer.get', { id });
      return v.upload?.phase === 'done' ? v : null;
    },
    { timeoutMs, what },
  );
}

test('a send made peer-to-peer only stays so after a restart, though the settings now say to upload', { timeout: 300_000 }, async (t) => {
  const [server] = await servers(t, 1);
  const dir = tempDir('send-choice-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = await randomFiles(dir, [3 * 1024 * 1024 + 17]);

  const a = await start(t, 'choice');
  await setSettings(a.popup, testSettings(server, { uploadToServer: false }));
  const sent = await send(a, files);
  assert.deepEqual(await storedRecord(a.popup, sent.id, ['uploadToServer', 'state']), { uploadToServer: false, state: 'sharing', version: 2 });
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(await onServer(server, sent.infoHash), 404, 'nothing was uploaded before the restart');

  // The user turns uploads on for the sends to come, then the browser restarts.
  await setSettings(a.popup, testSettings(server, { uploadToServer: true }));
  await a.context.close();
  const again = await start(t, 'choice-again', a.profile);
  t.after(() => rmSync(a.profile, { recursive: true, force: true }));
  await pickAgain(again, sent.id, files);
  // Long enough for an upload to have created the bundle on the server.
  await new Promise((r) => setTimeout(r, 5000));
  const v = await call(again.popup, 'transfer.get', { id: sent.id });
  assert.equal(v.state, 'sharing');
  assert.equal(v.upload, null, 'no upload figures: the send does not upload');
  assert.equal(await onServer(server, sent.infoHash), 404, 'the server never got the bundle');
  assert.equal((await storedRecord(again.popup, sent.id, ['uploadToServer'])).uploadToServer, false);

  // A send made now follows the settings: it uploads.
  const otherDir = tempDir('send-choice-later-');
  t.after(() => rmSync(otherDir, { recursive: true, force: true }));
  const other = await randomFiles(otherDir, [1024 * 1024 + 5]);
  await again.popup.locator('#pick-files').setInputFiles(other.map((f) => f.path));
  const uploaded = await until(
    async () =>
      (await call(again.popup, 'transfers.list')).find((x) => x.id !== sent.id && x.role === 'send' && x.upload?.phase === 'done') ??
      null,
    { timeoutMs: 120_000, what: 'a send made after the change to upload' },
  );
  assert.equal(await onServer(server, uploaded.infoHash), 200);
});

test('after a restart the popup shows the upload as resuming until the server answers, then it goes on', { timeout: 420_000 }, async (t) => {
  const [server] = await servers(t, 1);
  const dir = tempDir('send-figures-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = await randomFiles(dir, [160 * 1024 * 1024]);

  const a = await start(t, 'figures');
  await setSettings(a.popup, testSettings(server));
  // What the popup shows last before the restart (saved with the record).
  const { sent, before } = await sendUntilHeld(a, server, files, 'the server');
  assert.equal(before.phase, 'uploading');
  await a.context.close();

  const again = await start(t, 'figures-again', a.profile);
  t.after(() => rmSync(a.profile, { recursive: true, force: true }));
  const waiting = await pickAgain(again, sent.id, files);
  assert.equal(waiting.upload?.current, false, 'figures from before the restart are marked as not current');
  // Sharing again; the upload asks the server what it holds, and waits.
  const card = again.popup.locator(`article[data-id="${sent.id}"] .t-line span.grow`).first();
  const resuming = 'Resuming the upload: asking the server what it holds…';
  await until(async () => (await card.textContent()) === resuming, {
    timeoutMs: 30_000,
    what: `the popup to say "${resuming}" (it says "${await card.textContent()}")`,
  });
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await card.textContent(), resuming, 'no figures are shown as current while the server has not answered');
  }
  await again.popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'popup-upload-resuming.png') });

  // The server answers: the upload goes on from what it holds, and completes.
  hold(server, false);
  const done = await uploadDone(again, sent.id, 180_000, 'the upload to complete after the restart');
  console.log(`after the restart: ${done.upload.bytesSent} bytes put, the server lacked ${before.bytesTotal - before.bytesDone} at most`);
  assert.ok(done.upload.bytesSent <= done.upload.bytesTotal - before.bytesDone, 'what the server held was not put again');
  await until(async () => /On the server/.test(await card.textContent()), { timeoutMs: 10_000, what: 'the popup to say it is on the server' });
});

/** The SHA-256 (hex) and length of what `url` answers. */
async function fetchedDigest(url) {
  const res = await fetch(url);
  assert.equal(res.status, 200, `GET ${url}`);
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of res.body) {
    hash.update(chunk);
    length += chunk.length;
  }
  return { sha256: hash.digest('hex'), length };
}

test('a send keeps the server it was made with: after a restart it uploads there, though the settings name another', { timeout: 420_000 }, async (t) => {
  const [first, second] = await servers(t, 2);
  const dir = tempDir('send-server-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = await randomFiles(dir, [128 * 1024 * 1024 + 4099]);

  const a = await start(t, 'server');
  await setSettings(a.popup, testSettings(first));
  const { sent, before } = await sendUntilHeld(a, first, files, 'server 1');
  const made = await storedRecord(a.popup, sent.id, ['server', 'link']);

  // The user now names server 2 in the settings, then the browser restarts.
  await setSettings(a.popup, testSettings(second));
  await a.context.close();
  const again = await start(t, 'server-again', a.profile);
  t.after(() => rmSync(a.profile, { recursive: true, force: true }));
  await pickAgain(again, sent.id, files);
  hold(first, false);
  const done = await uploadDone(again, sent.id, 180_000, 'the upload to complete after the restart');
  console.log(`after the restart: ${done.upload.bytesSent} bytes put, server 1 lacked ${before.bytesTotal - before.bytesDone} at most`);
  // Server 2 got nothing.
  assert.equal(await onServer(second, sent.infoHash), 404, 'server 2 never got the bundle');
  const stats = await second.stats();
  assert.equal(stats.bundles, 0, 'server 2 holds no bundle');
  assert.equal(stats.bytes_received, 0, 'server 2 received no bytes of a bundle');
  assert.deepEqual({ swarms: stats.swarms, peers: stats.peers }, { swarms: 0, peers: 0 }, "the send is not announced on server 2's tracker");
  // It is on server 1's, where its link sends receivers.
  assert.ok((await first.stats()).peers >= 1, "the send is announced on server 1's tracker");
  // Server 1 holds the whole bundle: its web seed serves the file byte for byte.
  const bundle = await first.bundle(sent.infoHash);
  assert.equal(bundle.complete, true, 'server 1 holds every piece');
  const file = bundle.files.find((f) => f.path.endsWith(files[0].name));
  assert.ok(file, `server 1 lists ${files[0].name}`);
  const url = `${bundle.web_seed}${encodeURIComponent(bundle.name)}/${file.path.split('/').map(encodeURIComponent).join('/')}`;
  assert.deepEqual(await fetchedDigest(url), { sha256: files[0].sha256, length: files[0].size });
  assert.ok(done.upload.bytesSent <= done.upload.bytesTotal - before.bytesDone, 'what server 1 held was not put again');
  // The popup names the send's server, and its link is the one given out.
  assert.equal(done.link, `${first.url}/b/${sent.infoHash}`);
  assert.equal(done.server, first.url);
  const line = again.popup.locator(`article[data-id="${sent.id}"] .t-line span.grow`).first();
  await until(async () => (await line.getAttribute('title')) === `Server: ${first.url}`, {
    timeoutMs: 10_000,
    what: `the popup to name server 1 (it says "${await line.getAttribute('title')}")`,
  });
  assert.deepEqual(made, { server: first.url, link: `${first.url}/b/${sent.infoHash}`, version: 2 }, 'the record kept server 1 from the start');
  assert.equal((await storedRecord(again.popup, sent.id, ['server'])).server, first.url);
});

/** Removes `field` from a stored record, with the engine host closed first so that it cannot write the record back. */
async function dropStoredField(b, id, field) {
  await b.popup.close();
  return b.worker.evaluate(
    async ([id, field]) => {
      await chrome.offscreen.closeDocument().catch(() => {});
      const db = await new Promise((resolve, reject) => {
        const req = indexedDB.open('swarmdrop-engine');
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      try {
        return await new Promise((resolve, reject) => {
          const tx = db.transaction('bundles', 'readwrite');
          const store = tx.objectStore('bundles');
          const get = store.get(id);
          get.onsuccess = () => {
            const r = get.result;
            const had = r[field];
            delete r[field];
            store.put(r);
            tx.oncomplete = () => resolve({ had, link: r.link });
          };
          tx.onerror = () => reject(tx.error);
        });
      } finally {
        db.close();
      }
    },
    [id, field],
  );
}

test('a send from before the record kept its server goes on with the server its share link names', { timeout: 300_000 }, async (t) => {
  const [first, second] = await servers(t, 2);
  const dir = tempDir('send-old-server-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = await randomFiles(dir, [6 * 1024 * 1024 + 11]);

  const a = await start(t, 'old-server');
  await setSettings(a.popup, testSettings(first));
  await a.popup.locator('#pick-files').setInputFiles(files.map((f) => f.path));
  const sent = await until(
    async () => (await call(a.popup, 'transfers.list')).find((x) => x.role === 'send' && x.upload?.phase === 'done') ?? null,
    { timeoutMs: 120_000, what: 'the send to be on server 1' },
  );
  // The settings now name server 2, and the record is made as the version
  // before this one wrote it: without `server`.
  await setSettings(a.popup, testSettings(second));
  assert.deepEqual(await dropStoredField(a, sent.id, 'server'), { had: first.url, link: `${first.url}/b/${sent.infoHash}` });
  await a.context.close();

  const again = await start(t, 'old-server-again', a.profile);
  t.after(() => rmSync(a.profile, { recursive: true, force: true }));
  assert.equal((await storedRecord(again.popup, sent.id, ['server'])).server, undefined, 'the record has no server');
  await pickAgain(again, sent.id, files);
  const done = await uploadDone(again, sent.id, 120_000, 'the upload to be done after the restart');
  assert.equal(done.server, first.url);
  assert.equal(done.link, `${first.url}/b/${sent.infoHash}`);
  assert.equal(done.upload.bytesSent, 0, 'server 1 had it all: nothing was put again');
  assert.equal(await onServer(second, sent.infoHash), 404, 'server 2 never got the bundle');
  const stats = await second.stats();
  assert.deepEqual(
    { bundles: stats.bundles, bytes_received: stats.bytes_received, swarms: stats.swarms },
    { bundles: 0, bytes_received: 0, swarms: 0 },
    'server 2 got nothing',
  );
  assert.equal((await storedRecord(again.popup, sent.id, ['server'])).server, first.url, 'the server found is kept in the record');
});
