// Firefox: the engine host lives in this background page (an event page has
// the DOM, WebRTC and workers). Same exports as platform/chrome/host-link.js.
import { startHost } from '../host/host.js';

export const browserName = 'firefox';

let host = null;
let deliver = () => {};

/** Routes what the engine host emits (status, idleness) to the background's router. */
export function connect(onHostMessage) {
  deliver = (msg) => Promise.resolve(onHostMessage(msg)).catch((err) => console.error('swarmdrop:', err));
}

function theHost() {
  host ??= startHost((msg) => deliver(msg));
  return host;
}

export async function ensureHost() {
  theHost();
}

export function toHost(msg) {
  return theHost().handle(msg);
}

/** The browser unloads an idle event page by itself; nothing to close. */
export async function closeHostIfIdle() {
  return false;
}

// An event page is unloaded after 30 s (extensions.background.idle.timeout)
// without extension events, and the engine host with it. While transfers run,
// a storage.session write every 5 s fires storage.onChanged here, which counts
// as activity and keeps the page alive (tests/e2e/firefox.test.js proves it
// with the timeout lowered to 8 s).
const KEEPALIVE_MS = 5_000;
let keepAliveTimer = null;
browser.storage.onChanged.addListener(() => {});

export function keepAlive(on) {
  if (on && keepAliveTimer === null) {
    keepAliveTimer = setInterval(() => {
      browser.storage.session.set({ keepAlive: Date.now() }).catch(() => {});
    }, KEEPALIVE_MS);
  } else if (!on && keepAliveTimer !== null) {
    clearInterval(keepAliveTimer);
    keepAliveTimer = null;
  }
}
