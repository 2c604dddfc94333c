// The bundle page: a bundle's files as a mosaic of thumbnails (made by the
// sender and carried in the bundle's manifest), a click enlarges an image,
// checkboxes choose files, progress per file, and saving to disk through the
// downloads API (Blob URLs of files fetched from the engine host by
// reference; the host's save files are released once the download read them).
import { fetchFile, releaseFile } from '../common/channel.js';
import { onTransferChange } from '../common/events.js';
import { ext } from '../common/ext.js';
import { kind } from '../common/filetypes.js';
import * as fmt from '../common/format.js';
import { SILENT_TEXT, call, callNoting } from '../common/messages.js';
import * as S from '../common/states.js';
import { copyText } from './clipboard.js';
import { el, icon } from './icons.js';

const $ = (id) => document.getElementById(id);
const id = new URLSearchParams(location.search).get('id');
const tiles = new Map(); // path -> {root, bar, pct, box}
const selected = new Set();
let bundle = null;
/** Whether the page shows the sender's final thumbnails (its refreshes then leave them out). */
let thumbsFinal = false;
let refreshTimer = null;
let lightboxUrl = null;
let shownError = null;
let lightboxBlob = null;

function message(text, bad = false) {
  delete $('message').dataset.silent;
  $('message').hidden = !text;
  $('message').className = bad ? 'bad' : '';
  $('message').textContent = text ?? '';
}

/** The number of the last bundle.get asked for, and of the last shown (an older answer is dropped). */
let asked = 0;
let shown = 0;

/**
 * Asks the engine host for the bundle and renders it, every second while it
 * runs. A request not answered within SILENT_MS says so, with a way to ask
 * again; its answer is still shown if it comes later.
 */
async function refresh() {
  clearTimeout(refreshTimer);
  const mine = ++asked;
  let answer;
  try {
    answer = await callNoting('bundle.get', { id, thumbnails: !thumbsFinal }, engineSilent);
  } catch (err) {
    if (mine < shown) return;
    shown = mine;
    message(err.message, true);
    return;
  }
  if (mine < shown) return;
  shown = mine;
  bundle = answer;
  if ($('message').dataset.silent) message(null);
  render();
  if (mine !== asked) return; // a request asked again over this one keeps the loop going
  if (S.isRunning(bundle.state) || bundle.state === S.PAUSED) refreshTimer = setTimeout(refresh, 1000);
}

/** The engine has not answered for SILENT_MS: say so, and offer to ask again. */
function engineSilent() {
  message(SILENT_TEXT, true);
  $('message').dataset.silent = '1';
  const again = el('button', { class: 'btn small', dataset: { action: 'retry' } }, 'Try again');
  again.addEventListener('click', () => {
    message('Asking the Swarmdrop engine again…');
    $('message').dataset.silent = '1';
    refresh();
  });
  $('message').append(' ', again);
}

function render() {
  document.title = `${bundle.name} · Swarmdrop`;
  $('summary').hidden = false;
  $('toolbar').hidden = false;
  $('name').textContent = bundle.name;
  const created = new Date(bundle.createdAt).toLocaleString();
  $('meta').textContent = `${fmt.files(bundle.fileCount)} · ${fmt.bytes(bundle.size)} · ${bundle.role === 'send' ? 'sent' : 'added'} ${created}`;
  $('state').className = `chip ${bundle.state}`;
  $('state').textContent = S.LABELS[bundle.state] ?? bundle.state;
  $('bar').className = `bar ${bundle.state === S.PAUSED ? 'paused' : bundle.link ? 'done' : ''}`;
  $('bar').firstElementChild.style.transform = `scaleX(${bundle.progress})`;
  if (bundle.link) {
    $('link').value = bundle.link;
    $('link-row').hidden = false;
  }

  if (bundle.files.length === 0 && bundle.phase === 'metadata') {
    message('Fetching the list of files from peers and the server…');
  } else if (bundle.error) {
    // A paused download's full disk, an upload or transfer failure.
    if (!$('message').textContent.startsWith('Saved')) message(bundle.error, true);
    shownError = bundle.error;
  } else if (bundle.damaged > 0) {
    // Pieces that read back wrong: a save in progress waits for them.
    const n = bundle.damaged;
    shownError = n === 1 ? '1 damaged piece is being fetched again.' : `${n} damaged pieces are being fetched again.`;
    message(shownError);
  } else if ($('message').textContent.startsWith('Fetching the list') || (shownError && $('message').textContent === shownError)) {
    message(null);
    shownError = null;
  }
  // A finished download keeps seeding until the user frees its storage.
  const finished = bundle.role === 'receive' && bundle.state === S.COMPLETE;
  $('free').hidden = !finished || bundle.freed;
  $('freed').hidden = !(finished && bundle.freed);
  // The bundle's own caps, as kept in its record (not while the user types).
  $('caps').hidden = bundle.freed || bundle.state === S.ERROR;
  for (const [input, value] of [
    ['cap-up', bundle.limits?.uploadKBps],
    ['cap-down', bundle.limits?.downloadKBps],
  ]) {
    if (document.activeElement !== $(input)) $(input).value = value ? String(value) : '';
  }
  for (const f of bundle.files) {
    let t = tiles.get(f.path);
    if (!t) {
      t = makeTile(f);
      tiles.set(f.path, t);
      selected.add(f.path);
      $('mosaic').append(t.root);
    } else if (f.thumbnail && !t.file.thumbnail) {
      // The thumbnail came after the tile (a download's manifest is read
      // once its file is stored): the tile is made again with it.
      const fresh = makeTile(f);
      t.root.replaceWith(fresh.root);
      tiles.set(f.path, fresh);
      t = fresh;
    }
    // An answer without thumbnails keeps the ones shown.
    if (!bundle.thumbnails) Object.assign(f, { thumbnail: t.file.thumbnail, width: t.file.width, height: t.file.height });
    t.bar.firstElementChild.style.transform = `scaleX(${f.progress})`;
    t.bar.className = `bar ${f.progress >= 1 ? 'done' : ''}`;
    t.pct.textContent = f.progress >= 1 ? fmt.bytes(f.size) : `${fmt.percent(f.progress)} of ${fmt.bytes(f.size)}`;
    t.file = f;
  }
  if (bundle.thumbnails && bundle.hasManifest) thumbsFinal = true;
  updateSelection();
}

function makeTile(f) {
  const name = f.path.split('/').pop();
  const k = kind(f.type);
  const box = el('input', { type: 'checkbox', class: 'pick', checked: true, title: 'Include in "Save selected"' });
  const visual = f.thumbnail
    ? el('button', { class: 'visual image', title: `Enlarge ${name}` }, el('img', { src: f.thumbnail, alt: name, loading: 'lazy' }))
    : el('div', { class: 'visual' }, icon(k));
  const extLabel = f.thumbnail ? null : el('span', { class: 'ext' }, name.includes('.') ? name.split('.').pop().slice(0, 5) : '');
  const bar = el('div', { class: 'bar' }, el('span'));
  const pct = el('span');
  const root = el(
    'article',
    { class: 'tile', dataset: { path: f.path, kind: k } },
    visual,
    extLabel,
    box,
    el(
      'div',
      { class: 'info' },
      el('span', { class: 'fname ellipsis', title: f.path }, name),
      el('div', { class: 'fsub' }, el('span', { class: 'ellipsis' }, folderOf(f.path)), pct),
      bar,
    ),
  );
  const t = { root, bar, pct, box, file: f };
  box.addEventListener('change', () => {
    if (box.checked) selected.add(f.path);
    else selected.delete(f.path);
    updateSelection();
  });
  if (f.thumbnail) visual.addEventListener('click', () => enlarge(t.file));
  return t;
}

function folderOf(path) {
  const parts = path.split('/');
  return parts.length > 1 ? parts.slice(0, -1).join('/') : '';
}

function updateSelection() {
  for (const [path, t] of tiles) {
    t.box.checked = selected.has(path);
    t.root.classList.toggle('unselected', !selected.has(path));
  }
  const n = selected.size;
  const size = bundle.files.filter((f) => selected.has(f.path)).reduce((s, f) => s + f.size, 0);
  $('selected-count').textContent = `${n} of ${fmt.files(bundle.files.length)} selected · ${fmt.bytes(size)}`;
  $('select-all').checked = n === bundle.files.length;
  $('select-all').indeterminate = n > 0 && n < bundle.files.length;
  $('save').disabled = n === 0;
}

$('select-all').addEventListener('change', () => {
  if ($('select-all').checked) bundle.files.forEach((f) => selected.add(f.path));
  else selected.clear();
  updateSelection();
});

// ------------------------------------------------------------ lightbox

async function enlarge(f) {
  const name = f.path.split('/').pop();
  $('lb-img').src = f.thumbnail;
  $('lb-img').dataset.full = '';
  $('lb-caption').textContent = `${name}${f.width ? ` · ${f.width} × ${f.height}` : ''}`;
  $('lightbox').hidden = false;
  try {
    const blob = await fetchFile(id, f.path);
    if ($('lightbox').hidden) {
      releaseFile(blob).catch(() => {});
      return;
    }
    dropLightboxImage();
    lightboxBlob = blob;
    lightboxUrl = URL.createObjectURL(blob);
    $('lb-img').src = lightboxUrl;
    $('lb-img').dataset.full = '1';
  } catch {
    // Not downloaded yet (or not reachable): the thumbnail, enlarged, stays.
  }
}

function dropLightboxImage() {
  if (lightboxUrl) URL.revokeObjectURL(lightboxUrl);
  if (lightboxBlob) releaseFile(lightboxBlob).catch(() => {});
  lightboxUrl = null;
  lightboxBlob = null;
}

function closeLightbox() {
  $('lightbox').hidden = true;
  $('lb-img').removeAttribute('src');
  dropLightboxImage();
}

$('lb-close').append(icon('x'));
$('lightbox').addEventListener('click', closeLightbox);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && !$('lightbox').hidden) closeLightbox();
});

// ------------------------------------------------------------ actions

$('copy').addEventListener('click', async () => {
  const ok = await copyText($('link').value, $('link'));
  $('copy').textContent = ok ? 'Copied' : 'Copy failed';
  setTimeout(() => ($('copy').textContent = 'Copy link'), 1500);
});

$('torrent').addEventListener('click', async () => {
  try {
    const { name, base64 } = await call('transfer.torrent', { id });
    const bytes = Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0));
    await download(new Blob([bytes], { type: 'application/x-bittorrent' }), `${name}.torrent`);
  } catch (err) {
    message(err.message, true);
  }
});

$('save').addEventListener('click', async () => {
  const chosen = bundle.files.filter((f) => selected.has(f.path) && f.available);
  if (chosen.length === 0) {
    message('None of the selected files has been downloaded yet.', true);
    return;
  }
  let saved = 0;
  const failed = [];
  $('save').disabled = true;
  for (const f of chosen) {
    try {
      await download(await fetchFile(id, f.path), `${bundle.name}/${f.path}`, { release: true });
      saved++;
    } catch (err) {
      failed.push(`${f.path}: ${err.message}`);
    }
  }
  $('save').disabled = false;
  if (failed.length) message(`Saved ${fmt.files(saved)}. Not saved: ${failed.join('; ')}`, true);
  else message(`Saved ${fmt.files(saved)} to your downloads folder, in “${bundle.name}”.`);
});

$('free').addEventListener('click', async () => {
  if (!$('free').dataset.armed) {
    $('free').dataset.armed = '1';
    $('free').textContent = 'Free space? Saved files stay';
    setTimeout(() => {
      delete $('free').dataset.armed;
      $('free').textContent = 'Free space';
    }, 3000);
    return;
  }
  try {
    await call('transfer.free', { id });
    message('The downloaded copy was deleted: this bundle no longer takes space, nor is it seeded.');
  } catch (err) {
    message(err.message, true);
  }
  refresh();
});

$('caps').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const v = await call('transfer.limits', {
      id,
      uploadKBps: Number($('cap-up').value || 0),
      downloadKBps: Number($('cap-down').value || 0),
    });
    const text = (n) => (n ? `${n} KB/s` : 'none');
    message(`Caps for this bundle: upload ${text(v.limits.uploadKBps)}, download ${text(v.limits.downloadKBps)}.`);
  } catch (err) {
    message(err.message, true);
  }
  refresh();
});

/** Hands a Blob to the downloads API; with `release`, the engine host's save file goes once the download read it. */
async function download(blob, filename, { release = false } = {}) {
  const url = URL.createObjectURL(blob);
  const free = () => {
    URL.revokeObjectURL(url);
    if (release) releaseFile(blob).catch(() => {});
  };
  let downloadId;
  try {
    downloadId = await ext.downloads.download({ url, filename, saveAs: false, conflictAction: 'uniquify' });
  } catch (err) {
    free();
    throw err;
  }
  finished(downloadId).then(free);
}

/** Resolves once a download stops reading its source (complete, or interrupted). */
function finished(downloadId) {
  const over = (state) => state === 'complete' || state === 'interrupted';
  return new Promise((resolve) => {
    const listener = (delta) => {
      if (delta.id === downloadId && over(delta.state?.current)) done();
    };
    const done = () => {
      ext.downloads.onChanged.removeListener(listener);
      resolve();
    };
    ext.downloads.onChanged.addListener(listener);
    ext.downloads.search({ id: downloadId }).then(
      ([d]) => (!d || over(d.state) ? done() : null),
      () => null,
    );
  });
}

const params = new URLSearchParams(location.search);
if (id) {
  refresh();
  // A state change (finished, paused, failed) shows at once, not at the next tick.
  onTransferChange((change) => change.id === id && refresh());
} else if (params.has('magnet')) {
  // Opened from a magnet link: make (or find) its transfer, then show it.
  call('bundle.open', { magnet: params.get('magnet') }).then(
    (opened) => location.replace(`bundle.html?id=${encodeURIComponent(opened)}`),
    (err) => message(`This magnet link cannot be opened: ${err.message}`, true),
  );
} else if (params.has('link')) {
  // Opened from a share link (the server's page for the bundle) or a .torrent URL.
  message('Opening the bundle…');
  call('bundle.open', { link: params.get('link') }).then(
    (opened) => location.replace(`bundle.html?id=${encodeURIComponent(opened)}`),
    (err) => message(`This link cannot be opened: ${err.message}`, true),
  );
} else {
  message('No bundle given: open this page from the Swarmdrop popup or a share link.', true);
}
