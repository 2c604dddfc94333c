// The engine host's transfers: every send and download, their state machine,
// their persistence, and what the popup and the bundle page are shown.
//
// A record (persisted in IndexedDB, js/host/store.js) is what survives a
// restart; a transfer's live part (its files, its hashing job, its rates)
// lives here only while the engine host runs. The network (js/host/network.js,
// the wasm SwarmHost) is another live part: a send goes to it once its
// .torrent is made, a download as soon as it is opened (and again after a
// restart); it reports figures and state changes through `#onNet`.
// `observe()`, `pieces()` and `report()` let other parts watch transfers,
// read a send's pieces and add to its figures.
import * as S from '../common/states.js';
import { linkServer, serverTracker, shareLink } from '../common/links.js';
import { mimeType } from '../common/filetypes.js';
import { layout, receivedManifest, withManifest, MANIFEST_PATH, MAX_MANIFEST_BYTES } from './create.js';
import { hashPieces } from './hasher.js';
import { PieceSource } from './pieces.js';
import { changedFiles, filesFromHandles, locate, matchPicked, readable, stillReadable } from './reattach.js';
import { engine } from './engine.js';
import { Network } from './network.js';
import * as store from './store.js';

const CREATED_BY = 'Swarmdrop/0.1.0';
/** What a download paused by a full disk says (the popup and the bundle page show it). */
const DISK_FULL =
  'Not enough disk space: the download is paused and keeps every piece it has. Free some space, then resume.';
/** How often progress is written to IndexedDB while a transfer runs. */
const PERSIST_EVERY_MS = 2000;

/** The fields of a record that change while it runs, as one string to compare. */
function runningMark(r) {
  return JSON.stringify([r.state, r.phase, r.error, r.stats, r.upload, r.selection, r.limits, r.freed, r.thumbs]);
}

/** Bytes per second over a sliding window. */
class RateMeter {
  #samples = [];
  constructor(windowMs = 3000) {
    this.windowMs = windowMs;
  }
  add(bytes, now) {
    this.#samples.push([now, bytes]);
    this.#trim(now);
  }
  rate(now) {
    this.#trim(now);
    if (this.#samples.length === 0) return 0;
    const total = this.#samples.reduce((s, [, b]) => s + b, 0);
    const span = Math.max(1000, now - this.#samples[0][0]);
    return (total * 1000) / span;
  }
  #trim(now) {
    while (this.#samples.length && now - this.#samples[0][0] > this.windowMs) this.#samples.shift();
  }
}

/** Opens and closes the way for work: pause closes it, resume opens it. */
class Gate {
  #open = true;
  #waiters = [];
  get isOpen() {
    return this.#open;
  }
  close() {
    this.#open = false;
  }
  open() {
    this.#open = true;
    this.#waiters.splice(0).forEach((w) => w());
  }
  wait() {
    return this.#open ? Promise.resolve() : new Promise((r) => this.#waiters.push(r));
  }
}

/** A record's own caps (KB/s, 0 for none); records written before caps were kept have none. */
function limitsOf(r) {
  return { uploadKBps: r.limits?.uploadKBps ?? 0, downloadKBps: r.limits?.downloadKBps ?? 0 };
}

export class Transfers {
  /** id -> persisted record */
  #records = new Map();
  /** id -> live part: {files, gate, abort, hashRate, up, down, peers, job} */
  #live = new Map();
  #emit;
  #settings;
  #now;
  #persistTimers = new Map();
  /** id -> what of the record changes as it runs, as last written (see #persistSoon). */
  #written = new Map();
  #net;
  #observers = new Set();
  /** id -> the state observers were last told */
  #notified = new Map();

  /**
   * @param {object} deps
   * @param {() => void} deps.onChange called when the set or states of transfers change
   * @param {() => Promise<object>} deps.settings the user's settings
   * @param {() => number} [deps.now] wall clock in ms (tests may pass their own)
   */
  constructor({ onChange, settings, now = () => Date.now() }) {
    this.#emit = onChange;
    this.#settings = settings;
    this.#now = now;
    this.#net = new Network({ settings, onReport: (infoHash, report) => this.#onNet(infoHash, report) });
  }

  /** Loads the records; what was running when the host stopped comes back in the right state. */
  async load() {
    for (const r of await store.allBundles()) {
      if (r.role === 'send' && (r.state === S.HASHING || r.state === S.SHARING)) {
        // The files were known to the page that is gone: the user must grant
        // them again (issue 5 re-grants file system handles in one click).
        r.needsFilesFor = r.state;
        r.state = S.NEEDS_FILES;
        delete r.access; // decided again below, once the handles were looked at
        await store.putBundle(r);
      }
      this.#records.set(r.id, r);
    }
    // Downloads carry on from the pieces stored before the restart.
    for (const r of this.#records.values()) {
      if (r.role === 'receive' && r.state !== S.ERROR && !r.freed) this.#startReceive(r);
    }
    // Sends carry on where their files can be reached again without the user
    // (handles still granted); the others wait for a click in the popup.
    for (const r of this.#records.values()) {
      if (r.role === 'send' && r.state === S.NEEDS_FILES) {
        this.#reattach(r).catch((err) => this.#fail(r, err));
      }
    }
  }

  // ------------------------------------------------------------ getters

  /** Number of transfers doing work (for the badge and the host's lifetime). */
  runningCount() {
    let n = 0;
    for (const r of this.#records.values()) if (S.isRunning(r.state)) n++;
    return n;
  }

  /** Overall progress of running transfers, 0..1, or null when none runs. */
  overallProgress() {
    let done = 0;
    let total = 0;
    for (const r of this.#records.values()) {
      if (!S.isRunning(r.state)) continue;
      const p = this.#progress(r);
      done += p.done;
      total += p.total;
    }
    return total > 0 ? done / total : null;
  }

  /** Every transfer as the popup shows it, newest first. */
  list() {
    return [...this.#records.values()]
      .sort((a, b) => b.createdAt - a.createdAt)
      .map((r) => this.view(r.id));
  }

  /** One transfer as the popup shows it. */
  view(id) {
    const r = this.#get(id);
    const live = this.#live.get(id);
    const now = this.#now();
    const { done, total } = this.#progress(r);
    const hashRate = live?.hashRate.rate(now) ?? 0;
    const net = live?.net?.progress;
    const up = net ? net.upRate : (live?.up.rate(now) ?? 0);
    const down = net ? net.downRatePeers + net.downRateServer : (live?.down.rate(now) ?? 0);
    let eta = null;
    if (r.state === S.HASHING && hashRate > 0) eta = (total - done) / hashRate;
    if (r.state === S.DOWNLOADING && down > 0) eta = (total - done) / down;
    return {
      id: r.id,
      role: r.role,
      state: r.state,
      resumeState: r.resumeState ?? null,
      // Null until the files were looked for (then 'grant' or 'pick').
      access: r.state === S.NEEDS_FILES && r.phase !== 'checking' ? (r.access ?? null) : null,
      changedFiles: r.changedFiles ?? null,
      phase: r.phase ?? null,
      error: r.error ?? null,
      name: r.name,
      size: r.size,
      fileCount: r.fileCount,
      totalLength: r.totalLength ?? null,
      progress: total > 0 ? done / total : 0,
      progressBytes: done,
      progressTotal: total,
      hashRate,
      upSpeed: up,
      downSpeed: down,
      eta,
      peers: live?.peers ?? 0,
      uploaded: r.stats.uploaded,
      downloaded: r.stats.downloaded,
      fromServer: r.stats.fromServer,
      fromPeers: r.stats.fromPeers,
      // Figures kept from before a restart are not current until the
      // network reports again: the popup does not show them as live.
      upload: live?.net?.upload ?? (r.upload ? { ...r.upload, current: false } : null),
      limits: limitsOf(r),
      diskFull: r.diskFull === true,
      // Pieces that read back wrong from storage and are being fetched again.
      damaged: r.role === 'receive' ? (net?.damaged ?? 0) : 0,
      freed: r.freed === true,
      infoHash: r.infoHash ?? null,
      link: r.link ?? null,
      // The server a send uploads to and names in its link (the one it was
      // made with, whatever the settings say now).
      server: r.role === 'send' ? (r.server ?? linkServer(r.link, r.infoHash)) : null,
      magnet: r.magnet ?? null,
      createdAt: r.createdAt,
    };
  }

  /**
   * A transfer with its files, thumbnails and per-file progress, for the
   * bundle page. `hasManifest` says the thumbnails are the sender's final
   * ones; a page that has shown them asks again with `thumbnails: false`,
   * and its refreshes (every second) then carry progress only, not a bundle's
   * worth of images each time.
   */
  detail(id, { thumbnails = true } = {}) {
    const r = this.#get(id);
    const manifest = r.manifest ?? this.#live.get(id)?.manifest;
    const files = (manifest?.files ?? r.files.filter((f) => !f.manifest && !f.padding)).map((f) => ({
      path: f.path,
      size: f.size ?? f.length,
      type: f.type ?? 'application/octet-stream',
      ...(thumbnails ? { thumbnail: f.thumbnail ?? null, width: f.width ?? null, height: f.height ?? null } : {}),
    }));
    const offsets = new Map(r.files.map((f) => [f.path, f]));
    const prefix = this.#contiguousBytes(r);
    const netFiles = new Map((this.#live.get(id)?.net?.files ?? []).map((f) => [f.path, f]));
    for (const f of files) {
      const placed = offsets.get(f.path);
      const got = netFiles.get(f.path);
      if (r.role === 'receive' && got) {
        f.progress = got.length > 0 ? got.haveBytes / got.length : got.complete ? 1 : 0;
      } else if (!placed || f.size === 0) {
        f.progress = placed && prefix >= placed.offset ? 1 : 0;
      } else {
        f.progress = Math.min(1, Math.max(0, (prefix - placed.offset) / f.size));
      }
      f.available = this.#live.get(id)?.files != null || (r.role === 'receive' && f.progress >= 1);
      if (r.role === 'receive' && got) f.available = got.complete;
      if (r.freed) f.available = false;
    }
    return { ...this.view(id), files, selection: r.selection ?? null, hasManifest: manifest != null, thumbnails };
  }

  /** Deletes a save file `file()` handed out for a download, once it has been read. */
  releaseFile(name) {
    return this.#net.releaseFile(name);
  }

  /** The `.torrent` of a transfer. */
  torrent(id) {
    const r = this.#get(id);
    if (!r.torrent) {
      throw new Error(
        r.role === 'send'
          ? 'The bundle is still being prepared: its .torrent is not ready yet.'
          : 'The bundle\'s metadata has not arrived yet.',
      );
    }
    return { name: r.name, bytes: r.torrent };
  }

  /** A file of a transfer, as a Blob, when the host can reach its bytes. */
  async file(id, path) {
    const r = this.#get(id);
    if (r.role === 'receive') {
      if (r.freed) throw new Error('The downloaded copy was deleted to free space: save files before freeing it.');
      // A save file written from the stored pieces, one piece in memory at a time.
      const index = r.files.findIndex((f) => f.path === path);
      if (index < 0) throw new Error(`No file ${path} in this bundle.`);
      const figures = this.#net.figures(r.infoHash);
      const t = figures?.files?.find((f) => f.index === index);
      // A file missing only pieces that read back wrong is saved: the save
      // waits for them to be fetched again.
      if (t && !t.complete && !(figures?.progress?.damaged > 0)) throw new Error('This file has not been downloaded yet.');
      return this.#net.fileBlob(r.infoHash, index, r.files[index].type);
    }
    const files = this.#live.get(id)?.files;
    if (!files) {
      throw new Error(
        r.role === 'send'
          ? 'The files of this bundle are not reachable any more: pick them again to share them.'
          : 'This file has not been downloaded yet.',
      );
    }
    const f = files.find((f) => f.parts.join('/') === path || (f.manifest && path === MANIFEST_PATH));
    if (!f) throw new Error(`No file ${path} in this bundle.`);
    return f.blob;
  }

  // ------------------------------------------------------------ for the network

  /**
   * Calls `fn({id, state, role})` whenever a transfer changes state (and once
   * per transfer now); returns a function that stops the calls.
   */
  observe(fn) {
    this.#observers.add(fn);
    for (const r of this.#records.values()) fn({ id: r.id, state: r.state, role: r.role });
    return () => this.#observers.delete(fn);
  }

  /** A send's pieces: a lazy reader over its files and the piece hashes, or null without files. */
  pieces(id) {
    const r = this.#get(id);
    const live = this.#live.get(id);
    if (!live?.files || !r.pieceLength || !r.torrent) return null;
    return {
      source: new PieceSource(live.files.map((f) => ({ blob: f.blob })), r.pieceLength),
      hashes: live.hashes,
      torrent: r.torrent,
    };
  }

  /**
   * What the network did for a transfer since its last report: bytes up and
   * down (and how many came from the server), and the peers connected now.
   */
  report(id, { uploaded = 0, downloaded = 0, fromServer = 0, peers } = {}) {
    const r = this.#get(id);
    const live = this.#liveFor(id);
    const now = this.#now();
    r.stats.uploaded += uploaded;
    r.stats.downloaded += downloaded;
    r.stats.fromServer += fromServer;
    r.stats.fromPeers += downloaded - fromServer;
    if (uploaded) live.up.add(uploaded, now);
    if (downloaded) live.down.add(downloaded, now);
    if (peers !== undefined) live.peers = peers;
    this.#persistSoon(r);
  }

  // ------------------------------------------------------------ commands

  /**
   * Starts a send from entries `{file, path}` (files by reference, never
   * copied); returns its id at once, before hashing ends.
   */
  async createSend(entries, handles = []) {
    const bundle = layout(entries);
    const id = crypto.randomUUID();
    const now = this.#now();
    const settings = await this.#settings();
    const record = {
      id,
      role: 'send',
      // The user's choice when the send was made, kept for its life (a
      // restart included), whatever the settings say later; so is the
      // server: its share link, web seed and tracker name that one.
      uploadToServer: settings.uploadToServer !== false,
      server: settings.serverUrl,
      state: S.HASHING,
      phase: 'thumbnails',
      name: bundle.name,
      size: bundle.files.reduce((s, f) => s + f.blob.size, 0),
      fileCount: bundle.files.length,
      files: bundle.files.map((f) => ({
        path: f.parts.join('/'),
        length: f.blob.size,
        type: f.type,
        lastModified: f.blob.lastModified,
      })),
      createdAt: now,
      updatedAt: now,
      stats: { uploaded: 0, downloaded: 0, fromServer: 0, fromPeers: 0 },
    };
    this.#records.set(id, record);
    const live = this.#liveFor(id);
    await store.putBundle(record);
    const located = locate(entries, handles);
    if (located) {
      await store.putHandles(id, { handles, files: located }).catch((err) => console.warn('swarmdrop: handles', err));
    }
    this.#emit();
    live.job = this.#runSend(record, live, bundle).catch((err) => this.#fail(record, err));
    return id;
  }

  /**
   * Opens a bundle to download from its `.torrent` (bytes) or a magnet link;
   * returns the id of its transfer (the existing one if the bundle is known).
   * The network (issue 4) fetches the manifest, then the selected files.
   */
  async addReceive({ torrent = null, magnet = null, link = null }) {
    const wasm = await engine();
    if (link) torrent = await this.#fetchTorrent(link);
    const info = torrent ? wasm.inspectTorrent(torrent) : wasm.inspectMagnet(String(magnet));
    for (const r of this.#records.values()) if (r.infoHash === info.infoHash) return r.id;
    const settings = await this.#settings();
    const files = (info.files ?? []).map((f) => ({
      path: f.path,
      length: f.length,
      offset: f.offset,
      type: mimeType(f.path),
      ...(f.path === MANIFEST_PATH ? { manifest: true } : {}),
      ...(f.padding ? { padding: true } : {}),
    }));
    const visible = files.filter((f) => !f.manifest && !f.padding);
    const now = this.#now();
    const record = {
      id: crypto.randomUUID(),
      role: 'receive',
      state: S.DOWNLOADING,
      phase: torrent ? null : 'metadata',
      name: info.name ?? `Bundle ${info.infoHash.slice(0, 8)}`,
      size: visible.reduce((s, f) => s + f.length, 0),
      fileCount: visible.length,
      files,
      totalLength: info.totalLength ?? null,
      pieceLength: info.pieceLength ?? null,
      pieceCount: info.pieceCount ?? null,
      infoHash: info.infoHash,
      torrent: torrent ?? null,
      magnet: torrent ? null : String(magnet),
      link: shareLink(settings.serverUrl, info.infoHash),
      selection: visible.map((f) => f.path),
      createdAt: now,
      updatedAt: now,
      stats: { uploaded: 0, downloaded: 0, fromServer: 0, fromPeers: 0 },
    };
    this.#records.set(record.id, record);
    await this.#save(record);
    this.#startReceive(record);
    return record.id;
  }

  /** Pauses a running transfer; the state survives restarts. */
  async pause(id) {
    const r = this.#get(id);
    if (!S.canPause(r.state)) throw new Error(`A ${S.LABELS[r.state].toLowerCase()} transfer cannot be paused.`);
    r.resumeState = r.state;
    r.state = S.PAUSED;
    this.#live.get(id)?.gate.close();
    if (r.infoHash) this.#net.pause(r.infoHash);
    await this.#save(r);
    return this.view(id);
  }

  /** Resumes a paused transfer where it was. */
  async resume(id) {
    const r = this.#get(id);
    if (!S.canResume(r.state)) throw new Error(`A ${S.LABELS[r.state].toLowerCase()} transfer cannot be resumed.`);
    const live = this.#live.get(id);
    const before = r.resumeState ?? (r.role === 'send' ? S.SHARING : S.DOWNLOADING);
    if (r.role === 'send' && live?.files && r.torrent && (await this.#filesMoved(r, live))) {
      // A file changed on disk while the send was paused: nothing more is
      // served from the files as they were; they are checked again below.
      await this.#net.remove(r.infoHash, false).catch((err) => console.warn('swarmdrop:', err));
      live.files = null;
    }
    if (r.role === 'send' && !live?.files) {
      // Paused before a restart, or a file changed: the files must be found
      // (and checked) again first.
      r.needsFilesFor = before;
      r.state = S.NEEDS_FILES;
    } else {
      r.state = before;
    }
    delete r.resumeState;
    if (r.diskFull) {
      // The user freed some space; if not, the next piece pauses it again.
      delete r.diskFull;
      delete r.error;
    }
    live?.gate.open();
    if (r.infoHash && r.state !== S.NEEDS_FILES) this.#net.resume(r.infoHash);
    await this.#save(r);
    // Checking files may take a while: the popup follows it through `phase`.
    if (r.state === S.NEEDS_FILES) this.#reattach(r).catch((err) => this.#fail(r, err));
    return this.view(id);
  }

  /**
   * A send that needs its files again, after the user granted read access
   * to the handles kept with it (the popup asks, on a click): the files are
   * read through the handles, checked, and the send goes on.
   */
  async regrant(id) {
    const r = this.#get(id);
    // A look at the handles already under way may have asked before the
    // grant was given: it ends first, then they are looked at again.
    await this.#live.get(id)?.attaching?.catch(() => {});
    if (r.role !== 'send' || r.state !== S.NEEDS_FILES) return this.view(id);
    await this.#reattach(r);
    return this.view(id);
  }

  /**
   * A send that needs its files again, with the files the user picked again
   * (`{file, path}` entries): they are matched by name, checked against the
   * piece hashes, and the send goes on; a file that changed is named.
   */
  async reattachPicked(id, entries) {
    const r = this.#get(id);
    if (r.role !== 'send' || r.state !== S.NEEDS_FILES) throw new Error('This send does not need its files.');
    const files = matchPicked(this.#dataFiles(r), entries);
    await this.#reattach(r, files);
    return this.view(id);
  }

  /** Stops a transfer and forgets it (its record and stored data). */
  async cancel(id) {
    const r = this.#get(id);
    if (r.infoHash) {
      // A download's stored pieces go with it; a send's files are the user's.
      await this.#net.remove(r.infoHash, r.role === 'receive').catch((err) => console.warn('swarmdrop:', err));
    }
    const live = this.#live.get(id);
    if (live) {
      live.abort.abort();
      live.gate.open();
    }
    this.#live.delete(id);
    this.#records.delete(id);
    clearTimeout(this.#persistTimers.get(id));
    this.#persistTimers.delete(id);
    this.#written.delete(id);
    await store.deleteBundle(id);
    this.#notified.delete(id);
    this.#notify({ id, state: 'cancelled', role: null });
    this.#emit();
    return { id };
  }

  /**
   * Frees the storage of a finished download: stops seeding it and deletes
   * its stored pieces; its record stays (marked freed). The user saves its
   * files first; keeping it (the default) keeps seeding.
   */
  async free(id) {
    const r = this.#get(id);
    if (r.role !== 'receive' || r.state !== S.COMPLETE) {
      throw new Error('Only a finished download can be freed (cancel removes a transfer and its data).');
    }
    if (r.freed) return this.view(id);
    if (r.infoHash) await this.#net.remove(r.infoHash, true);
    r.freed = true;
    const live = this.#live.get(id);
    if (live) live.net = null;
    await this.#save(r);
    return this.view(id);
  }

  /**
   * Caps one transfer's upload and download rates (KB/s, 0 for none), on
   * top of the global caps. The caps are kept in its record: they hold
   * again after a restart.
   */
  async setLimits(id, { uploadKBps = 0, downloadKBps = 0 } = {}) {
    const r = this.#get(id);
    const cap = (v, name) => {
      const n = Number(v ?? 0);
      if (!Number.isFinite(n) || n < 0 || n > 10_000_000) {
        throw new Error(`The ${name} cap must be a number of KB/s (0 for none).`);
      }
      return Math.round(n);
    };
    r.limits = { uploadKBps: cap(uploadKBps, 'upload'), downloadKBps: cap(downloadKBps, 'download') };
    if (r.infoHash) this.#net.setLimits(r.infoHash, r.limits);
    await this.#save(r);
    return this.view(id);
  }

  async pauseAll() {
    for (const r of [...this.#records.values()]) if (S.canPause(r.state)) await this.pause(r.id);
    return this.list();
  }

  async resumeAll() {
    for (const r of [...this.#records.values()]) if (S.canResume(r.state)) await this.resume(r.id);
    return this.list();
  }

  // ------------------------------------------------------------ the send pipeline

  async #runSend(record, live, bundle) {
    const settings = await this.#settings();
    const server = await this.#sendServer(record);
    const { signal } = live.abort;
    const { files, manifest } = await withManifest(bundle, {
      now: record.createdAt,
      signal,
      onThumb: (done, total) => {
        record.thumbs = { done, total };
      },
    });
    if (signal.aborted) return;
    live.files = files;
    const wasm = await engine();
    const trackers = [serverTracker(server), ...settings.trackers];
    const spec = {
      name: record.name,
      files: files.map((f) => ({ path: f.parts, length: f.blob.size })),
      trackers,
      createdBy: CREATED_BY,
      creationDate: Math.floor(record.createdAt / 1000),
    };
    // The engine checks names and paths and picks the piece length before any hashing.
    const { pieceLength, pieceCount, totalLength } = wasm.planTorrent(spec);
    let offset = 0;
    record.files = files.map((f) => {
      const placed = { path: f.parts.join('/'), length: f.blob.size, offset, type: f.type };
      if (f.manifest) placed.manifest = true;
      else placed.lastModified = f.blob.lastModified;
      offset += f.blob.size;
      return placed;
    });
    Object.assign(record, { manifest, totalLength, pieceLength, pieceCount, phase: 'hashing' });
    delete record.thumbs;
    live.hashes = new Uint8Array(pieceCount * 20);
    live.done = new Uint8Array(pieceCount);
    await this.#save(record);

    await hashPieces({
      files: files.map((f) => ({ blob: f.blob })),
      pieceLength,
      pieceCount,
      hashes: live.hashes,
      done: live.done,
      gate: () => live.gate.wait(),
      signal,
      onProgress: (bytes) => {
        live.hashedBytes += bytes;
        live.hashRate.add(bytes, this.#now());
        this.#persistSoon(record);
      },
    });
    if (signal.aborted) return;

    const created = wasm.createTorrent({ ...spec, pieceLength }, live.hashes);
    record.torrent = created.bytes;
    // Kept so that files found again after a restart can be checked.
    record.pieceHashes = live.hashes.slice();
    record.infoHash = created.infoHash;
    record.magnet = created.magnet;
    created.free();
    record.link = shareLink(server, record.infoHash);
    record.phase = null;
    if (record.state === S.PAUSED) record.resumeState = S.SHARING;
    else record.state = S.SHARING;
    await this.#save(record);
    await this.#net.send({ ...record, paused: record.state === S.PAUSED }, files);
  }

  /**
   * The server a send was made with, kept in its record. A record from
   * before it was kept gets it from its share link (which names it), else
   * from the settings now; either way it is kept from then on.
   */
  async #sendServer(r) {
    if (typeof r.server !== 'string' || !r.server) {
      r.server = linkServer(r.link, r.infoHash) ?? (await this.#settings()).serverUrl;
    }
    return r.server;
  }

  // ------------------------------------------------------------ a send's files, found again

  /** The file system handles kept for a send (the popup asks the user to grant them again). */
  async handles(id) {
    this.#get(id);
    return (await store.getHandles(id).catch(() => null))?.handles ?? [];
  }

  /** A send's files as the user gave them: no manifest, no padding. */
  #dataFiles(r) {
    return r.files.filter((f) => !f.manifest && !f.padding);
  }

  /**
   * Finds a send's files again and goes on with it: `picked` files (the user
   * chose them again), else the files behind the handles kept with the send
   * when read access is granted. Leaves the send waiting (`access`: 'grant'
   * for one click, 'pick' to choose the files) when they cannot be reached.
   */
  #reattach(r, picked = null) {
    const live = this.#liveFor(r.id);
    const run = async () => {
      const layout = this.#dataFiles(r);
      let files = picked;
      let suspect = new Set(layout.keys());
      if (!files) {
        const kept = await store.getHandles(r.id).catch(() => null);
        if (!kept?.files || kept.files.length !== layout.length) {
          r.access = 'pick';
          await this.#save(r);
          return false;
        }
        if (!(await readable(kept.handles))) {
          r.access = 'grant';
          await this.#save(r);
          return false;
        }
        files = await filesFromHandles(kept);
        // A file whose date and size are those it had is the same file.
        suspect = new Set(
          layout.flatMap((w, i) =>
            files[i] && files[i].size === w.length && w.lastModified != null && files[i].lastModified === w.lastModified
              ? []
              : [i],
          ),
        );
      }
      return this.#attach(r, live, files, suspect);
    };
    live.attaching ??= run().finally(() => {
      live.attaching = null;
    });
    return live.attaching;
  }

  /** Checks found-again files and, when none changed, sends with them. */
  async #attach(r, live, files, suspect) {
    const layout = this.#dataFiles(r);
    const wanted = r.needsFilesFor ?? S.SHARING;
    if (!r.torrent || !r.pieceHashes) {
      // Stopped while preparing (or made before piece hashes were kept): the
      // bundle is prepared again from the files.
      const wrong = layout.filter((w, i) => !files[i] || files[i].size !== w.length).map((w) => w.path);
      if (r.torrent && wrong.length === 0) {
        throw new Error('This send was made by an older version: its files cannot be checked. Send them again.');
      }
      if (wrong.length) return this.#changed(r, wrong);
      Object.assign(r, { state: S.HASHING, phase: 'thumbnails' });
      for (const k of ['needsFilesFor', 'access', 'changedFiles', 'error']) delete r[k];
      await this.#save(r);
      const bundle = {
        name: r.name,
        files: layout.map((w, i) => ({ blob: files[i], parts: w.path.split('/'), type: w.type })),
      };
      live.hashedBytes = 0;
      live.job = this.#runSend(r, live, bundle).catch((err) => this.#fail(r, err));
      return true;
    }
    const manifest = new Blob([JSON.stringify(r.manifest)], { type: 'application/json' });
    r.phase = 'checking';
    this.#emit();
    const changed = await changedFiles({
      layout,
      manifest,
      files,
      suspect,
      pieceHashes: r.pieceHashes,
      pieceLength: r.pieceLength,
      signal: live.abort.signal,
    }).finally(() => {
      r.phase = null;
    });
    if (changed.length) return this.#changed(r, changed);
    live.files = [
      { blob: manifest, parts: MANIFEST_PATH.split('/'), type: 'application/json', manifest: true },
      ...layout.map((w, i) => ({ blob: files[i], parts: w.path.split('/'), type: w.type })),
    ];
    live.hashes = r.pieceHashes;
    r.state = wanted === S.PAUSED || wanted === S.HASHING ? S.SHARING : wanted;
    for (const k of ['needsFilesFor', 'access', 'changedFiles', 'error']) delete r[k];
    await this.#sendServer(r);
    await this.#save(r);
    await this.#net.send({ ...r, paused: false }, live.files);
    return true;
  }

  /** Files that are not the send's any more: named, and nothing is served from them. */
  async #changed(r, paths) {
    const names = paths.map((p) => `"${p}"`).join(', ');
    r.changedFiles = paths;
    r.access = 'pick';
    r.error =
      paths.length === 1
        ? `${names} changed since this bundle was made: it is not shared. Choose the original file to go on.`
        : `${names} changed since this bundle was made: they are not shared. Choose the original files to go on.`;
    r.state = S.NEEDS_FILES;
    await this.#save(r);
    return false;
  }

  /**
   * A running send could not read its files: those Chrome refuses to read
   * (a File whose file changed on disk since it was given) are named, the
   * send stops serving and waits for the original files, as a paused send
   * whose files changed does. `otherwise` is the error shown when every file
   * reads as it did (null: none).
   */
  async #checkRunning(r, live, otherwise) {
    if (live.checkingRunning) {
      // A piece reported damaged meanwhile is looked at once this check ends.
      if (live.damaged?.size) live.recheck = true;
      return;
    }
    live.checkingRunning = true;
    try {
      if (!live.files) return;
      const blobs = new Map(live.files.filter((f) => !f.manifest).map((f) => [f.parts.join('/'), f.blob]));
      const changed = [];
      for (const w of this.#dataFiles(r)) {
        const blob = blobs.get(w.path);
        if (!blob || blob.size !== w.length || !(await stillReadable(blob))) changed.push(w.path);
      }
      if (!changed.length && live.damaged?.size) changed.push(...(await this.#damagedFiles(r, live, blobs)));
      if (!changed.length) {
        if (otherwise) {
          r.error = otherwise;
          await this.#save(r);
        }
        return;
      }
      if (!this.#records.has(r.id) || r.state !== S.SHARING || live.files === null) return;
      live.files = null;
      await this.#net.remove(r.infoHash, false).catch((err) => console.warn('swarmdrop:', err));
      r.needsFilesFor = S.SHARING;
      live.damaged = null;
      await this.#changed(r, changed);
    } finally {
      live.checkingRunning = false;
      if (live.recheck) {
        live.recheck = false;
        this.#checkRunning(r, live, null).catch((err) => this.#fail(r, err));
      }
    }
  }

  /**
   * The files of a running send behind pieces that read back with the wrong
   * SHA-1 (a file changed with its size and date kept, which Chrome's own
   * check of a File misses): the pieces of the files those pieces touch are
   * hashed to name the changed ones; when that names none, the files the
   * pieces touch are named.
   */
  async #damagedFiles(r, live, blobs) {
    const layout = this.#dataFiles(r);
    const { pieceLength } = r;
    const touches = (w, p) => w.length > 0 && w.offset < (p + 1) * pieceLength && w.offset + w.length > p * pieceLength;
    const pieces = [...live.damaged];
    const suspect = new Set(layout.flatMap((w, i) => (pieces.some((p) => touches(w, p)) ? [i] : [])));
    const manifest = live.files.find((f) => f.manifest)?.blob;
    let found = [];
    if (r.pieceHashes && manifest) {
      found = await changedFiles({
        layout,
        manifest,
        files: layout.map((w) => blobs.get(w.path)),
        suspect,
        pieceHashes: r.pieceHashes,
        pieceLength,
        signal: live.abort.signal,
      });
    }
    return found.length ? found : [...suspect].sort((a, b) => a - b).map((i) => layout[i].path);
  }

  /**
   * Whether a file of a running send changed on disk since it was given:
   * through its handle when one is kept (its date or size), else by trying
   * to read it (Chrome refuses to read a File whose file changed).
   */
  async #filesMoved(r, live) {
    const layout = this.#dataFiles(r);
    const kept = await store.getHandles(r.id).catch(() => null);
    if (kept?.files?.length === layout.length && (await readable(kept.handles))) {
      const now = await filesFromHandles(kept);
      return layout.some((w, i) => !now[i] || now[i].size !== w.length || now[i].lastModified !== w.lastModified);
    }
    const blobs = live.files.filter((f) => !f.manifest).map((f) => f.blob);
    for (const b of blobs) if (!(await stillReadable(b))) return true;
    return false;
  }

  // ------------------------------------------------------------ the network

  /** Hands a download to the network (at once, or after a restart). */
  #startReceive(record) {
    if (!record.torrent && !record.magnet) return;
    // A selection is passed only when it leaves files out (a magnet's file
    // list is unknown until its metadata comes: everything, then).
    const names = new Set(record.selection ?? []);
    const visible = record.files.filter((f) => !f.manifest && !f.padding);
    const everything = !record.selection || visible.every((f) => names.has(f.path));
    const selectionIndices = everything
      ? null
      : record.files.flatMap((f, i) => (f.manifest || names.has(f.path) ? [i] : []));
    this.#net
      .receive({ ...record, selectionIndices, paused: record.state === S.PAUSED })
      .catch((err) => this.#fail(record, err));
  }

  /** The .torrent behind a share link (the server's landing page) or a .torrent URL. */
  async #fetchTorrent(link) {
    const url = await this.#net.torrentUrl(String(link));
    if (!url) throw new Error('This is not a Swarmdrop link, a magnet link or a .torrent URL.');
    const response = await fetch(url, { cache: 'no-store' });
    if (!response.ok) {
      throw new Error(
        response.status === 404
          ? 'The server does not have this bundle (it may have expired).'
          : `The server answered ${response.status} for the bundle's .torrent.`,
      );
    }
    return new Uint8Array(await response.arrayBuffer());
  }

  /** Figures and news from the network for the bundle `infoHash`. */
  #onNet(infoHash, { event, figures }) {
    const r = [...this.#records.values()].find((x) => x.infoHash === infoHash);
    if (!r) return;
    const live = this.#liveFor(r.id);
    if (figures) {
      live.net = figures;
      const p = figures.progress;
      if (p) {
        live.peers = p.peers;
        const toServer = figures.upload?.bytesDone ?? 0;
        r.stats =
          r.role === 'send'
            ? { uploaded: p.uploadedPeers + toServer, downloaded: 0, fromServer: toServer, fromPeers: p.uploadedPeers }
            : {
                uploaded: p.uploadedPeers,
                downloaded: p.downloadedPeers + p.downloadedServer,
                fromServer: p.downloadedServer,
                fromPeers: p.downloadedPeers,
                haveBytes: p.haveBytes,
                wantedBytes: p.wantedBytes,
              };
      }
      if (figures.upload) r.upload = figures.upload;
      // A magnet's files are known once its metadata came; a bundle made
      // elsewhere may have no manifest (then nothing is looked for again).
      if (r.role === 'receive' && !live.manifestRead && r.files.length) {
        const index = r.files.findIndex((f) => f.manifest);
        if (index < 0) live.manifestRead = true;
        else if (figures.files?.find((f) => f.index === index)?.complete) this.#readManifest(r, live, index);
      }
    }
    let save = false;
    switch (event?.type) {
      case 'completed':
        if (r.role === 'receive' && r.state === S.DOWNLOADING) {
          r.state = S.COMPLETE;
          save = true;
        }
        break;
      case 'metadata': {
        const torrent = this.#net.torrent(infoHash);
        if (torrent) r.torrent = torrent;
        if (figures?.files?.length && !r.files.length) {
          // A magnet's file list, now known.
          r.files = figures.files.map((f) => ({
            path: f.path,
            length: f.length,
            offset: f.offset,
            type: mimeType(f.path),
            ...(f.path === MANIFEST_PATH ? { manifest: true } : {}),
          }));
          const visible = r.files.filter((f) => !f.manifest);
          r.name = figures.name ?? r.name;
          r.size = visible.reduce((n, f) => n + f.length, 0);
          r.fileCount = visible.length;
          r.totalLength = figures.progress?.totalBytes ?? r.size;
          r.selection = visible.map((f) => f.path);
        }
        r.phase = null;
        save = true;
        break;
      }
      case 'paused':
        if (event.reason === 'diskFull' && (S.canPause(r.state) || r.state === S.PAUSED)) {
          if (r.state !== S.PAUSED) {
            r.resumeState = r.state;
            r.state = S.PAUSED;
          }
          r.diskFull = true;
          r.error = DISK_FULL;
          save = true;
        }
        break;
      case 'upload':
        if (event.upload?.phase === 'failed') {
          const stopped = `Upload to the server stopped: ${event.upload.error}`;
          if (r.role === 'send' && r.state === S.SHARING && live.files) {
            // Most often a file changed on disk: it is named, not reported as a failed upload.
            this.#checkRunning(r, live, stopped).catch((err) => this.#fail(r, err));
          } else {
            r.error = stopped;
            save = true;
          }
        } else if (event.upload?.phase === 'done') {
          save = true;
        }
        break;
      case 'pieceDamaged':
        if (r.role === 'receive' && r.state === S.COMPLETE) {
          // The engine fetches it again: not complete until it is stored.
          r.state = S.DOWNLOADING;
          save = true;
        } else if (r.role === 'send' && r.state === S.SHARING && live.files) {
          // A piece of the files is not what the bundle was made from: the
          // file changed, and is named.
          (live.damaged ??= new Set()).add(event.piece);
          this.#checkRunning(r, live, null).catch((err) => this.#fail(r, err));
        }
        break;
      case 'error':
        // A piece a peer asked for could not be read: did a file change?
        if (r.role === 'send' && r.state === S.SHARING && live.files) {
          this.#checkRunning(r, live, null).catch((err) => this.#fail(r, err));
        }
        break;
      default:
        break;
    }
    if (save) this.#save(r).catch(() => {});
    else this.#persistSoon(r);
  }

  /**
   * Reads a download's manifest once its file is stored (the engine fetches
   * it first): the bundle page then shows the sender's thumbnails. It is kept
   * with the transfer's live part, not in its record (which is written every
   * few seconds while it runs), and read again after the engine host
   * restarts. A manifest that does not read or parse leaves the tiles with
   * their type icons.
   */
  async #readManifest(r, live, index) {
    live.manifestRead = true;
    let file = null;
    try {
      const { length } = r.files[index];
      if (length > MAX_MANIFEST_BYTES) throw new Error(`it is ${length} bytes, more than a manifest holds`);
      file = await this.#net.fileBlob(r.infoHash, index, 'application/json');
      const manifest = receivedManifest(JSON.parse(await file.text()), r.files);
      if (!manifest) throw new Error('it lists no files');
      live.manifest = manifest;
      // Open pages ask again now (a finished download's page no longer ticks).
      this.#notify(r);
    } catch (err) {
      console.warn(`swarmdrop: the manifest of ${r.name} could not be read:`, err);
    } finally {
      if (file?.name) this.#net.releaseFile(file.name).catch(() => {});
    }
  }

  // ------------------------------------------------------------ helpers

  /** The live part of a transfer, made on first use. */
  #liveFor(id) {
    let live = this.#live.get(id);
    if (!live) {
      live = {
        files: null,
        gate: new Gate(),
        abort: new AbortController(),
        hashRate: new RateMeter(),
        up: new RateMeter(),
        down: new RateMeter(),
        peers: 0,
        hashedBytes: 0,
        job: null,
      };
      this.#live.set(id, live);
    }
    return live;
  }

  #notify(r) {
    for (const fn of this.#observers) {
      try {
        fn({ id: r.id, state: r.state, role: r.role });
      } catch (err) {
        console.error('swarmdrop: observer', err);
      }
    }
  }

  #get(id) {
    const r = this.#records.get(id);
    if (!r) throw new Error('No such transfer (it may have been cancelled).');
    return r;
  }

  /** Bytes done and to do, for the progress bar of the current phase. */
  #progress(r) {
    const live = this.#live.get(r.id);
    const phase = r.state === S.PAUSED ? r.resumeState : r.state;
    if (phase === S.HASHING) {
      return { done: live?.hashedBytes ?? 0, total: r.totalLength ?? r.size };
    }
    if (r.role === 'send') {
      // A send has every byte (its upload to the server is shown apart).
      const total = r.totalLength ?? r.size;
      return r.torrent ? { done: total, total } : { done: live?.hashedBytes ?? 0, total };
    }
    if (r.stats.wantedBytes) return { done: r.stats.haveBytes, total: r.stats.wantedBytes };
    return { done: r.stats.downloaded ?? 0, total: r.totalLength ?? r.size };
  }

  /** Bytes of the stream covered by the pieces done from the start, for per-file progress. */
  #contiguousBytes(r) {
    if (r.role === 'send' && r.torrent) return r.totalLength;
    const live = this.#live.get(r.id);
    if (!live?.done || !r.pieceLength) return 0;
    let i = 0;
    while (i < live.done.length && live.done[i]) i++;
    return Math.min(r.totalLength, i * r.pieceLength);
  }

  async #save(record) {
    record.updatedAt = this.#now();
    clearTimeout(this.#persistTimers.get(record.id));
    this.#persistTimers.delete(record.id);
    if (!this.#records.has(record.id)) return; // Cancelled meanwhile.
    this.#written.set(record.id, runningMark(record));
    await store.putBundle(record);
    if (this.#notified.get(record.id) !== record.state) {
      this.#notified.set(record.id, record.state);
      this.#notify(record);
    }
    this.#emit();
  }

  /**
   * Writes the record within PERSIST_EVERY_MS, if what changes as it runs
   * (its figures, state, upload) changed since it was last written. A record
   * carries its .torrent, piece hashes and manifest (megabytes for a large
   * bundle of photos), and a transfer reports every second even when idle:
   * a send seeding with nobody asking is not written again and again.
   */
  #persistSoon(record) {
    if (this.#persistTimers.has(record.id)) return;
    this.#persistTimers.set(
      record.id,
      setTimeout(() => {
        this.#persistTimers.delete(record.id);
        const mark = runningMark(record);
        if (this.#records.has(record.id) && this.#written.get(record.id) !== mark) {
          this.#written.set(record.id, mark);
          store.putBundle(record).catch(() => this.#written.delete(record.id));
        }
        this.#emit();
      }, PERSIST_EVERY_MS),
    );
  }

  async #fail(record, err) {
    if (err?.name === 'AbortError' || !this.#records.has(record.id)) return;
    console.error('swarmdrop: transfer failed', err);
    record.state = S.ERROR;
    record.error = err?.message ?? String(err);
    this.#live.get(record.id)?.abort.abort();
    await this.#save(record).catch(() => {});
  }
}
