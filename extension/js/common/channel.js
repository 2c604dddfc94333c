// The file channel between extension pages and the engine host.
//
// Files go from the page that has them (the drop zone frame, the popup, the
// send page) to the engine host BY REFERENCE: a BroadcastChannel in the
// extension origin carries File objects (and Chrome's file system handles)
// by structured clone, which copies the reference, never the bytes. The
// same channel brings a bundle's file back to the bundle page as a Blob.
// Runtime messages (JSON in Chrome) never carry file contents.
import { call } from './messages.js';

export const CHANNEL = 'swarmdrop.files';
/**
 * How long a requester waits without hearing from the host: for the first
 * acknowledgement, and then between two of the host's "still working"
 * acknowledgements. A long request (saving a large file) takes as long as it
 * takes; a host that died under it is noticed within this time.
 */
export const TIMEOUT_MS = 20000;
/** How often the host repeats its acknowledgement while a request runs. */
const BUSY_MS = 5000;
/**
 * The host acknowledges a request as soon as it receives it; without an
 * acknowledgement this soon, the request is posted again (after making sure
 * the host exists), as many times as the overall timeout allows.
 */
export const ACK_MS = 1000;
/**
 * How long the host remembers a request's answer, so that a repeat of its id
 * is answered, not run again: longer than a sender waits.
 */
const REMEMBER_MS = TIMEOUT_MS + 10_000;

/**
 * Sends a request on the channel and waits for the engine host's answer.
 *
 * BroadcastChannel keeps no message for a listener that is not there: a
 * request posted as an idle host is being closed (Chrome closes its
 * offscreen document) would be lost. So the host acknowledges each request
 * it receives, and an unacknowledged request is posted again, with the same
 * id, once the host has been ensured again; the host runs one id only once
 * (a repeated send never makes two bundles).
 */
export async function request(type, fields) {
  const channel = new BroadcastChannel(CHANNEL);
  const id = crypto.randomUUID();
  let ackTimer = null;
  let acked = false;
  let done = false;
  try {
    return await new Promise((resolve, reject) => {
      const finish = (fn, v) => {
        done = true;
        clearTimeout(deadline);
        clearTimeout(ackTimer);
        fn(v);
      };
      const timedOut = () => finish(reject, new Error('The Swarmdrop engine did not answer.'));
      let deadline = setTimeout(timedOut, TIMEOUT_MS);
      let posts = 0;
      const post = async () => {
        try {
          await call('host.ensure');
        } catch (err) {
          // A retry may meet a host still closing: try again, until the deadline.
          if (posts === 0) finish(reject, err);
          else ackTimer = setTimeout(post, ACK_MS);
          return;
        }
        if (done || acked) return;
        posts++;
        channel.postMessage({ ...fields, type, id });
        ackTimer = setTimeout(post, ACK_MS);
      };
      channel.onmessage = ({ data }) => {
        if (done) return;
        if (data?.ackOf === id) {
          acked = true;
          clearTimeout(ackTimer);
          // The host has it and is still at work: wait on.
          clearTimeout(deadline);
          deadline = setTimeout(timedOut, TIMEOUT_MS);
          return;
        }
        if (data?.replyTo !== id) return;
        if (data.ok) finish(resolve, data.value);
        else finish(reject, new Error(data.error));
      };
      post();
    });
  } finally {
    channel.close();
  }
}

/** Hands files to the engine host to make a bundle; resolves to the new transfer's id. */
export function sendFiles(entries, handles = []) {
  return request('bundle.create', { entries, handles });
}

/** Gives a send that needs its files the files the user picked again; resolves to its view. */
export function reattachFiles(id, entries) {
  return request('bundle.reattach', { transfer: id, entries });
}

/** The file system handles kept for a send (structured clone keeps them handles). */
export function fetchHandles(id) {
  return request('send.handles', { transfer: id });
}

/**
 * A file of a bundle, as a Blob (by reference), from the engine host. For a
 * download it is a save file the host wrote from the stored pieces: hand it
 * to releaseFile once it has been read (a send's own file is left alone).
 */
export function fetchFile(id, path) {
  return request('file.get', { transfer: id, path });
}

/** Lets the engine host delete the save file behind a Blob fetchFile gave. */
export function releaseFile(blob) {
  return request('file.release', { name: blob?.name ?? null });
}

/**
 * Serves channel requests with a table of handlers keyed by type (engine host
 * side). Each request is acknowledged on arrival and run once per id: a
 * repeat of a recent id gets the first run's answer.
 * Returns what the host needs to close safely: `pending()`, the requests
 * still running, and `refuseFor(ms)`, which stops acknowledging (and
 * running) requests for a while, so that requests arriving while the host
 * is being closed are posted again to the next host instead of being lost;
 * `close()` stops serving.
 */
export function serve(handlers) {
  const channel = new BroadcastChannel(CHANNEL);
  /** id -> {answer: Promise of the reply, forget: timer}, for REMEMBER_MS after the id was first seen */
  const seen = new Map();
  let pending = 0;
  let refusingUntil = 0;
  let closed = false;
  channel.onmessage = async ({ data }) => {
    if (!data || typeof data.id !== 'string' || !Object.hasOwn(handlers, data.type)) return;
    if (Date.now() < refusingUntil) return;
    channel.postMessage({ ackOf: data.id });
    let answer = seen.get(data.id)?.answer;
    if (!answer) {
      pending++;
      const id = data.id;
      const busy = setInterval(() => closed || channel.postMessage({ ackOf: id }), BUSY_MS);
      answer = (async () => {
        try {
          return { replyTo: data.id, ok: true, value: await handlers[data.type](data) };
        } catch (err) {
          return { replyTo: data.id, ok: false, error: err?.message ?? String(err) };
        } finally {
          clearInterval(busy);
          pending--;
          // Remembered from the answer on, however long the request ran.
          const entry = seen.get(id);
          if (entry) entry.forget = setTimeout(() => seen.delete(id), REMEMBER_MS);
        }
      })();
      seen.set(data.id, { answer, forget: null });
    }
    const reply = await answer;
    if (!closed) channel.postMessage(reply);
  };
  return {
    pending: () => pending,
    refuseFor(ms) {
      refusingUntil = Date.now() + ms;
    },
    close() {
      closed = true;
      channel.close();
      for (const { forget } of seen.values()) clearTimeout(forget);
      seen.clear();
    },
  };
}
