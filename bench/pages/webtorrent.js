// WebTorrent 3 (npm webtorrent, dist/webtorrent.min.js) in a plain page, for
// the bench rows 2 and 3: seeding the files picked in #files, or downloading a
// .torrent (with its url-list web seed, if any) through the given tracker.
// ICE servers are none, as Swarmdrop's on loopback.
import WebTorrent from './wt/webtorrent.min.js';

const client = new WebTorrent({ tracker: { rtcConfig: { iceServers: [] } } });
client.on('error', (e) => console.error(`webtorrent: ${e.message ?? e}`));

function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function unbase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Bytes received per kind of wire ('webSeed', 'webrtc', …) so far. */
function split(torrent) {
  const out = {};
  for (const w of torrent.wires) out[w.type] = (out[w.type] ?? 0) + w.downloaded;
  return out;
}

let current = null;

window.wt = {
  ready: true,
  /**
   * Seeds the picked files, announcing to `announce`; `opts` go to the
   * torrent's creation (name, pieceLength, urlList). Resolves to the .torrent
   * (base64) and info hash.
   */
  seed(announce, opts = {}) {
    const files = [...document.getElementById('files').files];
    return new Promise((resolve, reject) => {
      client.seed(files, { ...opts, announce: [announce] }, (t) => {
        current = t;
        resolve({ infoHash: t.infoHash, torrent: base64(t.torrentFile), length: t.length, pieceLength: t.pieceLength });
      });
      client.once('error', reject);
    });
  },
  /**
   * Adds a .torrent (base64) and resolves once every piece is stored, with the
   * bytes received per kind of wire; `webSeeds: false` drops its url-list.
   */
  download(torrent, announce, { webSeeds = true } = {}) {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const t = client.add(unbase64(torrent), { announce: [announce] }, () => {});
      current = t;
      if (!webSeeds) t.urlList = [];
      t.on('error', (e) => reject(new Error(String(e.message ?? e))));
      t.on('done', () => {
        resolve({ ms: performance.now() - t0, length: t.length, received: t.received, wires: split(t), pieceLength: t.pieceLength });
      });
    });
  },
  stats() {
    if (!current) return null;
    return { progress: current.progress, downloaded: current.downloaded, peers: current.numPeers, wires: split(current) };
  },
  /** Removes the torrent and its stored data. */
  remove() {
    const t = current;
    current = null;
    if (!t) return Promise.resolve();
    return new Promise((resolve) => client.remove(t, { destroyStore: true }, () => resolve()));
  },
};
