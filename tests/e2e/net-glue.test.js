// The network glue (SwarmHost) in plain pages, without the extension: each
// peer is a Chromium with its own fresh profile, the server runs on
// loopback. It proves the transfer itself: tracker, WebRTC, web seed,
// upload, storage, and the bytes saved.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { join } from 'node:path';
import {
  BUNDLE_BYTES,
  ROOT,
  launchHarness,
  randomFiles,
  startServer,
  startStatic,
  tempDir,
  until,
} from './net/support.js';

const WASM = join(ROOT, 'target/wasm-bindgen');
let server;
let site;
let files;
const browsers = [];

async function peer(label) {
  const b = await launchHarness(site.url, label);
  browsers.push(b);
  await b.page.evaluate((o) => window.harness.start(o), { trackers: [] });
  return b;
}

async function send(a, { upload }) {
  await a.page.setInputFiles(
    '#files',
    files.map((f) => f.path),
  );
  return a.page.evaluate((o) => window.harness.send(o), {
    name: 'glue bundle',
    trackers: [server.tracker],
    server: server.url,
    upload,
  });
}

async function completed(b, infoHash, what) {
  return until(
    async () => {
      const t = await b.page.evaluate((h) => window.harness.transfer(h), infoHash);
      return t?.completed && t.progress && t.progress.haveBytes === t.progress.totalBytes ? t : null;
    },
    { timeoutMs: 300_000, what },
  );
}

/** Each file saves intact, through OPFS and through the streamed fallback without it. */
async function assertSameFiles(b, infoHash) {
  for (const opfs of [true, false]) {
    const got = await b.page.evaluate(([h, o]) => window.harness.fileHashes(h, { opfs: o }), [infoHash, opfs]);
    for (const f of files) {
      const how = opfs ? 'saved through OPFS' : 'saved without OPFS';
      assert.deepEqual(got[f.name], { size: f.size, sha256: f.sha256 }, `${f.name} arrived intact, ${how}`);
    }
  }
}

before(async () => {
  server = await startServer();
  site = await startStatic({ '/wasm/': WASM, '/': join(ROOT, 'tests/e2e/net') });
  const a = Math.floor(BUNDLE_BYTES * 0.5) + 12_345;
  const b = Math.floor(BUNDLE_BYTES * 0.3) - 7;
  files = await randomFiles(tempDir('files-'), [a, b, BUNDLE_BYTES - a - b]);
});

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  site?.close();
  server?.stop();
});

test('B downloads from A and the server at once; the bytes match; C then downloads from the server alone', async () => {
  const a = await peer('A');
  const started = Date.now();
  const { infoHash } = await send(a, { upload: true });
  await until(async () => (await server.bundle(infoHash)).info_hash, { what: 'the bundle on the server' });
  const b = await peer('B');
  await b.page.evaluate((link) => window.harness.download(link), `${server.url}/b/${infoHash}`);
  const tb = await completed(b, infoHash, 'B to complete');
  const seconds = (Date.now() - started) / 1000;
  await assertSameFiles(b, infoHash);
  const p = tb.progress;
  console.log(
    `B: ${(BUNDLE_BYTES / 1e6).toFixed(0)} MB in ${seconds.toFixed(1)} s ` +
      `(${(BUNDLE_BYTES / 1e6 / seconds).toFixed(1)} MB/s); from peers ${p.downloadedPeers}, from the server ${p.downloadedServer}`,
  );
  assert.ok(p.downloadedPeers > 0, 'B received bytes from A');
  assert.ok(p.downloadedServer > 0, 'B received bytes from the server');

  const ta = await until(
    async () => {
      const t = await a.page.evaluate((h) => window.harness.transfer(h), infoHash);
      return t.upload?.phase === 'done' ? t : null;
    },
    { what: "A's upload to complete" },
  );
  assert.equal(ta.upload.piecesDone, ta.upload.piecesTotal);
  assert.ok(ta.progress.uploadedPeers > 0, 'A served B');
  // Only the server is left.
  await a.close();
  await b.close();

  const before = (await server.stats()).bytes_served;
  const c = await peer('C');
  const t0 = Date.now();
  await c.page.evaluate((link) => window.harness.download(link), `${server.url}/b/${infoHash}`);
  const tc = await completed(c, infoHash, 'C to complete');
  await assertSameFiles(c, infoHash);
  const egress = (await server.stats()).bytes_served - before;
  console.log(
    `C: from the server alone in ${((Date.now() - t0) / 1000).toFixed(1)} s; server egress ${egress} bytes; ` +
      `from peers ${tc.progress.downloadedPeers}, from the server ${tc.progress.downloadedServer}`,
  );
  assert.equal(tc.progress.downloadedServer, BUNDLE_BYTES);
});
