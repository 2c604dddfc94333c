// What the user dropped or picked, as `{file, path}` entries: folders keep
// their structure (`Photos/2024/a.jpg`). Files stay File objects (references).

/**
 * Reads a drop. Must be called during the drop event: the items are only
 * readable synchronously, so the entries and handles are taken at once and
 * walked afterwards.
 * @returns {Promise<{entries: {file: File, path: string}[], handles: FileSystemHandle[]}>}
 */
export function collectDrop(dataTransfer) {
  const items = Array.from(dataTransfer.items ?? []).filter((i) => i.kind === 'file');
  const taken = items.map((item) => ({
    entry: item.webkitGetAsEntry?.() ?? null,
    // Chrome: a handle the engine host can keep, so a send can resume after a restart.
    handle: item.getAsFileSystemHandle?.().catch(() => null) ?? null,
    file: item.getAsFile(),
  }));
  const plain = Array.from(dataTransfer.files ?? []);
  return (async () => {
    const entries = [];
    for (const t of taken) {
      if (t.entry?.isDirectory) {
        await walk(t.entry, entries);
      } else if (t.file) {
        entries.push({ file: t.file, path: t.entry?.fullPath?.replace(/^\/+/, '') || t.file.name });
      }
    }
    if (entries.length === 0) {
      for (const file of plain) entries.push({ file, path: file.name });
    }
    const handles = (await Promise.all(taken.map((t) => t.handle))).filter(Boolean);
    return { entries, handles };
  })();
}

/** Entries from an `<input type=file>` (with `webkitdirectory`, paths include the folder). */
export function collectInput(fileList) {
  return {
    entries: Array.from(fileList, (file) => ({ file, path: file.webkitRelativePath || file.name })),
    handles: [],
  };
}

/**
 * Chrome's file pickers with handles (showOpenFilePicker, showDirectoryPicker),
 * so that a send can get its files back after a restart with one click.
 * Resolves to null when the user closes the picker.
 */
export async function pickWithHandles({ folder = false } = {}) {
  try {
    if (folder) {
      const dir = await window.showDirectoryPicker({ mode: 'read' });
      const entries = [];
      await walkHandle(dir, dir.name, entries);
      return { entries, handles: [dir] };
    }
    const handles = await window.showOpenFilePicker({ multiple: true });
    const entries = await Promise.all(handles.map(async (h) => ({ file: await h.getFile(), path: h.name })));
    return { entries, handles };
  } catch (err) {
    if (err?.name === 'AbortError') return null;
    throw err;
  }
}

/** Whether this browser has the pickers of pickWithHandles. */
export const picksHandles = typeof window !== 'undefined' && typeof window.showOpenFilePicker === 'function';

async function walkHandle(dir, path, out) {
  const children = [];
  for await (const child of dir.values()) children.push(child);
  children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const child of children) {
    if (child.kind === 'directory') await walkHandle(child, `${path}/${child.name}`, out);
    else out.push({ file: await child.getFile(), path: `${path}/${child.name}` });
  }
}

async function walk(dir, out) {
  const children = [];
  const reader = dir.createReader();
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    children.push(...batch);
  }
  children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const child of children) {
    if (child.isDirectory) {
      await walk(child, out);
    } else {
      const file = await new Promise((resolve, reject) => child.file(resolve, reject));
      out.push({ file, path: child.fullPath.replace(/^\/+/, '') });
    }
  }
}
