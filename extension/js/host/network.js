// The network side of the engine host: one SwarmHost (the wasm glue in
// src/web: tracker sockets, WebRTC peers, the web seed, the upload to the
// server, pieces in piece files or IndexedDB) that sends and downloads every
// bundle, and what it reports, in the terms the transfers and the popup use.
//
// Transfers call it when a send is ready (its .torrent made), when a
// download is opened or comes back after a restart, and for pause, resume,
// cancel and saving files; it calls back with each bundle's figures and
// state changes, keyed by info hash.
import { serverTracker } from '../common/links.js';
import { engine } from './engine.js';

/** How often figures are pushed to transfers while bundles run. */
const REPORT_EVERY_MS = 1000;

/** A record's caps (KB/s, 0 or missing: none) as SwarmHost takes them (bytes per second or null). */
function capsOf(limits) {
  const bytes = (kbps) => (kbps > 0 ? kbps * 1000 : null);
  return { uploadLimit: bytes(limits?.uploadKBps), downloadLimit: bytes(limits?.downloadKBps) };
}

/** Most bytes of buffers kept for reuse: one store batch's worth (src/web/host.rs). */
const SPARE_BYTES = 16 * 1024 * 1024;

/**
 * The engine host's side of the piece file worker (js/host/piece-worker.js):
 * SwarmHost (src/web/piece_files.rs) gets one and calls these methods; each
 * returns a promise settled by the worker's answer. A failure rejects with an
 * Error whose `name` is the worker's DOMException name (QuotaExceededError
 * when the disk or the quota is full).
 */
class PieceFiles {
  #worker;
  #next = 0;
  #waiting = new Map();
  /** Buffers the worker wrote and gave back, reused by the next writes. */
  #spare = [];

  constructor() {
    this.#worker = new Worker(new URL('./piece-worker.js', import.meta.url), { type: 'module' });
    this.#worker.onmessage = ({ data }) => {
      const w = this.#waiting.get(data.id);
      if (!w) return;
      this.#waiting.delete(data.id);
      if (data.ok) w.resolve(data.result);
      else w.reject(Object.assign(new Error(data.message), { name: data.name, unwritten: data.unwritten }));
    };
    this.#worker.onerror = (e) => {
      const err = new Error(`the piece file worker failed: ${e.message || 'it did not load'}`);
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    };
  }

  #call(message, transfer = []) {
    return new Promise((resolve, reject) => {
      const id = ++this.#next;
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...message, id }, transfer);
    });
  }

  /** Whether sync access handles work in the worker (false where they do not). */
  probe() {
    return this.#call({ op: 'probe' }).catch(() => false);
  }

  /** Stops the worker. */
  close() {
    this.#worker.terminate();
  }

  /**
   * Writes pieces at `offsets` of the bundle's file, in the order of their
   * offsets, and flushes it. `views` (Uint8Arrays, views into wasm memory)
   * are copied before this returns, each into a buffer the worker gave back
   * after an earlier write (or a new one), and the buffers are transferred to
   * the worker: reusing them spares the engine's thread a zero-filled
   * allocation per piece and the garbage collector the garbage. When the disk
   * is full it rejects with a QuotaExceededError whose `unwritten` lists the
   * indices of those not written (the others are written and flushed).
   */
  async write(bundle, offsets, views) {
    const buffers = views.map((v) => {
      const i = this.#spare.findIndex((b) => b.byteLength === v.length);
      const b = i < 0 ? new ArrayBuffer(v.length) : this.#spare.splice(i, 1)[0];
      new Uint8Array(b).set(v);
      return b;
    });
    const back = await this.#call({ op: 'write', bundle, offsets, buffers }, buffers);
    let kept = 0;
    this.#spare = back.concat(this.#spare).filter((b) => (kept += b.byteLength) <= SPARE_BYTES);
  }

  /** `length` bytes from `offset`, as an ArrayBuffer (rejects when the file ends before). */
  read(bundle, offset, length) {
    return this.#call({ op: 'read', bundle, offset, length });
  }

  /** Bytes the origin may still store: its quota less its usage. */
  room() {
    return this.#call({ op: 'room' });
  }

  /** Closes and deletes the bundle's file (nothing when there is none). */
  remove(bundle) {
    return this.#call({ op: 'remove', bundle });
  }
}

/**
 * The piece file worker, or null where this context cannot start one or its
 * sync access handles do not work: new downloads then keep their pieces in
 * IndexedDB.
 */
async function pieceFiles() {
  try {
    const files = new PieceFiles();
    if (await files.probe()) return files;
    files.close();
  } catch (err) {
    console.warn('swarmdrop: no piece file worker:', err);
  }
  return null;
}

export class Network {
  #settings;
  #onReport;
  #host = null;
  #starting = null;
  #timer = null;

  /**
   * @param {object} deps
   * @param {() => Promise<object>} deps.settings the user's settings
   * @param {(infoHash: string, report: object) => void} deps.onReport figures and state of one bundle:
   *   `{event?, figures?, error?}` where figures are SwarmHost's transfer view
   */
  constructor({ settings, onReport }) {
    this.#settings = settings;
    this.#onReport = onReport;
  }

  /** The SwarmHost, created on first use with the user's server, trackers and caps. */
  async #swarm() {
    if (this.#host) return this.#host;
    this.#starting ??= (async () => {
      const wasm = await engine();
      const s = await this.#settings();
      const host = await wasm.SwarmHost.create({
        trackers: [serverTracker(s.serverUrl), ...s.trackers],
        iceServers: s.iceServers,
        uploadLimit: s.uploadLimitKBps ? s.uploadLimitKBps * 1000 : null,
        downloadLimit: s.downloadLimitKBps ? s.downloadLimitKBps * 1000 : null,
        onEvent: (e) => this.#onEvent(e),
        pieceFiles: await pieceFiles(),
      });
      this.#host = host;
      this.#timer = setInterval(() => this.#reportAll(), REPORT_EVERY_MS);
      return host;
    })();
    return this.#starting;
  }

  /** Whether the bundle is in the engine. */
  has(infoHash) {
    return this.#host?.transfer(infoHash) != null;
  }

  /**
   * Starts sharing a bundle whose .torrent is made: seeding to peers and,
   * unless the user chose peer-to-peer only, uploading it to the server the
   * send was made with (`record.server`, which Transfers finds for a record
   * from before it was kept).
   * @param {{torrent: Uint8Array, infoHash: string, server: string, uploadToServer?: boolean, upload?: object, paused?: boolean, limits?: object}} record
   * @param {{blob: Blob, parts: string[]}[]} files in torrent order
   */
  async send(record, files) {
    const host = await this.#swarm();
    if (this.has(record.infoHash)) return;
    const s = await this.#settings();
    // The choice kept in the send's record; a record from before it was
    // kept uploads if it had begun to (it has upload figures), else as the
    // settings say.
    const upload = typeof record.uploadToServer === 'boolean' ? record.uploadToServer : Boolean(record.upload) || s.uploadToServer !== false;
    await host.addSend(
      record.torrent,
      files.map((f) => ({ path: f.parts.join('/'), file: f.blob })),
      // It announces on its torrent's trackers only: those named when it was
      // made (its server's among them), not the ones the settings name now.
      {
        server: record.server,
        upload,
        clientTrackers: false,
        paused: Boolean(record.paused),
        ...capsOf(record.limits),
      },
    );
    this.#report(record.infoHash);
  }

  /**
   * Starts (or, after a restart, resumes) a download from the record's
   * .torrent or magnet link; pieces stored earlier are kept.
   * @param {{torrent?: Uint8Array, magnet?: string, infoHash: string, selection?: number[], paused?: boolean, limits?: object}} record
   */
  async receive(record) {
    const host = await this.#swarm();
    if (this.has(record.infoHash)) return;
    await host.addDownload(record.torrent ?? record.magnet, {
      selection: record.selectionIndices ?? null,
      paused: Boolean(record.paused),
      ...capsOf(record.limits),
    });
    this.#report(record.infoHash);
  }

  /**
   * Caps one bundle's rates (on top of the global caps of the settings).
   * @param {string} infoHash
   * @param {{uploadKBps?: number, downloadKBps?: number} | null | undefined} limits 0 or missing: no cap
   */
  setLimits(infoHash, limits) {
    if (!this.has(infoHash)) return;
    const { uploadLimit, downloadLimit } = capsOf(limits);
    this.#host.setLimits(infoHash, uploadLimit, downloadLimit);
  }

  pause(infoHash) {
    if (this.has(infoHash)) this.#host.pause(infoHash);
  }

  resume(infoHash) {
    if (this.has(infoHash)) this.#host.resume(infoHash);
  }

  /** Stops a bundle; with `deleteData` its stored pieces go too. */
  async remove(infoHash, deleteData) {
    if (this.has(infoHash)) await this.#host.remove(infoHash, deleteData);
  }

  /** Chooses the files to download (torrent file indices, or null for all). */
  select(infoHash, indices) {
    if (this.has(infoHash)) this.#host.setSelection(infoHash, indices);
  }

  /** SwarmHost's view of a bundle, or null. */
  figures(infoHash) {
    return this.#host?.transfer(infoHash) ?? null;
  }

  /** A downloaded file as a File written from its stored pieces (a save file: see releaseFile). */
  async fileBlob(infoHash, index, type) {
    const host = await this.#swarm();
    return host.fileBlob(infoHash, index, type ?? null);
  }

  /** Deletes a save file fileBlob made (by its name); other names are left alone. */
  async releaseFile(name) {
    if (this.#host) await this.#host.releaseFile(name);
  }

  /** The .torrent the engine has for a bundle (a magnet's, once its metadata came). */
  torrent(infoHash) {
    return this.#host?.torrent(infoHash) ?? null;
  }

  /** Where the .torrent behind a share link is (the server's), or the URL itself. */
  async torrentUrl(link) {
    const wasm = await engine();
    return wasm.torrentUrl(link);
  }

  #onEvent(e) {
    if (!e?.infoHash) {
      if (e?.type === 'error') console.warn('swarmdrop:', e.message);
      return;
    }
    // Frequent events only refresh figures; the others are news.
    if (e.type === 'piece' || e.type === 'progress') return;
    this.#report(e.infoHash, e);
  }

  #report(infoHash, event = null) {
    this.#onReport(infoHash, { event, figures: this.figures(infoHash) });
  }

  #reportAll() {
    for (const t of this.#host?.transfers() ?? []) this.#onReport(t.infoHash, { event: null, figures: t });
  }
}
