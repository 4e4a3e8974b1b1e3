/**
 * The send buffer: bytes the application wrote that are not yet acknowledged (RFC 9293 §3.3.1,
 * the region from SND.UNA on). A fixed ring of `capacity` bytes, so a connection's send-side
 * memory is bounded by its configured size; `write` takes what fits and says how much.
 */
export class SendBuffer {
  private readonly ring: Uint8Array;
  /** Ring index of the oldest unacknowledged byte. */
  private head = 0;
  private used = 0;

  constructor(readonly capacity: number) {
    this.ring = new Uint8Array(capacity);
  }

  /** Bytes held (sent-but-unacknowledged plus not-yet-sent). */
  get length(): number {
    return this.used;
  }

  get free(): number {
    return this.capacity - this.used;
  }

  /** Copy as much of `data` as fits; returns the count taken. */
  write(data: Uint8Array): number {
    const n = Math.min(data.length, this.capacity - this.used);
    if (n === 0) return 0;
    let tail = this.head + this.used;
    if (tail >= this.capacity) tail -= this.capacity;
    const first = Math.min(n, this.capacity - tail);
    this.ring.set(first === data.length ? data : data.subarray(0, first), tail);
    if (first < n) this.ring.set(data.subarray(first, n), 0);
    this.used += n;
    return n;
  }

  /** Copy `len` bytes starting `offset` bytes after the oldest one into `dest` at `destOffset`. */
  copyOut(offset: number, len: number, dest: Uint8Array, destOffset: number): void {
    if (offset < 0 || len < 0 || offset + len > this.used) throw new RangeError('send buffer range out of bounds');
    let start = this.head + offset;
    if (start >= this.capacity) start -= this.capacity;
    const first = Math.min(len, this.capacity - start);
    dest.set(this.ring.subarray(start, start + first), destOffset);
    if (first < len) dest.set(this.ring.subarray(0, len - first), destOffset + first);
  }

  /** Drop the `n` oldest bytes (they were acknowledged). */
  consume(n: number): void {
    const k = Math.min(n, this.used);
    this.head += k;
    if (this.head >= this.capacity) this.head -= this.capacity;
    this.used -= k;
    if (this.used === 0) this.head = 0;
  }
}
