// Hashing worker: reads pieces lazily through PieceSource and hashes them with
// WebCrypto SHA-1. Several run at once (one per core); the engine host hands
// each a batch of piece indices at a time and collects the hashes.
//
// Consecutive pieces are read together, up to RUN_BYTES at a time, and the
// next run is read while the current one is digested: reading a file slice
// is a round trip to the browser process and a fresh buffer each time, and
// reading 1 MiB pieces one by one cost more CPU than hashing them (bench row
// 1 in BENCHMARKS.md). All digests of a run are started at once.
//
// Messages in:  {type:'init', files:[{blob}], pieceLength}
//               {type:'hash', batch, pieces:[index...]}
// Messages out: {type:'hashed', batch, pieces:[index...], hashes:Uint8Array(20 * n), lengths:[bytes...]}
//               {type:'done', batch} | {type:'error', batch, message}
import { PieceSource } from './pieces.js';

/** Bytes read at a time (at least one piece): 8 MiB. */
const RUN_BYTES = 8 * 1024 * 1024;

let source = null;

self.onmessage = async ({ data }) => {
  if (data.type === 'init') {
    source = new PieceSource(data.files, data.pieceLength);
    return;
  }
  if (data.type !== 'hash') return;
  const { batch, pieces } = data;
  try {
    const runs = consecutiveRuns(pieces, Math.max(1, Math.floor(RUN_BYTES / source.pieceLength)));
    const read = (run) => {
      const bytes = source.readRun(run.first, run.count);
      bytes.catch(() => {}); // awaited below; this only marks a failure as seen
      return bytes;
    };
    let next = read(runs[0]);
    for (let r = 0; r < runs.length; r++) {
      const bytes = await next;
      if (r + 1 < runs.length) next = read(runs[r + 1]);
      const { first, count } = runs[r];
      const lengths = [];
      const digests = [];
      let offset = 0;
      for (let i = 0; i < count; i++) {
        const length = source.pieceLen(first + i);
        digests.push(crypto.subtle.digest('SHA-1', bytes.subarray(offset, offset + length)));
        lengths.push(length);
        offset += length;
      }
      const hashes = new Uint8Array(20 * count);
      (await Promise.all(digests)).forEach((d, i) => hashes.set(new Uint8Array(d), 20 * i));
      const indices = Array.from({ length: count }, (_, i) => first + i);
      self.postMessage({ type: 'hashed', batch, pieces: indices, hashes, lengths }, [hashes.buffer]);
    }
    self.postMessage({ type: 'done', batch });
  } catch (err) {
    self.postMessage({ type: 'error', batch, message: err?.message ?? String(err) });
  }
};

/** Cuts piece indices into runs of consecutive ones, at most `max` pieces each. */
function consecutiveRuns(pieces, max) {
  const runs = [];
  for (const index of pieces) {
    const last = runs.at(-1);
    if (last && last.first + last.count === index && last.count < max) last.count++;
    else runs.push({ first: index, count: 1 });
  }
  return runs;
}
