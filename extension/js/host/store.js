// Bundle records (and a send's file system handles) in IndexedDB, through
// the wasm glue's `Records` (src/web/records.rs): the one database of the
// extension origin, whose schema, version and upgrades are defined in
// src/web/storage.rs. Only the engine host uses it.
import { engine } from './engine.js';

let recordsPromise = null;

function records() {
  recordsPromise ??= engine()
    .then((wasm) => wasm.Records.open())
    .catch((err) => {
      recordsPromise = null; // Try again on the next call.
      throw err;
    });
  return recordsPromise;
}

export async function allBundles() {
  return (await records()).all();
}

export async function getBundle(id) {
  return (await records()).get(id);
}

export async function putBundle(record) {
  return (await records()).put(record);
}

/** Deletes a record and its handles (a download's pieces go through the network's remove). */
export async function deleteBundle(id) {
  return (await records()).delete(id);
}

export async function putHandles(id, handles) {
  return (await records()).putHandles(id, handles);
}

export async function getHandles(id) {
  return (await records()).handles(id);
}

