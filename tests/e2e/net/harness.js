// A plain page that runs the wasm glue (SwarmHost) without the extension, so
// the network glue can be tested in separate browser profiles: the sender
// hashes real files and makes the .torrent with the engine's exports, the
// receivers open the share link, and the test reads the saved bytes.
import init, * as wasm from './wasm/swarmdrop.js';

const events = [];
let host = null;

async function sha1(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-1', bytes));
}

async function sha256Hex(blob) {
  // Incremental hashing is not in WebCrypto: read the blob whole (test sizes).
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

window.harness = {
  ready: init().then(() => true),
  events,

  async start(options) {
    host = await wasm.SwarmHost.create({ ...options, onEvent: (e) => events.push(e) });
    return host.peerId();
  },

  /** Hashes the picked files and sends them; resolves to {infoHash, torrent}. */
  async send({ name, trackers, server, upload }) {
    const files = [...document.getElementById('files').files];
    const spec = { name, files: files.map((f) => ({ path: [f.name], length: f.size })), trackers, webSeeds: [] };
    const { pieceLength, pieceCount, totalLength: total } = wasm.planTorrent(spec);
    const hashes = new Uint8Array(pieceCount * 20);
    const whole = new Blob(files);
    for (let i = 0; i < pieceCount; i++) {
      const bytes = await whole.slice(i * pieceLength, Math.min(total, (i + 1) * pieceLength)).arrayBuffer();
      hashes.set(await sha1(bytes), i * 20);
    }
    const created = wasm.createTorrent({ ...spec, pieceLength }, hashes);
    const torrent = created.bytes;
    const infoHash = created.infoHash;
    created.free();
    const entries = files.map((f) => ({ path: `${f.name}`, file: f }));
    await host.addSend(torrent, entries, { server, upload });
    return { infoHash, pieceLength, pieceCount };
  },

  download(source, options) {
    return host.addDownload(source, options ?? {});
  },

  transfers() {
    return host.transfers();
  },

  transfer(infoHash) {
    return host.transfer(infoHash);
  },

  pause(infoHash) {
    host.pause(infoHash);
  },

  resume(infoHash) {
    host.resume(infoHash);
  },

  /**
   * SHA-256 of every file of a transfer, as the host would save it. With
   * `opfs: false` the page has no origin private file system (as a Firefox
   * private window), so the host saves the other way; either way the check
   * throws if the save took the other path.
   */
  async fileHashes(infoHash, { opfs = true } = {}) {
    const hidden = opfs ? null : Object.getOwnPropertyDescriptor(StorageManager.prototype, 'getDirectory');
    if (hidden) delete StorageManager.prototype.getDirectory;
    try {
      const t = host.transfer(infoHash);
      const out = {};
      for (const f of t.files) {
        const blob = await host.fileBlob(infoHash, f.index);
        // Only the OPFS save hands out a File.
        if ((blob instanceof File) !== opfs) throw new Error(`${f.path} was not saved ${opfs ? 'through' : 'without'} OPFS`);
        out[f.path] = { size: blob.size, sha256: await sha256Hex(blob) };
        await host.releaseFile(blob);
      }
      return out;
    } finally {
      if (hidden) Object.defineProperty(StorageManager.prototype, 'getDirectory', hidden);
    }
  },
};
