// Hashing worker: reads pieces lazily through PieceSource and hashes them with
// WebCrypto SHA-1. Several run at once (one per core); the engine host hands
// each a batch of piece indices at a time and collects the hashes.
//
// Messages in:  {type:'init', files:[{blob}], pieceLength}
//               {type:'hash', batch, pieces:[index...]}
// Messages out: {type:'hashed', batch, index, hash:Uint8Array(20), bytes}
//               {type:'done', batch} | {type:'error', batch, message}
import { PieceSource } from './pieces.js';

let source = null;

self.onmessage = async ({ data }) => {
  if (data.type === 'init') {
    source = new PieceSource(data.files, data.pieceLength);
    return;
  }
  if (data.type !== 'hash') return;
  const { batch, pieces } = data;
  try {
    // Read the next piece while the current one is being digested.
    let next = source.read(pieces[0]);
    next.catch(() => {}); // awaited below; this only marks a failure as seen
    for (let i = 0; i < pieces.length; i++) {
      const bytes = await next;
      if (i + 1 < pieces.length) {
        next = source.read(pieces[i + 1]);
        next.catch(() => {});
      }
      const hash = new Uint8Array(await crypto.subtle.digest('SHA-1', bytes));
      self.postMessage({ type: 'hashed', batch, index: pieces[i], hash, bytes: bytes.length }, [
        hash.buffer,
      ]);
    }
    self.postMessage({ type: 'done', batch });
  } catch (err) {
    self.postMessage({ type: 'error', batch, message: err?.message ?? String(err) });
  }
};
