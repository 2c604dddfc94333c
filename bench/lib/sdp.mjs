// Session descriptions shaped like the ones browsers put in WebTorrent tracker
// messages: a data-channel-only offer or answer, ICE gathering complete (no
// trickle), host and server-reflexive candidates inside. Only their size and
// shape matter to a tracker, which relays them untouched.

import { randomBytes, randomInt } from 'node:crypto'

const ICE_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

function iceString (n) {
  let s = ''
  for (const b of randomBytes(n)) s += ICE_CHARS[b & 63]
  return s
}

function fingerprint () {
  return [...randomBytes(32)].map(b => b.toString(16).toUpperCase().padStart(2, '0')).join(':')
}

function ip () {
  return `192.168.${randomInt(0, 255)}.${randomInt(1, 255)}`
}

function candidate (i, type) {
  const foundation = randomInt(1, 2 ** 32)
  const port = randomInt(40000, 65000)
  if (type === 'host') {
    return `a=candidate:${foundation} 1 udp ${2122260223 - i * 256} ${ip()} ${port} typ host generation 0 network-id ${i + 1}`
  }
  return `a=candidate:${foundation} 1 udp ${1686052607 - i * 256} 203.0.113.${randomInt(1, 255)} ${port} typ srflx raddr ${ip()} rport ${port} generation 0 network-id ${i + 1}`
}

/**
 * One SDP of `type` ('offer' or 'answer') of at least `minBytes` bytes: the
 * fixed part of a Chrome data-channel description, then candidates until
 * the size is reached (a machine with several interfaces has that many).
 */
export function makeSdp (type, minBytes) {
  const head = [
    'v=0',
    `o=- ${randomInt(1, 2 ** 48)} 2 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    'a=group:BUNDLE 0',
    'a=extmap-allow-mixed',
    'a=msid-semantic: WMS',
    'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
    'c=IN IP4 0.0.0.0'
  ]
  const tail = [
    `a=ice-ufrag:${iceString(4)}`,
    `a=ice-pwd:${iceString(24)}`,
    'a=ice-options:trickle',
    `a=fingerprint:sha-256 ${fingerprint()}`,
    `a=setup:${type === 'offer' ? 'actpass' : 'active'}`,
    'a=mid:0',
    'a=sctp-port:5000',
    'a=max-message-size:262144'
  ]
  const candidates = []
  const size = () => [...head, ...candidates, ...tail].join('\r\n').length + 2
  for (let i = 0; size() < minBytes && i < 64; i++) {
    candidates.push(candidate(i, i % 2 === 0 ? 'host' : 'srflx'))
  }
  return [...head, ...candidates, ...tail].join('\r\n') + '\r\n'
}
