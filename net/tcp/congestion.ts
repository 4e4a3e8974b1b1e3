/**
 * Congestion window arithmetic. Loss recovery itself (fast retransmit, NewReno partial ACKs per
 * RFC 6582, SACK-based recovery per RFC 6675 with PRR) is driven by the connection; a controller
 * holds cwnd and ssthresh and decides how they grow and shrink. Two, selectable per stack
 * (TcpConfig.congestionControl): NewReno (RFC 5681 with appropriate byte counting, RFC 3465) and
 * CUBIC (RFC 9438, cubic.ts), the default as in Linux. Both start from RFC 6928's initial window.
 */

/** RFC 3465 §2.2: in slow start, cwnd grows by at most L·SMSS per ACK; L = 2. */
export const ABC_L = 2;

/** RFC 6928 §2: IW = min(10·MSS, max(2·MSS, 14600)). */
export function initialWindow(mss: number): number {
  return Math.min(10 * mss, Math.max(2 * mss, 14600));
}

export type CongestionControlName = 'newreno' | 'cubic';

export interface CongestionControl {
  readonly name: CongestionControlName;
  mss: number;
  cwnd: number;
  ssthresh: number;
  readonly inSlowStart: boolean;
  /** New data acknowledged outside loss recovery (`srttMs` for CUBIC's target). */
  onAck(acked: number, now: number, srttMs?: number | null): void;
  /** Fast retransmit: entering loss recovery. */
  enterRecovery(flightSize: number, sack: boolean, now: number): void;
  /** A tail loss probe repaired a loss (RFC 8985 §7.4): one reduction, as for a fast retransmit. */
  onLossRepaired(flightSize: number, now: number): void;
  /** Retransmission timeout: the loss window is one segment (RFC 5681 §3.1). */
  onTimeout(flightSize: number, now: number): void;
  /** A full ACK ends recovery: cwnd becomes ssthresh. */
  exitRecovery(): void;
  /** RFC 5681 §4.1: after an idle period longer than an RTO, restart from the restart window. */
  restartAfterIdle(): void;
  /** A loss episode was spurious (D-SACK): back to the window before it. */
  undo(cwnd: number, ssthresh: number): void;
}

export class NewReno implements CongestionControl {
  readonly name = 'newreno';
  cwnd: number;
  /** RFC 5681 §3.1: "The initial value of ssthresh SHOULD be set arbitrarily high". */
  ssthresh = Number.MAX_SAFE_INTEGER;
  /** Bytes acknowledged in congestion avoidance since cwnd last grew (RFC 5681 §3.1, eqn. 3 alt). */
  private caBytes = 0;

  constructor(public mss: number) {
    this.cwnd = initialWindow(mss);
  }

  get inSlowStart(): boolean {
    return this.cwnd < this.ssthresh;
  }

  onAck(acked: number, _now: number): void {
    if (this.inSlowStart) {
      this.cwnd += Math.min(acked, ABC_L * this.mss);
    } else {
      this.caBytes += acked;
      if (this.caBytes >= this.cwnd) {
        this.caBytes -= this.cwnd;
        this.cwnd += this.mss;
      }
    }
  }

  /** RFC 5681 eqn. 4: ssthresh = max(FlightSize / 2, 2·SMSS). */
  private halve(flightSize: number): void {
    this.ssthresh = Math.max(Math.floor(flightSize / 2), 2 * this.mss);
    this.caBytes = 0;
  }

  /** With SACK (RFC 6675 §5 step 4.2) cwnd = ssthresh; NewReno (RFC 6582 §3.2 step 2) inflates by 3·SMSS. */
  enterRecovery(flightSize: number, sack: boolean, _now: number): void {
    this.halve(flightSize);
    this.cwnd = sack ? this.ssthresh : this.ssthresh + 3 * this.mss;
  }

  onLossRepaired(flightSize: number, _now: number): void {
    this.halve(flightSize);
    this.cwnd = Math.max(this.ssthresh, this.mss);
  }

  onTimeout(flightSize: number, _now: number): void {
    this.halve(flightSize);
    this.cwnd = this.mss;
  }

  /**
   * RFC 6582 §3.2 step 3 option (2), RFC 6937 §3 (PRR ends at ssthresh), Linux's
   * tcp_end_cwnd_reduction: cwnd = ssthresh. Not option (1)'s min(ssthresh, FlightSize + SMSS):
   * a full ACK usually leaves nothing in flight, so that collapses cwnd to one segment, and a
   * Linux receiver holds the ACK of a lone segment for its 40 ms delayed-ACK time — measured over
   * the real TAP at 2 % loss, every recovery then cost 40–80 ms of silence.
   */
  exitRecovery(): void {
    this.cwnd = Math.max(this.ssthresh, this.mss);
    this.caBytes = 0;
  }

  restartAfterIdle(): void {
    this.cwnd = Math.min(this.cwnd, initialWindow(this.mss));
  }

  undo(cwnd: number, ssthresh: number): void {
    this.cwnd = Math.max(this.cwnd, cwnd);
    this.ssthresh = Math.max(this.ssthresh, ssthresh);
  }
}
