// A bundle put on the server straight from Node, without a file on disk: the
// bytes are an AES-128-CTR keystream (random-looking, incompressible, and
// made again on demand), hashed into a .torrent with Swarmdrop's automatic
// piece length, created with POST /api/bundles and uploaded piece by piece
// with PUT (the owner token). Used where a row needs a large bundle on the
// server and the sender is not what is measured.

import { createCipheriv, createHash, randomBytes } from 'node:crypto'

const MIN_PIECE = 16 * 1024
const MAX_PIECE = 16 * 1024 * 1024

/** src/engine/lengths.rs `auto_piece_length`: the whole bytes of total / 2048 rounded up to a power of two, 16 KiB to 16 MiB. */
export function autoPieceLength (total) {
  const target = Math.floor(total / 2048)
  let len = MIN_PIECE
  while (len < MAX_PIECE && len < target) len *= 2
  return len
}

/** Canonical bencode of strings, Buffers, integers, arrays and objects (keys sorted). */
function bencode (v) {
  if (Buffer.isBuffer(v)) return Buffer.concat([Buffer.from(`${v.length}:`), v])
  if (typeof v === 'string') return bencode(Buffer.from(v))
  if (typeof v === 'number') return Buffer.from(`i${v}e`)
  if (Array.isArray(v)) return Buffer.concat([Buffer.from('l'), ...v.map(bencode), Buffer.from('e')])
  const keys = Object.keys(v).sort()
  return Buffer.concat([Buffer.from('d'), ...keys.flatMap((k) => [bencode(k), bencode(v[k])]), Buffer.from('e')])
}

/** The bundle's pieces in order, made from the key (the same bytes each time). */
function * pieces (key, total, pieceLength) {
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
  for (let off = 0; off < total; off += pieceLength) {
    const n = Math.min(pieceLength, total - off)
    yield cipher.update(Buffer.alloc(n))
  }
}

/**
 * Creates a bundle of `total` bytes (one file `data.bin` in folder `name`) on
 * the server; resolves to {infoHash, link, pieceLength, totalLength}.
 */
export async function serverBundle (server, name, total) {
  const key = randomBytes(16)
  const pieceLength = autoPieceLength(total)
  const hashes = []
  for (const p of pieces(key, total, pieceLength)) hashes.push(createHash('sha1').update(p).digest())
  const info = { name, 'piece length': pieceLength, pieces: Buffer.concat(hashes), files: [{ length: total, path: ['data.bin'] }] }
  const torrent = bencode({ announce: server.tracker, info })
  const infoHash = createHash('sha1').update(bencode(info)).digest('hex')
  const created = await fetch(`${server.url}/api/bundles`, { method: 'POST', body: torrent })
  if (!created.ok) throw new Error(`POST /api/bundles: ${created.status} ${await created.text()}`)
  const { owner_token: token, info_hash: ih, url } = await created.json()
  if (ih !== infoHash) throw new Error(`the server says ${ih}, not ${infoHash}`)
  // Four PUTs in flight.
  const inFlight = new Set()
  let index = 0
  for (const p of pieces(key, total, pieceLength)) {
    const i = index++
    const put = fetch(`${server.url}/api/bundles/${infoHash}/pieces/${i}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}` },
      body: p
    }).then(async (r) => {
      if (!r.ok) throw new Error(`PUT piece ${i}: ${r.status} ${await r.text()}`)
    })
    inFlight.add(put)
    put.finally(() => inFlight.delete(put)).catch(() => {})
    if (inFlight.size >= 4) await Promise.race(inFlight)
  }
  await Promise.all(inFlight)
  const state = await server.bundle(infoHash)
  if (state.complete !== true) throw new Error('the server does not hold every piece')
  return { infoHash, link: url, pieceLength, totalLength: total }
}
