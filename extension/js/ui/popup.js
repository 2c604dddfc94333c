// The toolbar popup: every transfer with its progress, speeds, peers and the
// server/peer split; pause, resume, cancel, copy link, bundle page, .torrent;
// pause all; sending files; settings. The engine host is the source of truth:
// the popup asks it for the list and renders it.
import { fetchHandles, reattachFiles, sendFiles } from '../common/channel.js';
import { onTransferChange } from '../common/events.js';
import { ext } from '../common/ext.js';
import * as fmt from '../common/format.js';
import { bundlePage } from '../common/links.js';
import { SILENT_TEXT, call, callNoting } from '../common/messages.js';
import { formatIceServers, getSettings, setSettings } from '../common/settings.js';
import * as S from '../common/states.js';
import { pickerInPopup } from '../platform/ui.js';
import { copyText } from './clipboard.js';
import { collectInput, pickWithHandles, picksHandles } from './collect.js';
import { el, icon } from './icons.js';

const REFRESH_MS = 700;
const $ = (id) => document.getElementById(id);
const cards = new Map(); // id -> {root, parts...}
let refreshTimer = null;

ext.tabs?.getCurrent?.().then((tab) => {
  if (tab) document.documentElement.classList.add('tab');
});

// ------------------------------------------------------------ sending

for (const [label, input] of [
  [$('send-files'), $('pick-files')],
  [$('send-folder'), $('pick-folder')],
]) {
  label.addEventListener('click', async (e) => {
    if (e.target === input) return;
    if (pickerInPopup && picksHandles) {
      // Chrome: pickers that give file handles, kept so that the send can
      // get its files back after a restart.
      e.preventDefault();
      try {
        const picked = await pickWithHandles({ folder: input.id === 'pick-folder' });
        if (picked) await start(picked);
      } catch (err) {
        notice(err.message);
      }
      return;
    }
    if (pickerInPopup) return;
    e.preventDefault();
    ext.tabs.create({ url: ext.runtime.getURL('drop.html') });
    window.close();
  });
  input.addEventListener('change', async () => {
    const picked = collectInput(input.files);
    input.value = '';
    await start(picked);
  });
}

/** Hands picked files to the engine host to make a bundle. */
async function start({ entries, handles }) {
  if (!entries.length) return;
  try {
    notice('Preparing the bundle…', 'info');
    await sendFiles(entries, handles);
    notice(null);
    refresh();
  } catch (err) {
    notice(err.message);
  }
}

$('pick-torrent').addEventListener('change', async () => {
  const file = $('pick-torrent').files[0];
  $('pick-torrent').value = '';
  if (!file) return;
  try {
    if (file.size > 16 * 1024 * 1024) throw new Error('this file is too large to be a .torrent');
    const bytes = new Uint8Array(await file.arrayBuffer());
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    const id = await call('bundle.open', { base64: btoa(s) });
    await ext.tabs.create({ url: ext.runtime.getURL(bundlePage(id)) });
    refresh();
  } catch (err) {
    notice(`Not a usable .torrent: ${err.message}`);
  }
});

// ------------------------------------------------------------ transfers

function notice(text, kind = '') {
  const n = $('notice');
  n.hidden = !text;
  n.className = kind;
  n.textContent = text ?? '';
}

let refreshing = null;
/** Whether the notice shows the engine's trouble (cleared once it answers again). */
let engineTrouble = false;
/** The number of the last list asked for, and of the last shown: an answer older than the one shown is dropped. */
let asked = 0;
let shown = 0;

/**
 * Asks the engine host for the list and renders it; one request at a time,
 * then every REFRESH_MS. A request not answered within SILENT_MS says so,
 * with a way to ask again; its answer is still shown if it comes later.
 */
function refresh() {
  clearTimeout(refreshTimer);
  if (refreshing) return refreshing;
  const mine = ++asked;
  const request = callNoting('transfers.list', {}, engineSilent)
    .then(
      (list) => {
        if (mine < shown) return;
        shown = mine;
        if (engineTrouble) notice(null);
        engineTrouble = false;
        render(list);
      },
      (err) => {
        if (mine < shown) return;
        engineTrouble = true;
        notice(`Swarmdrop's engine is not answering: ${err.message}`);
      },
    )
    .finally(() => {
      // A request asked again over this one keeps the loop going.
      if (refreshing !== request) return;
      refreshing = null;
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(refresh, REFRESH_MS);
    });
  refreshing = request;
  return request;
}

/** The engine has not answered for SILENT_MS: say so, and offer to ask again. */
function engineSilent() {
  engineTrouble = true;
  notice(SILENT_TEXT);
  const again = el('button', { class: 'btn small', dataset: { action: 'retry' } }, 'Try again');
  again.addEventListener('click', () => {
    notice('Asking the Swarmdrop engine again…', 'info');
    // The request still out keeps running: whichever answers first is shown.
    refreshing = null;
    refresh();
  });
  $('notice').append(' ', again);
}

function render(list) {
  $('empty').hidden = list.length > 0;
  const seen = new Set();
  let previous = null;
  for (const t of list) {
    seen.add(t.id);
    let card = cards.get(t.id);
    if (!card) {
      card = makeCard(t);
      cards.set(t.id, card);
    }
    // Keep the order of the list (newest first) without rebuilding cards.
    const anchor = previous ? previous.root.nextSibling : $('list').firstChild;
    if (card.root !== anchor) $('list').insertBefore(card.root, anchor);
    update(card, t);
    previous = card;
  }
  for (const [id, card] of cards) {
    if (!seen.has(id)) {
      card.root.remove();
      cards.delete(id);
    }
  }
  const running = list.filter((t) => S.isRunning(t.state)).length;
  const paused = list.filter((t) => t.state === S.PAUSED).length;
  const all = $('pause-all');
  all.hidden = running === 0 && paused === 0;
  all.replaceChildren(icon(running ? 'pause' : 'play'), running ? 'Pause all' : 'Resume all');
  all.dataset.action = running ? 'pause-all' : 'resume-all';
}

function button(name, title, action, onclick) {
  return el('button', { class: 'btn ghost small icon', title, 'aria-label': title, dataset: { action }, onclick }, icon(name));
}

function makeCard(t) {
  const c = { id: t.id };
  c.kind = el('div', { class: 't-kind' }, icon(t.role === 'send' ? 'upload' : 'download'));
  c.name = el('span', { class: 't-name ellipsis' });
  c.meta = el('span', { class: 't-meta ellipsis' });
  c.chip = el('span', { class: 'chip' });
  c.bar = el('div', { class: 'bar' }, el('span'));
  c.progress = el('span', { class: 'grow' });
  c.eta = el('span', { class: 'stat', title: 'Time left' });
  c.up = el('span', { class: 'stat', title: 'Upload speed' });
  c.down = el('span', { class: 'stat', title: 'Download speed' });
  c.peers = el('span', { class: 'stat', title: 'Connected peers' });
  c.split = el('span', { class: 'stat', title: 'Bytes from the server and from peers' });
  c.error = el('div', { class: 't-error' });
  // A send whose files must be found again: one click re-grants access to
  // the files it keeps handles to, or the user picks the same files again.
  c.repick = el('input', { type: 'file', multiple: true, hidden: true, onchange: () => repick(t.id, c.repick) });
  c.regain = el('button', { class: 'btn primary small', dataset: { action: 'regain' }, hidden: true, onclick: () => regain(t.id, c) });
  c.files = el('div', { class: 't-files' }, c.regain, c.repick);
  c.toggle = button('pause', 'Pause', 'pause', () => act(t.id, c.toggle.dataset.action === 'pause' ? 'transfer.pause' : 'transfer.resume'));
  c.copy = button('link', 'Copy link', 'copy', async () => {
    if (await copyText(c.link)) flash(c.copy, 'check');
  });
  c.open = button('open', 'Open bundle page', 'open', () => ext.tabs.create({ url: ext.runtime.getURL(bundlePage(t.id)) }));
  c.torrent = button('torrent', 'Export .torrent', 'torrent', () => exportTorrent(t.id, c.torrent));
  c.cancel = button('x', 'Cancel', 'cancel', () => {
    if (c.cancel.dataset.armed) {
      act(t.id, 'transfer.cancel');
    } else {
      c.cancel.dataset.armed = '1';
      c.cancel.replaceChildren('Cancel?');
      c.cancel.classList.remove('icon');
      setTimeout(() => {
        delete c.cancel.dataset.armed;
        c.cancel.replaceChildren(icon('x'));
        c.cancel.classList.add('icon');
      }, 3000);
    }
  });
  // A finished download keeps seeding until the user frees its storage
  // (after saving its files): a text button, confirmed by a second click.
  c.free = el('button', {
    class: 'btn ghost small',
    title: 'Stop seeding and delete the downloaded copy (save your files first)',
    dataset: { action: 'free' },
    hidden: true,
    onclick: () => {
      if (c.free.dataset.armed) {
        act(t.id, 'transfer.free');
      } else {
        c.free.dataset.armed = '1';
        c.free.textContent = 'Free space? Saved files stay';
        setTimeout(() => {
          delete c.free.dataset.armed;
          c.free.textContent = 'Free space';
        }, 3000);
      }
    },
  }, 'Free space');
  c.root = el(
    'article',
    { class: 'transfer', dataset: { id: t.id } },
    el('div', { class: 't-head' }, c.kind, el('div', { class: 't-title' }, c.name, c.meta), c.chip),
    c.bar,
    el('div', { class: 't-line' }, c.progress, c.eta),
    el('div', { class: 't-line' }, c.up, c.down, c.peers, el('span', { class: 'grow' }), c.split),
    c.error,
    c.files,
    el('div', { class: 't-actions' }, c.toggle, c.copy, c.open, c.torrent, c.free, el('span', { class: 'sep' }), c.cancel),
  );
  return c;
}

/** What the user reads about pieces that read back wrong and are fetched again. */
function damagedText(n) {
  return n === 1 ? '1 damaged piece is being fetched again' : `${n} damaged pieces are being fetched again`;
}

function update(c, t) {
  c.name.textContent = t.name;
  c.name.title = t.name;
  c.meta.textContent = `${fmt.files(t.fileCount)} · ${fmt.bytes(t.size)}`;
  c.chip.className = `chip ${t.state}`;
  c.chip.dataset.state = t.state;
  c.chip.textContent = S.LABELS[t.state] ?? t.state;
  c.root.dataset.state = t.state;
  const bar = c.bar.firstElementChild;
  // Bars are scaled, not resized, and not animated (base.css): a width
  // change lays out and paints on the main thread that extension pages
  // share with the engine, and a transition draws 60 frames a second
  // between updates (measured: 2 CPU-s of compositing per 256 MiB download).
  bar.style.transform = `scaleX(${Math.round(t.progress * 1000) / 1000})`;
  c.bar.className = `bar ${t.state === S.PAUSED ? 'paused' : t.link || t.state === S.COMPLETE ? 'done' : ''}`;

  let progress;
  const base = t.state === S.PAUSED ? t.resumeState : t.state;
  if (base === S.HASHING) {
    progress = t.phase === 'thumbnails' ? 'Making thumbnails…' : `Hashing ${fmt.percent(t.progress)} · ${fmt.speed(t.hashRate)}`;
  } else if (t.role === 'send' && base === S.SHARING) {
    const up = t.upload;
    if (up && up.phase !== 'done' && up.phase !== 'failed') {
      const part = fmt.percent(up.bytesTotal > 0 ? up.bytesDone / up.bytesTotal : 0);
      // Figures from before a restart, or an upload asking the server what
      // it holds: no live percentage yet.
      if (up.current === false) progress = `Resuming the upload to the server (it was at ${part})…`;
      else if (up.phase === 'checking') progress = 'Resuming the upload: asking the server what it holds…';
      else if (up.phase === 'creating') progress = 'Starting the upload to the server…';
      else progress = `Uploading to the server · ${part}`;
    } else if (t.peers > 0) {
      progress = `Sharing with ${t.peers} peer${t.peers === 1 ? '' : 's'}${up?.phase === 'done' ? ' · on the server' : ''}`;
    } else {
      progress = up?.phase === 'done' ? 'On the server · ready to share' : 'Ready to share · waiting for peers';
    }
  } else if (base === S.DOWNLOADING && t.phase === 'metadata') {
    progress = 'Fetching the file list…';
  } else if (base === S.DOWNLOADING && t.peers === 0 && t.progressBytes === 0) {
    progress = 'Looking for peers…';
  } else if (base === S.DOWNLOADING) {
    progress = `${fmt.percent(t.progress)} · ${fmt.bytes(t.progressBytes)} of ${fmt.bytes(t.progressTotal)}`;
  } else if (t.state === S.NEEDS_FILES) {
    progress = 'Choose the same files again to keep sharing';
  } else {
    progress = fmt.percent(t.progress);
  }
  if (t.state === S.NEEDS_FILES) {
    if (t.phase === 'checking') progress = 'Checking the files against the bundle…';
    else if (t.access === 'grant') progress = 'Swarmdrop needs your permission to read the files again';
  }
  if (t.state === S.PAUSED) {
    if (base === S.HASHING) progress = `Paused while preparing, at ${fmt.percent(t.progress)}`;
    else if (t.role === 'send') progress = 'Paused · not sharing until resumed';
    else progress = `Paused at ${fmt.percent(t.progress)} · ${fmt.bytes(t.progressBytes)} of ${fmt.bytes(t.progressTotal)}`;
  }
  if (t.role === 'receive' && t.state === S.COMPLETE) {
    progress = t.freed
      ? 'Done · space freed, not seeding'
      : `Done · seeding${t.peers ? ` to ${t.peers} peer${t.peers === 1 ? '' : 's'}` : ''} · keep it, or free the space once saved`;
  }
  if (t.damaged > 0) progress += ` · ${damagedText(t.damaged)}`;
  c.free.hidden = !(t.role === 'receive' && t.state === S.COMPLETE && !t.freed);
  c.progress.textContent = progress;
  // A send keeps the server it was made with, which may not be the one the
  // settings name now.
  c.progress.title = t.role === 'send' && t.server ? `Server: ${t.server}` : '';
  c.eta.replaceChildren(t.eta !== null && t.state !== S.PAUSED ? `${fmt.duration(t.eta)} left` : '');
  c.up.replaceChildren(icon('arrowUp'), fmt.speed(t.upSpeed));
  c.down.replaceChildren(icon('arrowDown'), fmt.speed(t.downSpeed));
  c.peers.replaceChildren(icon('users'), String(t.peers));
  c.split.replaceChildren(icon('server'), fmt.bytes(t.fromServer), ' · ', icon('users'), fmt.bytes(t.fromPeers));
  c.error.hidden = !t.error;
  c.error.textContent = t.error ?? '';
  c.access = t.state === S.NEEDS_FILES ? t.access : null;
  c.files.hidden = !c.access;
  c.regain.hidden = !c.access;
  if (c.access) {
    c.regain.textContent = c.access === 'grant' ? 'Allow access to the files' : 'Choose the files again…';
    // The browser asks for access only within the click's user activation,
    // which an await on the host (still starting after a restart) can
    // outlast: the button waits for the handles, so the click asks at once.
    c.regain.disabled = c.access === 'grant' && !c.handles;
    if (c.access === 'grant' && !c.handles && !c.loadingHandles) {
      c.loadingHandles = true;
      fetchHandles(t.id)
        .then((h) => {
          c.handles = h;
          c.regain.disabled = false;
        }, () => {}) // asked again at the next refresh
        .finally(() => (c.loadingHandles = false));
    }
  }

  const canToggle = S.canPause(t.state) || S.canResume(t.state);
  const pausing = !S.canResume(t.state);
  if (c.toggle.dataset.action !== (pausing ? 'pause' : 'resume')) {
    c.toggle.dataset.action = pausing ? 'pause' : 'resume';
    c.toggle.title = pausing ? 'Pause' : 'Resume';
    c.toggle.setAttribute('aria-label', c.toggle.title);
    c.toggle.replaceChildren(icon(pausing ? 'pause' : 'play'));
  }
  c.toggle.disabled = !canToggle;
  c.link = t.link;
  c.copy.disabled = !t.link;
  c.torrent.disabled = !t.infoHash;
}

/** "Allow access": asks the browser (this click is the gesture it needs), then the host goes on. */
async function regain(id, c) {
  if (c.access !== 'grant') {
    if (pickerInPopup) c.repick.click();
    else ext.tabs.create({ url: ext.runtime.getURL(`drop.html?reattach=${encodeURIComponent(id)}`) });
    return;
  }
  // The button is enabled once the handles are in (see update()).
  const handles = c.handles;
  if (!handles) return;
  try {
    // Every file is asked for now, within the click's user activation: one
    // request awaited before the next could outlast it on a busy machine,
    // and the browser would refuse the rest.
    const asked = handles.map((h) => h.requestPermission({ mode: 'read' }));
    notice('Asking the browser for access to the files…', 'info');
    const answers = await Promise.all(asked);
    if (answers.some((a) => a !== 'granted')) {
      throw new Error('Swarmdrop was not allowed to read the files: the send waits until it is.');
    }
    notice('Access granted: checking the files…', 'info');
    await call('transfer.regrant', { id });
    notice(null);
  } catch (err) {
    notice(
      err?.name === 'SecurityError'
        ? `The browser did not ask for access (${err.message}). Click "Allow access to the files" again.`
        : err.message,
    );
  }
  refresh();
}

/** The same files, picked again, go to the host, which checks them against the bundle. */
async function repick(id, input) {
  const { entries } = collectInput(input.files);
  input.value = '';
  if (!entries.length) return;
  try {
    notice('Checking the files against the bundle…', 'info');
    await reattachFiles(id, entries);
    notice(null);
  } catch (err) {
    notice(err.message);
  }
  refresh();
}

function flash(btn, name) {
  btn.replaceChildren(icon(name));
  setTimeout(() => btn.replaceChildren(icon(btn.dataset.action === 'copy' ? 'link' : 'torrent')), 1200);
}

async function act(id, type) {
  try {
    await call(type, { id });
  } catch (err) {
    notice(err.message);
  }
  refresh();
}

async function exportTorrent(id, btn) {
  try {
    const { name, base64 } = await call('transfer.torrent', { id });
    const bytes = Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0));
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/x-bittorrent' }));
    await ext.downloads.download({ url, filename: `${name}.torrent`, saveAs: false, conflictAction: 'uniquify' });
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    flash(btn, 'check');
  } catch (err) {
    notice(`Could not export the .torrent: ${err.message}`);
  }
}

$('pause-all').addEventListener('click', () =>
  act(null, $('pause-all').dataset.action === 'pause-all' ? 'transfers.pauseAll' : 'transfers.resumeAll'),
);

// ------------------------------------------------------------ settings

$('settings-btn').append(icon('gear'));
$('settings-btn').addEventListener('click', async () => {
  const panel = $('settings');
  if (!panel.hidden) {
    panel.hidden = true;
    return;
  }
  const s = await getSettings();
  $('s-server').value = s.serverUrl;
  $('s-up').value = s.uploadLimitKBps || '';
  $('s-down').value = s.downloadLimitKBps || '';
  $('s-trackers').value = s.trackers.join('\n');
  $('s-ice').value = formatIceServers(s.iceServers);
  $('s-zone').checked = s.dropZone;
  $('s-upload').checked = s.uploadToServer;
  $('s-msg').textContent = '';
  panel.hidden = false;
});
$('s-cancel').addEventListener('click', () => ($('settings').hidden = true));
$('s-save').addEventListener('click', async () => {
  try {
    await setSettings({
      serverUrl: $('s-server').value,
      uploadLimitKBps: $('s-up').value || 0,
      downloadLimitKBps: $('s-down').value || 0,
      trackers: $('s-trackers').value.split(/\s+/).filter(Boolean),
      iceServers: $('s-ice').value,
      dropZone: $('s-zone').checked,
      uploadToServer: $('s-upload').checked,
    });
    $('s-msg').className = 'muted';
    $('s-msg').textContent = 'Saved';
    setTimeout(() => ($('settings').hidden = true), 600);
  } catch (err) {
    $('s-msg').className = 'bad';
    $('s-msg').textContent = err.message;
  }
});

refresh();
// A state change (finished, paused, failed) shows at once, not at the next tick.
onTransferChange(() => refresh());
