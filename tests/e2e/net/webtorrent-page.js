// A plain page running WebTorrent 3 (npm `webtorrent`, its browser bundle),
// with no extension: the other side of the interop tests. Only the trackers
// the test names are used (no default trackers, no DHT, no web seeds, no
// STUN servers), so every byte it gets comes from a peer found through the
// Swarmdrop tracker.
import WebTorrent from './webtorrent/webtorrent.min.js';

const log = [];
const wires = new Map(); // infoHash -> [{wire, ...}]
let client = null;

function note(kind, message) {
  log.push({ at: Math.round(performance.now()), kind, message: String(message) });
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Keeps every wire of `torrent` (WebTorrent forgets them once they close). */
function watch(torrent) {
  torrent.on('error', (e) => note('torrent error', e?.message ?? e));
  torrent.on('warning', (e) => note('torrent warning', e?.message ?? e));
  torrent.on('noPeers', (source) => note('no peers', source));
  torrent.on('trackerAnnounce', () => note('announced', torrent.infoHash));
  torrent.on('wire', (wire) => {
    const seen = wires.get(torrent.infoHash) ?? [];
    seen.push(wire);
    wires.set(torrent.infoHash, seen);
    note('wire', `${wire.type} ${wire.peerId}`);
    wire.on('close', () => note('wire closed', wire.peerId));
  });
}

function clientName(v) {
  if (v == null) return null;
  return typeof v === 'string' ? v : new TextDecoder().decode(v);
}

function torrentOf(infoHash) {
  const t = client.torrents.find((x) => x.infoHash === infoHash);
  if (!t) throw new Error(`WebTorrent has no torrent ${infoHash}`);
  return t;
}

window.wt = {
  ready: Promise.resolve(true),
  log,

  /** Starts the client; web seeds are used only if `webSeeds` is true. */
  start({ webSeeds = false } = {}) {
    client = new WebTorrent({
      dht: false,
      lsd: false,
      utPex: false,
      natUpnp: false,
      natPmp: false,
      webSeeds,
      tracker: { rtcConfig: { iceServers: [] } },
    });
    client.on('error', (e) => note('client error', e?.message ?? e));
    return client.peerId;
  },

  /** Adds a magnet link (or .torrent bytes) announcing only to `announce`; resolves to the info hash. */
  add(source, announce) {
    const input = Array.isArray(source) ? new Uint8Array(source) : source;
    return new Promise((resolve, reject) => {
      const t = client.add(input, { announce }, (torrent) => note('metadata', torrent.name));
      watch(t);
      if (t.infoHash) resolve(t.infoHash);
      else t.once('infoHash', () => resolve(t.infoHash));
      t.once('error', reject);
    });
  },

  /** Seeds the picked files as one torrent named `name`; resolves to {infoHash, magnetURI}. */
  seed(name, announce) {
    const files = [...document.getElementById('files').files];
    return new Promise((resolve, reject) => {
      const t = client.seed(files, { name, announce }, (torrent) =>
        resolve({ infoHash: torrent.infoHash, magnetURI: torrent.magnetURI, pieceLength: torrent.pieceLength }),
      );
      watch(t);
      t.once('error', reject);
    });
  },

  /** Where a torrent stands, and what each of its wires (peers) sent and got. */
  status(infoHash) {
    const t = torrentOf(infoHash);
    return {
      ready: t.ready,
      done: t.done,
      progress: t.progress,
      length: t.length,
      downloaded: t.downloaded,
      uploaded: t.uploaded,
      received: t.received,
      numPeers: t.numPeers,
      wires: (wires.get(infoHash) ?? []).map((w) => ({
        type: w.type,
        peerId: w.peerId,
        client: clientName(w.peerExtendedHandshake?.v),
        downloaded: w.downloaded,
        uploaded: w.uploaded,
        destroyed: w.destroyed,
      })),
    };
  },

  /** SHA-256 and size of every file of a finished torrent, read from WebTorrent. */
  async fileHashes(infoHash) {
    const t = torrentOf(infoHash);
    const out = {};
    for (const f of t.files) {
      out[f.path] = { size: f.length, sha256: await sha256Hex(await f.arrayBuffer()) };
    }
    return out;
  },
};
