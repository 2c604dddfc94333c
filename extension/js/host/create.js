// Bundle creation: from dropped or picked files to the file list of a torrent,
// with the bundle manifest (file list, types, thumbnails) as its first file.
import { mimeType } from '../common/filetypes.js';
import { MAX_THUMBS, thumbnail } from './thumbs.js';

/** Path of the manifest inside every bundle. */
export const MANIFEST_PATH = '.swarmdrop/manifest.json';
export const MANIFEST_VERSION = 1;

/** Characters no file system takes in a name; they become `_`. */
const UNSAFE = /[\u0000-\u001f<>:"\\|?*\u007f]/g;

/** A path component that is safe to create on disk (never empty, `.` or `..`). */
export function safeComponent(name) {
  let c = String(name).replace(UNSAFE, '_').replace(/[. ]+$/, '').trim();
  if (c === '' || c === '.' || c === '..') c = '_';
  return c.slice(0, 200);
}

/**
 * Normalizes dropped or picked entries into the bundle's name and files.
 * Entries are `{file, path}` with `/`-separated paths relative to what the
 * user chose (a folder keeps its structure: `Photos/2024/a.jpg`).
 *
 * - one folder: the bundle is named after it, paths are inside it;
 * - one file: named after the file (without extension);
 * - several: named after the first, "and N more".
 */
export function layout(entries) {
  if (!Array.isArray(entries) || entries.length === 0) {
    throw new Error('No files to send.');
  }
  const files = entries.map(({ file, path }) => {
    if (!(file instanceof Blob)) throw new Error('Not a file.');
    const parts = String(path || file.name || 'file')
      .split('/')
      .filter((p) => p !== '')
      .map(safeComponent);
    return { blob: file, parts, type: mimeType(file.name ?? parts.at(-1), file.type) };
  });
  const tops = new Set(files.map((f) => f.parts[0]));
  let name;
  if (tops.size === 1 && files.every((f) => f.parts.length > 1)) {
    name = files[0].parts[0];
    for (const f of files) f.parts = f.parts.slice(1);
  } else if (files.length === 1) {
    name = stem(files[0].parts.at(-1));
  } else {
    name = `${stem(files[0].parts.at(-1))} and ${files.length - 1} more`;
  }
  // Two entries with the same path cannot both exist on disk: number the later ones.
  const seen = new Set();
  for (const f of files) {
    let key = f.parts.join('/');
    for (let n = 2; seen.has(key.toLowerCase()); n++) {
      const last = f.parts.at(-1);
      const dot = last.lastIndexOf('.');
      const renamed = dot > 0 ? `${last.slice(0, dot)} (${n})${last.slice(dot)}` : `${last} (${n})`;
      key = [...f.parts.slice(0, -1), renamed].join('/');
      if (!seen.has(key.toLowerCase())) f.parts = [...f.parts.slice(0, -1), renamed];
    }
    seen.add(key.toLowerCase());
  }
  if (files.some((f) => f.parts[0] === '.swarmdrop')) {
    throw new Error('A file inside ".swarmdrop" cannot be sent (the name is reserved).');
  }
  return { name: safeComponent(name), files };
}

function stem(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}

/**
 * Makes the thumbnails and the manifest. Returns the torrent's files in
 * order (manifest first) and the manifest itself.
 *
 * @param {{name: string, files: {blob: Blob, parts: string[], type: string}[]}} bundle
 * @param {{now: number, onThumb?: (done: number, total: number) => void, signal?: AbortSignal}} opts
 */
export async function withManifest(bundle, { now, onThumb, signal }) {
  const images = bundle.files.filter((f) => f.type.startsWith('image/')).slice(0, MAX_THUMBS);
  const thumbs = new Map();
  let made = 0;
  for (const f of images) {
    if (signal?.aborted) throw new DOMException('cancelled', 'AbortError');
    const t = await thumbnail(f.blob, f.type);
    if (t) thumbs.set(f, t);
    onThumb?.(++made, images.length);
  }
  const manifest = {
    swarmdrop: MANIFEST_VERSION,
    name: bundle.name,
    created: new Date(now).toISOString(),
    files: bundle.files.map((f) => {
      const t = thumbs.get(f);
      return {
        path: f.parts.join('/'),
        size: f.blob.size,
        type: f.type,
        ...(t ? { width: t.width, height: t.height, thumbnail: t.dataUrl } : {}),
      };
    }),
  };
  const manifestBlob = new Blob([JSON.stringify(manifest)], { type: 'application/json' });
  const files = [
    { blob: manifestBlob, parts: MANIFEST_PATH.split('/'), type: 'application/json', manifest: true },
    ...bundle.files,
  ];
  return { files, manifest };
}

/**
 * The largest manifest a recipient reads, in bytes: a sender's holds at most
 * MAX_THUMBS thumbnails of some 10 to 40 KB and a line per file. A larger
 * one (any client may have made the torrent) is not read into memory.
 */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
/** A thumbnail a recipient shows: an image as a base64 data URL, of a type every browser decodes. */
const THUMB_URL = /^data:image\/(jpeg|png|webp);base64,[A-Za-z0-9+/]+={0,2}$/;
/** The largest thumbnail a recipient takes, in characters (the sender's are some 10 to 40 KB). */
const MAX_THUMB_CHARS = 256 * 1024;

/**
 * A downloaded bundle's manifest as its recipient shows it. The manifest
 * comes from the sender (any client may have written it), so only what the
 * bundle page can use safely is kept: for each of the bundle's own files
 * (`files`, the torrent's, which stay the authority on paths, sizes and
 * types), its thumbnail if it is an image data URL of a sane size, and the
 * image's width and height. Null when `manifest` is not a manifest.
 *
 * @param {unknown} manifest the parsed manifest file
 * @param {{path: string, length: number, type: string, manifest?: boolean, padding?: boolean}[]} files
 */
export function receivedManifest(manifest, files) {
  if (!Array.isArray(manifest?.files)) return null;
  const byPath = new Map(manifest.files.filter((f) => typeof f?.path === 'string').map((f) => [f.path, f]));
  const side = (n) => (Number.isInteger(n) && n > 0 && n <= 1_000_000 ? n : null);
  let thumbs = 0;
  return {
    files: files
      .filter((f) => !f.manifest && !f.padding)
      .map((f) => {
        const sent = byPath.get(f.path);
        const thumb = sent?.thumbnail;
        const shown =
          thumbs < MAX_THUMBS && typeof thumb === 'string' && thumb.length <= MAX_THUMB_CHARS && THUMB_URL.test(thumb);
        if (shown) thumbs++;
        return {
          path: f.path,
          size: f.length,
          type: f.type,
          ...(shown ? { thumbnail: thumb, width: side(sent.width), height: side(sent.height) } : {}),
        };
      }),
  };
}
