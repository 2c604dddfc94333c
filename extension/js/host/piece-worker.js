// Piece file worker: a download's verified pieces live in one file per bundle
// in the origin private file system (directory `swarmdrop-pieces`, file named
// by the info hash in hex), piece i at byte i * pieceLength. This worker holds
// a FileSystemSyncAccessHandle per bundle file, opened once and kept open, so
// the bytes go from this renderer straight to the file: no IndexedDB value, no
// copy through the browser process (BENCHMARKS.md, rows 2 and 3).
// js/host/network.js is its only client; src/web/piece_files.rs drives it.
//
// Messages in (each with an `id`, answered once):
//   {op:'probe'}                                  whether sync access handles work here
//   {op:'write', bundle, offsets:[n...], buffers:[ArrayBuffer...]}  written in the order of their
//                                                 offsets, then flushed (a full disk: QuotaExceededError
//                                                 with `unwritten`, the indices of those not written;
//                                                 the others are written and flushed); the result
//                                                 is the buffers, transferred back for the next writes
//   {op:'read', bundle, offset, length}           the bytes (an error when the file ends before)
//   {op:'room'}                                   bytes the origin may still store (quota less usage)
//   {op:'remove', bundle}                         the file closed and deleted
// Messages out: {id, ok:true, result} | {id, ok:false, name, message, unwritten?}

/** The directory of piece files. */
const DIR = 'swarmdrop-pieces';
/**
 * Room a write leaves on the disk (the origin's quota), at least. A sync
 * access handle can fill the disk to the last byte, and IndexedDB, which
 * records the pieces written (and holds every record), then fails to open its
 * files at all: a write that would leave less fails as a full disk first.
 */
const HEADROOM = 1024 * 1024;

let directory = null;
/** Open handles: bundle -> Promise<FileSystemSyncAccessHandle>. */
const handles = new Map();

function dir() {
  directory ??= navigator.storage.getDirectory().then((root) => root.getDirectoryHandle(DIR, { create: true }));
  directory.catch(() => {
    directory = null;
  });
  return directory;
}

function handle(bundle) {
  let h = handles.get(bundle);
  if (!h) {
    h = dir()
      .then((d) => d.getFileHandle(bundle, { create: true }))
      .then((f) => f.createSyncAccessHandle());
    handles.set(bundle, h);
    h.catch(() => handles.delete(bundle));
  }
  return h;
}

async function probe() {
  // A ReferenceError where there are no file handles at all: false too (`ops.probe`).
  if (!('createSyncAccessHandle' in FileSystemFileHandle.prototype)) return false;
  const d = await dir();
  const name = '.probe';
  const h = await (await d.getFileHandle(name, { create: true })).createSyncAccessHandle();
  h.close();
  await d.removeEntry(name);
  return true;
}

/** Bytes the origin may still store. */
async function originRoom() {
  const { usage, quota } = await navigator.storage.estimate();
  return quota - usage;
}

const ops = {
  probe: () => probe().catch(() => false),
  room: originRoom,
  async write({ bundle, offsets, buffers }) {
    const h = await handle(bundle);
    // In file order: on a full disk, the pieces that fit are those at the
    // front, and no hole is left behind one that does not.
    const order = offsets.map((_, i) => i).sort((a, b) => offsets[a] - offsets[b]);
    let size = h.getSize();
    let room = await originRoom();
    let k = 0;
    try {
      for (; k < order.length; k++) {
        const i = order[k];
        const bytes = new Uint8Array(buffers[i]);
        const end = offsets[i] + bytes.length;
        // A write costs the room the file grows by (the quota counts its
        // length) or its bytes, whichever is more: a piece written into a
        // hole (pieces come in any order, so the file is soon as long as
        // the bundle) takes disk space although the length stays the same.
        const cost = Math.max(end - size, bytes.length);
        if (room - cost < HEADROOM) {
          throw new DOMException(`${cost} more bytes do not fit: ${room} bytes of room left`, 'QuotaExceededError');
        }
        room -= cost;
        if (end > size) size = end;
        const n = h.write(bytes, { at: offsets[i] });
        if (n !== bytes.length) throw new Error(`wrote ${n} of ${bytes.length} bytes`);
      }
    } catch (e) {
      h.flush();
      throw Object.assign(e, { unwritten: order.slice(k) });
    }
    h.flush();
    return buffers;
  },
  async read({ bundle, offset, length }) {
    const h = await handle(bundle);
    const bytes = new Uint8Array(length);
    const n = h.read(bytes, { at: offset });
    if (n !== length) throw new Error(`read ${n} of ${length} bytes at ${offset}`);
    return bytes.buffer;
  },
  async remove({ bundle }) {
    const h = handles.get(bundle);
    handles.delete(bundle);
    if (h) (await h.catch(() => null))?.close();
    try {
      await (await dir()).removeEntry(bundle);
    } catch (e) {
      if (e?.name !== 'NotFoundError') throw e;
    }
  },
};

self.onmessage = async ({ data }) => {
  const { id, op } = data;
  try {
    const result = await ops[op](data);
    const transfer = result instanceof ArrayBuffer ? [result] : Array.isArray(result) ? result : [];
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, name: e?.name ?? 'Error', message: e?.message ?? String(e), unwritten: e?.unwritten });
  }
};
