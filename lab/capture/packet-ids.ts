/**
 * Lab-wide packet ids: one frame keeps one id at every hop it crosses (pcapng's epb_packetid), so
 * `lab captures --follow ID` and Wireshark can follow it through switch, TAP, NIC and stack.
 *
 * Why by content and not by object: a frame is copied at the hops that matter most (a NIC's DMA
 * into guest memory, a TAP's read), so no reference survives the way. A frame is recognised by a
 * fingerprint of its length and bytes. The rules that make that sound:
 * - a hop sees one frame once: a frame whose fingerprint matches an id already recorded at this
 *   hop is a new frame (a duplicate, a retransmission with equal bytes, a repeated ARP request)
 *   and gets a new id; among several candidates the oldest not yet seen here is taken (FIFO, the
 *   order frames travel);
 * - a frame dropped at a hop (the next element refused it) goes no further: its id is retired;
 * - a match must be recent (`windowMs` of lab time, longer than any delay the lab adds);
 * - memory is bounded: at most `maxEntries` frames are remembered, oldest forgotten first.
 * A frame that is changed on its way (a virtio TSO segment cut into MTU frames, NAT) is a new
 * frame with a new id, as it is on a real network.
 *
 * The fingerprint reads the first 128 bytes (all headers of a TCP/IP frame, where sequence
 * numbers and IP ids differ) and the last 32: cheap on 64 KiB frames, and frames equal in both
 * that are different frames would need equal headers, which the FIFO rule above already handles.
 */

interface Entry {
  id: number;
  fp: number;
  time: number;
  /** Hops (by index) where this frame was recorded. */
  seenAt: number[];
  retired: boolean;
}

export interface PacketIdOptions {
  windowMs?: number;
  maxEntries?: number;
}

export class PacketIds {
  private nextId = 1;
  private readonly byFp = new Map<number, Entry[]>();
  /** Every remembered entry, oldest first: what expiry walks. */
  private readonly order: Entry[] = [];
  private head = 0;
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly hopIndex = new Map<string, number>();

  constructor(options: PacketIdOptions = {}) {
    this.windowMs = options.windowMs ?? 10_000;
    this.maxEntries = options.maxEntries ?? 65_536;
  }

  /** The id of `frame` as recorded now (lab time `now`) at `hop`. */
  idFor(frame: Uint8Array, hop: string, now: number): number {
    this.expire(now);
    const h = this.hop(hop);
    const fp = fingerprint(frame);
    const list = this.byFp.get(fp);
    if (list) {
      for (const e of list) {
        if (e.retired || e.seenAt.includes(h)) continue;
        e.seenAt.push(h);
        return e.id;
      }
    }
    const e: Entry = { id: this.nextId++, fp, time: now, seenAt: [h], retired: false };
    if (list) list.push(e);
    else this.byFp.set(fp, [e]);
    this.order.push(e);
    return e.id;
  }

  /** The frame with `id` was dropped: it crosses no further hop. */
  retire(id: number): void {
    for (let i = this.order.length - 1; i >= this.head; i--) {
      const e = this.order[i]!;
      if (e.id === id) {
        e.retired = true;
        return;
      }
      if (e.id < id) return;
    }
  }

  /** Frames remembered now (bounded by maxEntries). */
  get size(): number {
    return this.order.length - this.head;
  }

  private hop(name: string): number {
    let h = this.hopIndex.get(name);
    if (h === undefined) {
      h = this.hopIndex.size;
      this.hopIndex.set(name, h);
    }
    return h;
  }

  private expire(now: number): void {
    while (this.head < this.order.length) {
      const e = this.order[this.head]!;
      if (this.order.length - this.head <= this.maxEntries && now - e.time <= this.windowMs) break;
      this.head++;
      const list = this.byFp.get(e.fp)!;
      // Entries of one fingerprint are in arrival order, so the expiring one is the first.
      list.shift();
      if (list.length === 0) this.byFp.delete(e.fp);
    }
    // Compact the array now and then instead of shifting it on every expiry.
    if (this.head > 4096 && this.head * 2 > this.order.length) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
  }
}

/** FNV-1a over the length, the first 128 bytes and the last 32 bytes of the frame. */
export function fingerprint(frame: Uint8Array): number {
  let h = 0x811c9dc5 ^ frame.length;
  h = Math.imul(h, 0x01000193);
  const n = frame.length;
  const head = Math.min(n, 128);
  for (let i = 0; i < head; i++) {
    h ^= frame[i]!;
    h = Math.imul(h, 0x01000193);
  }
  for (let i = Math.max(head, n - 32); i < n; i++) {
    h ^= frame[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
