import type { Clock } from '../net/clock.js';
import { emptyStats, MAX_FRAME, MIN_FRAME, type FramePort, type FramePortStats, type FrameReceiver } from '../net/frame-port.js';
import { mulberry32 } from '../net/random.js';
import { copyBytes } from '../net/byte-slab.js';

/**
 * Link impairments in one direction (what `tc netem` does on a Linux link), seeded so that a run
 * reproduces: loss, delay with jitter, duplication, reordering (a reordered frame skips the delay
 * queue's order by being held back an extra delay) and a rate limit (serialisation at `rateMbps`).
 * Wrapping a port impairs both directions: frames sent through the wrapper reach `inner` impaired,
 * and frames `inner` receives reach the wrapper's receiver impaired (each direction has its own
 * queue and random stream, as two netem qdiscs would).
 *
 * The wrapper is a FramePort like any other (net/frame-port.ts) and keeps the contract of the port
 * it wraps:
 * - `holds`, `ready()`, `gso` and `offerGso()` are those of `inner`: impairing a link must not
 *   silently switch off its flow control or GSO.
 * - A frame the impairment loses, or that finds its direction's queue full, is a drop: `send`
 *   returns false and it is counted in `txDrops` (inbound: `rxDrops`), never as a sent frame.
 *   `txFrames` counts frames handed to `inner` that it accepted; `rxFrames` frames our receiver took.
 *   A refusal by `inner` (or by our receiver, for a frame passed straight through) is counted by
 *   `inner`, the port that refused it, as with a capture point.
 * - Frames waiting in a direction (delay line and rate limiter together) are bounded by
 *   `queueLimit`, 1000 frames by default as netem's `limit`; beyond it they are dropped and counted.
 * - A frame with nothing to wait for (no delay, nothing queued ahead of it) goes through at once,
 *   so a `'busy'` answer reaches a holding `inner`, which keeps the frame; a frame the impairment
 *   already queued and then finds the receiver busy waits here (still within `queueLimit`) until
 *   `ready()`, and meanwhile `inner` is told `'busy'` so that it holds what comes after.
 */
export interface Impairment {
  lossPct?: number;
  delayMs?: number;
  jitterMs?: number;
  duplicatePct?: number;
  reorderPct?: number;
  rateMbps?: number;
  /** Frames waiting in one direction (delay line and rate limiter) before new ones are dropped. */
  queueLimit?: number;
  seed?: number;
}

export interface ImpairStats {
  lost: number;
  duplicated: number;
  reordered: number;
  /** Frames dropped because their direction's queue (delay line, rate limiter) was full. */
  queueDrops: number;
}

/** netem's default `limit`: packets a qdisc holds before it drops. */
export const IMPAIR_QUEUE_LIMIT = 1000;

export class ImpairedPort implements FramePort {
  readonly stats: FramePortStats = emptyStats();
  readonly impairStats: ImpairStats = { lost: 0, duplicated: 0, reordered: 0, queueDrops: 0 };
  private readonly out: Direction;
  private readonly back: Direction;
  private receiver: FrameReceiver | null = null;
  /** The inbound frame our receiver last called `'busy'` when passed straight through. */
  private decided: Uint8Array | null = null;

  constructor(
    clock: Clock,
    private readonly inner: FramePort,
    o: Impairment,
  ) {
    this.out = new Direction(clock, o, mulberry32(o.seed ?? 1), this.impairStats, (f) => {
      if (!this.inner.send(f)) return false;
      this.stats.txFrames++;
      this.stats.txBytes += f.length;
      return true;
    }, () => false, () => {});
    this.back = new Direction(clock, o, mulberry32((o.seed ?? 1) ^ 0x5bd1e995), this.impairStats, (f) => {
      const answer = this.receiver ? this.receiver(f) : false;
      if (answer === 'busy' && this.holds) return 'busy';
      if (answer === false || answer === 'busy') this.stats.rxDrops++;
      else {
        this.stats.rxFrames++;
        this.stats.rxBytes += f.length;
      }
      return true;
    }, () => this.holds, () => this.inner.ready?.());
  }

  get name(): string {
    return this.inner.name;
  }

  get holds(): boolean {
    return this.inner.holds === true;
  }

  get gso(): boolean {
    return this.inner.gso === true;
  }

  offerGso(on: boolean): void {
    this.inner.offerGso?.(on);
  }

  ready(): void {
    // Frames this wrapper queued go first; `inner` is woken once they are through (Direction).
    if (!this.back.resume()) this.inner.ready?.();
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
    this.decided = null;
    this.inner.setReceiver(receiver ? (f) => this.fromInner(f) : null);
  }

  send(frame: Uint8Array): boolean {
    // Refused at once, not after a delay: the sender learns it as from any other port.
    if (frame.length < MIN_FRAME || frame.length > MAX_FRAME) {
      this.stats.txDrops++;
      return false;
    }
    const fate = this.out.offer(frame);
    if (fate === 'now') return this.out.deliverNow(frame) === true;
    if (fate === 'twice') {
      // The duplicate is a frame of its own: one object must not reach two holders (lend-pool.ts).
      const second = copyBytes(frame);
      const first = this.out.deliverNow(frame) === true;
      return this.out.deliverNow(second) === true || first;
    }
    if (fate === 'later') return true;
    this.stats.txDrops++;
    return false;
  }

  private fromInner(frame: Uint8Array): boolean | 'busy' {
    if (frame !== this.decided) {
      // Frames queued here are still waiting for our receiver: `inner` keeps this one meanwhile.
      if (this.back.paused && this.holds) return 'busy';
      let fate = this.back.offer(frame);
      if (fate === 'twice') {
        this.back.later(copyBytes(frame)); // the copy follows from the clock; the original goes through now
        fate = 'now';
      }
      if (fate === 'later') return true;
      if (fate !== 'now') {
        this.stats.rxDrops++;
        return true; // lost on the wire (or in our queue): `inner` delivered it
      }
    }
    this.decided = null;
    const answer = this.receiver ? this.receiver(frame) : false;
    if (answer === 'busy' && this.holds) {
      this.decided = frame; // re-offered by `inner` after ready(): its fate is already decided
      return 'busy';
    }
    if (answer === false || answer === 'busy') return false;
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    return true;
  }
}

/** `'twice'`: a duplicated frame with nothing to wait for, delivered twice at once. */
type Fate = 'lost' | 'full' | 'now' | 'twice' | 'later';

/** One direction's impairment: decide a frame's fate, then deliver it at the chosen time. */
class Direction {
  private busyUntil = 0;
  /** Frames scheduled or held here (the bounded queue). */
  private waiting = 0;
  /** Frames whose time came while the receiver was busy, in order. */
  private readonly held: Uint8Array[] = [];
  paused = false;
  private draining = false;

  constructor(
    private readonly clock: Clock,
    private readonly o: Impairment,
    private readonly random: () => number,
    private readonly impairStats: ImpairStats,
    /** Hand a frame on; `'busy'` only when `canHold()` (then the frame waits for `resume`). */
    private readonly deliver: (frame: Uint8Array) => boolean | 'busy',
    private readonly canHold: () => boolean,
    /** Called when the held frames are all through, so the wrapped port may deliver again. */
    private readonly wakeInner: () => void,
  ) {}

  private get limit(): number {
    return this.o.queueLimit ?? IMPAIR_QUEUE_LIMIT;
  }

  offer(frame: Uint8Array): Fate {
    if (this.o.lossPct && this.random() * 100 < this.o.lossPct) {
      this.impairStats.lost++;
      return 'lost';
    }
    const copies = this.o.duplicatePct && this.random() * 100 < this.o.duplicatePct ? 2 : 1;
    const waits: number[] = [];
    for (let i = 0; i < copies; i++) waits.push(this.waitFor(frame));
    if (waits.every((w) => w === 0) && this.waiting === 0 && !this.paused) {
      if (copies === 1) return 'now';
      this.impairStats.duplicated++;
      return 'twice';
    }
    if (this.waiting + copies > this.limit) {
      this.impairStats.queueDrops++;
      return 'full';
    }
    if (copies === 2) this.impairStats.duplicated++;
    waits.forEach((wait, i) => {
      this.waiting++;
      // A duplicate is a frame of its own: one object must not reach two holders (lend-pool.ts).
      const f = i === 0 ? frame : copyBytes(frame);
      this.clock.setTimer(wait, () => this.arrive(f));
    });
    return 'later';
  }

  /** Queue a frame for delivery from the clock, within the bound (a duplicate's copy). */
  later(frame: Uint8Array): void {
    if (this.waiting >= this.limit) {
      this.impairStats.queueDrops++;
      return;
    }
    this.waiting++;
    this.clock.setTimer(0, () => this.arrive(frame));
  }

  deliverNow(frame: Uint8Array): boolean | 'busy' {
    return this.deliver(frame);
  }

  /** How long this frame waits: rate limiter's serialisation, delay ± jitter, a reorder's extra. */
  private waitFor(frame: Uint8Array): number {
    const now = this.clock.now();
    let at = now;
    if (this.o.rateMbps) {
      const start = Math.max(now, this.busyUntil);
      this.busyUntil = start + (frame.length * 8) / (this.o.rateMbps * 1000);
      at = this.busyUntil;
    }
    let delay = this.o.delayMs ?? 0;
    if (this.o.jitterMs) delay += (this.random() * 2 - 1) * this.o.jitterMs;
    if (this.o.reorderPct && this.random() * 100 < this.o.reorderPct) {
      delay += Math.max(1, this.o.delayMs ?? 1);
      this.impairStats.reordered++;
    }
    return Math.max(0, at - now + delay);
  }

  private arrive(frame: Uint8Array): void {
    if (this.paused) {
      this.held.push(frame);
      return;
    }
    if (this.deliver(frame) === 'busy' && this.canHold()) {
      this.paused = true;
      this.held.push(frame);
      return;
    }
    this.waiting--;
  }

  /** The receiver has room: deliver the held frames (from the clock, never inside `ready()`). Returns false when nothing was held. */
  resume(): boolean {
    if (!this.paused) return false;
    this.paused = false;
    if (!this.draining) {
      this.draining = true;
      this.clock.setTimer(0, () => this.drain());
    }
    return true;
  }

  private drain(): void {
    this.draining = false;
    while (this.held.length > 0 && !this.paused) {
      const frame = this.held[0]!;
      if (this.deliver(frame) === 'busy' && this.canHold()) {
        this.paused = true;
        return;
      }
      this.held.shift();
      this.waiting--;
    }
    if (!this.paused) this.wakeInner();
  }
}
