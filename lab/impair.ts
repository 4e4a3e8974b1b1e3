import type { Clock } from '../net/clock.js';
import { emptyStats, type FramePort, type FramePortStats, type FrameReceiver } from '../net/frame-port.js';
import { mulberry32 } from '../net/random.js';

/**
 * Link impairments in one direction (what `tc netem` does on a Linux link), seeded so that a run
 * reproduces: loss, delay with jitter, duplication, reordering (a reordered frame skips the delay
 * queue's order by being held back an extra delay) and a rate limit (serialisation at `rateMbps`
 * with a bounded queue; beyond it frames are dropped, as a real bottleneck does).
 * Wrapping a port impairs both directions: frames sent through the wrapper reach `inner` impaired,
 * and frames `inner` receives reach the wrapper's receiver impaired (each direction has its own
 * queue and random stream, as two netem qdiscs would).
 */
export interface Impairment {
  lossPct?: number;
  delayMs?: number;
  jitterMs?: number;
  duplicatePct?: number;
  reorderPct?: number;
  rateMbps?: number;
  /** Frames waiting for the rate limiter before new ones are dropped. */
  queueLimit?: number;
  seed?: number;
}

export interface ImpairStats {
  lost: number;
  duplicated: number;
  reordered: number;
  rateDrops: number;
}


export class ImpairedPort implements FramePort {
  readonly stats: FramePortStats = emptyStats();
  readonly impairStats: ImpairStats = { lost: 0, duplicated: 0, reordered: 0, rateDrops: 0 };
  private readonly out: Direction;
  private readonly back: Direction;

  constructor(
    clock: Clock,
    private readonly inner: FramePort,
    o: Impairment,
  ) {
    this.out = new Direction(clock, o, mulberry32(o.seed ?? 1), this.impairStats, (f) => void this.inner.send(f));
    this.back = new Direction(clock, o, mulberry32((o.seed ?? 1) ^ 0x5bd1e995), this.impairStats, (f) => {
      this.stats.rxFrames++;
      this.stats.rxBytes += f.length;
      if (!this.receiver || this.receiver(f) === false) this.stats.rxDrops++;
    });
  }

  private receiver: FrameReceiver | null = null;

  get name(): string {
    return this.inner.name;
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
    this.inner.setReceiver(receiver ? (f) => void this.back.offer(f) : null);
  }

  send(frame: Uint8Array): boolean {
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    if (!this.out.offer(frame)) {
      this.stats.txDrops++;
      return false;
    }
    return true;
  }
}

/** One direction's impairment: decide, then deliver through `deliver` at the chosen time. */
class Direction {
  private busyUntil = 0;
  private queued = 0;

  constructor(
    private readonly clock: Clock,
    private readonly o: Impairment,
    private readonly random: () => number,
    private readonly impairStats: ImpairStats,
    private readonly deliver: (frame: Uint8Array) => void,
  ) {}

  offer(frame: Uint8Array): boolean {
    if (this.o.lossPct && this.random() * 100 < this.o.lossPct) {
      this.impairStats.lost++;
      return true; // lost on the wire: the sender cannot know
    }
    const copies = this.o.duplicatePct && this.random() * 100 < this.o.duplicatePct ? 2 : 1;
    if (copies === 2) this.impairStats.duplicated++;
    for (let i = 0; i < copies; i++) if (!this.schedule(frame)) return false;
    return true;
  }

  private schedule(frame: Uint8Array): boolean {
    const now = this.clock.now();
    let at = now;
    if (this.o.rateMbps) {
      if (this.queued >= (this.o.queueLimit ?? 1000)) {
        this.impairStats.rateDrops++;
        return false;
      }
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
    const wait = Math.max(0, at - now + delay);
    this.queued++;
    this.clock.setTimer(wait, () => {
      this.queued--;
      this.deliver(frame);
    });
    return true;
  }
}
