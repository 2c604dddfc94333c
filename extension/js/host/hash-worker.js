// Hashing worker: reads pieces lazily through PieceSource and hashes them with
// WebCrypto SHA-1. Several run at once (one per core); the engine host hands
// each a batch of piece indices at a time and collects the hashes.
//
// Each run of consecutive pieces in a batch is read as one stream into one
// reused buffer (PieceSource.streamRun), and every piece is handed to
// WebCrypto as soon as its bytes are in: digest() copies its input at once,
// so the buffer is filled again while earlier pieces are digested. Reading a
// file slice per piece, or a fresh buffer per read, cost more CPU than the
// hashing itself (bench row 1 in BENCHMARKS.md). The hashes go back in groups
// of about GROUP_BYTES, at most GROUPS_IN_FLIGHT groups digesting at a time
// (each digest holds its copy of the piece until it is done).
//
// Messages in:  {type:'init', files:[{blob}], pieceLength}
//               {type:'hash', batch, pieces:[index...]}
// Messages out: {type:'hashed', batch, pieces:[index...], hashes:Uint8Array(20 * n), lengths:[bytes...]}
//               {type:'done', batch} | {type:'error', batch, message}
import { PieceSource } from './pieces.js';

/** Bytes of pieces whose hashes are sent back together: 8 MiB. */
const GROUP_BYTES = 8 * 1024 * 1024;
/** Groups whose digests may be under way at once. */
const GROUPS_IN_FLIGHT = 3;

let source = null;

self.onmessage = async ({ data }) => {
  if (data.type === 'init') {
    source = new PieceSource(data.files, data.pieceLength);
    return;
  }
  if (data.type !== 'hash') return;
  const { batch, pieces } = data;
  const inFlight = [];
  try {
    let group = null;
    const send = () => {
      const { indices, lengths, digests } = group;
      group = null;
      const sent = Promise.all(digests).then((done) => {
        const hashes = new Uint8Array(20 * done.length);
        done.forEach((d, i) => hashes.set(new Uint8Array(d), 20 * i));
        self.postMessage({ type: 'hashed', batch, pieces: indices, hashes, lengths }, [hashes.buffer]);
      });
      sent.catch(() => {}); // awaited below; this only marks a failure as seen
      inFlight.push(sent);
    };
    for (const { first, count } of consecutiveRuns(pieces)) {
      for await (const { index, bytes } of source.streamRun(first, count)) {
        group ??= { indices: [], lengths: [], digests: [], bytes: 0 };
        group.digests.push(crypto.subtle.digest('SHA-1', bytes));
        group.indices.push(index);
        group.lengths.push(bytes.length);
        group.bytes += bytes.length;
        if (group.bytes >= GROUP_BYTES) {
          send();
          if (inFlight.length >= GROUPS_IN_FLIGHT) await inFlight.shift();
        }
      }
    }
    if (group) send();
    while (inFlight.length) await inFlight.shift();
    self.postMessage({ type: 'done', batch });
  } catch (err) {
    self.postMessage({ type: 'error', batch, message: err?.message ?? String(err) });
  }
};

/** Cuts piece indices into runs of consecutive ones. */
function consecutiveRuns(pieces) {
  const runs = [];
  for (const index of pieces) {
    const last = runs.at(-1);
    if (last && last.first + last.count === index) last.count++;
    else runs.push({ first: index, count: 1 });
  }
  return runs;
}
