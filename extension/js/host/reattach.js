// A send's files found again: after a browser restart the File objects of a
// send are gone; Chrome's file system handles (kept in IndexedDB with the
// send) give them back once read access is granted, and elsewhere the user
// picks the same files again. Either way the files are checked against the
// bundle before a byte is served: a file that changed is named, never sent
// as if it were the original.
import { hashPieces } from './hasher.js';

/**
 * Where each of a send's files is under the handles the browser gave for the
 * drop (or pick): `[{handle, parts}]` in the order of `entries`, where
 * `handle` is an index into `handles` and `parts` the path below it (empty
 * for a file handle). Null when some file is under no handle.
 * @param {{file: File, path: string}[]} entries
 * @param {FileSystemHandle[]} handles
 */
export function locate(entries, handles) {
  if (!handles.length) return null;
  const out = [];
  for (const { file, path } of entries) {
    const parts = String(path || file.name)
      .split('/')
      .filter((p) => p !== '');
    const top = parts[0];
    const index = handles.findIndex((h) =>
      parts.length === 1 ? h.kind === 'file' && h.name === top : h.kind === 'directory' && h.name === top,
    );
    if (index < 0) return null;
    out.push({ handle: index, parts: parts.slice(1) });
  }
  return out;
}

/** Whether every handle may be read now (`request` asks the user, which needs a click). */
export async function readable(handles, { request = false } = {}) {
  for (const h of handles) {
    let state = await h.queryPermission({ mode: 'read' });
    if (state !== 'granted' && request) state = await h.requestPermission({ mode: 'read' });
    if (state !== 'granted') return false;
  }
  return true;
}

/**
 * The files as they are on disk now, through their handles (read access
 * granted); null for a file that is not there any more.
 */
export async function filesFromHandles({ handles, files }) {
  const out = [];
  for (const { handle, parts } of files) {
    try {
      let h = handles[handle];
      for (const [i, name] of parts.entries()) {
        h = i === parts.length - 1 ? await h.getFileHandle(name) : await h.getDirectoryHandle(name);
      }
      out.push(await h.getFile());
    } catch (err) {
      if (err?.name !== 'NotFoundError' && err?.name !== 'NotReadableError') throw err;
      out.push(null);
    }
  }
  return out;
}

/**
 * Matches files the user picked again to the send's files: by path inside
 * the bundle, else by name when it is unique. Throws naming what is missing.
 * @param {{path: string, length: number}[]} wanted the send's files (no manifest)
 * @param {{file: File, path: string}[]} entries what the user picked
 */
export function matchPicked(wanted, entries) {
  const byPath = new Map();
  const byName = new Map();
  for (const e of entries) {
    const path = String(e.path || e.file.name);
    byPath.set(path, e.file);
    const name = path.split('/').at(-1);
    byName.set(name, byName.has(name) ? null : e.file);
  }
  const missing = [];
  const files = wanted.map((w) => {
    const name = w.path.split('/').at(-1);
    // The path, or the path below one folder the user picked (unique).
    const below = [...byPath].filter(([p]) => p.endsWith(`/${w.path}`));
    const exact = byPath.get(w.path) ?? (below.length === 1 ? below[0][1] : undefined);
    const f = exact ?? (below.length > 1 ? null : byName.get(name)) ?? null;
    if (!f) missing.push(w.path);
    return f;
  });
  if (missing.length) {
    throw new Error(`Pick every file of the bundle again: ${missing.map((m) => `"${m}"`).join(', ')} missing.`);
  }
  return files;
}

/** Whether `file` can still be read (Chrome refuses to read a File whose file changed on disk). */
export async function stillReadable(file) {
  try {
    await file.slice(0, Math.min(1, file.size)).arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks files against the bundle: sizes, then the SHA-1 of every piece that
 * touches a file in `suspect` (indices into `files`), against `pieceHashes`.
 * Resolves to the paths of the files that changed (empty when none did).
 *
 * @param {object} job
 * @param {{path: string, length: number, offset: number}[]} job.layout the send's files (no manifest), with stream offsets
 * @param {Blob} job.manifest the manifest file, first in the stream
 * @param {File[]} job.files the files found again, in the order of `layout`
 * @param {Set<number>} job.suspect which files to hash (the others are trusted)
 * @param {Uint8Array} job.pieceHashes 20 bytes per piece, from the torrent
 * @param {number} job.pieceLength
 * @param {AbortSignal} job.signal
 */
export async function changedFiles({ layout, manifest, files, suspect, pieceHashes, pieceLength, signal }) {
  const changed = new Set();
  for (const [i, w] of layout.entries()) {
    if (!files[i] || files[i].size !== w.length) changed.add(i);
    else if (suspect.has(i) && !(await stillReadable(files[i]))) changed.add(i);
  }
  const pieceCount = pieceHashes.length / 20;
  const done = new Uint8Array(pieceCount).fill(1);
  const owners = new Map(); // piece -> files (indices) it touches
  for (const [i, w] of layout.entries()) {
    if (!suspect.has(i) || changed.has(i)) continue;
    const first = Math.floor(w.offset / pieceLength);
    const last = w.length === 0 ? first - 1 : Math.floor((w.offset + w.length - 1) / pieceLength);
    for (let p = first; p <= last; p++) {
      done[p] = 0;
      owners.set(p, [...(owners.get(p) ?? []), i]);
    }
  }
  if (owners.size === 0 || changed.size > 0) return [...changed].map((i) => layout[i].path);
  const hashes = new Uint8Array(pieceHashes.length);
  try {
    await hashPieces({
      files: [{ blob: manifest }, ...files.map((blob) => ({ blob }))],
      pieceLength,
      pieceCount,
      hashes,
      done,
      gate: () => Promise.resolve(),
      signal,
      onProgress: () => {},
    });
  } catch (err) {
    if (err?.name === 'AbortError') throw err;
    // A file that cannot be read any more changed under us.
    for (const [i] of layout.entries()) if (!(await stillReadable(files[i]))) changed.add(i);
    if (changed.size === 0) throw err;
    return [...changed].sort((x, y) => x - y).map((i) => layout[i].path);
  }
  const bad = [...owners].filter(([p]) => {
    const a = hashes.subarray(p * 20, p * 20 + 20);
    const b = pieceHashes.subarray(p * 20, p * 20 + 20);
    return a.some((x, k) => x !== b[k]);
  });
  // A bad piece inside one file names it; a bad piece across files names
  // them only when none of them is named already.
  for (const [, touching] of bad) if (touching.length === 1) changed.add(touching[0]);
  for (const [, touching] of bad) {
    if (touching.length > 1 && !touching.some((i) => changed.has(i))) touching.forEach((i) => changed.add(i));
  }
  return [...changed].sort((x, y) => x - y).map((i) => layout[i].path);
}
