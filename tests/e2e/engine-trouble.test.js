// When the engine is in trouble, end to end in Chromium with the built
// extension:
// - the background never answers (its service worker is held in the
//   debugger): after SILENT_MS the popup and the bundle page say "The
//   Swarmdrop engine is not answering…" with a "Try again" button, and the
//   answer that comes late is still shown;
// - another page of the extension upgrades the database (`versionchange`
//   closes the engine host's connection): the host opens it again for the
//   next operation, so a send still works and its record is written; when
//   the database is now at a newer version than this build knows, the
//   operation fails with a message telling the user to reload.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { launchBrowser } from './lib/chromium.js';
import { SCREENSHOTS, WORK, builtExtension } from './lib/paths.js';
import { storedRecord, until } from './net/support.js';

/** Runs the extension's message call in one of its pages. */
function call(page, type, fields = {}) {
  return page.evaluate(async ([type, fields]) => (await import('./js/common/messages.js')).call(type, fields), [type, fields]);
}

/**
 * A DevTools session on another target of the browser (the extension's
 * service worker), reached through `page`'s session: Playwright gives no
 * session of its own to a service worker.
 */
async function targetSession(context, page, matches) {
  const cdp = await context.newCDPSession(page);
  const { targetInfos } = await cdp.send('Target.getTargets');
  const target = targetInfos.find(matches);
  assert.ok(target, `a target among ${targetInfos.map((t) => `${t.type} ${t.url}`).join(', ')}`);
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: target.targetId, flatten: false });
  let next = 0;
  const waiting = new Map();
  cdp.on('Target.receivedMessageFromTarget', (e) => {
    if (e.sessionId !== sessionId) return;
    const m = JSON.parse(e.message);
    if (m.id !== undefined && waiting.has(m.id)) {
      waiting.get(m.id)(m);
      waiting.delete(m.id);
    }
  });
  return {
    send(method, params = {}) {
      const id = ++next;
      const answer = new Promise((r) => waiting.set(id, r));
      cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) });
      return answer;
    },
    detach: () => cdp.send('Target.detachFromTarget', { sessionId }).catch(() => {}),
  };
}

async function browser(t, label) {
  const b = await launchBrowser({ extension: builtExtension('chrome'), label, workDir: WORK });
  t.after(async () => {
    await b.context.close().catch(() => {});
    rmSync(b.profile, { recursive: true, force: true });
  });
  b.context.on('weberror', (e) => console.log(`[${label}] ${e.error()}`));
  const popup = await b.context.newPage();
  await popup.setViewportSize({ width: 440, height: 640 });
  await popup.goto(`${b.base}popup.html`);
  // Peer-to-peer only, no tracker: nothing here needs the network.
  await popup.evaluate(() =>
    chrome.storage.local.set({
      settings: { trackers: [], iceServers: [], uploadLimitKBps: 0, downloadLimitKBps: 0, dropZone: true, uploadToServer: false },
    }),
  );
  b.popup = popup;
  return b;
}

const notice = (page) => page.locator('#notice').evaluate((n) => (n.hidden ? null : n.textContent));

test('the popup and the bundle page say when the engine does not answer, offer to try again, and show the late answer', {
  timeout: 180_000,
}, async (t) => {
  const b = await browser(t, 'silent');
  const { popup } = b;
  await popup.locator('#empty').waitFor({ timeout: 60_000 });
  assert.equal(await notice(popup), null, 'no notice while the engine answers');

  // The background stops answering: its worker is paused in the debugger.
  const worker = await targetSession(b.context, popup, (t) => t.type === 'service_worker' && t.url.endsWith('/background.js'));
  t.after(() => worker.detach());
  await worker.send('Debugger.enable');
  await worker.send('Debugger.pause');
  const paused = Date.now();
  const page = await b.context.newPage();
  await page.goto(`${b.base}bundle.html?id=no-such-bundle`);

  await popup.waitForFunction(() => /not answering/.test(document.querySelector('#notice')?.textContent), null, {
    polling: 100,
    timeout: 40_000,
  });
  const waited = (Date.now() - paused) / 1000;
  const said = await notice(popup);
  console.log(`after ${waited.toFixed(1)} s the popup says: ${said}`);
  assert.match(said, /^The Swarmdrop engine is not answering\./);
  // Longer than the host's own 10 s wait for a blocked upgrade, which it reports itself.
  assert.ok(waited >= 14, `the popup waited ${waited} s before saying so`);
  await popup.locator('body').screenshot({ path: join(SCREENSHOTS, 'popup-engine-silent.png') });
  await page.waitForFunction(() => /not answering/.test(document.querySelector('#message')?.textContent), null, {
    polling: 100,
    timeout: 40_000,
  });
  assert.match(await page.locator('#message').textContent(), /^The Swarmdrop engine is not answering\..*Try again$/);

  // "Try again" asks again, and says so.
  await popup.locator('#notice button[data-action="retry"]').click();
  assert.equal(await notice(popup), 'Asking the Swarmdrop engine again…');

  // The background answers again: the answers that were waiting land.
  await worker.send('Debugger.resume');
  await worker.send('Debugger.disable');
  await popup.waitForFunction(() => document.querySelector('#notice').hidden, null, { polling: 100, timeout: 30_000 });
  assert.equal(await popup.locator('#empty').isVisible(), true, 'the list is shown');
  await page.waitForFunction(() => !/not answering/.test(document.querySelector('#message')?.textContent), null, {
    polling: 100,
    timeout: 30_000,
  });
  const late = await page.locator('#message').textContent();
  console.log(`the bundle page then says: ${late}`);
  assert.match(late, /^No such transfer/, 'the late answer (there is no such bundle) is shown');
});

/** In an extension page: opens the engine's database at `version`; `commit` false aborts the upgrade. */
function upgradeFromPage(page, version, commit) {
  return page.evaluate(
    ([version, commit]) =>
      new Promise((resolve) => {
        const req = indexedDB.open('swarmdrop-engine', version);
        let upgraded = false;
        req.onblocked = () => resolve({ blocked: true });
        req.onupgradeneeded = () => {
          upgraded = true;
          if (!commit) req.transaction.abort();
        };
        req.onsuccess = () => {
          const db = req.result;
          const v = db.version;
          db.close();
          resolve({ upgraded, version: v });
        };
        req.onerror = () => resolve({ upgraded, error: req.error?.name });
      }),
    [version, commit],
  );
}

test("another page's upgrade closes the host's database: the next operation opens it again; a newer version says to reload", {
  timeout: 180_000,
}, async (t) => {
  const b = await browser(t, 'versionchange');
  const { popup } = b;
  await popup.locator('#empty').waitFor({ timeout: 60_000 });
  const file = join(b.profile, 'small.bin');
  writeFileSync(file, Buffer.alloc(300_000, 7));

  // An upgrade another page starts and then aborts: the host's connection
  // closes on versionchange (else the upgrade would be blocked), and the
  // database stays at the version this build knows.
  assert.deepEqual(await upgradeFromPage(popup, 3, false), { upgraded: true, error: 'AbortError' });

  // A send now writes its record through a connection opened again.
  await popup.locator('#pick-files').setInputFiles([file]);
  const sent = await until(
    async () => {
      const list = await call(popup, 'transfers.list');
      return list.find((x) => x.role === 'send' && x.state === 'sharing') ?? null;
    },
    { timeoutMs: 60_000, what: `the send to be shared (popup notice: ${await notice(popup)})` },
  );
  assert.equal(await notice(popup), null, 'no error shown');
  assert.deepEqual(await storedRecord(popup, sent.id, ['id', 'state']), { id: sent.id, state: 'sharing', version: 2 });
  // Pausing writes the record too.
  await call(popup, 'transfer.pause', { id: sent.id });
  assert.equal((await storedRecord(popup, sent.id, ['id', 'state'])).state, 'paused');

  // Now another page upgrades it past this build's version: the host's next
  // write fails with a message telling the user what to do.
  assert.deepEqual(await upgradeFromPage(popup, 3, true), { upgraded: true, version: 3 });
  await assert.rejects(call(popup, 'transfer.resume', { id: sent.id }), (err) => {
    console.log(`resuming then fails with: ${err.message}`);
    assert.match(err.message, /upgraded swarmdrop-engine past version 2/);
    assert.match(err.message, /reload the extension \(or restart the browser\)/);
    return true;
  });
});
