/**
 * RACK (RFC 8985 §6): time-based loss detection. A segment is deemed lost once a segment sent
 * after it has been delivered (ACKed or SACKed) and more than one RTT plus a reordering window
 * has passed since it was sent. Losses of retransmissions are caught the same way, and a lost
 * tail is left to the tail loss probe (the connection's TLP timer).
 */
import { seqGe, seqGt, seqLt } from './seq.js';
import type { SackScoreboard, SentSegment } from './sack.js';

/** RFC 8985 §6.2 step 4: loss recoveries without a D-SACK before reo_wnd_mult falls back to 1. */
export const RACK_REO_WND_PERSIST = 16;
/**
 * Ceiling of reo_wnd_mult. The window is capped at SRTT anyway; this only keeps the counter from
 * growing without bound on a path that D-SACKs forever (Linux keeps it in a u8, reo_wnd_steps).
 */
export const RACK_REO_WND_MULT_MAX = 255;

/** RFC 8985 §6.1: RACK_sent_after. */
function sentAfter(t1: number, seq1: number, t2: number, seq2: number): boolean {
  return t1 > t2 || (t1 === t2 && seqGt(seq1, seq2));
}

export class Rack {
  /** `adaptive`: reo_wnd_mult follows D-SACKs (TcpConfig.rackAdaptiveReoWnd); else it stays 1. */
  constructor(private readonly adaptive = true) {}

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
  /**
   * RFC 8985 §6.2 step 4: the reordering window in units of min_RTT/4. Grows by one per round
   * trip that brings a D-SACK (the window was too small: a retransmission proved spurious).
   */
  reoWndMult = 1;
  /** Loss recoveries left before reoWndMult falls back to 1 if no D-SACK arrives meanwhile. */
  reoWndPersist = RACK_REO_WND_PERSIST;
  /** SND.NXT when reoWndMult last grew: until SND.UNA passes it, further D-SACKs are that round's. */
  private dsackRound: number | null = null;

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
   * RFC 8985 §6.2 step 4, the state half of RACK_update_reo_wnd, once per ACK: a D-SACK (`dsack`)
   * widens the window by one step, at most once per round trip (`sndUna`, `sndNxt` delimit the
   * round); `exitedRecovery` (fast or RTO recovery ended on this ACK) without one counts down
   * reo_wnd_persist, and after 16 such recoveries the window is back to one step.
   */
  updateReoWnd(dsack: boolean, exitedRecovery: boolean, sndUna: number, sndNxt: number): void {
    // A D-SACK is reordering seen (RFC 3708): the segment the retransmission duplicated was late,
    // not lost. Step 3 alone misses it when every late segment was resent before it arrived, as
    // its delivery then counts as the retransmission's. Linux takes it as reordering too.
    if (dsack) this.reord = true;
    if (!this.adaptive) return;
    if (this.dsackRound !== null && seqGe(sndUna, this.dsackRound)) this.dsackRound = null;
    if (this.dsackRound === null && dsack) {
      this.dsackRound = sndNxt;
      if (this.reoWndMult < RACK_REO_WND_MULT_MAX) this.reoWndMult++;
      this.reoWndPersist = RACK_REO_WND_PERSIST;
    } else if (exitedRecovery) {
      this.reoWndPersist--;
      if (this.reoWndPersist <= 0) {
        this.reoWndMult = 1;
        this.reoWndPersist = RACK_REO_WND_PERSIST;
      }
    }
  }

  /**
   * RFC 8985 §6.2 step 4, RACK.reo_wnd: no allowance once loss is being repaired or DupThresh
   * segments are SACKed while no reordering was seen; otherwise reo_wnd_mult quarters of the
   * minimum RTT, at most SRTT.
   */
  reoWnd(inRecovery: boolean, dupThreshSacked: boolean, srtt: number): number {
    if (!this.reord && (inRecovery || dupThreshSacked)) return 0;
    if (this.minRtt === Infinity) return 0;
    return Math.min((this.reoWndMult * this.minRtt) / 4, srtt);
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
