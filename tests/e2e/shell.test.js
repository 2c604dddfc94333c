// The extension's pure modules, tested in Node without a browser: piece
// reading, bundle layout, settings validation, links, formatting, states.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { layout, safeComponent } from '../../extension/js/host/create.js';
import { PieceSource } from '../../extension/js/host/pieces.js';
import * as fmt from '../../extension/js/common/format.js';
import { serverTracker, shareLink } from '../../extension/js/common/links.js';
import { DEFAULTS, formatIceServers, parseIceServers, validate } from '../../extension/js/common/settings.js';
import * as S from '../../extension/js/common/states.js';

const blob = (s) => new Blob([s]);
const file = (name, s = 'x', type = '') => new File([s], name, { type });

test('pieces span file boundaries and the last piece is short', async () => {
  const src = new PieceSource([{ blob: blob('hello') }, { blob: blob('') }, { blob: blob('wonderful') }], 4);
  assert.equal(src.totalLength, 14);
  assert.equal(src.pieceCount, 4);
  const pieces = [];
  for (let i = 0; i < src.pieceCount; i++) pieces.push(Buffer.from(await src.read(i)).toString());
  assert.deepEqual(pieces, ['hell', 'owon', 'derf', 'ul']);
  assert.equal(src.pieceLen(3), 2);
  assert.deepEqual(src.pieceRange(1), [4, 8]);
  assert.equal(src.slices(1).length, 2, 'piece 1 is read from two files, the empty one skipped');
});

test('piece hashes over many small files equal hashing the concatenation', async () => {
  const parts = Array.from({ length: 37 }, (_, i) => 'x'.repeat(i * 13 + 1) + i);
  const src = new PieceSource(parts.map((p) => ({ blob: blob(p) })), 64);
  const whole = Buffer.from(parts.join(''));
  for (let i = 0; i < src.pieceCount; i++) {
    const expected = createHash('sha1').update(whole.subarray(i * 64, i * 64 + 64)).digest('hex');
    const got = createHash('sha1').update(await src.read(i)).digest('hex');
    assert.equal(got, expected, `piece ${i}`);
  }
});

/** The pieces `streamRun` yields, each copied out (its buffer is reused for the next). */
async function streamed(src, first, count) {
  const out = [];
  for await (const { index, bytes } of src.streamRun(first, count)) out.push({ index, bytes: Buffer.from(bytes) });
  return out;
}

test('a run of consecutive pieces streams exactly their bytes, piece by piece, across files', async () => {
  const parts = Array.from({ length: 23 }, (_, i) => 'y'.repeat(i * 7 + 3) + i);
  const src = new PieceSource(parts.map((p) => ({ blob: blob(p) })), 32);
  const whole = Buffer.from(parts.join(''));
  for (const [first, count] of [[0, 1], [0, src.pieceCount], [3, 5], [src.pieceCount - 2, 2]]) {
    const got = await streamed(src, first, count);
    assert.deepEqual(got.map((p) => p.index), Array.from({ length: count }, (_, i) => first + i));
    for (const { index, bytes } of got) {
      assert.ok(bytes.equals(whole.subarray(index * 32, Math.min(whole.length, index * 32 + 32))), `piece ${index}`);
    }
  }
  await assert.rejects(() => streamed(src, src.pieceCount - 1, 2), RangeError);
  await assert.rejects(() => streamed(src, 0, 0), RangeError);
});

test('WebCrypto digests of streamed pieces equal the SHA-1 of the pieces, over runs that share one buffer', async () => {
  // Pieces larger than the stream's chunks, and files that end inside pieces.
  const sizes = [100_000, 1, 0, 70_001, 262_144, 33_333];
  let seed = 1;
  const files = sizes.map((n) => Uint8Array.from({ length: n }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24));
  const whole = Buffer.concat(files);
  const src = new PieceSource(files.map((f) => ({ blob: new Blob([f]) })), 65_536);
  for (const [first, count] of [[0, 3], [3, src.pieceCount - 3]]) {
    for await (const { index, bytes } of src.streamRun(first, count)) {
      const expected = createHash('sha1').update(whole.subarray(index * 65_536, index * 65_536 + 65_536)).digest('hex');
      const got = Buffer.from(await crypto.subtle.digest('SHA-1', bytes)).toString('hex');
      assert.equal(got, expected, `piece ${index}`);
    }
  }
  assert.equal(src.pieceCount, 8);
});

test('runs longer than the read buffer refill it from its start, with pieces smaller and larger than it', async () => {
  // The buffer holds 4 MiB of whole pieces: 1.5 MiB pieces fill it twice
  // over (3 MiB) and wrap, 6 MiB pieces get a buffer of one piece.
  const sizes = [5_000_001, 3, 0, 7_340_032, 2_222_222];
  let seed = 7;
  const files = sizes.map((n) => {
    const f = new Uint8Array(n);
    for (let i = 0; i < n; i += 4096) f[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    return f;
  });
  const whole = Buffer.concat(files);
  for (const pieceLength of [1_572_864, 6 * 1024 * 1024]) {
    const src = new PieceSource(files.map((f) => ({ blob: new Blob([f]) })), pieceLength);
    for (const [first, count] of [[0, src.pieceCount], [1, src.pieceCount - 1], [0, 1]]) {
      const got = [];
      for await (const { index, bytes } of src.streamRun(first, count)) {
        got.push(index);
        const expected = createHash('sha1').update(whole.subarray(index * pieceLength, (index + 1) * pieceLength)).digest('hex');
        assert.equal(createHash('sha1').update(bytes).digest('hex'), expected, `piece ${index} of ${pieceLength}`);
      }
      assert.deepEqual(got, Array.from({ length: count }, (_, i) => first + i));
    }
  }
});

test('a stream without a BYOB reader is copied in chunk by chunk, to the same pieces', async () => {
  const whole = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 251));
  // A Blob-like whose stream is a plain (not byte) stream of uneven chunks.
  const plain = (bytes) => ({
    stream: () => {
      let at = 0;
      return new ReadableStream({
        pull(c) {
          if (at >= bytes.length) return c.close();
          const n = 1 + (at % 37);
          c.enqueue(bytes.slice(at, at + n));
          at += n;
        },
      });
    },
  });
  const src = new PieceSource([{ blob: { slice: (a, b) => plain(whole.subarray(a, b)), size: whole.length } }], 64);
  const got = await streamed(src, 0, src.pieceCount);
  assert.deepEqual(got.map((p) => p.bytes.toString('hex')), [0, 1, 2, 3, 4].map((i) => whole.subarray(i * 64, i * 64 + 64).toString('hex')));
});

test('a run over a file that shrank is reported, never read short', async () => {
  const src = new PieceSource([{ blob: blob('abcdefgh') }], 4);
  src.files[0].blob = { slice: (a, b) => blob('abcdef').slice(a, b), size: 8 };
  await assert.rejects(() => streamed(src, 0, 2), /read 6 bytes, expected 8/);
});

test('asking for a piece that does not exist is an error, not a short read', async () => {
  const src = new PieceSource([{ blob: blob('abc') }], 16);
  assert.throws(() => src.pieceLen(1), RangeError);
  assert.throws(() => src.slices(-1), RangeError);
  assert.throws(() => new PieceSource([], 0), /invalid piece length/);
});

test('a file that shrank after it was chosen is reported, never read short', async () => {
  const shrunk = blob('abcdefgh');
  const src = new PieceSource([{ blob: shrunk }], 4);
  // A Blob that lies about its size, as a File changed on disk would.
  src.files[0].blob = { slice: (a, b) => blob('abcdef').slice(a, b), size: 8 };
  await assert.rejects(() => src.read(1), /read 2 bytes, expected 4/);
});

test('a dropped folder names the bundle and keeps its structure', () => {
  const { name, files } = layout([
    { file: file('a.jpg'), path: 'Photos/2024/a.jpg' },
    { file: file('b.txt'), path: 'Photos/b.txt' },
  ]);
  assert.equal(name, 'Photos');
  assert.deepEqual(files.map((f) => f.parts.join('/')), ['2024/a.jpg', 'b.txt']);
  assert.deepEqual(files.map((f) => f.type), ['image/jpeg', 'text/plain']);
});

test('loose files are named after the first; one file after itself', () => {
  assert.equal(layout([{ file: file('report.pdf'), path: 'report.pdf' }]).name, 'report');
  const { name } = layout([
    { file: file('sunset.jpg'), path: 'sunset.jpg' },
    { file: file('notes.txt'), path: 'notes.txt' },
    { file: file('data.bin'), path: 'data.bin' },
  ]);
  assert.equal(name, 'sunset and 2 more');
});

test('two files with the same path get distinct names', () => {
  const { files } = layout([
    { file: file('a.txt'), path: 'a.txt' },
    { file: file('A.txt'), path: 'A.txt' },
    { file: file('a.txt'), path: 'a.txt' },
  ]);
  assert.deepEqual(files.map((f) => f.parts.join('/')), ['a.txt', 'A (2).txt', 'a (3).txt']);
});

test('names unsafe on disk are made safe, and the reserved folder is refused', () => {
  assert.equal(safeComponent('a:b*c?.txt'), 'a_b_c_.txt');
  assert.equal(safeComponent('..'), '_');
  assert.equal(safeComponent('name. '), 'name');
  assert.throws(() => layout([{ file: file('m.json'), path: '.swarmdrop/m.json' }, { file: file('x'), path: 'x' }]), /reserved/);
  assert.throws(() => layout([]), /No files/);
  assert.throws(() => layout([{ file: 'not a file', path: 'x' }]), /Not a file/);
});

test('settings are validated and normalized', () => {
  const s = validate({ serverUrl: ' https://drop.example.org/ ', trackers: 'wss://a.example  wss://a.example\nws://b.example', uploadLimitKBps: '250' });
  assert.equal(s.serverUrl, 'https://drop.example.org');
  assert.deepEqual(s.trackers, ['wss://a.example', 'ws://b.example']);
  assert.equal(s.uploadLimitKBps, 250);
  assert.equal(s.dropZone, true);
  assert.throws(() => validate({ serverUrl: 'not a url' }), /not a valid URL/);
  assert.throws(() => validate({ serverUrl: 'ftp://x.org' }), /http/);
  assert.throws(() => validate({ trackers: ['https://tracker.example'] }), /ws:\/\/ or wss:\/\//);
  assert.throws(() => validate({ downloadLimitKBps: -1 }), /download cap/);
});

test('ICE servers: STUN and TURN URLs, TURN with its credentials, one per line', () => {
  assert.deepEqual(validate({}).iceServers, DEFAULTS.iceServers, 'a public STUN server by default');
  assert.deepEqual(validate({ iceServers: '' }).iceServers, [], 'none: direct connections only');
  const text = 'stun:stun.example.org:3478\n\n  turns:turn.example.org:443?transport=tcp alice s3cret  ';
  const servers = parseIceServers(text);
  assert.deepEqual(servers, [
    { urls: 'stun:stun.example.org:3478' },
    { urls: 'turns:turn.example.org:443?transport=tcp', username: 'alice', credential: 's3cret' },
  ]);
  assert.deepEqual(parseIceServers(formatIceServers(servers)), servers, 'the panel shows what it reads back');
  assert.deepEqual(validate({ iceServers: servers }).iceServers, servers);
  assert.throws(() => parseIceServers('https://stun.example.org'), /Not an ICE server/);
  assert.throws(() => parseIceServers('turn:turn.example.org:3478'), /username and a credential/);
  assert.throws(() => parseIceServers('stun:stun.example.org alice'), /takes no username/);
  assert.throws(() => parseIceServers('turn:t.example.org a b c'), /Not an ICE server/);
});

test('links follow the server address', () => {
  assert.equal(serverTracker('https://drop.example.org/'), 'wss://drop.example.org/announce');
  assert.equal(serverTracker('http://127.0.0.1:8750'), 'ws://127.0.0.1:8750/announce');
  assert.equal(shareLink('http://127.0.0.1:8750/', 'ab'.repeat(20)), `http://127.0.0.1:8750/b/${'ab'.repeat(20)}`);
});

test('formatting for people', () => {
  assert.equal(fmt.bytes(0), '0 B');
  assert.equal(fmt.bytes(999), '999 B');
  assert.equal(fmt.bytes(1234567), '1.23 MB');
  assert.equal(fmt.bytes(3_200_000_000_000), '3.20 TB');
  assert.equal(fmt.percent(0.999), '99 %', 'never 100 % before the end');
  assert.equal(fmt.percent(1), '100 %');
  assert.equal(fmt.duration(59), '59 s');
  assert.equal(fmt.duration(3725), '1 h 2 min');
  assert.equal(fmt.duration(Number.NaN), '–');
  assert.equal(fmt.files(1), '1 file');
});

test('only running transfers pause, only paused ones resume', () => {
  for (const st of [S.HASHING, S.SHARING, S.DOWNLOADING]) {
    assert.ok(S.canPause(st) && !S.canResume(st) && S.isRunning(st), st);
  }
  assert.ok(S.canResume(S.PAUSED) && !S.canPause(S.PAUSED));
  for (const st of [S.COMPLETE, S.NEEDS_FILES, S.ERROR]) assert.ok(!S.canPause(st) && !S.canResume(st), st);
});
