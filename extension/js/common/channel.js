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
const TIMEOUT_MS = 20000;

/** Sends a request on the channel and waits for the engine host's answer. */
export async function request(type, fields) {
  await call('host.ensure');
  const channel = new BroadcastChannel(CHANNEL);
  const id = crypto.randomUUID();
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('The Swarmdrop engine did not answer.')), TIMEOUT_MS);
      channel.onmessage = ({ data }) => {
        if (data?.replyTo !== id) return;
        clearTimeout(timer);
        if (data.ok) resolve(data.value);
        else reject(new Error(data.error));
      };
      channel.postMessage({ ...fields, type, id });
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

/** Serves channel requests with a table of handlers keyed by type (engine host side). */
export function serve(handlers) {
  const channel = new BroadcastChannel(CHANNEL);
  channel.onmessage = async ({ data }) => {
    if (!data || typeof data.id !== 'string' || !Object.hasOwn(handlers, data.type)) return;
    try {
      const value = await handlers[data.type](data);
      channel.postMessage({ replyTo: data.id, ok: true, value });
    } catch (err) {
      channel.postMessage({ replyTo: data.id, ok: false, error: err?.message ?? String(err) });
    }
  };
  return channel;
}
