// Where the engine host keeps a bundle's pieces, read in an extension page
// (passed to page.evaluate: self-contained).

/**
 * In an extension page: the origin's usage and the stored pieces of a
 * bundle (`keys`): its keys in IndexedDB's `pieces`, or, for a bundle whose
 * have record says its pieces are in its piece file, the pieces that record
 * marks, when the file exists (`inFile` then, and the file's `fileBytes`).
 */
export async function stored(infoHash) {
  const { usage, quota } = await navigator.storage.estimate();
  // Opening a database the engine host has not made yet would make it.
  if (!(await indexedDB.databases()).some((d) => d.name === 'swarmdrop-engine')) return { keys: 0, usage, quota };
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open('swarmdrop-engine');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  db.onversionchange = () => db.close();
  if (!db.objectStoreNames.contains('pieces')) {
    db.close();
    return { keys: 0, usage, quota };
  }
  const get = (store, fn) =>
    new Promise((resolve, reject) => {
      const req = fn(db.transaction(store, 'readonly').objectStore(store));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  const keys = (await get('pieces', (s) => s.getAllKeys(IDBKeyRange.bound([infoHash, 0], [infoHash, 2 ** 32 - 1])))).length;
  const have = await get('have', (s) => s.get(infoHash));
  db.close();
  const usageNow = (await navigator.storage.estimate()).usage;
  if (!have?.file) return { keys, idbKeys: keys, usage: usageNow, quota, inFile: false };
  const file = await navigator.storage
    .getDirectory()
    .then((root) => root.getDirectoryHandle('swarmdrop-pieces'))
    .then((dir) => dir.getFileHandle(infoHash))
    .then((h) => h.getFile())
    .catch(() => null);
  let marked = 0;
  for (let b of have.bits) for (; b; b &= b - 1) marked++;
  return { keys: keys + (file ? marked : 0), idbKeys: keys, usage: usageNow, quota, inFile: true, fileBytes: file?.size ?? null };
}
