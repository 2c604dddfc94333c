// User settings: defaults, validation, and where they live (storage.local).
//
// Pages with the storage API read and write them directly; the Chrome
// offscreen document has only `runtime`, so it asks the background.
import { ext } from './ext.js';
import { call } from './messages.js';

export const DEFAULTS = Object.freeze({
  /** The availability server: tracker, bundle store, web seed. */
  serverUrl: 'http://127.0.0.1:8750',
  /** Extra WebTorrent trackers (ws:// or wss://), besides the server's own. */
  trackers: [],
  /** Upload and download caps in KB/s; 0 means no cap. */
  uploadLimitKBps: 0,
  downloadLimitKBps: 0,
  /** Show the drop zone when files are dragged over a web page. */
  dropZone: true,
  /** Keep a copy of each sent bundle on the server (false: peer-to-peer only). */
  uploadToServer: true,
  /**
   * ICE servers for WebRTC (RTCIceServer objects): STUN finds the public
   * address behind a NAT, TURN relays when no direct path exists. A server
   * that does not answer costs at most the engine's bounded gathering wait.
   */
  iceServers: [{ urls: 'stun:stun.l.google.com:19302' }],
});

/**
 * Parses ICE servers given one per line as `URL` or `URL username credential`
 * (stun:, stuns:, turn:, turns:; TURN needs the username and credential),
 * or as RTCIceServer objects; throws an Error naming the first bad entry.
 */
export function parseIceServers(input) {
  const entries = Array.isArray(input) ? input : String(input ?? '').split('\n');
  const out = [];
  for (const entry of entries) {
    const [urls, username, credential, ...rest] =
      typeof entry === 'string' ? entry.trim().split(/\s+/).filter(Boolean) : [entry?.urls, entry?.username, entry?.credential];
    if (urls == null || urls === '') continue;
    const line = typeof entry === 'string' ? entry.trim() : String(urls);
    if (typeof urls !== 'string' || rest.length > 0 || !/^(stuns?|turns?):[^\s/]+/.test(urls)) {
      throw new Error(`Not an ICE server (stun:, stuns:, turn: or turns: URL, then for TURN a username and a credential): ${line}`);
    }
    const turn = urls.startsWith('turn');
    if (turn && (!username || !credential)) throw new Error(`A TURN server needs a username and a credential: ${line}`);
    if (!turn && (username || credential)) throw new Error(`A STUN server takes no username or credential: ${line}`);
    out.push(turn ? { urls, username: String(username), credential: String(credential) } : { urls });
  }
  return out;
}

/** ICE servers as the settings panel shows them, one per line. */
export function formatIceServers(servers) {
  return servers.map((s) => [s.urls, s.username, s.credential].filter(Boolean).join(' ')).join('\n');
}

const KEY = 'settings';

/** Checks and normalizes a settings object; throws an Error naming the first bad field. */
export function validate(input) {
  const s = { ...DEFAULTS, ...input };
  let server;
  try {
    server = new URL(String(s.serverUrl).trim());
  } catch {
    throw new Error('The server URL is not a valid URL.');
  }
  if (server.protocol !== 'http:' && server.protocol !== 'https:') {
    throw new Error('The server URL must start with http:// or https://.');
  }
  const trackers = (Array.isArray(s.trackers) ? s.trackers : String(s.trackers).split(/\s+/))
    .map((t) => String(t).trim())
    .filter(Boolean);
  for (const t of trackers) {
    let u;
    try {
      u = new URL(t);
    } catch {
      throw new Error(`Not a tracker URL: ${t}`);
    }
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
      throw new Error(`Trackers must be ws:// or wss:// URLs: ${t}`);
    }
  }
  const cap = (v, name) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || n > 10_000_000) {
      throw new Error(`The ${name} cap must be a number of KB/s (0 for none).`);
    }
    return Math.round(n);
  };
  return {
    serverUrl: server.href.replace(/\/+$/, ''),
    trackers: [...new Set(trackers)],
    uploadLimitKBps: cap(s.uploadLimitKBps, 'upload'),
    downloadLimitKBps: cap(s.downloadLimitKBps, 'download'),
    dropZone: Boolean(s.dropZone),
    uploadToServer: Boolean(s.uploadToServer),
    iceServers: parseIceServers(s.iceServers),
  };
}

/** The current settings (defaults filled in). */
export async function getSettings() {
  if (!ext.storage?.local) {
    return call('settings.get');
  }
  const stored = (await ext.storage.local.get(KEY))[KEY] ?? {};
  try {
    return validate(stored);
  } catch {
    return { ...DEFAULTS };
  }
}

/** Validates and stores a change; returns the settings now in force. */
export async function setSettings(patch) {
  if (!ext.storage?.local) {
    return call('settings.set', { patch });
  }
  const next = validate({ ...(await getSettings()), ...patch });
  await ext.storage.local.set({ [KEY]: next });
  return next;
}
