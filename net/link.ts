import type { Clock, TimerHandle } from './clock.js';
import { emptyStats, MAX_FRAME, MIN_FRAME, type FramePort, type FramePortStats, type FrameReceiver } from './frame-port.js';

export interface LinkOptions {
  /** Frames queued per direction before new ones are dropped (backpressure bound). */
  queueLimit?: number;
}

/**
 * An in-memory cable: two FramePorts; what one end sends the other receives, delivered from the
 * clock (never inside `send`) so that request/response chains cannot recurse without bound and the
 * whole exchange runs in virtual time when the clock is virtual.
 */
export function createLink(clock: Clock, names: [string, string] = ['a', 'b'], options: LinkOptions = {}): [FramePort, FramePort] {
  const limit = options.queueLimit ?? 1024;
  const a = new LinkEnd(names[0], clock, limit);
  const b = new LinkEnd(names[1], clock, limit);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class LinkEnd implements FramePort {
  readonly stats: FramePortStats = emptyStats();
  peer: LinkEnd | null = null;
  private receiver: FrameReceiver | null = null;
  /** Frames travelling towards this end, waiting for delivery. */
  private inbound: Uint8Array[] = [];
  private inboundHead = 0;
  private scheduled: TimerHandle | null = null;

  constructor(
    readonly name: string,
    private readonly clock: Clock,
    private readonly limit: number,
  ) {}

  send(frame: Uint8Array): boolean {
    const peer = this.peer;
    if (!peer || frame.length < MIN_FRAME || frame.length > MAX_FRAME || peer.inbound.length - peer.inboundHead >= this.limit) {
      this.stats.txDrops++;
      return false;
    }
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    peer.enqueue(frame);
    return true;
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
  }

  private enqueue(frame: Uint8Array): void {
    this.inbound.push(frame);
    if (!this.scheduled) this.scheduled = this.clock.setTimer(0, () => this.drain());
  }

  private drain(): void {
    this.scheduled = null;
    // Deliver only what is queued now; frames sent by the receiver during delivery go next round.
    const end = this.inbound.length;
    while (this.inboundHead < end) {
      const frame = this.inbound[this.inboundHead]!;
      this.inbound[this.inboundHead++] = undefined as unknown as Uint8Array;
      this.stats.rxFrames++;
      this.stats.rxBytes += frame.length;
      const ok = this.receiver ? this.receiver(frame) : false;
      if (ok === false) this.stats.rxDrops++;
    }
    if (this.inboundHead === this.inbound.length) {
      this.inbound = [];
      this.inboundHead = 0;
    } else if (!this.scheduled) {
      this.scheduled = this.clock.setTimer(0, () => this.drain());
    }
  }
}
