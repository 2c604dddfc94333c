// Chrome: the engine host is an offscreen document (reason WEB_RTC: service
// workers have no RTCPeerConnection and are stopped when idle). Same exports
// as platform/firefox/host-link.js.
import { unwrap } from '../common/messages.js';

const HOST_URL = 'host.html';
/** The creation in flight, so that two callers do not create two documents. */
let creating = null;

export const browserName = 'chrome';

/** Host messages arrive as runtime messages here; nothing to connect. */
export function connect() {}

async function hostOpen() {
  const contexts = await chrome.runtime.getContexts({
    contextTypes: ['OFFSCREEN_DOCUMENT'],
    documentUrls: [chrome.runtime.getURL(HOST_URL)],
  });
  return contexts.length > 0;
}

/**
 * Makes sure the engine host exists and listens. A document being created
 * is listed by getContexts before its scripts have run, so a creation in
 * flight is waited for, never taken for a host that listens: a file
 * channel request posted then would be lost (BroadcastChannel keeps no
 * message for a listener that does not exist yet).
 */
export async function ensureHost() {
  if (!creating && (await hostOpen()) && !creating) return;
  creating ??= chrome.offscreen
    .createDocument({
      url: HOST_URL,
      reasons: ['WEB_RTC'],
      justification: 'Swarmdrop runs its transfers here: peer connections (WebRTC), tracker sockets and storage.',
    })
    .catch(async (err) => {
      // Another caller won the race: the document exists, which is what we want.
      if (!(await hostOpen())) throw err;
    })
    .finally(() => {
      creating = null;
    });
  await creating;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Sends a request to the engine host, waiting for it to start listening if it just opened. */
export async function toHost(msg) {
  await ensureHost();
  for (let attempt = 0; ; attempt++) {
    try {
      const answer = await chrome.runtime.sendMessage({ ...msg, target: 'host' });
      if (answer === undefined) throw new Error('no answer');
      return unwrap(answer, msg.type);
    } catch (err) {
      const starting = /no answer|Receiving end does not exist|message port closed/i.test(err.message);
      if (!starting || attempt >= 40) throw err;
      await sleep(50);
    }
  }
}

/**
 * Closes the engine host when it says it is idle and nothing runs. The ping
 * says `closing`: an idle host then stops taking file channel requests, so a
 * send picked meanwhile is posted again to the next host (js/common/channel.js).
 */
export async function closeHostIfIdle() {
  if (!(await hostOpen())) return false;
  const { running } = await toHost({ type: 'host.ping', closing: true });
  if (running > 0) return false;
  await chrome.offscreen.closeDocument();
  return true;
}

/** The offscreen document stays open by itself while transfers run. */
export function keepAlive() {}
