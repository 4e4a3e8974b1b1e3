import type { Clock, TimerHandle } from '../../net/clock.js';
import type { FrameRing } from '../ring/frame-ring.js';
import type { Doorbell } from './doorbell.js';

/** Records handled per event-loop turn before yielding, so a flood cannot starve the thread's timers. */
const BATCH = 256;

/**
 * The reading side of a FrameRing on an event-loop thread, once for every ring that crosses between
 * a VM's thread and the lab's (frames, capture mirrors): take records in batches from the clock,
 * sleep when the ring is empty until the producer rings the doorbell, and stop while the handler
 * cannot take the record at the head (it stays there until `resume`).
 */
export class RingConsumer {
  private paused = false;
  private sleeping = false;
  private stopped = false;
  private scheduled: TimerHandle | null = null;

  /**
   * @param handle one record, as a view valid only during the call; false leaves it at the head
   *   and pauses until `resume`.
   */
  constructor(
    private readonly ring: FrameRing,
    private readonly clock: Clock,
    bell: Doorbell,
    private readonly handle: (record: Uint8Array) => boolean,
  ) {
    bell.onRing(() => {
      this.sleeping = false;
      this.schedule();
    });
    this.schedule();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.schedule();
  }

  /** Handle what the ring holds now, at once (a last drain before closing). */
  drainNow(): void {
    this.scheduled?.cancel();
    this.scheduled = null;
    this.pump(Infinity);
  }

  stop(): void {
    this.stopped = true;
    this.scheduled?.cancel();
    this.scheduled = null;
  }

  private schedule(): void {
    if (this.scheduled || this.stopped || this.paused || this.sleeping) return;
    this.scheduled = this.clock.setTimer(0, () => {
      this.scheduled = null;
      this.pump(BATCH);
    });
  }

  private pump(limit: number): void {
    for (let i = 0; i < limit; i++) {
      if (this.stopped || this.paused) return;
      const record = this.ring.peek();
      if (!record) {
        if (this.ring.closed) return;
        // Say we sleep; if a record slipped in meanwhile, go on instead.
        if (limit !== Infinity && this.ring.armWake()) {
          this.sleeping = true;
          return;
        }
        if (limit === Infinity) return;
        continue;
      }
      if (!this.handle(record)) {
        this.paused = true;
        return;
      }
      this.ring.release();
    }
    this.schedule();
  }
}
