import type { Clock } from '../../net/clock.js';
import { emptyStats, MAX_FRAME, MIN_FRAME, type FramePort, type FramePortStats, type FrameReceiver } from '../../net/frame-port.js';
import { FrameRing } from '../ring/frame-ring.js';
import type { Doorbell } from './doorbell.js';
import { RingConsumer } from './ring-consumer.js';
import { copyBytes } from '../../net/byte-slab.js';

/**
 * A FramePort whose two ends live in different threads: a VM's NIC in its own worker thread and
 * whatever it is wired to (the switch, the user-mode network) in the lab's thread. Each direction
 * is a FrameRing in shared memory; a side that finds its ring empty says so and sleeps, and the
 * other side rings its doorbell only then, so a stream of frames costs no message per frame.
 *
 * The FramePort contract holds across the boundary:
 * - `send` copies the frame into the ring and returns at once; a full ring refuses it (counted in
 *   txDrops), as a full link queue does. Delivery happens on the other thread's event loop, never
 *   inside `send`.
 * - The port holds (`holds`): a receiver's 'busy' leaves the frame at the head of the ring until
 *   `ready()`, so the ring fills and the far side's sends start to be refused: backpressure.
 * - GSO: each side's `offerGso` is a flag in shared memory; the other side's `gso` reads it.
 */

/** What one end needs to open its side of the pair; plain shared buffers, so it crosses to a worker. */
export interface RingPortSpec {
  /** Frames this end sends. */
  tx: SharedArrayBuffer;
  /** Frames this end receives. */
  rx: SharedArrayBuffer;
  /** Int32 per end: 1 when that end's receiver takes GSO frames. */
  flags: SharedArrayBuffer;
  side: 0 | 1;
}

/** 4 MiB a direction: ~64 GSO frames or ~2,700 MTU frames in flight, like a link's queue of 1024. */
export const RING_PORT_BYTES = 4 << 20;

export function ringPortSpecs(capacity = RING_PORT_BYTES): [RingPortSpec, RingPortSpec] {
  const ab = FrameRing.create(capacity);
  const ba = FrameRing.create(capacity);
  if (!ab.ok) throw new RangeError(ab.error);
  if (!ba.ok) throw new RangeError(ba.error);
  const flags = new SharedArrayBuffer(8);
  return [
    { tx: ab.ring.sab, rx: ba.ring.sab, flags, side: 0 },
    { tx: ba.ring.sab, rx: ab.ring.sab, flags, side: 1 },
  ];
}

export class RingPort implements FramePort {
  readonly stats: FramePortStats = emptyStats();
  readonly holds = true;
  /** Receiver calls that threw: the frame is counted as dropped and delivery goes on. */
  receiverErrors = 0;
  private readonly tx: FrameRing;
  private readonly rx: FrameRing;
  private readonly flags: Int32Array;
  private readonly side: 0 | 1;
  private readonly consumer: RingConsumer;
  private receiver: FrameReceiver | null = null;
  /** The copy the receiver last called 'busy': offered again, the same object, on `ready()`. */
  private held: Uint8Array | null = null;
  private closed = false;

  constructor(
    readonly name: string,
    spec: RingPortSpec,
    clock: Clock,
    private readonly bell: Doorbell,
  ) {
    const tx = FrameRing.attach(spec.tx);
    const rx = FrameRing.attach(spec.rx);
    if (!tx.ok) throw new RangeError(tx.error);
    if (!rx.ok) throw new RangeError(rx.error);
    this.tx = tx.ring;
    this.rx = rx.ring;
    this.flags = new Int32Array(spec.flags);
    this.side = spec.side;
    this.consumer = new RingConsumer(this.rx, clock, bell, (view) => this.deliver(view));
  }

  send(frame: Uint8Array): boolean {
    if (this.closed || frame.length < MIN_FRAME || frame.length > MAX_FRAME || !this.tx.push(frame)) {
      this.stats.txDrops++;
      return false;
    }
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    if (this.tx.wakeConsumer()) this.bell.ring();
    return true;
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
    this.ready();
  }

  ready(): void {
    this.consumer.resume();
  }

  get gso(): boolean {
    return Atomics.load(this.flags, this.side === 0 ? 1 : 0) !== 0;
  }

  offerGso(on: boolean): void {
    Atomics.store(this.flags, this.side, on ? 1 : 0);
  }

  /** True once either end closed the pair (the other thread ended or the lab stops). */
  get isClosed(): boolean {
    return this.closed || this.rx.closed;
  }

  /** Both directions end; the other side's sends are refused from now on and its waits wake. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.consumer.stop();
    this.tx.close();
    this.rx.close();
    this.bell.close();
  }

  /** One frame to the receiver; false when it is busy (the record stays at the head). */
  private deliver(view: Uint8Array): boolean {
    // A copy: a receiver may keep the frame (a link queues it), and the ring slot is reused.
    const frame = this.held ?? copyBytes(view);
    this.held = null;
    let answer: ReturnType<FrameReceiver>;
    try {
      answer = this.receiver ? this.receiver(frame) : false;
    } catch {
      this.receiverErrors++;
      answer = false;
    }
    if (answer === 'busy') {
      this.held = frame;
      return false;
    }
    if (answer === false) this.stats.rxDrops++;
    else {
      this.stats.rxFrames++;
      this.stats.rxBytes += frame.length;
    }
    return true;
  }
}
