/**
 * The sender's scoreboard (RFC 6675 §3, with RFC 8985's per-segment transmit times): every
 * segment sent and not yet cumulatively acknowledged, in sequence order, with what the receiver
 * has SACKed, what is deemed lost, and what was retransmitted. It owns the pipe estimate
 * (RFC 6675 §4) and answers NextSeg's questions (§4 rules 1, 3 and 4); RACK (rack.ts) reads the
 * transmit times.
 *
 * SACK information is advisory (RFC 2018 §8): data is freed only when cumulatively acknowledged.
 * The board is kept across a retransmission timeout, so nothing the receiver reported holding is
 * sent again, unless the receiver is seen to renege (`clearSacks`).
 *
 * A segment's range may include the FIN (one unit of sequence space past the data).
 */
import type { SackBlock } from '../wire/tcp.js';
import { seqDiff, seqGe, seqGt, seqLe, seqLt } from './seq.js';

export interface SentSegment {
  start: number;
  end: number;
  /** When it was (last) transmitted. */
  xmitTs: number;
  /** The receiver reported holding it. */
  sacked: boolean;
  /** Deemed lost (RACK, DupThresh, or an RTO); with `rtxInFlight` its retransmission is on the way. */
  lost: boolean;
  /** A retransmission of it is in flight (counted once more in the pipe). */
  rtxInFlight: boolean;
  /** It has been retransmitted at least once (RACK must not take its ACK as an RTT sample blindly). */
  retransmitted: boolean;
}

export interface SackResult {
  /** Segments newly marked SACKed by this ACK. */
  newlySacked: SentSegment[];
  newlySackedBytes: number;
  /** Bytes reported by a D-SACK block (RFC 2883 §4): received twice. */
  dsackBytes: number;
  /** That D-SACK block. */
  dsack: SackBlock | null;
}

export class SackScoreboard {
  private segs: SentSegment[] = [];
  private sacked = 0;
  /** pipe() and lostBytes() kept up to date with every change (output asks for them per segment). */
  private pipeBytes = 0;
  private lostPending = 0;

  private account(s: SentSegment, sign: 1 | -1): void {
    if (s.sacked) return;
    const len = seqDiff(s.end, s.start);
    this.pipeBytes += sign * ((s.lost ? 0 : len) + (s.rtxInFlight ? len : 0));
    if (s.lost && !s.rtxInFlight) this.lostPending += sign * len;
  }

  /** Apply `change` to `s`, keeping the pipe and lost totals right. */
  private mutate(s: SentSegment, change: (s: SentSegment) => void): void {
    this.account(s, -1);
    change(s);
    this.account(s, 1);
  }

  /** Bytes above SND.UNA reported received. */
  get sackedBytes(): number {
    return this.sacked;
  }

  get isEmpty(): boolean {
    return this.segs.length === 0;
  }

  get segments(): readonly SentSegment[] {
    return this.segs;
  }

  /** The highest sequence number SACKed (RFC 6675 HighSACK's end), or null. */
  get highSacked(): number | null {
    for (let i = this.segs.length - 1; i >= 0; i--) if (this.segs[i]!.sacked) return this.segs[i]!.end;
    return null;
  }

  /** The first segment is SACKed: the receiver holds data at SND.UNA yet did not ACK it. */
  get reneged(): boolean {
    return this.segs.length > 0 && this.segs[0]!.sacked;
  }

  /**
   * [start, end) was transmitted at `now`: a new segment at the end, or a retransmission of
   * recorded ones (split so that exactly that range carries the new transmit time).
   */
  record(start: number, end: number, now: number, retransmission: boolean): void {
    if (!seqLt(start, end)) return;
    const last = this.segs[this.segs.length - 1];
    if (!retransmission && (!last || seqGe(start, last.end))) {
      const s = { start, end, xmitTs: now, sacked: false, lost: false, rtxInFlight: false, retransmitted: false };
      this.segs.push(s);
      this.account(s, 1);
      return;
    }
    this.splitAt(start);
    this.splitAt(end);
    for (const s of this.segs) {
      if (seqLe(s.end, start)) continue;
      if (seqGe(s.start, end)) break;
      this.mutate(s, (x) => {
        x.xmitTs = now;
        if (retransmission) {
          x.retransmitted = true;
          x.rtxInFlight = true;
        }
      });
    }
  }

  /** SND.UNA moved to `una`: drop what it covers. Returns the segments newly acknowledged. */
  ackTo(una: number): SentSegment[] {
    this.splitAt(una);
    let n = 0;
    while (n < this.segs.length && seqLe(this.segs[n]!.end, una)) n++;
    if (n === 0) return [];
    const gone = this.segs.splice(0, n);
    for (const s of gone) {
      if (s.sacked) this.sacked -= seqDiff(s.end, s.start);
      else this.account(s, -1);
    }
    return gone;
  }

  /**
   * Fold in the SACK blocks of one ACK. A first block below `una`, or inside the second block, is
   * a D-SACK (RFC 2883 §4); blocks beyond what was sent are ignored.
   */
  applySack(blocks: readonly SackBlock[], una: number, sndMax: number): SackResult {
    const out: SackResult = { newlySacked: [], newlySackedBytes: 0, dsackBytes: 0, dsack: null };
    for (let i = 0; i < blocks.length; i++) {
      const b = blocks[i]!;
      if (!seqLt(b.left, b.right)) continue;
      if (i === 0) {
        const second = blocks[1];
        const below = seqLe(b.right, una);
        const inside = second !== undefined && seqGe(b.left, second.left) && seqLe(b.right, second.right);
        if (below || inside) {
          out.dsackBytes += seqDiff(b.right, b.left);
          out.dsack = b;
          continue;
        }
      }
      if (seqGt(b.right, sndMax)) continue;
      const left = seqLt(b.left, una) ? una : b.left;
      if (!seqLt(left, b.right)) continue;
      this.splitAt(left);
      this.splitAt(b.right);
      for (const s of this.segs) {
        if (seqLe(s.end, left)) continue;
        if (seqGe(s.start, b.right)) break;
        if (s.sacked) continue;
        this.account(s, -1);
        s.sacked = true;
        s.lost = false;
        s.rtxInFlight = false;
        const len = seqDiff(s.end, s.start);
        this.sacked += len;
        out.newlySackedBytes += len;
        out.newlySacked.push(s);
      }
    }
    return out;
  }

  /**
   * RFC 6675 §4 "pipe": bytes the sender believes are in the network. Each unSACKed byte counts
   * once unless deemed lost, and once more while a retransmission of it is in flight.
   */
  pipe(): number {
    return this.pipeBytes;
  }

  /** Bytes deemed lost and not retransmitted since. */
  lostBytes(): number {
    return this.lostPending;
  }

  /** NextSeg rule 1: the first segment deemed lost and not retransmitted since. */
  firstLost(): SentSegment | null {
    if (this.lostPending === 0) return null;
    for (const s of this.segs) if (s.lost && !s.rtxInFlight && !s.sacked) return s;
    return null;
  }

  /**
   * NextSeg rule 3: the first unSACKed segment below HighSACK never retransmitted (not yet lost
   * by the rules, but the ACK clock has room and nothing else to send).
   */
  firstUnsackedBelowHigh(): SentSegment | null {
    const hs = this.highSacked;
    if (hs === null) return null;
    for (const s of this.segs) {
      if (seqGe(s.start, hs)) break;
      if (!s.sacked && !s.lost && !s.retransmitted) return s;
    }
    return null;
  }

  /** NextSeg rule 4 (the rescue retransmission): the highest unSACKed segment. */
  lastUnsacked(): SentSegment | null {
    for (let i = this.segs.length - 1; i >= 0; i--) if (!this.segs[i]!.sacked) return this.segs[i]!;
    return null;
  }

  /** The first unSACKed segment (the one DupThresh counting deems lost first). */
  firstUnsacked(): SentSegment | null {
    for (const s of this.segs) if (!s.sacked) return s;
    return null;
  }

  markLost(s: SentSegment): void {
    if (s.sacked) return;
    this.mutate(s, (x) => {
      x.lost = true;
      x.rtxInFlight = false;
    });
  }

  /** A retransmission timeout: every unSACKed segment is deemed lost (RFC 6675 §5.1). */
  markAllLost(): void {
    for (const s of this.segs) this.markLost(s);
  }

  /** A loss episode turned out spurious: what was deemed lost and not resent yet is not. */
  unmarkLost(): void {
    for (const s of this.segs) this.mutate(s, (x) => (x.lost = false));
  }

  /** The receiver reneged (RFC 2018 §8): forget what it reported. */
  clearSacks(): void {
    for (const s of this.segs) {
      if (!s.sacked) continue;
      s.sacked = false;
      this.account(s, 1);
    }
    this.sacked = 0;
  }

  clear(): void {
    this.segs = [];
    this.sacked = 0;
    this.pipeBytes = 0;
    this.lostPending = 0;
  }

  /** Split the segment that strictly contains `at` into two with the same state. */
  private splitAt(at: number): void {
    // Segments are in sequence order: binary search for the last one starting before `at`.
    let lo = 0;
    let hi = this.segs.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (seqLt(this.segs[mid]!.start, at)) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0) return;
    const s = this.segs[found]!;
    if (seqLt(at, s.end)) {
      this.segs.splice(found + 1, 0, { ...s, start: at });
      s.end = at;
    }
  }
}
