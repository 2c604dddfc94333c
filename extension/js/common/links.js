// Links to a bundle: the share link, the server's tracker, the extension's bundle page.
//
// The server's routes are defined with the server (issue 4); every URL the
// extension derives from the server address is made here and nowhere else.

/** The share link for a bundle: the server's landing page for it. */
export function shareLink(serverUrl, infoHash) {
  return `${trimSlash(serverUrl)}/b/${infoHash}`;
}

/**
 * The server a share link names (what `shareLink` was given), or null when
 * `link` is not a share link for `infoHash`.
 */
export function linkServer(link, infoHash) {
  const text = String(link ?? '');
  const tail = `/b/${infoHash}`;
  if (!infoHash || !text.endsWith(tail)) return null;
  const server = text.slice(0, -tail.length);
  try {
    const url = new URL(server);
    return url.protocol === 'http:' || url.protocol === 'https:' ? trimSlash(server) : null;
  } catch {
    return null;
  }
}

/** The server's WebTorrent tracker, derived from its address (http -> ws, https -> wss). */
export function serverTracker(serverUrl) {
  const url = new URL(trimSlash(serverUrl));
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${trimSlash(url.href)}/announce`;
}

/** Path (relative to the extension root) of the bundle page for a transfer. */
export function bundlePage(id) {
  return `bundle.html?id=${encodeURIComponent(id)}`;
}

function trimSlash(s) {
  return String(s).replace(/\/+$/, '');
}
