import { SLAB_MAX_ALLOC } from './byte-slab.js';
import { MAX_FRAME } from './frame-port.js';

/**
 * Buffers for large frames (GSO segments up to 64 KiB), lent by the port that fills them and given
 * back when the frame has reached its end — the part of an skb's page reference count this lab
 * needs. A 64 KiB `new Uint8Array` per segment costs its zeroing and, counted as external memory,
 * a full garbage collection every 64 MB of them; a buffer that comes back costs neither.
 *
 * Who gives a buffer back (`settleFrame`): the frame's last holder, once it knows nothing refers
 * to the frame any more — a link whose receiver answered `'copied'` (a NIC model that DMA'd it
 * into guest memory, a stack, which copies whatever it keeps) or refused it, a port whose receiver
 * was busy or refused, a switch that cut it into segments, a TAP that wrote it to the kernel. A
 * receiver that may keep the frame (or passes it on) answers `true`, and the buffer is then left
 * to whoever holds it next, or to the GC. Whoever would hand one frame object to two holders (a
 * switch flooding it, an impairment duplicating it) copies it first (`isLent`).
 */
const owners = new WeakMap<ArrayBufferLike, LendPool>();

export class LendPool {
  private readonly free: ArrayBuffer[] = [];

  /**
   * @param max buffers kept for lending: enough for the frames in flight on a busy path (a 1 MiB TCP window is 16 GSO segments).
   * @param bytes size of each buffer: a frame, or more where a frame is read behind a header (a TAP's virtio-net header).
   */
  constructor(
    private readonly max = 32,
    private readonly bytes = MAX_FRAME,
  ) {}

  /** `length` bytes (SLAB_MAX_ALLOC < length ≤ the pool's buffer size) of a pooled buffer, not zeroed, travelling until settled. */
  lend(length: number): Uint8Array {
    const buf = this.free.pop() ?? new ArrayBuffer(this.bytes);
    owners.set(buf, this);
    return new Uint8Array(buf, 0, length);
  }

  /** How many buffers wait to be lent (tests). */
  get available(): number {
    return this.free.length;
  }

  give(buf: ArrayBuffer): void {
    if (this.free.length < this.max) this.free.push(buf);
  }
}

/** Whether `frame`'s memory is a lent buffer still travelling: copy it before handing it to a second holder. */
export function isLent(frame: Uint8Array): boolean {
  return frame.length > SLAB_MAX_ALLOC && owners.has(frame.buffer);
}

/**
 * `frame`'s way ended here and nothing refers to it any more: a lent buffer goes back to its pool
 * (once: a second call finds it no longer lent). Anything else is ignored.
 */
export function settleFrame(frame: Uint8Array): void {
  if (frame.length <= SLAB_MAX_ALLOC) return;
  const buf = frame.buffer;
  const pool = owners.get(buf);
  if (!pool) return;
  owners.delete(buf);
  pool.give(buf as ArrayBuffer);
}
