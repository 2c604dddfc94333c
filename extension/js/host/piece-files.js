// The engine host's side of the piece file worker (js/host/piece-worker.js):
// SwarmHost (src/web/piece_files.rs) gets one PieceFiles and calls these
// methods; each returns a promise settled by the worker's answer. A failure
// rejects with an Error whose `name` is the worker's DOMException name
// (QuotaExceededError when the disk or the quota is full).

export class PieceFiles {
  #worker;
  #next = 0;
  #waiting = new Map();

  constructor() {
    this.#worker = new Worker(new URL('./piece-worker.js', import.meta.url), { type: 'module' });
    this.#worker.onmessage = ({ data }) => {
      const w = this.#waiting.get(data.id);
      if (!w) return;
      this.#waiting.delete(data.id);
      if (data.ok) w.resolve(data.result);
      else w.reject(Object.assign(new Error(data.message), { name: data.name, written: data.written }));
    };
    this.#worker.onerror = (e) => {
      const err = new Error(`the piece file worker failed: ${e.message || 'it did not load'}`);
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    };
  }

  #call(message, transfer = []) {
    return new Promise((resolve, reject) => {
      const id = ++this.#next;
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...message, id }, transfer);
    });
  }

  /** Whether sync access handles work in the worker (false where they do not). */
  probe() {
    return this.#call({ op: 'probe' }).catch(() => false);
  }

  /** Stops the worker. */
  close() {
    this.#worker.terminate();
  }

  /**
   * Writes `buffers` (ArrayBuffers, transferred) at `offsets` of the bundle's
   * file, in order, and flushes it. When the disk is full it rejects with a
   * QuotaExceededError whose `written` says how many were written first.
   */
  write(bundle, offsets, buffers) {
    return this.#call({ op: 'write', bundle, offsets, buffers }, buffers);
  }

  /** `length` bytes from `offset`, as an ArrayBuffer (rejects when the file ends before). */
  read(bundle, offset, length) {
    return this.#call({ op: 'read', bundle, offset, length });
  }

  /** Closes and deletes the bundle's file (nothing when there is none). */
  remove(bundle) {
    return this.#call({ op: 'remove', bundle });
  }
}
