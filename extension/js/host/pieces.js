// File bytes -> piece bytes: the one place where the bytes of a bundle's files
// become the bytes of its pieces.
//
// A bundle is the concatenation of its files, cut into pieces of
// `pieceLength` bytes (the last one shorter). A piece is read lazily: only
// the slices of the files it covers are read (`Blob.slice`), so a bundle of
// any size is never held in memory, only one piece at a time.
//
// End-to-end encryption will be inserted here: the sender will encrypt each
// file in fixed records before the bytes are cut into pieces, and the
// receiver will decrypt on the way back to files. Nothing else in the
// extension turns file bytes into piece bytes or back.

/**
 * Bytes of the buffer a run of pieces is read into (at least one piece): a
 * read takes up to what is left of it, so it is several times what the
 * browser's data pipe holds.
 */
const RUN_BUFFER_BYTES = 4 * 1024 * 1024;

export class PieceSource {
  /** The buffer `streamRun` fills, kept for the next run. */
  #spare = null;

  /**
   * @param {{blob: Blob}[]} files the bundle's files in torrent order
   * @param {number} pieceLength bytes per piece (a power of two)
   */
  constructor(files, pieceLength) {
    if (!Number.isInteger(pieceLength) || pieceLength <= 0) {
      throw new Error(`invalid piece length: ${pieceLength}`);
    }
    this.pieceLength = pieceLength;
    this.files = [];
    let offset = 0;
    for (const { blob } of files) {
      this.files.push({ blob, offset, length: blob.size });
      offset += blob.size;
    }
    this.totalLength = offset;
    this.pieceCount = Math.ceil(offset / pieceLength);
  }

  /** Length of piece `index` (the last piece is short). */
  pieceLen(index) {
    this.#check(index);
    return Math.min(this.pieceLength, this.totalLength - index * this.pieceLength);
  }

  /** Byte range `[start, end)` of piece `index` in the concatenated stream. */
  pieceRange(index) {
    const start = index * this.pieceLength;
    return [start, start + this.pieceLen(index)];
  }

  /** The file slices that make up piece `index`, in order. */
  slices(index) {
    const [start, end] = this.pieceRange(index);
    return this.#slicesOf(start, end);
  }

  /** The file slices that make up the stream's bytes `[start, end)`, in order. */
  #slicesOf(start, end) {
    const out = [];
    for (const f of this.#filesFrom(start)) {
      if (f.offset >= end) break;
      const a = Math.max(start, f.offset) - f.offset;
      const b = Math.min(end, f.offset + f.length) - f.offset;
      if (b > a) out.push(f.blob.slice(a, b));
    }
    return out;
  }

  /** Reads piece `index`: exactly `pieceLen(index)` bytes. */
  async read(index) {
    const slices = this.slices(index);
    const bytes = new Uint8Array(
      slices.length === 1 ? await slices[0].arrayBuffer() : await new Blob(slices).arrayBuffer(),
    );
    if (bytes.length !== this.pieceLen(index)) {
      // A file changed size (or vanished) after it was chosen.
      throw new Error(`piece ${index}: read ${bytes.length} bytes, expected ${this.pieceLen(index)}`);
    }
    return bytes;
  }

  /**
   * Reads `count` consecutive pieces from `first` on as one stream of their
   * files' bytes, yielding each piece in turn: exactly `pieceLen(index)`
   * bytes, as a view of one buffer that is reused for the next pieces (and
   * the next run), so it is valid only until the loop asks for the next one.
   * Hashing reads every byte of a bundle this way: one read of many pieces
   * costs the browser far less than a read per piece (each is a round trip
   * to the browser process); filling the same buffer again (a BYOB reader
   * where the browser has one) spares the page faults of a fresh buffer per
   * read; and a buffer of several pieces lets each read take all the bytes
   * the browser has ready rather than stop at a piece's end (BENCHMARKS.md
   * row 1).
   *
   * @returns {AsyncGenerator<{index: number, bytes: Uint8Array}>}
   */
  async *streamRun(first, count) {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`invalid piece count: ${count}`);
    this.#check(first);
    this.#check(first + count - 1);
    const start = first * this.pieceLength;
    const end = Math.min(this.totalLength, (first + count) * this.pieceLength);
    const slices = this.#slicesOf(start, end);
    const stream = (slices.length === 1 ? slices[0] : new Blob(slices)).stream();
    let reader;
    let byob = true;
    try {
      reader = stream.getReader({ mode: 'byob' });
    } catch {
      reader = stream.getReader(); // not a byte stream here: copy each chunk in
      byob = false;
    }
    // Whole pieces fit in the buffer (the piece length divides its size), so
    // a piece never wraps around its end.
    const size = this.pieceLength * Math.max(1, Math.floor(RUN_BUFFER_BYTES / this.pieceLength));
    let buffer = this.#spare?.byteLength === size ? this.#spare : new ArrayBuffer(size);
    this.#spare = null;
    let chunk = null; // the default reader's chunk not yet copied
    let filled = 0; // bytes of the buffer holding bytes of the run
    let at = 0; // where the next piece begins in the buffer
    let read = 0; // bytes of the run read
    let finished = false;
    try {
      for (let index = first; index < first + count; index++) {
        const length = this.pieceLen(index);
        if (at === size) {
          at = 0;
          filled = 0;
        }
        while (filled < at + length) {
          // Never past the run's end, so the last read does not wait for the stream to close.
          const room = Math.min(size - filled, end - start - read);
          let n;
          if (byob) {
            const { value, done } = await reader.read(new Uint8Array(buffer, filled, room));
            // The read moved the buffer into the stream and hands it back.
            buffer = value ? value.buffer : new ArrayBuffer(size);
            if (done) break;
            n = value.byteLength;
          } else {
            if (!chunk || chunk.length === 0) {
              const { value, done } = await reader.read();
              if (done) break;
              chunk = value;
              continue;
            }
            n = Math.min(chunk.length, room);
            new Uint8Array(buffer, filled, n).set(chunk.subarray(0, n));
            chunk = chunk.subarray(n);
          }
          filled += n;
          read += n;
        }
        if (filled < at + length) {
          // A file changed size (or vanished) after it was chosen.
          throw new Error(`pieces ${first}..${first + count - 1}: read ${read} bytes, expected ${end - start}`);
        }
        yield { index, bytes: new Uint8Array(buffer, at, length) };
        at += length;
      }
      finished = true;
    } finally {
      if (finished) reader.releaseLock();
      else reader.cancel().catch(() => {});
      this.#spare = buffer;
    }
  }

  /** Files overlapping the stream from `start` on (binary search for the first). */
  *#filesFrom(start) {
    let lo = 0;
    let hi = this.files.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const f = this.files[mid];
      if (f.offset + f.length <= start) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.files.length; i++) yield this.files[i];
  }

  #check(index) {
    if (!Number.isInteger(index) || index < 0 || index >= this.pieceCount) {
      throw new RangeError(`no piece ${index} (the bundle has ${this.pieceCount})`);
    }
  }
}
