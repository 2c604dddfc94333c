// The background's message router: tables of handlers keyed by message type,
// in two tiers. Extension pages (popup, bundle page, drop zone frame, send
// page) and the engine host get the full table; content scripts on web pages
// are untrusted and get a small one. The background holds no state: it
// answers from storage or forwards to the engine host.
import { ext } from '../common/ext.js';
import { dispatch, reply } from '../common/messages.js';
import { HOST_TYPES } from '../common/host-types.js';
import { getSettings, setSettings } from '../common/settings.js';
import * as platform from '../platform/host-link.js';
import { setBadge } from './badge.js';

/** The running count last written to storage. */
let lastRunning = null;

const toHost = Object.fromEntries(HOST_TYPES.map((type) => [type, (msg) => platform.toHost(msg)]));

const trusted = {
  ...toHost,
  'host.ensure': async () => {
    await platform.ensureHost();
    return true;
  },
  'host.status': async ({ running, progress }) => {
    platform.keepAlive(running > 0);
    await setBadge(running, progress);
    // Kept for the next browser start: the engine host comes back by
    // itself when transfers were running (background.js).
    if (running !== lastRunning) {
      lastRunning = running;
      await ext.storage.local.set({ runningTransfers: running });
    }
    return true;
  },
  'host.idle': () => platform.closeHostIfIdle(),
  'settings.get': () => getSettings(),
  'settings.set': ({ patch }) => setSettings(patch),
};

const untrusted = {
  'zone.enabled': async () => (await getSettings()).dropZone,
};

function fromExtensionPage(sender) {
  return (
    sender?.id === ext.runtime.id &&
    typeof sender.url === 'string' &&
    sender.url.startsWith(ext.runtime.getURL(''))
  );
}

/** Routes one message from `sender` to its handler; resolves to the handler's value. */
export function route(msg, sender) {
  return dispatch(fromExtensionPage(sender) ? trusted : untrusted, msg, sender);
}

/** Listens for runtime messages addressed to the background. */
export function listen() {
  ext.runtime.onMessage.addListener((msg, sender, sendResponse) => {
    if (msg?.target !== 'background') return false;
    return reply(route(msg, sender), sendResponse);
  });
}
