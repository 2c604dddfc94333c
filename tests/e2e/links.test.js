// The links the extension derives from the server address
// (extension/js/common/links.js), in Node: a send made before its record
// kept its server finds it again in its share link.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { linkServer, serverTracker, shareLink } from '../../extension/js/common/links.js';

const IH = '0123456789abcdef0123456789abcdef01234567';

test('the server a share link names is the one it was made with', () => {
  for (const server of ['http://127.0.0.1:8750', 'https://drop.example', 'https://example.org/swarm']) {
    assert.equal(linkServer(shareLink(server, IH), IH), server);
    assert.equal(linkServer(shareLink(`${server}/`, IH), IH), server, 'a trailing slash is not kept');
  }
});

test('a link that is not the share link of the bundle names no server', () => {
  const other = 'fedcba9876543210fedcba9876543210fedcba98';
  for (const link of [
    null,
    undefined,
    '',
    shareLink('http://127.0.0.1:8750', other),
    `magnet:?xt=urn:btih:${IH}`,
    `/b/${IH}`,
    `ftp://host/b/${IH}`,
    `not a url/b/${IH}`,
  ]) {
    assert.equal(linkServer(link, IH), null, String(link));
  }
  assert.equal(linkServer(shareLink('http://127.0.0.1:8750', IH), null), null, 'no info hash, no server');
});

test("a server's tracker is its WebSocket announce URL", () => {
  assert.equal(serverTracker('http://127.0.0.1:8750/'), 'ws://127.0.0.1:8750/announce');
  assert.equal(serverTracker('https://drop.example'), 'wss://drop.example/announce');
});
