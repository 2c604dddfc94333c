// The engine host: holds every transfer and the wasm engine. Chrome runs it in
// the offscreen document (host.html), Firefox in the background page.
//
// Requests arrive as runtime messages forwarded by the background (a table
// keyed by type, below) and, for files, on the file channel
// (js/common/channel.js). What the host tells the background (status for
// the badge, idleness) goes through the `emit` function it is started with.
import { serve } from '../common/channel.js';
import { transferChangeTeller } from '../common/events.js';
import { HOST_TYPES } from '../common/host-types.js';
import { getSettings } from '../common/settings.js';
import { engine } from './engine.js';
import { Transfers } from './transfers.js';

/** After this long with nothing running and no request, the host may be closed. */
const IDLE_AFTER_MS = 60_000;
/**
 * Once the host has agreed to be closed, it ignores file channel requests
 * this long (their senders post them again to the next host); if it is still
 * open by then, the close did not happen and it serves again.
 */
const CLOSING_MS = 5_000;

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * Starts the engine host.
 * @param {(msg: object) => void} emit sends a message to the background
 * @returns {{handle: (msg: object) => Promise<any>}}
 */
export function startHost(emit) {
  let lastRequest = Date.now();
  let statusTimer = null;
  const sendStatus = () => {
    statusTimer = null;
    emit({
      type: 'host.status',
      running: transfers.runningCount(),
      progress: transfers.overallProgress(),
    });
  };
  const transfers = new Transfers({
    settings: getSettings,
    onChange: () => {
      statusTimer ??= setTimeout(sendStatus, 250);
    },
  });
  // Open pages refresh on a state change at once (js/common/events.js).
  transfers.observe(transferChangeTeller());
  // Loading the records opens (and may upgrade) the database: when that
  // fails (an upgrade blocked by another connection, say), every request is
  // answered with the error, and the next one tries again.
  let starting = null;
  const ready = () => {
    starting ??= Promise.all([transfers.load(), engine()]).then(sendStatus, (err) => {
      starting = null;
      console.error('swarmdrop: the engine host could not start', err);
      throw err;
    });
    return starting;
  };
  ready().catch(() => {});

  const handlers = {
    // `closing`: the background asks before it closes the host; an idle host
    // agrees and from then refuses file requests, so none is taken and lost.
    'host.ping': ({ closing }) => {
      const running = transfers.runningCount() + files.pending();
      if (closing && running === 0) files.refuseFor(CLOSING_MS);
      return { running };
    },
    'transfers.list': () => transfers.list(),
    'transfer.get': ({ id }) => transfers.view(id),
    'transfer.pause': ({ id }) => transfers.pause(id),
    'transfer.resume': ({ id }) => transfers.resume(id),
    'transfer.regrant': ({ id }) => transfers.regrant(id),
    'transfer.cancel': ({ id }) => transfers.cancel(id),
    'transfer.free': ({ id }) => transfers.free(id),
    'transfer.limits': ({ id, uploadKBps, downloadKBps }) => transfers.setLimits(id, { uploadKBps, downloadKBps }),
    'transfers.pauseAll': () => transfers.pauseAll(),
    'transfers.resumeAll': () => transfers.resumeAll(),
    'transfer.torrent': ({ id }) => {
      const { name, bytes } = transfers.torrent(id);
      return { name, base64: toBase64(bytes) };
    },
    'bundle.get': ({ id, thumbnails }) => transfers.detail(id, { thumbnails: thumbnails !== false }),
    'torrent.inspect': async ({ base64 }) => (await engine()).inspectTorrent(fromBase64(base64)),
    'bundle.open': ({ base64, magnet, link }) =>
      transfers.addReceive(base64 ? { torrent: fromBase64(base64) } : link ? { link } : { magnet }),
  };

  // The background forwards HOST_TYPES: the table must answer exactly those.
  const missing = HOST_TYPES.filter((t) => !Object.hasOwn(handlers, t));
  const extra = Object.keys(handlers).filter((t) => !HOST_TYPES.includes(t));
  if (missing.length || extra.length) {
    throw new Error(`host handler table out of step: missing ${missing}, extra ${extra}`);
  }

  const files = serve({
    'bundle.create': async ({ entries, handles }) => {
      await ready();
      lastRequest = Date.now();
      return transfers.createSend(entries, handles ?? []);
    },
    'bundle.reattach': async ({ transfer, entries }) => {
      await ready();
      lastRequest = Date.now();
      return transfers.reattachPicked(transfer, entries ?? []);
    },
    'send.handles': async ({ transfer }) => {
      await ready();
      return transfers.handles(transfer);
    },
    'file.get': async ({ transfer, path }) => {
      await ready();
      lastRequest = Date.now();
      return transfers.file(transfer, path);
    },
    'file.release': async ({ name }) => {
      await ready();
      lastRequest = Date.now();
      if (typeof name === 'string') await transfers.releaseFile(name);
      return null;
    },
  });

  // Tell the background when the host has been idle for a while, so that it
  // can close it (Chrome); a running transfer keeps it open.
  setInterval(() => {
    if (transfers.runningCount() === 0 && Date.now() - lastRequest > IDLE_AFTER_MS) {
      emit({ type: 'host.idle' });
    }
  }, IDLE_AFTER_MS / 2);

  return {
    async handle(msg) {
      await ready();
      lastRequest = Date.now();
      const handler = Object.hasOwn(handlers, msg?.type) ? handlers[msg.type] : null;
      if (!handler) throw new Error(`unknown message type: ${String(msg?.type)}`);
      return handler(msg);
    },
  };
}
