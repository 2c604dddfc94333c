// Swarmdrop's background: Chrome's service worker, Firefox's event page.
// It routes messages, keeps the engine host alive while transfers run, and
// keeps the toolbar badge. The engine host is per browser
// (js/platform/host-link.js): an offscreen document in Chrome, this very
// page in Firefox.
import { ext } from './js/common/ext.js';
import { listen, route } from './js/background/router.js';
import * as platform from './js/platform/host-link.js';

listen();
// Messages the engine host sends when it lives in this page (Firefox).
platform.connect((msg) => route(msg, { id: ext.runtime.id, url: ext.runtime.getURL('') }));
// After a browser restart (clean or a crash), bring the engine host back so
// that running transfers resume by themselves. runtime.onStartup is not
// enough: when Chrome loads the extension anew at startup (an update, or an
// unpacked extension given with --load-extension) it fires onInstalled
// instead, and a crash may leave neither. So the first start of this worker
// in a browser session looks at what was running when the last one ended.
async function resumeAfterStart() {
  const { hostChecked } = await ext.storage.session.get('hostChecked');
  if (hostChecked) return;
  await ext.storage.session.set({ hostChecked: true });
  const { runningTransfers = 0 } = await ext.storage.local.get('runningTransfers');
  if (runningTransfers > 0) await platform.ensureHost();
}
const resume = () => resumeAfterStart().catch((err) => console.error('swarmdrop: engine host', err));
ext.runtime.onStartup.addListener(resume);
ext.runtime.onInstalled.addListener(resume);
resume();
