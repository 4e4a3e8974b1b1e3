/**
 * The receiver's out-of-order queue (RFC 9293 §3.10.7.4, "segment text"): segments that arrived
 * beyond RCV.NXT wait here until the gap before them fills. Held as sorted, disjoint blocks of
 * chunk views (no copies). Bounded twice: nothing outside the advertised window is kept, and at
 * most `maxSegments` chunks are held. The blocks are also what the SACK option reports
 * (RFC 2018 §4), most recently changed first.
 */
import type { SackBlock } from '../wire/tcp.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt, seqMax, seqMin } from './seq.js';

interface OooBlock {
  start: number;
  end: number;
  chunks: Uint8Array[];
  /** When this block last gained or re-received data; SACK lists blocks newest first. */
  stamp: number;
}

export class ReassemblyQueue {
  private blocks: OooBlock[] = [];
  private stampCounter = 0;
  private chunkCount = 0;
  private byteCount = 0;

  constructor(readonly maxSegments: number) {}

  get isEmpty(): boolean {
    return this.blocks.length === 0;
  }

  get bytes(): number {
    return this.byteCount;
  }

  get segments(): number {
    return this.chunkCount;
  }

  /**
   * Queue `data` starting at `seq`, trimmed to [rcvNxt, windowEnd). Returns 'dropped' when it had
   * to be dropped for the chunk bound (the peer will retransmit it), 'duplicate' when every byte
   * of it was held already (the receiver reports that with D-SACK).
   */
  insert(seq: number, data: Uint8Array, rcvNxt: number, windowEnd: number): 'queued' | 'duplicate' | 'dropped' {
    let s = seqMax(seq, rcvNxt);
    const e = seqMin(seqAdd(seq, data.length), windowEnd);
    if (!seqLt(s, e)) return 'queued';
    // Find the uncovered pieces of [s, e).
    const pieces: { start: number; end: number }[] = [];
    for (const b of this.blocks) {
      if (!seqLt(s, e)) break;
      if (seqLe(b.end, s)) continue;
      if (seqGe(b.start, e)) break;
      if (seqLt(s, b.start)) pieces.push({ start: s, end: b.start });
      s = seqMax(s, b.end);
    }
    if (seqLt(s, e)) pieces.push({ start: s, end: e });
    const stamp = ++this.stampCounter;
    if (pieces.length === 0) {
      // A duplicate: its block is still the one to report first.
      const b = this.blocks.find((x) => seqLe(x.start, seq) && seqGt(x.end, seq));
      if (b) b.stamp = stamp;
      return 'duplicate';
    }
    if (this.chunkCount + pieces.length > this.maxSegments) return 'dropped';
    for (const p of pieces) {
      const chunk = data.subarray(seqDiff(p.start, seq), seqDiff(p.end, seq));
      let i = 0;
      while (i < this.blocks.length && seqLt(this.blocks[i]!.start, p.start)) i++;
      this.blocks.splice(i, 0, { start: p.start, end: p.end, chunks: [chunk], stamp });
      this.chunkCount++;
      this.byteCount += chunk.length;
    }
    this.mergeAdjacent(stamp);
    return 'queued';
  }

  private mergeAdjacent(stamp: number): void {
    const out: OooBlock[] = [];
    for (const b of this.blocks) {
      const last = out[out.length - 1];
      if (last && last.end === b.start) {
        last.end = b.end;
        for (const c of b.chunks) last.chunks.push(c);
        if (b.stamp === stamp) last.stamp = stamp;
      } else out.push(b);
    }
    this.blocks = out;
  }

  /**
   * Remove and return the data that is now in order at `rcvNxt` (the caller advances RCV.NXT by
   * the total length returned).
   */
  takeReady(rcvNxt: number): Uint8Array[] {
    const ready: Uint8Array[] = [];
    let next = rcvNxt;
    while (this.blocks.length > 0 && seqLe(this.blocks[0]!.start, next)) {
      const b = this.blocks.shift()!;
      let pos = b.start;
      for (const c of b.chunks) {
        this.chunkCount--;
        this.byteCount -= c.length;
        const cEnd = seqAdd(pos, c.length);
        if (seqGt(cEnd, next)) {
          ready.push(seqLt(pos, next) ? c.subarray(seqDiff(next, pos)) : c);
          next = cEnd;
        }
        pos = cEnd;
      }
    }
    return ready;
  }

  /** Up to `max` SACK blocks, the most recently changed first (RFC 2018 §4). */
  sackBlocks(max: number): SackBlock[] {
    if (this.blocks.length === 0 || max <= 0) return [];
    const sorted = this.blocks.length === 1 ? this.blocks : [...this.blocks].sort((a, b) => b.stamp - a.stamp);
    const out: SackBlock[] = [];
    for (let i = 0; i < sorted.length && i < max; i++) out.push({ left: sorted[i]!.start, right: sorted[i]!.end });
    return out;
  }

  clear(): void {
    this.blocks = [];
    this.chunkCount = 0;
    this.byteCount = 0;
  }
}
