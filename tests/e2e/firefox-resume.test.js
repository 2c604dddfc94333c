// A send in Firefox ESR that survives a crash: Firefox keeps no file system
// handles, so after a restart on the same profile the send waits for its
// files, the user picks them again on the send page (drop.html?reattach=<id>),
// and they are checked against the piece hashes before a byte is served: a
// copy with other bytes is named and refused, the originals let it go on.
//
// Firefox is killed with SIGKILL (a crash, not a quit) and started again on
// the same profile; the add-on is installed for good (unsigned, which Firefox
// ESR allows with xpinstall.signatures.required off), since a temporary
// add-on does not outlive its browser.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DIST } from './lib/paths.js';
import { startFirefox } from './lib/webdriver.js';
import { randomFiles, startServer, tempDir, until } from './net/support.js';

const ADDON_ID = 'swarmdrop@swarmdrop.dev';
const UUID = '7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f';
const BASE = `moz-extension://${UUID}/`;

/** The store package of the Firefox build (./build.sh makes it from dist/firefox). */
function builtXpi() {
  const { version } = JSON.parse(readFileSync(join(DIST, 'firefox/manifest.json'), 'utf8'));
  const path = join(DIST, `swarmdrop-firefox-${version}.zip`);
  if (!existsSync(path)) throw new Error(`${path} is not built: run ./build.sh first`);
  return path;
}

test('Firefox: a send killed with its browser waits for its files; picked again they are checked against the piece hashes (a changed copy is named) and the send goes on', {
  timeout: 600_000,
}, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const files = await randomFiles(tempDir('ff-resume-files-'), [1_500_000, 2_500_017, 700_001]);
  const profile = tempDir('ff-resume-profile-');
  const prefs = {
    'extensions.webextensions.uuids': JSON.stringify({ [ADDON_ID]: UUID }),
    'xpinstall.signatures.required': false,
    'media.peerconnection.ice.obfuscate_host_addresses': false,
  };
  let ff = await startFirefox(prefs, { profile });
  t.after(() => ff.close().catch(() => {}));
  assert.equal(await ff.installAddon(builtXpi(), { temporary: false }), ADDON_ID);
  const call = (type, fields = {}) =>
    ff.execAsync(`async (t, f) => (await import('${BASE}js/common/messages.js')).call(t, f)`, [type, fields]);

  await ff.goto(`${BASE}popup.html`);
  await ff.execAsync(`(s) => browser.storage.local.set({ settings: s })`, [
    { serverUrl: server.url, trackers: [], uploadLimitKBps: 0, downloadLimitKBps: 0, dropZone: true, uploadToServer: false },
  ]);
  await ff.goto(`${BASE}drop.html`);
  await ff.sendKeys(await ff.find('#pick-files'), files.map((f) => f.path).join('\n'));
  const sent = await until(
    async () => {
      const list = await call('transfers.list');
      const s = list.find((x) => x.role === 'send');
      if (s?.state === 'error') throw new Error(s.error);
      return s?.state === 'sharing' && s.link ? s : null;
    },
    { timeoutMs: 120_000, what: 'the send to be shared' },
  );
  // The record is written when sharing starts; leave IndexedDB a moment to reach the disk.
  await new Promise((r) => setTimeout(r, 2_000));
  await ff.kill();

  ff = await startFirefox(prefs, { profile });
  await ff.goto(`${BASE}popup.html`);
  const waiting = await until(
    async () => {
      const v = await call('transfer.get', { id: sent.id });
      return v.state === 'needs-files' && v.access ? v : null;
    },
    { timeoutMs: 60_000, what: 'the send to wait for its files after the restart' },
  );
  assert.equal(waiting.access, 'pick', 'Firefox keeps no handles: the files are picked again');
  const button = await ff.until(
    `(id) => { const b = document.querySelector('article.transfer[data-id="' + id + '"] button[data-action="regain"]');
      return b && !b.hidden ? b.textContent : null; }`,
    [sent.id],
  );
  console.log(`Firefox after the restart: ${waiting.state}, the popup offers "${button}"`);
  assert.match(button, /Choose the files again/);

  // A copy where the middle file has other bytes (same names, same sizes): named, refused.
  const copies = tempDir('ff-resume-copies-');
  const copied = files.map((f) => {
    const dir = join(copies, 'x');
    mkdirSync(dir, { recursive: true });
    const path = join(dir, f.name);
    copyFileSync(f.path, path);
    return path;
  });
  const fh = await openFile(copied[1], 'r+');
  await fh.write(Buffer.alloc(1000, 0x5a), 0, 1000, 1_000_000);
  await fh.close();
  await ff.goto(`${BASE}drop.html?reattach=${encodeURIComponent(sent.id)}`);
  await ff.sendKeys(await ff.find('#pick-files'), copied.join('\n'));
  const refused = await until(
    async () => {
      const v = await call('transfer.get', { id: sent.id });
      return v.state === 'needs-files' && v.changedFiles && v.phase !== 'checking' ? v : null;
    },
    { timeoutMs: 60_000, what: 'the changed copy to be checked' },
  );
  console.log(`Firefox, a changed copy picked: ${refused.error}`);
  assert.deepEqual(refused.changedFiles, [files[1].name]);
  assert.match(refused.error, new RegExp(`^"${files[1].name}" changed since this bundle was made: it is not shared`));

  // The originals: checked, and the send goes on with its info hash.
  await ff.goto(`${BASE}drop.html?reattach=${encodeURIComponent(sent.id)}`);
  await ff.sendKeys(await ff.find('#pick-files'), files.map((f) => f.path).join('\n'));
  const back = await until(
    async () => {
      const v = await call('transfer.get', { id: sent.id });
      if (v.state === 'error') throw new Error(v.error);
      return v.state === 'sharing' ? v : null;
    },
    { timeoutMs: 60_000, what: 'the send to go on with the original files' },
  );
  console.log(`Firefox, the originals picked: ${back.state}, ${back.infoHash}`);
  assert.equal(back.infoHash, sent.infoHash);
  assert.equal(back.changedFiles, null);
});
