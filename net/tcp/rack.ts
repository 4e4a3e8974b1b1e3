/**
 * RACK (RFC 8985 §6): time-based loss detection. A segment is deemed lost once a segment sent
 * after it has been delivered (ACKed or SACKed) and more than one RTT plus a reordering window
 * has passed since it was sent. Losses of retransmissions are caught the same way, and a lost
 * tail is left to the tail loss probe (the connection's TLP timer).
 */
import { seqGt, seqLt } from './seq.js';
import type { SackScoreboard, SentSegment } from './sack.js';

/** RFC 8985 §6.1: RACK_sent_after. */
function sentAfter(t1: number, seq1: number, t2: number, seq2: number): boolean {
  return t1 > t2 || (t1 === t2 && seqGt(seq1, seq2));
}

export class Rack {
  /** Transmit time and end of the most recently sent segment that has been delivered. */
  private xmitTs = -Infinity;
  private endSeq = 0;
  /** RTT of that segment. */
  private rtt = 0;
  minRtt = Infinity;
  /** Reordering observed on this connection (RFC 8985 §6.2 RACK.reord). */
  reord = false;
  /** Highest end of a delivered segment (for reordering detection). */
  private fack: number | null = null;

  /** RFC 8985 §6.2 step 2: a segment was delivered (newly ACKed or SACKed) at `now`. */
  delivered(s: SentSegment, now: number): void {
    if (this.fack !== null && !s.retransmitted && seqLt(s.end, this.fack)) this.reord = true;
    if (this.fack === null || seqGt(s.end, this.fack)) this.fack = s.end;
    const rtt = now - s.xmitTs;
    // A retransmitted segment ACKed sooner than any RTT seen was delivered by its original:
    // timing the retransmission would be too short.
    if (s.retransmitted && rtt < this.minRtt) return;
    this.rtt = rtt;
    if (rtt < this.minRtt) this.minRtt = rtt;
    if (sentAfter(s.xmitTs, s.end, this.xmitTs, this.endSeq)) {
      this.xmitTs = s.xmitTs;
      this.endSeq = s.end;
    }
  }

  /**
   * RFC 8985 §6.2 (RACK_update_reo_wnd, simplified): no allowance once loss is being repaired or
   * DupThresh segments are SACKed while no reordering was seen; otherwise a quarter of the
   * minimum RTT, at most SRTT.
   */
  reoWnd(inRecovery: boolean, dupThreshSacked: boolean, srtt: number): number {
    if (!this.reord && (inRecovery || dupThreshSacked)) return 0;
    if (this.minRtt === Infinity) return 0;
    return Math.min(this.minRtt / 4, srtt);
  }

  /**
   * RFC 8985 §6.2 step 5: mark lost every unSACKed segment sent before the most recently
   * delivered one whose time is up. Returns bytes newly deemed lost and, when some segment's
   * time is not yet up, how long until it is (the reordering timer), else 0.
   */
  detectLoss(board: SackScoreboard, now: number, reoWnd: number): { lostBytes: number; timeoutMs: number } {
    let lostBytes = 0;
    let timeoutMs = 0;
    if (this.xmitTs === -Infinity) return { lostBytes, timeoutMs };
    for (const s of board.segments) {
      if (s.sacked || (s.lost && !s.rtxInFlight)) continue; // already waiting for its retransmission
      if (!sentAfter(this.xmitTs, this.endSeq, s.xmitTs, s.end)) {
        // New data goes out in sequence order and a retransmission is later than a first
        // transmission: past a never-resent segment sent after the reference, every segment is.
        if (!s.retransmitted) break;
        continue;
      }
      const remaining = s.xmitTs + this.rtt + reoWnd - now;
      if (remaining <= 0) {
        board.markLost(s);
        lostBytes += (s.end - s.start) >>> 0;
      } else if (remaining > timeoutMs) timeoutMs = remaining;
    }
    return { lostBytes, timeoutMs };
  }
}
