import { isDmaFault, type GuestMemory } from '../vmm/memory.js';
import { allocBytes, copyBytes } from '../../net/byte-slab.js';

/**
 * The device side of a split virtqueue (virtio 1.x §2.7, "Split Virtqueues"), in the legacy
 * layout (§2.7.2 "Legacy Interfaces: A Note on Virtqueue Layout"): the driver gives one page frame
 * number; the descriptor table starts there, the available ring follows it, and the used ring
 * starts at the next 4096-byte boundary.
 *
 * Everything in the rings is written by the guest, so every index, address and length read from
 * them is checked before use. A bad value is returned as a VirtqError (the device fail-stops on
 * it); nothing here throws and nothing reads outside guest memory.
 */

/** struct virtq_desc flags (§2.7.5). */
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
/** virtq_avail.flags: the driver does not want an interrupt when buffers are used (§2.7.7). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** virtq_used.flags: the device does not want a notification when buffers are added (§2.7.10). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;
/** Legacy PCI: the queue address register holds the ring address shifted by this (a 4 KiB PFN). */
export const VIRTIO_PCI_QUEUE_ADDR_SHIFT = 12;
export const VIRTIO_PCI_VRING_ALIGN = 4096;
export const DESC_SIZE = 16;
/**
 * The largest indirect table we accept. The spec bounds a chain only by the queue size for direct
 * descriptors; for indirect tables it leaves the bound to the device, and a guest-chosen length must
 * not make the device walk megabytes of descriptors.
 */
export const MAX_INDIRECT_DESCRIPTORS = 1024;

export interface VringLayout {
  size: number;
  desc: number;
  avail: number;
  used: number;
  /** Bytes from `desc` to the end of the used ring (including used_event/avail_event). */
  totalBytes: number;
}

/** Where the three parts of a legacy ring of `size` entries at `base` lie (§2.7.2). */
export function legacyVringLayout(base: number, size: number): VringLayout {
  const desc = base;
  const avail = desc + DESC_SIZE * size;
  // flags, idx, ring[size], used_event
  const availEnd = avail + 4 + 2 * size + 2;
  const used = Math.ceil(availEnd / VIRTIO_PCI_VRING_ALIGN) * VIRTIO_PCI_VRING_ALIGN;
  // flags, idx, ring[size] of {id u32, len u32}, avail_event
  const usedEnd = used + 4 + 8 * size + 2;
  return { size, desc, avail, used, totalBytes: usedEnd - desc };
}

/** Bytes a driver allocates for a legacy ring (both parts page-aligned, as Linux's vring_size). */
export function legacyVringBytes(size: number): number {
  const l = legacyVringLayout(0, size);
  return Math.ceil(l.totalBytes / VIRTIO_PCI_VRING_ALIGN) * VIRTIO_PCI_VRING_ALIGN;
}

export type VirtqErrorKind =
  | 'ring-address'
  | 'avail-index'
  | 'head-index'
  | 'next-index'
  | 'buffer-address'
  | 'loop'
  | 'nested-indirect'
  | 'indirect-not-negotiated'
  | 'indirect-with-next'
  | 'indirect-length'
  | 'write-before-read'
  | 'dma';

/** A guest mistake found in a queue: the device reports it and stops (fail-stop). */
export class VirtqError {
  constructor(
    readonly kind: VirtqErrorKind,
    readonly queue: number,
    readonly detail: string,
  ) {}
  get message(): string {
    return `virtqueue ${this.queue}: ${this.detail}`;
  }
}

export function isVirtqError(v: unknown): v is VirtqError {
  return v instanceof VirtqError;
}

export interface Segment {
  addr: number;
  len: number;
}

/** One descriptor chain taken from the available ring. */
export interface Chain {
  /** The head descriptor index: what goes back in the used ring. */
  head: number;
  /** Device-readable buffers, in order. */
  readable: Segment[];
  /** Device-writable buffers, in order (after all readable ones, §2.7.4.2). */
  writable: Segment[];
  readableLength: number;
  writableLength: number;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export class SplitVirtqueue {
  /** Entries in the ring; fixed by the device in the legacy interface (QUEUE_NUM is read-only). */
  readonly size: number;
  private pfnValue = 0;
  private layout: VringLayout | null = null;
  /** The next available-ring slot the device will read (free-running 16-bit). */
  private lastAvail = 0;
  /** The device's used index (free-running 16-bit); published to used.idx by `publish`. */
  private usedIdx = 0;
  /** used.idx as last published (to compute EVENT_IDX's "crossed used_event" test). */
  private signalledUsed = 0;
  private unpublished = 0;
  /** Features that change ring behaviour, set from the negotiated feature bits. */
  indirectEnabled = false;
  eventIdxEnabled = false;

  constructor(
    private readonly memory: GuestMemory,
    readonly index: number,
    size: number,
  ) {
    if (!Number.isInteger(size) || size < 1 || size > 32768 || (size & (size - 1)) !== 0) {
      // A model bug, not a guest one: queue sizes are powers of two up to 32768 (§2.7).
      throw new Error(`virtqueue size ${size} is not a power of two in 1..32768`);
    }
    this.size = size;
  }

  get pfn(): number {
    return this.pfnValue;
  }

  get ready(): boolean {
    return this.layout !== null;
  }

  get rings(): VringLayout | null {
    return this.layout;
  }

  /** Forget the ring (queue reset, device reset, or PFN 0). */
  reset(): void {
    this.pfnValue = 0;
    this.layout = null;
    this.lastAvail = 0;
    this.usedIdx = 0;
    this.signalledUsed = 0;
    this.unpublished = 0;
  }

  /** The driver wrote QUEUE_PFN. 0 releases the queue; otherwise the whole ring must be in memory. */
  setPfn(pfn: number): true | VirtqError {
    this.reset();
    if (pfn === 0) return true;
    const base = pfn * 2 ** VIRTIO_PCI_QUEUE_ADDR_SHIFT;
    const layout = legacyVringLayout(base, this.size);
    if (!this.memory.inRange(base, layout.totalBytes)) {
      return new VirtqError('ring-address', this.index, `ring at PFN ${hex(pfn)} (${hex(base)}+${layout.totalBytes}) is outside guest memory`);
    }
    this.pfnValue = pfn;
    this.layout = layout;
    return true;
  }

  private u16(addr: number): number | VirtqError {
    const v = this.memory.readU16(addr);
    return isDmaFault(v) ? new VirtqError('dma', this.index, v.message) : v;
  }

  private putU16(addr: number, v: number): true | VirtqError {
    const r = this.memory.writeU16(addr, v & 0xffff);
    return isDmaFault(r) ? new VirtqError('dma', this.index, r.message) : true;
  }

  /** How many chains the driver has made available that the device has not taken. */
  pending(): number | VirtqError {
    const l = this.layout;
    if (!l) return 0;
    const idx = this.u16(l.avail + 2);
    if (isVirtqError(idx)) return idx;
    const n = (idx - this.lastAvail) & 0xffff;
    // More than a ring's worth outstanding means avail.idx is garbage (§2.7.13.3: it only ever
    // advances by the number of entries the driver added, never past the ring).
    if (n > this.size) return new VirtqError('avail-index', this.index, `avail.idx ${idx} is ${n} ahead of the device's ${this.lastAvail}, more than the queue size ${this.size}`);
    return n;
  }

  /** Take the next available chain; null when there is none. */
  pop(): Chain | null | VirtqError {
    const l = this.layout;
    if (!l) return null;
    const n = this.pending();
    if (isVirtqError(n)) return n;
    if (n === 0) return null;
    const head = this.u16(l.avail + 4 + 2 * (this.lastAvail % this.size));
    if (isVirtqError(head)) return head;
    const chain = this.walk(head);
    if (isVirtqError(chain)) return chain;
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    return chain;
  }

  /** Give back the last `count` popped chains unused (the device could not use them after all). */
  unpop(count: number): void {
    this.lastAvail = (this.lastAvail - count) & 0xffff;
  }

  /** Follow a chain from `head`, checking every descriptor (§2.7.5, §2.7.5.3 indirect). */
  walk(head: number): Chain | VirtqError {
    const l = this.layout!;
    if (head >= this.size) return new VirtqError('head-index', this.index, `avail ring names descriptor ${head}, queue size is ${this.size}`);
    const chain: Chain = { head, readable: [], writable: [], readableLength: 0, writableLength: 0 };
    let table = l.desc;
    let tableSize = this.size;
    let inIndirect = false;
    let i = head;
    let visited = 0;
    for (;;) {
      // A well-formed chain visits each descriptor of its table at most once; one more is a loop.
      if (++visited > tableSize) {
        return new VirtqError('loop', this.index, `descriptor chain from head ${head} is longer than its ${inIndirect ? 'indirect table' : 'queue'} (${tableSize}): a loop`);
      }
      const at = table + DESC_SIZE * i;
      const addr64 = this.memory.readU64(at);
      const len = this.memory.readU32(at + 8);
      const flags = this.memory.readU16(at + 12);
      const next = this.memory.readU16(at + 14);
      if (isDmaFault(addr64) || isDmaFault(len) || isDmaFault(flags) || isDmaFault(next)) {
        return new VirtqError('dma', this.index, `descriptor ${i} at ${hex(at)} is outside guest memory`);
      }
      const addr = Number(addr64);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.indirectEnabled) return new VirtqError('indirect-not-negotiated', this.index, `descriptor ${i} is indirect but VIRTIO_RING_F_INDIRECT_DESC was not negotiated`);
        if (inIndirect) return new VirtqError('nested-indirect', this.index, `indirect descriptor inside an indirect table (chain head ${head})`);
        if (flags & VIRTQ_DESC_F_NEXT) return new VirtqError('indirect-with-next', this.index, `descriptor ${i} sets both INDIRECT and NEXT`);
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > MAX_INDIRECT_DESCRIPTORS) {
          return new VirtqError('indirect-length', this.index, `indirect table of ${len} bytes (must be a non-zero multiple of 16, at most ${MAX_INDIRECT_DESCRIPTORS} entries)`);
        }
        if (!this.memory.inRange(addr, len)) return new VirtqError('buffer-address', this.index, `indirect table at ${hex(addr)}+${len} is outside guest memory`);
        table = addr;
        tableSize = len / DESC_SIZE;
        inIndirect = true;
        i = 0;
        visited = 0;
        continue;
      }
      if (!this.memory.inRange(addr, len)) return new VirtqError('buffer-address', this.index, `descriptor ${i} buffer ${hex(addr)}+${len} is outside guest memory`);
      if (flags & VIRTQ_DESC_F_WRITE) {
        chain.writable.push({ addr, len });
        chain.writableLength += len;
      } else {
        if (chain.writable.length > 0) return new VirtqError('write-before-read', this.index, `descriptor ${i} is device-readable after a device-writable one (chain head ${head})`);
        chain.readable.push({ addr, len });
        chain.readableLength += len;
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) return chain;
      if (next >= tableSize) return new VirtqError('next-index', this.index, `descriptor ${i} points to ${next}, ${inIndirect ? 'indirect table' : 'queue'} has ${tableSize}`);
      i = next;
    }
  }

  /** Copy a chain's readable bytes out of guest memory (at most `max`). */
  gather(chain: Chain, max = chain.readableLength): Uint8Array | VirtqError {
    const length = Math.min(max, chain.readableLength);
    const first = chain.readable[0];
    if (first && first.len >= length) {
      // All in one buffer, as drivers lay out a frame: one copy, with no buffer zeroed first.
      const v = this.memory.view(first.addr, length);
      return isDmaFault(v) ? new VirtqError('dma', this.index, v.message) : copyBytes(v);
    }
    const out = allocBytes(length);
    let off = 0;
    for (const s of chain.readable) {
      if (off >= out.length) break;
      const n = Math.min(s.len, out.length - off);
      const v = this.memory.view(s.addr, n);
      if (isDmaFault(v)) return new VirtqError('dma', this.index, v.message);
      out.set(v, off);
      off += n;
    }
    return out;
  }

  /**
   * Copy the chain's readable bytes from `skip` on into `into` (as many as it holds): a frame
   * gathered straight into memory the port lent (FramePort.lendTx) instead of a buffer of its own.
   */
  gatherInto(chain: Chain, skip: number, into: Uint8Array): VirtqError | null {
    let off = 0;
    let pos = 0;
    for (const s of chain.readable) {
      if (off >= into.length) break;
      const from = Math.max(0, skip - pos);
      pos += s.len;
      if (from >= s.len) continue;
      const n = Math.min(s.len - from, into.length - off);
      const v = this.memory.view(s.addr + from, n);
      if (isDmaFault(v)) return new VirtqError('dma', this.index, v.message);
      into.set(v, off);
      off += n;
    }
    return null;
  }

  /** Copy `data` into a chain's writable buffers; returns the bytes written (≤ writableLength). */
  scatter(chain: Chain, data: Uint8Array | readonly Uint8Array[]): number | VirtqError {
    // `data` may come in parts (a header and a frame): they are one stream across the buffers.
    const parts = data instanceof Uint8Array ? [data] : data;
    let written = 0;
    let p = 0;
    let pOff = 0;
    for (const s of chain.writable) {
      let room = s.len;
      let addr = s.addr;
      while (room > 0 && p < parts.length) {
        const part = parts[p]!;
        const n = Math.min(room, part.length - pOff);
        if (n > 0) {
          const r = this.memory.write(addr, part.subarray(pOff, pOff + n));
          if (isDmaFault(r)) return new VirtqError('dma', this.index, r.message);
          addr += n;
          room -= n;
          pOff += n;
          written += n;
        }
        if (pOff >= part.length) {
          p++;
          pOff = 0;
        }
      }
      if (p >= parts.length) break;
    }
    return written;
  }

  /** Put a finished chain in the used ring; the driver sees it after `publish` (§2.7.8). */
  push(head: number, len: number): true | VirtqError {
    const l = this.layout;
    if (!l) return new VirtqError('ring-address', this.index, 'used buffer on a queue with no ring');
    const at = l.used + 4 + 8 * (this.usedIdx % this.size);
    const a = this.memory.writeU32(at, head);
    const b = this.memory.writeU32(at + 4, len);
    if (isDmaFault(a)) return new VirtqError('dma', this.index, a.message);
    if (isDmaFault(b)) return new VirtqError('dma', this.index, b.message);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.unpublished++;
    return true;
  }

  /**
   * Make pushed entries visible (write used.idx after the elements, §2.7.8) and say whether the
   * driver wants an interrupt for them: VRING_AVAIL_F_NO_INTERRUPT, or with EVENT_IDX whether
   * used.idx went past used_event (§2.7.10, vring_need_event).
   */
  publish(): boolean | VirtqError {
    const l = this.layout;
    if (!l || this.unpublished === 0) return false;
    const w = this.putU16(l.used + 2, this.usedIdx);
    if (isVirtqError(w)) return w;
    const old = this.signalledUsed;
    this.signalledUsed = this.usedIdx;
    this.unpublished = 0;
    if (this.eventIdxEnabled) {
      const usedEvent = this.u16(l.avail + 4 + 2 * this.size);
      if (isVirtqError(usedEvent)) return usedEvent;
      return ((this.usedIdx - usedEvent - 1) & 0xffff) < ((this.usedIdx - old) & 0xffff);
    }
    const flags = this.u16(l.avail);
    if (isVirtqError(flags)) return flags;
    return (flags & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /** The driver's avail.idx as it stands in the ring now (0 with no ring). */
  availIndex(): number | VirtqError {
    const l = this.layout;
    if (!l) return 0;
    return this.u16(l.avail + 2);
  }

  /**
   * Tell the driver whether to notify us when it adds buffers: VRING_USED_F_NO_NOTIFY, or with
   * EVENT_IDX the avail_event word (§2.7.10). With EVENT_IDX the driver kicks only when the entry at
   * avail_event gets added (vring_need_event), so "wanted" names the driver's avail.idx as it
   * stands now, as QEMU does, not the device's own position: chains the device took back with
   * unpop() are already in the ring and will never be "added" again. "Not wanted" names the entry
   * just behind the device, which the driver has already passed, so no kick comes until the next
   * call; it must be refreshed as the device moves on (see the callers) or the 16-bit index comes
   * round to it every 65536 entries.
   */
  setNotify(wanted: boolean): true | VirtqError {
    const l = this.layout;
    if (!l) return true;
    if (this.eventIdxEnabled) {
      // With EVENT_IDX the flags field is not used for suppression; avail_event is.
      let at = (this.lastAvail - 1) & 0xffff;
      if (wanted) {
        const idx = this.availIndex();
        if (isVirtqError(idx)) return idx;
        at = idx;
      }
      return this.putU16(l.used + 4 + 8 * this.size, at);
    }
    return this.putU16(l.used, wanted ? 0 : VIRTQ_USED_F_NO_NOTIFY);
  }
}
