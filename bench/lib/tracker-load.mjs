// Load generator for a WebTorrent WebSocket tracker (one process of several).
//
// Opens `clients` WebSocket connections to the tracker, one peer each, spread
// over `swarms` swarms of its own. Once every peer has joined, each one runs
// `depth` rounds at a time: a round announces `offers` offers (SDPs of about
// `sdpBytes` bytes) and ends once the announce response and the answers to
// all its offers are back (or after `roundTimeoutMs`, counting the missing
// answers as lost), and then the next round starts. Every peer also answers
// every offer relayed to it. The load is thus closed-loop and bounded: at
// most clients × depth × offers offers in flight.
//
// Driven by its parent over IPC:
//   parent -> {cmd: 'go'}    start the rounds
//   parent -> {cmd: 'mark'}  reply {type: 'mark', ...counters, cpu, elu, at}
//   parent -> {cmd: 'stop'}  close everything and exit
//   child  -> {type: 'ready'} | {type: 'error', message}
// It exits by itself after `lifetimeMs` or when its parent goes away.

import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { makeSdp } from './sdp.mjs'

const config = JSON.parse(process.argv[2])
const {
  url,
  process: procIndex,
  clients,
  swarms,
  offers: offersPerAnnounce,
  depth,
  sdpBytes,
  roundTimeoutMs,
  connectTimeoutMs,
  lifetimeMs
} = config

if (!process.send) throw new Error('tracker-load.mjs runs as a forked child')

const lifetime = setTimeout(() => {
  process.send({ type: 'error', message: `lifetime of ${lifetimeMs} ms reached` })
  process.exit(2)
}, lifetimeMs)
process.on('disconnect', () => process.exit(3))

// A pool of SDPs, JSON-encoded once (they hold \r\n), so that sending costs
// no more than the string concatenation a browser client does.
const POOL = 32
const offerSdps = Array.from({ length: POOL }, () => JSON.stringify(makeSdp('offer', sdpBytes)))
const answerSdps = Array.from({ length: POOL }, () => JSON.stringify(makeSdp('answer', sdpBytes)))

const counters = {
  announces: 0, // announce requests with offers sent
  responses: 0, // announce responses received
  offersSent: 0,
  offersReceived: 0, // offers relayed to our peers: the measured figure
  answersSent: 0,
  answersReceived: 0, // answers to our own offers, forwarded back
  lostOffers: 0, // offers whose answer did not come back within the round timeout
  lostResponses: 0, // announces whose response did not come back within it
  failures: 0, // "failure reason" frames
  closed: 0 // connections closed before the end
}
let firstFailure = null
let running = false
let stopping = false

// Binary fields are latin1 strings; printable ASCII keeps them free of escapes.
const fixed20 = s => {
  if (s.length !== 20) throw new Error(`not 20 characters: ${s}`)
  return s
}
const infoHash = s => fixed20(`swarmdrop-bench-p${procIndex}s${s.toString(36)}`)
const peerId = c => fixed20(`-BN0001-p${procIndex}c${c.toString(36).padStart(9, '0')}`)

const OFFER = Buffer.from('"offer":{')
const ANSWER = Buffer.from('"answer":{')
const INTERVAL = Buffer.from('"interval":')
const PEER_ID = Buffer.from('"peer_id":"')
const OFFER_ID = Buffer.from('"offer_id":"')

/**
 * The 20 characters of a binary field written without escapes (as the ids
 * this generator makes always are), or null when the field is absent or
 * written otherwise.
 */
function field (data, key) {
  const at = data.indexOf(key)
  if (at < 0) return null
  const start = at + key.length
  if (data[start + 20] !== 0x22) return null // the closing quote
  for (let i = start; i < start + 20; i++) {
    if (data[i] === 0x5c || data[i] >= 0x80) return null // an escape, or not ASCII
  }
  return data.latin1Slice(start, start + 20)
}

class Client {
  constructor (index) {
    this.index = index
    this.peerId = peerId(index)
    this.infoHash = infoHash(index % swarms)
    this.round = 0
    // Rounds in flight: round number -> {pending offer ids, response seen, start}.
    this.rounds = new Map()
    // Rounds whose announce response has not come yet, oldest first: a
    // tracker answers one connection's announces in order.
    this.awaitingResponse = []
    this.joined = false
    this.prefix = JSON.stringify(this.infoHash) + ',"peer_id":' + JSON.stringify(this.peerId)
  }

  connect () {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        handshakeTimeout: connectTimeoutMs,
        // The frames come from the tracker under test; checking their UTF-8
        // here would only make the generator slower.
        skipUTF8Validation: true
      })
      this.ws = ws
      ws.on('open', () => {
        ws.send(`{"action":"announce","info_hash":${this.prefix},"numwant":0,"uploaded":0,"downloaded":0,"left":1000000,"event":"started"}`)
      })
      ws.on('message', (data, isBinary) => {
        if (!this.joined) {
          // The first frame answers the `started` announce (no offers exist yet).
          const text = data.toString()
          if (text.includes('"interval"')) {
            this.joined = true
            resolve()
          } else {
            reject(new Error(`joining: ${text.slice(0, 200)}`))
          }
          return
        }
        if (!isBinary) this.onMessage(data)
      })
      ws.on('error', err => {
        if (!this.joined) reject(err)
      })
      ws.on('close', () => {
        if (!stopping) counters.closed++
        if (!this.joined) reject(new Error('closed before joining'))
      })
    })
  }

  announce () {
    const round = ++this.round
    const pending = new Set()
    // offer id: 'o', process, client (4), round (12), offer (2): 20 characters.
    const base = `o${procIndex}${this.index.toString(36).padStart(4, '0')}${round.toString(36).padStart(12, '0')}`
    let offers = ''
    for (let i = 0; i < offersPerAnnounce; i++) {
      const id = base + i.toString(36).padStart(2, '0')
      pending.add(id)
      offers += `${i ? ',' : ''}{"offer_id":"${id}","offer":{"type":"offer","sdp":${offerSdps[(round + i) % POOL]}}}`
    }
    this.rounds.set(round, { pending, gotResponse: false, started: performance.now() })
    this.awaitingResponse.push(round)
    this.send(`{"action":"announce","info_hash":${this.prefix},"numwant":${offersPerAnnounce},"uploaded":0,"downloaded":0,"left":1000000,"offers":[${offers}]}`)
    counters.announces++
    counters.offersSent += offersPerAnnounce
  }

  /**
   * Sends a frame. Frames sent in one tick of the event loop leave in one
   * write: the socket is corked until the next tick (ws corks each frame's
   * header and payload the same way; corks nest).
   */
  send (text) {
    if (!this.corked) {
      this.corked = true
      this.ws._socket.cork()
      process.nextTick(() => {
        this.corked = false
        this.ws._socket?.uncork()
      })
    }
    this.ws.send(text)
  }

  /**
   * Handles one frame. The generator must not cost more per message than the
   * tracker it measures, so the three frames that make up the load (offer,
   * answer, announce response) are recognised by their keys, and the two
   * fields an offer or answer needs are sliced out of the bytes; anything
   * else goes through JSON.parse.
   */
  onMessage (data) {
    // A failure frame has none of these keys (its reason is in a string, where
    // a quote would be escaped).
    if (data.indexOf(OFFER) >= 0) {
      const peer = field(data, PEER_ID)
      const offerId = field(data, OFFER_ID)
      if (peer !== null && offerId !== null) return this.onOffer(peer, offerId)
    } else if (data.indexOf(ANSWER) >= 0) {
      const offerId = field(data, OFFER_ID)
      if (offerId !== null) return this.onAnswer(offerId)
    } else if (data.indexOf(INTERVAL) >= 0) {
      return this.onResponse()
    }
    // Anything else (a failure, or fields with escapes): the slow path.
    const text = data.toString()
    let m
    try {
      m = JSON.parse(text)
    } catch {
      counters.failures++
      firstFailure ??= `not JSON: ${text.slice(0, 120)}`
      return
    }
    if (m['failure reason'] !== undefined) {
      counters.failures++
      firstFailure ??= m['failure reason']
    } else if (m.offer !== undefined) {
      this.onOffer(JSON.stringify(m.peer_id).slice(1, -1), JSON.stringify(m.offer_id).slice(1, -1))
    } else if (m.answer !== undefined) {
      this.onAnswer(String(m.offer_id))
    } else if (m.interval !== undefined) {
      this.onResponse()
    }
  }

  /** Answers an offer; `peer` and `offerId` are JSON string contents. */
  onOffer (peer, offerId) {
    counters.offersReceived++
    this.send(`{"action":"announce","info_hash":${this.prefix},"to_peer_id":"${peer}","offer_id":"${offerId}","answer":{"type":"answer","sdp":${answerSdps[counters.answersSent % POOL]}}}`)
    counters.answersSent++
  }

  onAnswer (offerId) {
    const round = Number.parseInt(offerId.slice(6, 18), 36)
    const r = this.rounds.get(round)
    if (r && r.pending.delete(offerId)) {
      counters.answersReceived++
      this.maybeDone(round, r)
    }
  }

  onResponse () {
    counters.responses++
    const round = this.awaitingResponse.shift()
    const r = this.rounds.get(round)
    if (r) {
      r.gotResponse = true
      this.maybeDone(round, r)
    }
  }

  maybeDone (round, r) {
    if (r.gotResponse && r.pending.size === 0) {
      this.rounds.delete(round)
      if (running) this.announce()
    }
  }

  checkTimeouts (now) {
    for (const [round, r] of this.rounds) {
      if (now - r.started <= roundTimeoutMs) continue
      counters.lostOffers += r.pending.size
      if (!r.gotResponse) {
        counters.lostResponses++
        const i = this.awaitingResponse.indexOf(round)
        if (i >= 0) this.awaitingResponse.splice(i, 1)
      }
      this.rounds.delete(round)
      if (running) this.announce()
    }
  }
}

const all = Array.from({ length: clients }, (_, i) => new Client(i))

async function joinAll () {
  // A few connections at a time: a burst of handshakes is not what is measured.
  const batch = 25
  for (let i = 0; i < all.length; i += batch) {
    await Promise.all(all.slice(i, i + batch).map(c => c.connect()))
  }
}

let timeoutTimer = null

process.on('message', msg => {
  if (msg.cmd === 'go') {
    running = true
    for (let d = 0; d < depth; d++) {
      for (const c of all) c.announce()
    }
    timeoutTimer = setInterval(() => {
      const now = performance.now()
      for (const c of all) c.checkTimeouts(now)
    }, 100)
  } else if (msg.cmd === 'mark') {
    process.send({
      type: 'mark',
      at: performance.now(),
      counters: { ...counters },
      firstFailure,
      cpu: process.cpuUsage(),
      elu: performance.eventLoopUtilization()
    })
  } else if (msg.cmd === 'stop') {
    running = false
    stopping = true
    clearInterval(timeoutTimer)
    clearTimeout(lifetime)
    for (const c of all) c.ws?.terminate()
    process.disconnect()
  }
})

joinAll().then(
  () => process.send({ type: 'ready' }),
  err => {
    process.send({ type: 'error', message: `joining: ${err.message}` })
    process.exit(1)
  }
)
