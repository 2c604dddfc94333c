// Memory while saving (issue 5): a 1 GiB single-file bundle is put on the
// server on loopback (its .torrent made here, its pieces uploaded through the
// bundle API), a Chromium with the extension downloads it from the server's
// web seed, then saves it from the bundle page. The proportional set size of
// all the browser's processes is sampled through the save; the test prints
// the peak next to the file size and asserts the growth over the pre-save
// baseline stays far below the file size; the saved file's SHA-256 must be
// the original's.
//
// SWARMDROP_E2E_SAVE_MB sets another size (MiB).
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launchChromium } from './lib/chromium.js';
import { sampleMemory } from './lib/memory.js';
import { builtExtension } from './lib/paths.js';
import { sha256File, startServer, tempDir, testSettings, until } from './net/support.js';

const MiB = 1024 * 1024;
const SIZE = Number(process.env.SWARMDROP_E2E_SAVE_MB ?? 1024) * MiB;
const PIECE = autoPieceLength(SIZE);
const NAME = 'one-big-file.bin';
/** The save may grow the browser's memory by at most this share of the file. */
const MAX_GROWTH = 0.25;

let server;
let browser;
const scratch = [];

/** src/engine/lengths.rs `auto_piece_length`: the whole bytes of total / 2048 rounded up to a power of two, 16 KiB to 16 MiB. */
function autoPieceLength(total) {
  const target = Math.floor(total / 2048);
  let len = 16 * 1024;
  while (len < 16 * MiB && len < target) len *= 2;
  return len;
}

/** Piece `i` of the file: AES-256-CTR of zeros, so the bytes are random-looking and made again on demand. */
function piece(i) {
  const length = Math.min(PIECE, SIZE - i * PIECE);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(i, 0);
  const cipher = createCipheriv('aes-256-ctr', Buffer.alloc(32, 7), iv);
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

function bencode(v) {
  if (typeof v === 'number') return Buffer.from(`i${v}e`);
  if (Buffer.isBuffer(v)) return Buffer.concat([Buffer.from(`${v.length}:`), v]);
  if (typeof v === 'string') return bencode(Buffer.from(v));
  const keys = Object.keys(v).sort();
  return Buffer.concat([Buffer.from('d'), ...keys.flatMap((k) => [bencode(k), bencode(v[k])]), Buffer.from('e')]);
}

/** Makes the .torrent, creates the bundle on the server and uploads every piece. */
async function putBundle() {
  const count = Math.ceil(SIZE / PIECE);
  const hashes = [];
  const whole = createHash('sha256');
  for (let i = 0; i < count; i++) {
    const bytes = piece(i);
    hashes.push(createHash('sha1').update(bytes).digest());
    whole.update(bytes);
  }
  const torrent = bencode({ info: { length: SIZE, name: NAME, 'piece length': PIECE, pieces: Buffer.concat(hashes) } });
  const created = await fetch(`${server.url}/api/bundles`, { method: 'POST', body: torrent });
  assert.equal(created.status, 201, await created.clone().text());
  const { info_hash: infoHash, owner_token: token } = await created.json();
  let next = 0;
  const uploader = async () => {
    for (let i = next++; i < count; i = next++) {
      const r = await fetch(`${server.url}/api/bundles/${infoHash}/pieces/${i}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}` },
        body: piece(i),
      });
      assert.equal(r.status, 201, `piece ${i}: ${await r.text()}`);
    }
  };
  await Promise.all([uploader(), uploader(), uploader(), uploader()]);
  assert.equal((await server.bundle(infoHash)).complete, true);
  return { infoHash, sha256: whole.digest('hex') };
}

function call(page, type, fields = {}) {
  return page.evaluate(
    async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields),
    [type, fields],
  );
}

const mb = (bytes) => (bytes / 1e6).toFixed(0);

before(async () => {
  server = await startServer();
  scratch.push(server.dataDir);
});

after(async () => {
  await browser?.context.close().catch(() => {});
  server?.stop();
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

test(`saving a ${SIZE / MiB} MiB file keeps the browser's memory far below the file size`, { timeout: 1_200_000 }, async () => {
  const t0 = Date.now();
  const { infoHash, sha256 } = await putBundle();
  console.log(`server: ${mb(SIZE)} MB bundle (${PIECE / 1024} KiB pieces) made and uploaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const downloads = tempDir('downloads-save-');
  browser = await launchChromium(builtExtension('chrome'), { downloads, label: 'save' });
  scratch.push(browser.profile, downloads);
  const popup = await browser.context.newPage();
  await popup.goto(`${browser.base}popup.html`);
  await popup.evaluate((settings) => chrome.storage.local.set({ settings }), testSettings(server));
  const page = await browser.context.newPage();
  const t1 = Date.now();
  await page.goto(`${browser.base}bundle.html?link=${encodeURIComponent(`${server.url}/b/${infoHash}`)}`);
  await page.waitForURL(/bundle\.html\?id=/, { timeout: 60_000 });
  const id = new URL(page.url()).searchParams.get('id');
  const got = await until(
    async () => {
      const t = await call(popup, 'transfer.get', { id });
      if (t.state === 'error') throw new Error(t.error);
      return t.state === 'complete' ? t : null;
    },
    { timeoutMs: 900_000, everyMs: 1000, what: 'the download to complete' },
  );
  const downloadMs = Date.now() - t1;
  console.log(`download: ${mb(SIZE)} MB from the web seed in ${(downloadMs / 1000).toFixed(1)} s (${(SIZE / 1e3 / downloadMs).toFixed(1)} MB/s)`);

  await page.reload();
  await page.locator('article.tile').first().waitFor();
  await new Promise((r) => setTimeout(r, 3000)); // let the page and the engine settle
  const baseline = sampleMemory(browser.profile);
  await new Promise((r) => setTimeout(r, 2000));
  const base = baseline.stop();

  const saved = join(downloads, got.name, NAME);
  const sampler = sampleMemory(browser.profile);
  const t2 = Date.now();
  await page.locator('#save').click();
  await until(async () => /Saved|Not saved|downloaded yet/.test((await page.locator('#message').textContent()) ?? ''), {
    timeoutMs: 300_000,
    what: 'the bundle page to hand the file to the downloads API',
  });
  const text = await page.locator('#message').textContent();
  assert.match(text, /^Saved 1 file to your downloads folder/, text);
  const state = await until(
    async () => {
      const [d] = await popup.evaluate(() => chrome.downloads.search({ orderBy: ['-startTime'], limit: 1 }));
      if (d?.state === 'interrupted') throw new Error(`the download was interrupted: ${d.error}`);
      return d?.state === 'complete' ? d : null;
    },
    { timeoutMs: 600_000, what: 'the download of the saved file to complete' },
  );
  const saveMs = Date.now() - t2;
  const mem = sampler.stop();
  const growth = mem.peak - base.last;
  console.log(
    `save: ${mb(SIZE)} MB file written in ${(saveMs / 1000).toFixed(1)} s (${(SIZE / 1e3 / saveMs).toFixed(1)} MB/s) to ${state.filename}; ` +
      `browser PSS (${mem.processes} processes): before ${mb(base.last)} MB, peak ${mb(mem.peak)} MB, ` +
      `growth ${mb(growth)} MB = ${((growth / SIZE) * 100).toFixed(1)}% of the file (${mem.samples} samples)`,
  );
  assert.equal(state.filename, saved);
  assert.equal(statSync(saved).size, SIZE);
  assert.equal(await sha256File(saved), sha256, 'the saved file is the original');
  assert.ok(growth < MAX_GROWTH * SIZE, `memory grew by ${mb(growth)} MB while saving ${mb(SIZE)} MB`);
});
