/**
 * CUBIC congestion control (RFC 9438), in bytes as the rest of the stack. Windows in the RFC's
 * formulas are in segments and time in seconds; the conversion happens here and nowhere else.
 * Slow start and the fast-recovery mechanics are the connection's and NewReno's; CUBIC changes
 * the multiplicative decrease (β = 0.7, §4.6), the window growth in congestion avoidance (the
 * cubic function around W_max, §4.2, with the Reno-friendly region, §4.3), and fast convergence
 * (§4.7).
 */
import { ABC_L, initialWindow, type CongestionControl } from './congestion.js';

/** RFC 9438 §5: C = 0.4, β_cubic = 0.7. */
export const CUBIC_C = 0.4;
export const CUBIC_BETA = 0.7;
/** RFC 9438 §4.3: α_cubic = 3·(1 − β)/(1 + β), Reno-friendly additive increase. */
const ALPHA_CUBIC = (3 * (1 - CUBIC_BETA)) / (1 + CUBIC_BETA);

export class Cubic implements CongestionControl {
  readonly name = 'cubic';
  cwnd: number;
  ssthresh = Number.MAX_SAFE_INTEGER;
  /** W_max (segments): the window before the last reduction. */
  private wMax = 0;
  /** W_last_max for fast convergence (§4.7). */
  private wLastMax = 0;
  /** Start of the current congestion-avoidance epoch (ms), or null until the first CA ACK. */
  private epochStart: number | null = null;
  private k = 0;
  /** W_est (segments): the Reno-friendly estimate (§4.3). */
  private wEst = 0;
  /** W_max and W_last_max before the last reduction, for undo. */
  private prior = { wMax: 0, wLastMax: 0 };

  constructor(public mss: number) {
    this.cwnd = initialWindow(mss);
  }

  get inSlowStart(): boolean {
    return this.cwnd < this.ssthresh;
  }

  onAck(acked: number, now: number, srttMs?: number | null): void {
    if (this.inSlowStart) {
      this.cwnd += Math.min(acked, ABC_L * this.mss);
      return;
    }
    const mss = this.mss;
    const cwndSeg = this.cwnd / mss;
    if (this.epochStart === null) {
      // §4.2: a new epoch; K is when W_cubic climbs back to W_max (zero when cwnd is above it).
      this.epochStart = now;
      if (this.wMax <= cwndSeg) {
        this.wMax = cwndSeg;
        this.k = 0;
      } else this.k = Math.cbrt((this.wMax - cwndSeg) / CUBIC_C);
      this.wEst = cwndSeg;
    }
    const rtt = (srttMs ?? 100) / 1000;
    const t = (now - this.epochStart) / 1000;
    const wCubic = (tt: number): number => CUBIC_C * (tt - this.k) ** 3 + this.wMax;
    // §4.3: W_est grows by α_cubic segments per RTT's worth of ACKed bytes.
    this.wEst += (ALPHA_CUBIC * acked) / this.cwnd;
    if (wCubic(t) < this.wEst) {
      this.cwnd = Math.max(this.cwnd, this.wEst * mss);
      return;
    }
    // §4.4/§4.5: aim at W_cubic one RTT ahead, at most 1.5·cwnd; grow (target − cwnd)/cwnd per segment.
    const target = Math.min(Math.max(wCubic(t + rtt), cwndSeg), 1.5 * cwndSeg);
    this.cwnd += ((target - cwndSeg) / cwndSeg) * acked;
  }

  /** §4.6 multiplicative decrease with §4.7 fast convergence. */
  private reduce(flightSize: number): void {
    this.prior = { wMax: this.wMax, wLastMax: this.wLastMax };
    const cwndSeg = this.cwnd / this.mss;
    if (cwndSeg < this.wLastMax) {
      this.wLastMax = cwndSeg;
      this.wMax = (cwndSeg * (1 + CUBIC_BETA)) / 2;
    } else {
      this.wLastMax = cwndSeg;
      this.wMax = cwndSeg;
    }
    // ssthresh from the window in use: never more than what was in flight.
    this.ssthresh = Math.max(Math.floor(Math.min(this.cwnd, Math.max(flightSize, this.mss)) * CUBIC_BETA), 2 * this.mss);
    this.epochStart = null;
  }

  enterRecovery(flightSize: number, sack: boolean, _now: number): void {
    this.reduce(flightSize);
    this.cwnd = sack ? this.ssthresh : this.ssthresh + 3 * this.mss;
  }

  onLossRepaired(flightSize: number, _now: number): void {
    this.reduce(flightSize);
    this.cwnd = Math.max(this.ssthresh, this.mss);
  }

  /** §4.8: on a timeout, reduce as for a loss and restart from one segment in slow start. */
  onTimeout(flightSize: number, _now: number): void {
    this.reduce(flightSize);
    this.cwnd = this.mss;
  }

  /** As NewReno's (congestion.ts): cwnd = ssthresh, whatever is still in flight. */
  exitRecovery(): void {
    this.cwnd = Math.max(this.ssthresh, this.mss);
    this.epochStart = null;
  }

  restartAfterIdle(): void {
    this.cwnd = Math.min(this.cwnd, initialWindow(this.mss));
    this.epochStart = null;
  }

  /** §4.9: a spurious congestion event — restore cwnd, ssthresh and W_max as they were. */
  undo(cwnd: number, ssthresh: number): void {
    this.cwnd = Math.max(this.cwnd, cwnd);
    this.ssthresh = Math.max(this.ssthresh, ssthresh);
    this.wMax = this.prior.wMax;
    this.wLastMax = this.prior.wLastMax;
    this.epochStart = null;
  }
}
