// Support for the network end-to-end tests: the server on loopback, a static
// file server, random files, browsers with fresh profiles.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from '../lib/chromium.js';
import { WORK as PROCESS_WORK } from '../lib/paths.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const WORK = join(PROCESS_WORK, 'net');
mkdirSync(WORK, { recursive: true });

/** Bundles of ~60 MB by default; SWARMDROP_E2E_BIG=1 makes every bundle 300 MB. */
export const BIG = process.env.SWARMDROP_E2E_BIG === '1';
export const BUNDLE_BYTES = BIG ? 300 * 1024 * 1024 : 60 * 1024 * 1024;
/** The issue's 300 MB: the bundle A sends to B (with the server) and C, in every run. */
export const ISSUE_BUNDLE_BYTES = 300 * 1024 * 1024;

export function tempDir(prefix) {
  return mkdtempSync(join(WORK, prefix));
}

/** A free TCP port on loopback. */
export function freePort() {
  return new Promise((res, rej) => {
    const s = createNetServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function waitForPort(port, child, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/api/stats`);
      if (r.ok) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** The server binary built by build.sh (release preferred). */
export function serverBinary() {
  if (process.env.SWARMDROP_SERVER) return process.env.SWARMDROP_SERVER;
  for (const p of ['target/release/swarmdrop-server', 'target/debug/swarmdrop-server']) {
    const full = join(ROOT, p);
    if (existsSync(full)) return full;
  }
  throw new Error('swarmdrop-server is not built: run ./build.sh (or cargo build -p swarmdrop-server)');
}

/** Starts the availability server on a free loopback port with a fresh data directory. */
export async function startServer() {
  const port = await freePort();
  const dataDir = tempDir('server-');
  const log = createWriteStream(join(dataDir, 'server.log'));
  const child = spawn(serverBinary(), ['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  await waitForPort(port, child);
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    tracker: `ws://127.0.0.1:${port}/announce`,
    dataDir,
    /** The server's process (a test may stop it with SIGSTOP to hold its answers). */
    child,
    async stats() {
      return (await fetch(`${url}/api/stats`)).json();
    },
    async bundle(infoHash) {
      return (await fetch(`${url}/api/bundles/${infoHash}`)).json();
    },
    stop() {
      child.kill('SIGTERM');
    },
  };
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };

/** Serves `dirs` (URL prefix → directory) on a free loopback port. */
export async function startStatic(dirs) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    for (const [prefix, dir] of Object.entries(dirs)) {
      if (!path.startsWith(prefix)) continue;
      const file = join(dir, path.slice(prefix.length));
      if (!file.startsWith(dir)) break;
      try {
        const body = await readFile(file);
        res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
        res.end(body);
        return;
      } catch {
        break;
      }
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** Writes `sizes.length` files of random bytes; returns [{name, path, size, sha256}]. */
export async function randomFiles(dir, sizes) {
  const out = [];
  for (const [i, size] of sizes.entries()) {
    const name = `file-${i + 1}.bin`;
    const path = join(dir, name);
    const hash = createHash('sha256');
    const stream = createWriteStream(path);
    const chunk = 4 * 1024 * 1024;
    for (let done = 0; done < size; done += chunk) {
      const bytes = randomBytes(Math.min(chunk, size - done));
      hash.update(bytes);
      if (!stream.write(bytes)) await new Promise((r) => stream.once('drain', r));
    }
    await new Promise((r, j) => stream.end((e) => (e ? j(e) : r())));
    out.push({ name, path, size, sha256: hash.digest('hex') });
  }
  return out;
}

/** SHA-256 of a file on disk. */
export function sha256File(path) {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => h.update(d))
      .on('end', () => res(h.digest('hex')))
      .on('error', rej);
  });
}

/**
 * Clicks Save on `page` (a bundle page already showing the bundle), checks the
 * page reports the files saved, then waits until each of `files` is on disk at
 * `downloads/name/(f.savedAs ?? f.name)` with the original's `f.sha256`.
 * `screenshot`, if given, is a path for a screenshot taken once the page has
 * answered (before anything is asserted).
 */
export async function saveIntact(page, { label, downloads, name, files, timeoutMs = 120_000, screenshot }) {
  await page.locator('#save').click();
  const message = page.locator('#message');
  await until(async () => /Saved|downloaded yet/.test((await message.textContent()) ?? ''), {
    timeoutMs,
    what: `${label}'s bundle page to save the files`,
  });
  const text = await message.textContent();
  if (screenshot) await page.screenshot({ path: screenshot });
  assert.match(text, /^Saved \d+ files? to your downloads folder/, text);
  for (const f of files) {
    const path = join(downloads, name, f.savedAs ?? f.name);
    const sha = await until(
      async () => {
        try {
          return (await sha256File(path)) === f.sha256 ? f.sha256 : null;
        } catch {
          return null;
        }
      },
      { timeoutMs, what: `${path} to be saved with the original's SHA-256` },
    );
    assert.equal(sha, f.sha256, `${f.name} saved intact`);
  }
}

/**
 * The extension settings a browser test stores: `server` as the availability
 * server and the only tracker, no STUN server (loopback needs none), no rate
 * caps, the drop zone on, uploads to the server on; `overrides` replaces any
 * field (`testSettings(server, { uploadToServer: false })`).
 */
export function testSettings(server, overrides = {}) {
  return {
    serverUrl: server.url,
    trackers: [],
    uploadLimitKBps: 0,
    downloadLimitKBps: 0,
    dropZone: true,
    uploadToServer: true,
    iceServers: [],
    ...overrides,
  };
}

/** Chromium with a fresh profile (no extension): a page of the glue harness. */
export async function launchHarness(url, label) {
  const b = await launchBrowser({ label, workDir: WORK });
  const { page } = b;
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') console.log(`[${label}] ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`[${label}] page error: ${e.message}`));
  await page.goto(`${url}/harness.html`);
  await page.evaluate(() => window.harness.ready);
  return { ...b, close: () => b.context.close() };
}

/**
 * Polls `fn` until it returns a truthy value or `timeoutMs` passes; `what`
 * names the wait in the error (a function: asked when it times out, so it
 * can say what was seen last).
 */
export async function until(fn, { timeoutMs = 120_000, everyMs = 250, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function fileSize(path) {
  return statSync(path).size;
}

export { tmpdir };

/**
 * In an extension page: the `fields` of the bundle record `id` as stored in
 * the engine's database, with the database's `version` (null when there is no
 * such record).
 */
export function storedRecord(page, id, fields) {
  return page.evaluate(
    ([id, fields]) =>
      new Promise((resolve, reject) => {
        const req = indexedDB.open('swarmdrop-engine');
        req.onsuccess = () => {
          const db = req.result;
          db.onversionchange = () => db.close();
          const get = db.transaction('bundles', 'readonly').objectStore('bundles').get(id);
          get.onsuccess = () => {
            db.close();
            const r = get.result;
            resolve(r ? { ...Object.fromEntries(fields.map((f) => [f, r[f]])), version: db.version } : null);
          };
          get.onerror = () => reject(get.error);
        };
        req.onerror = () => reject(req.error);
      }),
    [id, fields],
  );
}
