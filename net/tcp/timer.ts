/**
 * One restartable timer on the Clock. TCP rearms its timers on nearly every segment; instead of a
 * new clock timer each time, the deadline is moved and the single pending clock timer, when it
 * fires early, re-schedules itself for the new deadline (BSD's callout_reset in effect, without
 * heap churn).
 */
import type { Clock, TimerHandle } from '../clock.js';

export class TcpTimer {
  private deadline: number | null = null;
  private handle: TimerHandle | null = null;
  private handleAt = 0;

  constructor(
    private readonly clock: Clock,
    private readonly onExpire: () => void,
  ) {}

  get armed(): boolean {
    return this.deadline !== null;
  }

  /** Time left until expiry, or null when not armed. */
  get remaining(): number | null {
    return this.deadline === null ? null : Math.max(0, this.deadline - this.clock.now());
  }

  /** (Re)arm to fire `delayMs` from now. */
  set(delayMs: number): void {
    const at = this.clock.now() + delayMs;
    this.deadline = at;
    if (this.handle && this.handleAt <= at) return; // the pending one fires first and re-schedules
    this.handle?.cancel();
    this.schedule(at);
  }

  /** Arm only if not armed already. */
  ensure(delayMs: number): void {
    if (this.deadline === null) this.set(delayMs);
  }

  cancel(): void {
    this.deadline = null;
    // Leave the clock timer pending; it finds no deadline and does nothing. Cheap and churn-free.
  }

  /** Cancel for good (connection freed): also drop the clock timer. */
  dispose(): void {
    this.deadline = null;
    this.handle?.cancel();
    this.handle = null;
  }

  private schedule(at: number): void {
    this.handleAt = at;
    this.handle = this.clock.setTimer(at - this.clock.now(), () => this.fire());
  }

  private fire(): void {
    this.handle = null;
    const d = this.deadline;
    if (d === null) return;
    if (d > this.clock.now()) {
      this.schedule(d);
      return;
    }
    this.deadline = null;
    this.onExpire();
  }
}
