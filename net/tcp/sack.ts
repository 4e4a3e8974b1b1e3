/**
 * The sender's SACK scoreboard (RFC 2018 §5, RFC 6675 §3): which bytes above SND.UNA the receiver
 * has reported holding, so that loss recovery retransmits only the holes. Sorted, disjoint ranges.
 * SACK information is advisory: data is freed only when cumulatively acknowledged, and the board is
 * cleared after a retransmission timeout (RFC 2018 §8, the receiver may renege).
 */
import type { SackBlock } from '../wire/tcp.js';
import { seqDiff, seqGe, seqGt, seqLe, seqLt, seqMax, seqMin } from './seq.js';

interface Range {
  start: number;
  end: number;
}

export class SackScoreboard {
  private ranges: Range[] = [];
  private sacked = 0;

  /** Bytes above SND.UNA reported received. */
  get sackedBytes(): number {
    return this.sacked;
  }

  get isEmpty(): boolean {
    return this.ranges.length === 0;
  }

  /** RFC 6675 "HighACK"'s SACK counterpart: the highest sequence number SACKed, or null. */
  get highSacked(): number | null {
    return this.ranges.length ? this.ranges[this.ranges.length - 1]!.end : null;
  }

  /**
   * Fold in the blocks of one ACK. Blocks that are empty, below `sndUna` (D-SACK, RFC 2883) or
   * beyond what was sent are ignored. Returns whether anything new was learned.
   */
  update(blocks: readonly SackBlock[], sndUna: number, sndMax: number): boolean {
    let changed = false;
    for (const blk of blocks) {
      const left = seqMax(blk.left, sndUna);
      const right = blk.right;
      if (!seqLt(left, right) || seqGt(right, sndMax)) continue;
      changed = this.add(left, right) || changed;
    }
    return changed;
  }

  private add(start: number, end: number): boolean {
    const before = this.sacked;
    const out: Range[] = [];
    let s = start;
    let e = end;
    let placed = false;
    for (const r of this.ranges) {
      if (seqLt(r.end, s)) out.push(r);
      else if (seqGt(r.start, e)) {
        if (!placed) {
          out.push({ start: s, end: e });
          placed = true;
        }
        out.push(r);
      } else {
        s = seqMin(s, r.start);
        e = seqMax(e, r.end);
      }
    }
    if (!placed) out.push({ start: s, end: e });
    this.ranges = out;
    this.recount();
    return this.sacked !== before;
  }

  private recount(): void {
    let n = 0;
    for (const r of this.ranges) n += seqDiff(r.end, r.start);
    this.sacked = n;
  }

  /** SND.UNA moved to `sndUna`: forget what lies below it. */
  ackTo(sndUna: number): void {
    if (this.ranges.length === 0) return;
    const out: Range[] = [];
    for (const r of this.ranges) {
      if (seqLe(r.end, sndUna)) continue;
      out.push(seqLt(r.start, sndUna) ? { start: sndUna, end: r.end } : r);
    }
    this.ranges = out;
    this.recount();
  }

  /** The end of the SACKed range holding `seq`, or null when `seq` is not SACKed. */
  sackedEnd(seq: number): number | null {
    for (const r of this.ranges) {
      if (seqLt(seq, r.start)) return null;
      if (seqLt(seq, r.end)) return r.end;
    }
    return null;
  }

  /**
   * The first hole at or after `from` and below the highest SACKed byte (RFC 6675 NextSeg rule 1:
   * candidates for retransmission), as [start, end), or null.
   */
  nextHole(from: number): Range | null {
    let s = from;
    for (const r of this.ranges) {
      if (seqLe(r.end, s)) continue;
      if (seqLt(s, r.start)) return { start: s, end: r.start };
      s = r.end;
    }
    return null;
  }

  /** Unsacked bytes in [from, to). */
  holeBytes(from: number, to: number): number {
    if (!seqLt(from, to)) return 0;
    let n = seqDiff(to, from);
    for (const r of this.ranges) {
      const s = seqMax(r.start, from);
      const e = seqMin(r.end, to);
      if (seqLt(s, e)) n -= seqDiff(e, s);
      if (seqGe(r.start, to)) break;
    }
    return n;
  }

  clear(): void {
    this.ranges = [];
    this.sacked = 0;
  }
}
