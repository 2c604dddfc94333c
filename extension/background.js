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
// After a browser restart, bring the engine host back so running transfers resume.
ext.runtime.onStartup.addListener(() => {
  platform.ensureHost().catch((err) => console.error('swarmdrop: engine host', err));
});
