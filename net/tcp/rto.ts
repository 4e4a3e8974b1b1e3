/**
 * The retransmission timer's value, per RFC 6298: SRTT/RTTVAR smoothing (§2), a lower bound
 * (1 s by the RFC, configurable because tests and LANs want less), an upper bound, exponential
 * backoff on expiry (§5.5) that stays until a new RTT sample (Karn's algorithm: the caller never
 * samples a retransmitted segment).
 */

/** RFC 6298 §2.1: RTO before any measurement. */
export const RTO_INITIAL_MS = 1000;
/** RFC 6298 §2.4. */
export const RTO_MIN_MS = 1000;
/** RFC 6298 §2.5: "a maximum value MAY be placed on RTO provided it is at least 60 seconds". */
export const RTO_MAX_MS = 60_000;
/** RFC 6298 §5.7: RTO after the SYN had to be retransmitted and no sample was taken. */
export const RTO_AFTER_SYN_TIMEOUT_MS = 3000;
/** RFC 6298 §2: K, alpha, beta; G is the clock granularity (our clock has ms resolution or better). */
export const RTO_K = 4;
export const RTO_ALPHA = 1 / 8;
export const RTO_BETA = 1 / 4;
export const CLOCK_GRANULARITY_MS = 1;

export class RtoEstimator {
  /** Smoothed RTT in ms, null before the first sample. */
  srtt: number | null = null;
  rttvar = 0;
  private base: number;
  private shift = 0;

  constructor(
    private readonly minMs = RTO_MIN_MS,
    private readonly maxMs = RTO_MAX_MS,
    initialMs = RTO_INITIAL_MS,
  ) {
    this.base = initialMs;
  }

  /** The current RTO including backoff. */
  get rto(): number {
    return Math.min(this.maxMs, this.base * 2 ** this.shift);
  }

  get backoffCount(): number {
    return this.shift;
  }

  /** RFC 6298 §2.2/§2.3: fold in one measurement R (ms); clears any backoff. */
  sample(r: number): void {
    if (!(r >= 0)) return;
    if (this.srtt === null) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = (1 - RTO_BETA) * this.rttvar + RTO_BETA * Math.abs(this.srtt - r);
      this.srtt = (1 - RTO_ALPHA) * this.srtt + RTO_ALPHA * r;
    }
    this.base = Math.max(this.minMs, this.srtt + Math.max(CLOCK_GRANULARITY_MS, RTO_K * this.rttvar));
    this.shift = 0;
  }

  /** RFC 6298 §5.5: the timer expired, double the RTO (up to the maximum). */
  backoff(): void {
    if (this.rto < this.maxMs) this.shift++;
  }

  /** RFC 6298 §5.7: the SYN was retransmitted and no sample exists: use 3 s once data flows. */
  synTimedOut(): void {
    if (this.srtt === null) {
      this.base = Math.max(this.base, RTO_AFTER_SYN_TIMEOUT_MS);
      this.shift = 0;
    }
  }
}
