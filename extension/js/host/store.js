// Bundle records in IndexedDB (extension origin), plain IndexedDB from JS.
//
// Stores:
//   bundles  one record per transfer (keyPath `id`): metainfo, role, state,
//            file list and thumbnails, statistics
//   handles  file system handles of a send's files, where the browser gives
//            them (Chrome), so a send can be resumed after a restart
//
// Issue 5 moves this behind the wasm glue (rexie) with a versioned schema,
// verified pieces as Blobs and the have-bitfield written with each piece.

const DB_NAME = 'swarmdrop';
const DB_VERSION = 1;

let dbPromise = null;

function open() {
  dbPromise ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains('bundles')) db.createObjectStore('bundles', { keyPath: 'id' });
      if (!db.objectStoreNames.contains('handles')) db.createObjectStore('handles', { keyPath: 'id' });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error('the database is open in an older version elsewhere'));
  });
  return dbPromise;
}

async function run(storeName, mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(storeName, mode);
    const store = tx.objectStore(storeName);
    let result;
    const req = fn(store);
    if (req) req.onsuccess = () => (result = req.result);
    tx.oncomplete = () => resolve(result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
  });
}

export function allBundles() {
  return run('bundles', 'readonly', (s) => s.getAll());
}

export function getBundle(id) {
  return run('bundles', 'readonly', (s) => s.get(id));
}

export function putBundle(record) {
  return run('bundles', 'readwrite', (s) => s.put(record));
}

export async function deleteBundle(id) {
  await run('bundles', 'readwrite', (s) => s.delete(id));
  await run('handles', 'readwrite', (s) => s.delete(id));
}

/** Keeps what a send needs to reach its files after a restart (js/host/reattach.js). */
export function putHandles(id, handles) {
  return run('handles', 'readwrite', (s) => s.put({ id, handles }));
}

/** What putHandles kept for the send `id`, or undefined. */
export async function getHandles(id) {
  return (await run('handles', 'readonly', (s) => s.get(id)))?.handles;
}
