// The reference WebSocket tracker: `bittorrent-tracker` (npm), WebSocket only,
// on loopback. Its command line needs the native WebRTC module; the server
// class does not. Prints `listening <port>` on stdout once it accepts
// connections, and the number of warnings it emitted when stopped.

import Server from 'bittorrent-tracker/server'

const port = Number(process.argv[2] || 0)
const server = new Server({ http: false, udp: false, ws: true, stats: false })
let warnings = 0
let firstWarning = null

server.on('warning', err => {
  warnings++
  firstWarning ??= err.message
})
server.on('error', err => {
  process.stderr.write(`bittorrent-tracker: ${err.message}\n`)
  process.exit(1)
})

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.ws.address().port}\n`)
})

const stop = () => {
  process.stdout.write(`warnings ${warnings}${firstWarning ? ` (first: ${firstWarning})` : ''}\n`)
  server.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
