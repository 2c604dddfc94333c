// The message types the engine host answers; the background forwards exactly these.
export const HOST_TYPES = Object.freeze([
  'host.ping',
  'transfers.list',
  'transfer.get',
  'transfer.pause',
  'transfer.resume',
  'transfer.regrant',
  'transfer.cancel',
  'transfer.free',
  'transfer.limits',
  'transfers.pauseAll',
  'transfers.resumeAll',
  'transfer.torrent',
  'bundle.get',
  'torrent.inspect',
  'bundle.open',
]);
