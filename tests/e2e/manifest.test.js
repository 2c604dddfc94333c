// What a recipient keeps of a bundle's manifest (receivedManifest in
// extension/js/host/create.js), in Node: the manifest comes from the sender,
// and any client may have written it, so only image thumbnails of a sane size
// are shown, for the bundle's own files, with the torrent's sizes and types.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MANIFEST_PATH, receivedManifest } from '../../extension/js/host/create.js';

const JPEG = `data:image/jpeg;base64,${Buffer.from('a small picture').toString('base64')}`;
const files = [
  { path: MANIFEST_PATH, length: 900, type: 'application/json', manifest: true },
  { path: 'photos/a.jpg', length: 1000, type: 'image/jpeg' },
  { path: '.pad/24', length: 24, type: 'application/octet-stream', padding: true },
  { path: 'notes.txt', length: 20, type: 'text/plain' },
];

test("the sender's thumbnails and image sizes are kept, for the bundle's files, in the torrent's order", () => {
  const m = receivedManifest(
    {
      swarmdrop: 1,
      files: [
        { path: 'notes.txt', size: 20, type: 'text/plain' },
        { path: 'photos/a.jpg', size: 1000, type: 'image/jpeg', thumbnail: JPEG, width: 1200, height: 800 },
      ],
    },
    files,
  );
  assert.deepEqual(m.files, [
    { path: 'photos/a.jpg', size: 1000, type: 'image/jpeg', thumbnail: JPEG, width: 1200, height: 800 },
    { path: 'notes.txt', size: 20, type: 'text/plain' },
  ]);
});

test('what the sender claims beyond thumbnails is not taken: paths, sizes and types stay the torrent\'s', () => {
  const m = receivedManifest(
    {
      files: [
        { path: 'photos/a.jpg', size: 5, type: 'text/html', thumbnail: JPEG, width: -3, height: 'tall' },
        { path: 'not-in-the-torrent.exe', size: 1, thumbnail: JPEG },
      ],
    },
    files,
  );
  assert.deepEqual(m.files, [
    { path: 'photos/a.jpg', size: 1000, type: 'image/jpeg', thumbnail: JPEG, width: null, height: null },
    { path: 'notes.txt', size: 20, type: 'text/plain' },
  ]);
});

test('a thumbnail that is not an image data URL of a sane size is dropped', () => {
  const bad = [
    'data:text/html;base64,PHNjcmlwdD4=',
    'data:image/svg+xml;base64,PHN2Zz4=',
    'javascript:alert(1)',
    'https://example.org/a.jpg',
    'data:image/jpeg;base64,not base64!',
    `data:image/jpeg;base64,${'A'.repeat(300 * 1024)}`,
    42,
  ];
  for (const thumbnail of bad) {
    const m = receivedManifest({ files: [{ path: 'photos/a.jpg', thumbnail, width: 10, height: 10 }] }, files);
    assert.equal(m.files[0].thumbnail, undefined, String(thumbnail).slice(0, 40));
  }
});

test('something that is not a manifest gives none', () => {
  for (const m of [null, 'text', 7, {}, { files: 'all' }]) assert.equal(receivedManifest(m, files), null);
});
