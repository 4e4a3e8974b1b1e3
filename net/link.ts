import type { Clock, TimerHandle } from './clock.js';
import { CHECKSUM_PARTIAL, emptyStats, MAX_FRAME, MIN_FRAME, type FramePort, type FramePortStats, type FrameReceiver, type TxInfo } from './frame-port.js';
import { SLAB_MAX_ALLOC } from './byte-slab.js';
import { LendPool, settleFrame } from './lend-pool.js';

export interface LinkOptions {
  /** Frames queued per direction before new ones are dropped (backpressure bound). */
  queueLimit?: number;
  /**
   * Honour a receiver's `'busy'` by holding frames until it calls `ready()` (default true), the way
   * QEMU queues packets while a NIC cannot receive. False makes the link ignore it, so a full NIC
   * ring drops frames as real hardware on a partner without PAUSE support does.
   */
  flowControl?: boolean;
}

/**
 * An in-memory cable: two FramePorts; what one end sends the other receives, delivered from the
 * clock (never inside `send`) so that request/response chains cannot recurse without bound and the
 * whole exchange runs in virtual time when the clock is virtual.
 */
export function createLink(clock: Clock, names: [string, string] = ['a', 'b'], options: LinkOptions = {}): [FramePort, FramePort] {
  const limit = options.queueLimit ?? 1024;
  const hold = options.flowControl ?? true;
  const a = new LinkEnd(names[0], clock, limit, hold);
  const b = new LinkEnd(names[1], clock, limit, hold);
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
  /** Per queued frame: sent with an unfinished checksum (TxInfo.checksumPartial). */
  private inboundPartial: boolean[] = [];
  private inboundHead = 0;
  private scheduled: TimerHandle | null = null;
  /** The receiver said `'busy'`: delivery waits for `ready()`. */
  private paused = false;
  /** This end's receiver takes GSO frames (offerGso). */
  private takesGso = false;
  /** ... and with unfinished TCP checksums. */
  private takesPartial = false;
  /**
   * Lending (lendTx): large buffers for frames this end sends (lend-pool.ts), back in the pool
   * once the far end's receiver said it copied the frame ('copied'). Frames up to SLAB_MAX_ALLOC
   * come from the byte slabs, which cost little.
   */
  private pool: LendPool | null = null;
  /** The buffer lent last and not sent yet: the next loan reuses it. */
  private loan: Uint8Array | null = null;

  constructor(
    readonly name: string,
    private readonly clock: Clock,
    private readonly limit: number,
    readonly holds: boolean,
  ) {}

  send(frame: Uint8Array, info?: TxInfo): boolean {
    const peer = this.peer;
    if (!peer || frame.length < MIN_FRAME || frame.length > MAX_FRAME || peer.inbound.length - peer.inboundHead >= this.limit) {
      this.stats.txDrops++;
      return false;
    }
    if (this.loan !== null && frame.buffer === this.loan.buffer) this.loan = null;
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    peer.enqueue(frame, info?.checksumPartial === true);
    return true;
  }

  lendTx(length: number): Uint8Array | null {
    if (length <= SLAB_MAX_ALLOC || length > MAX_FRAME) return null;
    if (this.loan !== null) return new Uint8Array(this.loan.buffer, 0, length);
    this.loan = (this.pool ??= new LendPool()).lend(length);
    return this.loan;
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
    // A new receiver (or none) owes us no `ready()`: whatever is held is offered to it now.
    this.ready();
  }

  offerGso(on: boolean, partialChecksums = false): void {
    this.takesGso = on;
    this.takesPartial = on && partialChecksums;
  }

  get gso(): boolean {
    return this.peer?.takesGso === true;
  }

  get gsoChecksumPartial(): boolean {
    return this.peer?.takesPartial === true;
  }

  ready(): void {
    if (!this.paused) return;
    this.paused = false;
    this.schedule();
  }

  private schedule(): void {
    if (!this.scheduled && !this.paused && this.inboundHead < this.inbound.length) this.scheduled = this.clock.setTimer(0, () => this.drain());
  }

  private enqueue(frame: Uint8Array, partial: boolean): void {
    this.inbound.push(frame);
    this.inboundPartial.push(partial);
    this.schedule();
  }

  private drain(): void {
    this.scheduled = null;
    // Deliver only what is queued now; frames sent by the receiver during delivery go next round.
    const end = this.inbound.length;
    while (this.inboundHead < end) {
      const frame = this.inbound[this.inboundHead]!;
      let ok: ReturnType<FrameReceiver>;
      try {
        ok = this.receiver ? this.receiver(frame, this.inboundPartial[this.inboundHead] ? CHECKSUM_PARTIAL : undefined) : false;
      } catch (e) {
        // The receiver failed on this frame: it counts as refused and the queue moves past it, so
        // a guard above (the VMM core's fail-stop) finds the link consistent and nothing wedged.
        this.inbound[this.inboundHead++] = undefined as unknown as Uint8Array;
        this.stats.rxDrops++;
        this.schedule();
        throw e;
      }
      if (ok === 'busy' && this.holds) {
        // Keep it at the head; the receiver calls ready() when it has room.
        this.paused = true;
        break;
      }
      this.inbound[this.inboundHead++] = undefined as unknown as Uint8Array;
      // Refused or copied, the frame's way ends here: a lent buffer goes back (lend-pool.ts).
      if (ok === false || ok === 'busy' || ok === 'copied') settleFrame(frame);
      // As on the transmit side: a frame is counted once, as taken or as dropped.
      if (ok === false || ok === 'busy') this.stats.rxDrops++;
      else {
        this.stats.rxFrames++;
        this.stats.rxBytes += frame.length;
      }
    }
    if (this.inboundHead === this.inbound.length) {
      this.inbound = [];
      this.inboundPartial = [];
      this.inboundHead = 0;
    } else {
      this.schedule();
    }
  }
}
