// Piece hashing on every core: a pool of workers (js/host/hash-worker.js), each
// reading its pieces lazily (several consecutive pieces per read) and hashing
// them with WebCrypto SHA-1, fed batches of piece indices so that pausing
// takes effect within one batch.

/** Bytes handed to a worker at a time, at most (at least one piece). */
const BATCH_BYTES = 32 * 1024 * 1024;
/**
 * Bytes handed to a worker at a time near the end of a job, at least: the
 * batches shrink as the pieces left do, so the workers finish together
 * rather than one hashing a whole batch while the others have none.
 */
const MIN_BATCH_BYTES = 8 * 1024 * 1024;
const MAX_BATCH_PIECES = 256;

/**
 * Workers hashing at once: one per core, and one more on a machine of few
 * cores. A worker waits whenever the browser has not yet read the next bytes
 * of its files, and on few cores the browser's reading threads and other
 * work take turns with the workers: on a busy 2-core machine a third worker
 * (and the shrinking batches) hashed bench row 1's GiB in 2.11 s against
 * 2.61 s (medians of 15 runs each, BENCHMARKS.md).
 */
export function workerCount() {
  const cores = navigator.hardwareConcurrency || 2;
  return Math.max(1, Math.min(4, cores <= 2 ? cores + 1 : cores));
}

/**
 * Hashes the pieces not yet marked in `done`, writing each SHA-1 into
 * `hashes` (20 bytes per piece) and marking it.
 *
 * @param {object} job
 * @param {{blob: Blob}[]} job.files the bundle's files in torrent order
 * @param {number} job.pieceLength
 * @param {number} job.pieceCount
 * @param {Uint8Array} job.hashes 20 * pieceCount bytes
 * @param {Uint8Array} job.done one byte per piece, 1 once hashed
 * @param {(bytes: number) => void} job.onProgress called after each piece
 * @param {() => Promise<void>} job.gate resolves when work may go on (pause waits here)
 * @param {AbortSignal} job.signal aborts the job (the bundle was cancelled)
 */
export async function hashPieces(job) {
  const { files, pieceLength, pieceCount, hashes, done, onProgress, gate, signal } = job;
  const perBatch = Math.max(1, Math.min(MAX_BATCH_PIECES, Math.floor(BATCH_BYTES / pieceLength)));
  const minBatch = Math.max(1, Math.min(perBatch, Math.floor(MIN_BATCH_BYTES / pieceLength)));
  const todo = [];
  for (let i = 0; i < pieceCount; i++) if (!done[i]) todo.push(i);
  const count = Math.min(workerCount(), Math.ceil(todo.length / minBatch));
  let cursor = 0;
  // A batch is an equal share of half of what is left, within the bounds.
  const nextBatch = () => {
    const share = Math.ceil((todo.length - cursor) / (2 * count));
    const batch = todo.slice(cursor, cursor + Math.max(minBatch, Math.min(perBatch, share)));
    cursor += batch.length;
    return batch;
  };

  const workers = [];
  const stop = () => workers.forEach((w) => w.terminate());
  signal.addEventListener('abort', stop, { once: true });
  try {
    await Promise.all(
      Array.from({ length: count }, async () => {
        const worker = new Worker(new URL('./hash-worker.js', import.meta.url), { type: 'module' });
        workers.push(worker);
        worker.postMessage({ type: 'init', files, pieceLength });
        for (;;) {
          await gate();
          if (signal.aborted) throw new DOMException('cancelled', 'AbortError');
          const pieces = nextBatch();
          if (pieces.length === 0) return;
          await runBatch(worker, pieces, signal, (index, hash, bytes) => {
            hashes.set(hash, index * 20);
            done[index] = 1;
            onProgress(bytes);
          });
        }
      }),
    );
  } finally {
    signal.removeEventListener('abort', stop);
    stop();
  }
}

let batchIds = 0;

function runBatch(worker, pieces, signal, onPiece) {
  const batch = ++batchIds;
  return new Promise((resolve, reject) => {
    const onAbort = () => finish(reject, new DOMException('cancelled', 'AbortError'));
    const finish = (settle, value) => {
      worker.removeEventListener('message', onMessage);
      worker.removeEventListener('error', onError);
      signal.removeEventListener('abort', onAbort);
      settle(value);
    };
    const onMessage = ({ data }) => {
      if (data.batch !== batch) return;
      if (data.type === 'hashed') {
        data.pieces.forEach((index, i) => onPiece(index, data.hashes.subarray(20 * i, 20 * i + 20), data.lengths[i]));
      }
      else if (data.type === 'done') finish(resolve);
      else if (data.type === 'error') finish(reject, new Error(data.message));
    };
    const onError = (e) => finish(reject, new Error(e.message || 'the hashing worker failed'));
    worker.addEventListener('message', onMessage);
    worker.addEventListener('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
    worker.postMessage({ type: 'hash', batch, pieces });
  });
}
