// The file channel (js/common/channel.js, as built into dist/chrome), tested
// in Node with a stand-in background: requests are acknowledged, a request
// no host took (posted while an idle host was being closed) is posted again
// to the next host, and a repeated request id runs once.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { builtExtension } from './lib/paths.js';

/** What `host.ensure` does in the stand-in background; each test sets it. */
let onEnsure = async () => {};
let ensures = 0;
globalThis.chrome = {
  runtime: {
    sendMessage: async (msg) => {
      assert.equal(msg.type, 'host.ensure', 'the channel asks the background for nothing else');
      ensures++;
      await onEnsure(ensures);
      return { ok: true, value: true };
    },
  },
};
const { ACK_MS, CHANNEL, TIMEOUT_MS, request, sendFiles, serve } = await import(
  pathToFileURL(join(builtExtension('chrome'), 'js/common/channel.js')).href
);

const ticks = (ms) => new Promise((r) => setTimeout(r, ms));

/** A stand-in engine host: counts the bundles it creates. */
function host(label, { slowMs = 0 } = {}) {
  const h = { created: 0 };
  h.served = serve({
    'bundle.create': async ({ entries }) => {
      h.created++;
      await ticks(slowMs);
      return `${label}:${entries.length}`;
    },
  });
  return h;
}

test('a send posted while no host listens (it was being closed) is posted again to the next host', { timeout: 15_000 }, async () => {
  ensures = 0;
  let next = null;
  // The first ensure finds the closing host still listed; the second one starts a new host.
  onEnsure = async (n) => {
    if (n === 2) next = host('next');
  };
  try {
    assert.equal(await sendFiles([{ path: 'a' }]), 'next:1');
    assert.equal(ensures, 2, 'the host was ensured again before the retry');
    assert.equal(next.created, 1, 'one bundle was made');
  } finally {
    next?.served.close();
  }
});

test('a host that agreed to close takes no request; the sender reaches the next host', { timeout: 15_000 }, async () => {
  ensures = 0;
  const closing = host('closing');
  closing.served.refuseFor(60_000);
  let next = null;
  onEnsure = async (n) => {
    if (n === 3) next = host('next');
  };
  try {
    assert.equal(await sendFiles([{ path: 'a' }, { path: 'b' }]), 'next:2');
    assert.equal(closing.created, 0, 'the closing host made nothing');
    assert.equal(next.created, 1);
  } finally {
    closing.served.close();
    next?.served.close();
  }
});

test('an acknowledged request is not posted again while it runs, and the host counts it as pending', { timeout: 15_000 }, async () => {
  ensures = 0;
  onEnsure = async () => {};
  const h = host('slow', { slowMs: 3 * ACK_MS });
  try {
    const answer = request('bundle.create', { entries: [] });
    await ticks(ACK_MS / 2);
    assert.equal(h.served.pending(), 1, 'a running request keeps the host from counting as idle');
    assert.equal(await answer, 'slow:0');
    assert.equal(ensures, 1, 'posted once');
    assert.equal(h.created, 1);
    assert.equal(h.served.pending(), 0);
  } finally {
    h.served.close();
  }
});

test('a repeated request id is acknowledged and answered each time but runs once', { timeout: 15_000 }, async () => {
  const h = host('once', { slowMs: 200 });
  const client = new BroadcastChannel(CHANNEL);
  const seen = [];
  client.onmessage = ({ data }) => seen.push(data);
  try {
    const msg = { type: 'bundle.create', id: 'same-id', entries: [{ path: 'a' }] };
    client.postMessage(msg);
    await ticks(50);
    client.postMessage(msg);
    await ticks(600);
    client.postMessage(msg);
    await ticks(200);
    assert.equal(h.created, 1, 'one bundle for one request id');
    assert.equal(seen.filter((d) => d.ackOf === 'same-id').length, 3, 'each post acknowledged');
    const replies = seen.filter((d) => d.replyTo === 'same-id');
    assert.equal(replies.length, 3, 'each post answered');
    for (const r of replies) assert.deepEqual(r, { replyTo: 'same-id', ok: true, value: 'once:1' });
  } finally {
    client.close();
    h.served.close();
  }
});

test('a request that runs longer than the timeout (saving a large file) still gets its answer', { timeout: TIMEOUT_MS * 2 }, async () => {
  ensures = 0;
  onEnsure = async () => {};
  const h = host('long', { slowMs: TIMEOUT_MS + 5_000 });
  try {
    assert.equal(await request('bundle.create', { entries: [] }), 'long:0', 'answered, not timed out');
    assert.equal(ensures, 1, 'posted once: the host kept saying it was at work');
  } finally {
    h.served.close();
  }
});

test('a host that goes away during a request is reported, not waited on for ever', { timeout: TIMEOUT_MS * 2 }, async () => {
  ensures = 0;
  onEnsure = async () => {};
  const h = host('dies', { slowMs: TIMEOUT_MS + 2_000 });
  const started = Date.now();
  const answer = request('bundle.create', { entries: [] });
  await ticks(ACK_MS / 2);
  h.served.close(); // as when the offscreen document's renderer dies
  await assert.rejects(answer, /did not answer/);
  const waited = Date.now() - started;
  assert.ok(waited >= TIMEOUT_MS && waited < TIMEOUT_MS + 3_000, `reported after ${waited} ms`);
});
