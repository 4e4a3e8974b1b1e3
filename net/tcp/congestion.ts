/**
 * Congestion window arithmetic, RFC 5681 with appropriate byte counting (RFC 3465) and the initial
 * window of RFC 6928. Loss recovery itself (fast retransmit, NewReno partial ACKs per RFC 6582,
 * SACK-based recovery per RFC 6675) is driven by the connection; this holds cwnd and ssthresh.
 */

/** RFC 3465 §2.2: in slow start, cwnd grows by at most L·SMSS per ACK; L = 2. */
export const ABC_L = 2;

/** RFC 6928 §2: IW = min(10·MSS, max(2·MSS, 14600)). */
export function initialWindow(mss: number): number {
  return Math.min(10 * mss, Math.max(2 * mss, 14600));
}

export class CongestionControl {
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

  /** New data acknowledged outside loss recovery. */
  onAck(acked: number): void {
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

  /** Fast retransmit: entering loss recovery. With SACK (RFC 6675 §5 step 4.2) cwnd = ssthresh; NewReno (RFC 6582 §3.2 step 2) inflates by 3·SMSS. */
  enterRecovery(flightSize: number, sack: boolean): void {
    this.halve(flightSize);
    this.cwnd = sack ? this.ssthresh : this.ssthresh + 3 * this.mss;
  }

  /** Retransmission timeout: RFC 5681 §3.1, the loss window is one segment. */
  onTimeout(flightSize: number): void {
    this.halve(flightSize);
    this.cwnd = this.mss;
  }

  /** RFC 6582 §3.2 step 6 / RFC 6675 §5: full ACK ends recovery, "deflate" to ssthresh. */
  exitRecovery(flightSize: number): void {
    this.cwnd = Math.max(Math.min(this.ssthresh, flightSize + this.mss), this.mss);
    this.caBytes = 0;
  }

  /** RFC 5681 §4.1: after an idle period longer than an RTO, restart from the restart window. */
  restartAfterIdle(): void {
    this.cwnd = Math.min(this.cwnd, initialWindow(this.mss));
  }
}
