// The drop zone frame (embedded in web pages by content/dropzone.js) and the
// send page (the same document opened in a tab, with file pickers).
//
// A drop here lands in the extension origin: the File objects go to the
// engine host by reference (js/common/channel.js), then this frame shows the
// bundle's preparation and its share link. The page around the frame only
// ever hears "over", "pinned" and "close"; it never sees files or the link.
import { reattachFiles, sendFiles } from '../common/channel.js';
import { ext } from '../common/ext.js';
import * as fmt from '../common/format.js';
import { bundlePage } from '../common/links.js';
import { call } from '../common/messages.js';
import * as S from '../common/states.js';
import { copyText } from './clipboard.js';
import { collectDrop, collectInput } from './collect.js';
import { icon } from './icons.js';

const embedded = window.top !== window;
// drop.html?reattach=<id>: the files of a send that needs them again (after a
// restart, where the browser keeps no handles to them: Firefox).
const reattach = new URLSearchParams(location.search).get('reattach');
document.documentElement.classList.add(embedded ? 'zone' : 'page');

const $ = (id) => document.getElementById(id);
const target = $('target');
const panel = $('bundle');
let current = null; // id of the transfer shown
let pollTimer = null;
let lastOver = 0;

function tellPage(type) {
  if (embedded) window.parent.postMessage({ swarmdrop: true, type }, '*');
}

// ------------------------------------------------------------ drag and drop

function isFileDrag(e) {
  return Array.prototype.includes.call(e.dataTransfer?.types ?? [], 'Files');
}

document.addEventListener('dragenter', (e) => {
  if (!isFileDrag(e)) return;
  e.preventDefault();
  document.documentElement.classList.add('dragging');
  target.classList.add('over');
});
document.addEventListener('dragover', (e) => {
  if (!isFileDrag(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = 'copy';
  target.classList.add('over');
  const now = performance.now();
  if (now - lastOver > 200) {
    lastOver = now;
    tellPage('over');
  }
});
document.addEventListener('dragleave', (e) => {
  if (e.relatedTarget === null) {
    target.classList.remove('over');
    if (!embedded) document.documentElement.classList.remove('dragging');
  }
});
document.addEventListener('drop', (e) => {
  e.preventDefault();
  target.classList.remove('over');
  document.documentElement.classList.remove('dragging');
  if (!isFileDrag(e) && !e.dataTransfer?.files?.length) return;
  tellPage('pinned');
  start(collectDrop(e.dataTransfer));
});

if (reattach) {
  document.querySelector('#target strong').textContent = 'Drop the same files again to keep sharing';
}

window.addEventListener('message', (e) => {
  if (e.source !== window.parent || e.data?.swarmdrop !== true) return;
  if (e.data.type === 'drag-start') {
    document.documentElement.classList.add('dragging');
  } else if (e.data.type === 'drag-end') {
    document.documentElement.classList.remove('dragging');
    target.classList.remove('over');
  }
});

for (const input of [$('pick-files'), $('pick-folder')]) {
  input.addEventListener('change', () => {
    if (input.files.length) start(Promise.resolve(collectInput(input.files)));
    input.value = '';
  });
}

// ------------------------------------------------------------ the bundle panel

$('b-close').append(icon('x'));
$('b-close').addEventListener('click', reset);
$('b-another').addEventListener('click', reset);
$('b-copy').addEventListener('click', async () => {
  const ok = await copyText($('b-link').value, $('b-link'));
  $('b-copy').textContent = ok ? 'Copied' : 'Copy failed';
  setTimeout(() => ($('b-copy').textContent = 'Copy'), 1600);
});
$('b-open').addEventListener('click', () => {
  if (current) ext.tabs.create({ url: ext.runtime.getURL(bundlePage(current)) });
});

function reset() {
  clearTimeout(pollTimer);
  current = null;
  panel.hidden = true;
  target.hidden = false;
  tellPage('close');
}

async function start(collected) {
  clearTimeout(pollTimer);
  target.hidden = true;
  panel.hidden = false;
  $('b-name').textContent = 'Reading files…';
  $('b-meta').textContent = '';
  $('b-status').textContent = '';
  $('b-link-row').hidden = true;
  $('b-actions').hidden = true;
  $('b-error').hidden = true;
  setBar(0, '');
  try {
    const { entries, handles } = await collected;
    if (entries.length === 0) throw new Error('Nothing to send: the drop held no files.');
    $('b-meta').textContent = `${fmt.files(entries.length)} · ${fmt.bytes(entries.reduce((s, x) => s + x.file.size, 0))}`;
    $('b-status').textContent = 'Handing the files to Swarmdrop…';
    if (reattach) {
      $('b-status').textContent = 'Checking the files against the bundle…';
      const view = await reattachFiles(reattach, entries);
      current = reattach;
      if (view.error) throw new Error(view.error);
    } else {
      current = await sendFiles(entries, handles);
    }
    poll();
  } catch (err) {
    showError(err);
  }
}

async function poll() {
  if (!current) return;
  try {
    const view = await call('transfer.get', { id: current });
    render(view);
    const preparing = view.state === S.HASHING || (view.state === S.PAUSED && !view.link);
    if (preparing || !view.link) pollTimer = setTimeout(poll, 400);
  } catch (err) {
    showError(err);
  }
}

function setBar(fraction, cls) {
  const bar = $('b-bar');
  bar.className = `bar ${cls}`;
  bar.firstElementChild.style.transform = `scaleX(${Math.round(Math.min(1, fraction) * 1000) / 1000})`;
}

function render(v) {
  $('b-name').textContent = v.name;
  $('b-name').title = v.name;
  $('b-meta').textContent = `${fmt.files(v.fileCount)} · ${fmt.bytes(v.size)}`;
  let status;
  if (v.state === S.HASHING && v.phase === 'thumbnails') {
    status = 'Making thumbnails…';
  } else if (v.state === S.HASHING) {
    status = [`Preparing · ${fmt.percent(v.progress)}`, v.hashRate > 0 && fmt.speed(v.hashRate), v.eta !== null && `${fmt.duration(v.eta)} left`]
      .filter(Boolean)
      .join(' · ');
  } else if (v.state === S.PAUSED) {
    status = v.link ? 'Paused' : `Paused at ${fmt.percent(v.progress)}`;
  } else if (v.state === S.SHARING) {
    status = 'Ready: share this link';
  } else if (v.state === S.ERROR) {
    status = '';
    showError(new Error(v.error));
  } else {
    status = S.LABELS[v.state] ?? v.state;
  }
  $('b-status').textContent = status;
  setBar(v.progress, v.state === S.PAUSED ? 'paused' : v.link ? 'done' : '');
  if (v.link) {
    $('b-link').value = v.link;
    $('b-link-row').hidden = false;
    $('b-status').hidden = embedded;
  } else {
    $('b-status').hidden = false;
  }
  $('b-actions').hidden = false;
}

function showError(err) {
  $('b-error').textContent = err?.message ?? String(err);
  $('b-error').hidden = false;
  $('b-actions').hidden = !current;
  if (!current) $('b-name').textContent = 'Could not send these files';
}
