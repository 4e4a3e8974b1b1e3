/** Which way a frame crossed a capture point, seen from the side that holds the capture port. */
export type CaptureDirection = 'in' | 'out';

/** Anything a capture point can record into (a run's hop, a pcap writer, a test double). */
export interface CaptureSink {
  /** Record `frame` now. Must not keep a reference to `frame` (the caller hands it on). */
  record(frame: Uint8Array, direction: CaptureDirection): void;
  /**
   * The frame last recorded in `direction` was refused by the next element (a drop at this hop);
   * `reason` says by whom, for the capture's packet comment.
   */
  refused?(direction: CaptureDirection, reason?: string): void;
}

export type TimestampPrecision = 'us' | 'ns';
