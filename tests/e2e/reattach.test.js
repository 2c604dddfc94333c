// The pure parts of finding a send's files again after a restart
// (extension/js/host/reattach.js), in Node without a browser: which kept
// handle holds which file, matching files the user picked again, and files
// named as changed when their size is not the bundle's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changedFiles, locate, matchPicked, stillReadable } from '../../extension/js/host/reattach.js';

const file = (name, s = 'x') => new File([s], name);
const handle = (kind, name) => ({ kind, name });

test('each dropped file is found under the handle of its top-level item', () => {
  const entries = [
    { file: file('a.jpg'), path: 'a.jpg' },
    { file: file('c.mov'), path: 'Photos/2024/c.mov' },
    { file: file('d.txt'), path: 'Photos/d.txt' },
  ];
  const handles = [handle('directory', 'Photos'), handle('file', 'a.jpg')];
  assert.deepEqual(locate(entries, handles), [
    { handle: 1, parts: [] },
    { handle: 0, parts: ['2024', 'c.mov'] },
    { handle: 0, parts: ['d.txt'] },
  ]);
});

test('without a handle for every file nothing is kept', () => {
  const entries = [{ file: file('a.jpg'), path: 'a.jpg' }, { file: file('b.jpg'), path: 'b.jpg' }];
  assert.equal(locate(entries, [handle('file', 'a.jpg')]), null);
  assert.equal(locate(entries, []), null);
  // A directory handle does not hold a file of the same name at the top.
  assert.equal(locate([{ file: file('a'), path: 'a' }], [handle('directory', 'a')]), null);
});

test('picked files are matched by path inside the bundle, else by a unique name', () => {
  const wanted = [
    { path: 'x/a.bin', length: 1 },
    { path: 'b.bin', length: 1 },
  ];
  const a = file('a.bin');
  const b = file('b.bin');
  assert.deepEqual(matchPicked(wanted, [{ file: b, path: 'b.bin' }, { file: a, path: 'Bundle/x/a.bin' }]), [a, b]);
  assert.deepEqual(matchPicked(wanted, [{ file: a, path: 'a.bin' }, { file: b, path: 'b.bin' }]), [a, b]);
});

test('a picked set without a file of the bundle is refused, naming it', () => {
  const wanted = [
    { path: 'a.bin', length: 1 },
    { path: 'b.bin', length: 1 },
  ];
  assert.throws(() => matchPicked(wanted, [{ file: file('a.bin'), path: 'a.bin' }]), /"b\.bin" missing/);
  // Two picked files of the same name: the name alone does not tell which.
  assert.throws(
    () => matchPicked([{ path: 'a.bin', length: 1 }], [
      { file: file('a.bin'), path: 'p/a.bin' },
      { file: file('a.bin'), path: 'q/a.bin' },
    ]),
    /"a\.bin" missing/,
  );
});

test('a file whose size is not the bundle\'s is named as changed, and a missing one too', async () => {
  const layout = [
    { path: 'a.bin', length: 3, offset: 10 },
    { path: 'b.bin', length: 4, offset: 13 },
    { path: 'c.bin', length: 2, offset: 17 },
  ];
  const files = [file('a.bin', 'abc'), file('b.bin', 'longer'), null];
  const changed = await changedFiles({
    layout,
    manifest: new Blob(['0123456789']),
    files,
    suspect: new Set(),
    pieceHashes: new Uint8Array(20 * 5),
    pieceLength: 4,
    signal: new AbortController().signal,
  });
  assert.deepEqual(changed, ['b.bin', 'c.bin']);
});

test('a readable file reads as readable', async () => {
  assert.equal(await stillReadable(file('a', 'abc')), true);
  assert.equal(await stillReadable(file('empty', '')), true);
});
