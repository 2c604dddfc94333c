// Swarmdrop's drop zone on web pages (content script).
//
// While files are dragged over the page, a small zone appears in the
// bottom-right corner; it disappears when the drag leaves the window, ends,
// or is dropped elsewhere. The zone is an extension-origin frame
// (drop.html), so a drop on it, and the File objects it carries, land in the
// extension and never in the page. Everywhere else the page's own drop
// targets work as before: this script only listens, it never cancels or
// stops a page's drag events.
(() => {
  if (window.top !== window || window.__swarmdropZone) return;
  window.__swarmdropZone = true;

  const ext = globalThis.browser ?? globalThis.chrome;
  const FRAME_URL = ext.runtime.getURL('drop.html');
  // scheme://host of the extension (URL#origin is "null" for moz-extension:).
  const FRAME_ORIGIN = FRAME_URL.slice(0, FRAME_URL.indexOf('/', FRAME_URL.indexOf('//') + 2));
  /** Browsers fire dragover every few hundred ms during a drag; silence this long means it ended. */
  const SILENCE_MS = 1200;
  const WIDTH = 360;
  const HEIGHT = 184;

  let holder = null;
  let frame = null;
  let shown = false;
  let pinned = false; // After a drop the zone stays, as the bundle's panel, until closed.
  let silence = null;
  let enabled = null;

  function isFileDrag(e) {
    const types = e.dataTransfer?.types;
    return !!types && Array.prototype.includes.call(types, 'Files');
  }

  function build() {
    holder = document.createElement('swarmdrop-zone');
    const root = holder.attachShadow({ mode: 'closed' });
    const style = document.createElement('style');
    style.textContent = `
      :host { all: initial; position: fixed; right: 16px; bottom: 16px; z-index: 2147483647;
        width: ${WIDTH}px; height: ${HEIGHT}px; display: none; }
      :host(.shown) { display: block; }
      iframe { width: 100%; height: 100%; border: 0; border-radius: 16px; display: block;
        background: transparent; color-scheme: normal;
        box-shadow: 0 18px 48px rgba(24, 20, 64, .28), 0 2px 6px rgba(24, 20, 64, .18); }`;
    frame = document.createElement('iframe');
    frame.src = FRAME_URL;
    frame.title = 'Swarmdrop: drop files here to send them';
    frame.allow = 'clipboard-write';
    root.append(style, frame);
    (document.body ?? document.documentElement).append(holder);
  }

  function post(type) {
    frame?.contentWindow?.postMessage({ swarmdrop: true, type }, FRAME_ORIGIN);
  }

  function show() {
    if (!holder) build();
    if (!holder.isConnected) (document.body ?? document.documentElement).append(holder);
    if (!shown) {
      shown = true;
      holder.classList.add('shown');
      post('drag-start');
    }
  }

  function hide() {
    clearTimeout(silence);
    silence = null;
    if (!shown || pinned) return;
    shown = false;
    holder.classList.remove('shown');
    post('drag-end');
  }

  function stillDragging() {
    clearTimeout(silence);
    silence = setTimeout(hide, SILENCE_MS);
  }

  async function zoneEnabled() {
    if (enabled === null) {
      try {
        const reply = await ext.runtime.sendMessage({ target: 'background', type: 'zone.enabled' });
        enabled = reply?.ok ? reply.value !== false : true;
      } catch {
        enabled = true;
      }
      setTimeout(() => (enabled = null), 10_000); // Pick up a change of the setting.
    }
    return enabled;
  }

  // Capture phase and passive: we see every drag event first, change nothing.
  const opts = { capture: true, passive: true };
  window.addEventListener(
    'dragenter',
    (e) => {
      if (!isFileDrag(e)) return;
      if (enabled === false) return;
      show();
      stillDragging();
      zoneEnabled().then((on) => {
        if (!on) {
          pinned = false;
          hide();
        }
      });
    },
    opts,
  );
  window.addEventListener(
    'dragover',
    (e) => {
      if (shown && isFileDrag(e)) stillDragging();
    },
    opts,
  );
  window.addEventListener(
    'dragleave',
    (e) => {
      // Leaving the window: no element is entered, and the pointer is at or past an edge.
      if (!shown || e.relatedTarget) return;
      const { clientX: x, clientY: y } = e;
      const out = x <= 0 || y <= 0 || x >= window.innerWidth || y >= window.innerHeight;
      const overZone = holder && (() => {
        const r = holder.getBoundingClientRect();
        return x >= r.left && x <= r.right && y >= r.top && y <= r.bottom;
      })();
      if (out && !overZone) hide();
    },
    opts,
  );
  // A drop anywhere on the page (or the drag cancelled) ends the drag.
  window.addEventListener('drop', hide, opts);
  window.addEventListener('dragend', hide, opts);

  window.addEventListener('message', (e) => {
    // Only an extension-origin document can send with this origin (the page
    // cannot forge it); Firefox's wrappers make comparing e.source unreliable.
    if (!frame || e.origin !== FRAME_ORIGIN) return;
    const type = e.data?.swarmdrop === true ? e.data.type : null;
    if (type === 'over') {
      // The drag is over the zone itself (the page sees no dragover then).
      stillDragging();
    } else if (type === 'pinned') {
      // Files were dropped on the zone: it stays, as the bundle's panel, until closed.
      show();
      pinned = true;
      clearTimeout(silence);
    } else if (type === 'close') {
      pinned = false;
      hide();
    }
  });
})();
