import { copyBytes } from '../../net/byte-slab.js';
/**
 * A single-producer single-consumer ring of length-prefixed frames in a SharedArrayBuffer, for
 * frames crossing between threads (a VM's thread and the lab's) without one
 * postMessage per frame. Bounded: a full ring refuses the frame, and the producer decides whether
 * to wait (`waitForSpace`) or drop.
 *
 * Layout: a control block of Int32 slots, then `capacity` data bytes (a power of two). `head` and
 * `tail` are free-running 32-bit byte counters (position = counter & mask), so full and empty are
 * told apart without a spare slot: used = head − tail (mod 2^32). Each record is a 4-byte length
 * then the frame, padded to 4 bytes; a record never wraps: when it does not fit before the end of
 * the data area, a WRAP marker (or nothing, when fewer than 4 bytes are left — never, as records
 * are 4-aligned) fills the rest and the record starts at 0.
 *
 * Ordering: the producer writes the bytes, then publishes them with `Atomics.store(head)`; the
 * consumer reads `head` with `Atomics.load` before touching the bytes, and frees them with
 * `Atomics.store(tail)` after copying them out. Seq-cst atomics make those plain byte accesses
 * ordered (ECMAScript memory model: a synchronizes-with edge per atomic store/load pair).
 *
 * Wake-ups are flag-guarded so a busy stream costs no notify per frame: a side that is about to
 * sleep raises its WAITING flag, re-checks, then waits on the other side's counter; the other side
 * notifies only when that flag is up (and it has published at least one record since).
 */

const HEAD = 0;
const TAIL = 1;
const CONSUMER_WAITING = 2;
const PRODUCER_WAITING = 3;
const CLOSED = 4;
/** Control slots, padded so head and tail sit in different cache lines from the data. */
const CONTROL_BYTES = 64;
const WRAP = -1;

/** Atomics.waitAsync (V8, Node ≥ 16) is ES2024; the project's lib is ES2022. */
type WaitAsync = (ta: Int32Array, index: number, value: number, timeoutMs?: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Largest frame a ring carries: 64 KiB covers GSO segments and a virtio-net header. */
export const RING_MAX_FRAME = 65536 + 64;

export function ringBytes(capacity: number): number {
  return CONTROL_BYTES + capacity;
}

export type RingOpen = { ok: true; ring: FrameRing } | { ok: false; error: string };

export class FrameRing {
  readonly capacity: number;
  private readonly mask: number;
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  private readonly dv: DataView;
  /** The reservation `commit` publishes: where its record starts and how many bytes were skipped. */
  private reservedPos = -1;
  private reservedSkip = 0;
  private reservedLength = 0;

  private constructor(readonly sab: SharedArrayBuffer) {
    this.capacity = sab.byteLength - CONTROL_BYTES;
    this.mask = this.capacity - 1;
    this.ctl = new Int32Array(sab, 0, CONTROL_BYTES / 4);
    this.data = new Uint8Array(sab, CONTROL_BYTES, this.capacity);
    this.dv = new DataView(sab, CONTROL_BYTES, this.capacity);
  }

  /**
   * A new ring of `capacity` data bytes: a power of two, and room for at least two of the largest
   * frames (a record that does not fit before the end may waste up to one record's size).
   */
  static create(capacity: number): RingOpen {
    if (!Number.isInteger(capacity) || capacity < 2 * (RING_MAX_FRAME + 8) || capacity > 1 << 30 || (capacity & (capacity - 1)) !== 0) {
      return { ok: false, error: `ring capacity ${capacity}: a power of two from ${2 * (RING_MAX_FRAME + 8)} to 2^30 bytes` };
    }
    return { ok: true, ring: new FrameRing(new SharedArrayBuffer(ringBytes(capacity))) };
  }

  /** The other thread's view of a ring made by `create` (its `sab`, sent through workerData). */
  static attach(sab: SharedArrayBuffer): RingOpen {
    const capacity = sab.byteLength - CONTROL_BYTES;
    if (capacity < 2 * (RING_MAX_FRAME + 8) || (capacity & (capacity - 1)) !== 0) return { ok: false, error: `shared buffer of ${sab.byteLength} bytes is not a frame ring` };
    return { ok: true, ring: new FrameRing(sab) };
  }

  /** Bytes in use (records, padding and wrap fill). */
  get used(): number {
    return (Atomics.load(this.ctl, HEAD) - Atomics.load(this.ctl, TAIL)) >>> 0;
  }

  get closed(): boolean {
    return Atomics.load(this.ctl, CLOSED) !== 0;
  }

  // ---- producer side ----

  /**
   * Space for a frame of `length` bytes, for the producer to fill in place (no staging copy):
   * the view to write into, or null when the ring is full (or closed). `commit` publishes it.
   */
  reserve(length: number): Uint8Array | null {
    if (length < 0 || length > RING_MAX_FRAME) return null;
    const head = Atomics.load(this.ctl, HEAD);
    const tail = Atomics.load(this.ctl, TAIL);
    const free = this.capacity - ((head - tail) >>> 0);
    const pos = head & this.mask;
    const need = 4 + align4(length);
    const tillEnd = this.capacity - pos;
    if (tillEnd < need) {
      if (free < tillEnd + need) return null;
      // Mark the rest of the data area as skipped; publishing moves head past it with the record.
      this.dv.setInt32(pos, WRAP, true);
      this.reservedPos = 0;
      this.reservedSkip = tillEnd;
    } else {
      if (free < need) return null;
      this.reservedPos = pos;
      this.reservedSkip = 0;
    }
    this.reservedLength = length;
    return this.data.subarray(this.reservedPos + 4, this.reservedPos + 4 + length);
  }

  /** Publish the frame reserved last, its first `length` bytes (at most what was reserved). */
  commit(length: number): void {
    if (this.reservedPos < 0 || length < 0 || length > this.reservedLength) throw new RangeError(`commit of ${length} bytes without a reservation that large`);
    const head = Atomics.load(this.ctl, HEAD);
    this.dv.setInt32(this.reservedPos, length, true);
    this.reservedPos = -1;
    Atomics.store(this.ctl, HEAD, (head + this.reservedSkip + 4 + align4(length)) | 0);
  }

  /** Copy `frame` in and publish it; false when the ring is full or closed. */
  push(frame: Uint8Array): boolean {
    if (this.closed) return false;
    const room = this.reserve(frame.length);
    if (!room) return false;
    room.set(frame);
    this.commit(frame.length);
    return true;
  }

  /**
   * After a batch of pushes: wake the consumer if it sleeps. True when it was asleep, for a
   * consumer woken by a message instead (`armWake`): the caller then sends that message.
   */
  wakeConsumer(): boolean {
    if (Atomics.load(this.ctl, CONSUMER_WAITING) === 0) return false;
    Atomics.store(this.ctl, CONSUMER_WAITING, 0);
    Atomics.notify(this.ctl, HEAD);
    return true;
  }

  /**
   * Block this (non-main) thread until the consumer frees space, the ring closes, or `timeoutMs`
   * passes. Returns false once the ring is closed.
   */
  waitForSpace(timeoutMs: number): boolean {
    const tail = Atomics.load(this.ctl, TAIL);
    Atomics.store(this.ctl, PRODUCER_WAITING, 1);
    // Re-check after raising the flag: the consumer may have freed space just before.
    if (this.closed) return false;
    if (Atomics.load(this.ctl, TAIL) === tail) Atomics.wait(this.ctl, TAIL, tail, timeoutMs);
    Atomics.store(this.ctl, PRODUCER_WAITING, 0);
    return !this.closed;
  }

  // ---- consumer side ----

  /**
   * The oldest frame, as a view into the ring (valid until `release`), or null when empty. Records
   * the producer could not have written (a length past the data) mean the ring is corrupt: the
   * ring is closed and null returned, so a bad peer stops the link rather than the process.
   */
  peek(): Uint8Array | null {
    const head = Atomics.load(this.ctl, HEAD);
    let tail = Atomics.load(this.ctl, TAIL);
    if (head === tail) return null;
    let pos = tail & this.mask;
    let len = this.dv.getInt32(pos, true);
    if (len === WRAP) {
      tail = (tail + this.capacity - pos) | 0;
      Atomics.store(this.ctl, TAIL, tail);
      if (head === tail) return null;
      pos = 0;
      len = this.dv.getInt32(0, true);
    }
    if (len < 0 || len > RING_MAX_FRAME || pos + 4 + len > this.capacity || 4 + align4(len) > ((head - tail) >>> 0)) {
      this.close();
      return null;
    }
    return this.data.subarray(pos + 4, pos + 4 + len);
  }

  /** Free the frame `peek` returned, and wake the producer if it waits for space. */
  release(): void {
    const tail = Atomics.load(this.ctl, TAIL);
    const pos = tail & this.mask;
    const len = this.dv.getInt32(pos, true);
    Atomics.store(this.ctl, TAIL, (tail + 4 + align4(len)) | 0);
    if (Atomics.load(this.ctl, PRODUCER_WAITING) !== 0) Atomics.notify(this.ctl, TAIL);
  }

  /** Copy out the oldest frame and free it; null when empty. */
  shift(): Uint8Array | null {
    const view = this.peek();
    if (!view) return null;
    const frame = copyBytes(view);
    this.release();
    return frame;
  }

  /**
   * Resolve once the producer has published past what the consumer has seen, or the ring closed
   * (main thread: Atomics.waitAsync, so the event loop keeps running). Give a timeout where a
   * stall would hurt: the TAP saw such a wait stay pending under load on Node 20 with frames
   * already in the ring (cause not established), and wakes its consumer by message (`armWake`).
   */
  waitForFrames(timeoutMs?: number): Promise<void> {
    const head = Atomics.load(this.ctl, HEAD);
    Atomics.store(this.ctl, CONSUMER_WAITING, 1);
    if (head !== Atomics.load(this.ctl, TAIL) || this.closed) {
      Atomics.store(this.ctl, CONSUMER_WAITING, 0);
      return Promise.resolve();
    }
    const r = waitAsync(this.ctl, HEAD, head, timeoutMs);
    if (!r.async) return Promise.resolve();
    return r.value.then(() => undefined);
  }

  /**
   * For a consumer woken by a message from the producer's thread: announce that it goes to sleep.
   * False when frames (or the close) arrived meanwhile, so it must not sleep; true when the
   * producer's next `wakeConsumer` will return true (seq-cst: either this side sees the new head,
   * or the producer sees the flag).
   */
  armWake(): boolean {
    Atomics.store(this.ctl, CONSUMER_WAITING, 1);
    if (Atomics.load(this.ctl, HEAD) !== Atomics.load(this.ctl, TAIL) || this.closed) {
      Atomics.store(this.ctl, CONSUMER_WAITING, 0);
      return false;
    }
    return true;
  }

  /** Blocking form of `waitForFrames`, for a consumer on a worker thread. */
  waitForFramesSync(timeoutMs: number): void {
    const head = Atomics.load(this.ctl, HEAD);
    Atomics.store(this.ctl, CONSUMER_WAITING, 1);
    if (head === Atomics.load(this.ctl, TAIL) && !this.closed) Atomics.wait(this.ctl, HEAD, head, timeoutMs);
    Atomics.store(this.ctl, CONSUMER_WAITING, 0);
  }

  /** Either side: no more frames; wakes whoever waits. */
  close(): void {
    Atomics.store(this.ctl, CLOSED, 1);
    Atomics.notify(this.ctl, HEAD);
    Atomics.notify(this.ctl, TAIL);
  }
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
