import type { Clock } from '../../net/clock.js';
import type { CaptureDirection, CaptureSink } from '../capture/sink.js';
import { FrameRing, RING_MAX_FRAME } from '../ring/frame-ring.js';
import type { Doorbell } from './doorbell.js';
import { RingConsumer } from './ring-consumer.js';

/**
 * Capture points inside a VM's thread (its NIC's wire side, its guest stack) recording into the
 * lab's capture run in the lab's thread: each record crosses in a shared ring as a 2-byte header
 * (hop index, kind) and the frame (or, for a refusal, its reason). The capture run, its files,
 * packet ids and merged pcapng stay in one thread, so a frame is followed across hops exactly as
 * before; a record's time is when the
 * lab's thread takes it (microseconds after the hop saw it; the ring is drained every turn).
 *
 * A full ring loses the record (counted in `lost`), never the frame: capturing must not slow or
 * stop the VM.
 */

const KIND_OUT = 0;
const KIND_IN = 1;
const KIND_REFUSED_OUT = 2;
const KIND_REFUSED_IN = 3;
const HEADER = 2;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** 8 MiB: ~128 GSO frames or ~5,000 MTU frames of capture in flight. */
export const MIRROR_BYTES = 8 << 20;

/** The VM thread's side: one CaptureSink per hop, all feeding one ring. */
export class MirrorWriter {
  lost = 0;

  constructor(
    private readonly ring: FrameRing,
    private readonly bell: Doorbell,
  ) {}

  /** The sink for the hop at `index` of the list both threads agreed on. */
  sink(index: number): CaptureSink {
    return {
      record: (frame, direction) => this.put(index, direction === 'out' ? KIND_OUT : KIND_IN, frame),
      refused: (direction, reason) => this.put(index, direction === 'out' ? KIND_REFUSED_OUT : KIND_REFUSED_IN, reason ? encoder.encode(reason) : null),
    };
  }

  private put(index: number, kind: number, frame: Uint8Array | null): void {
    const length = HEADER + (frame ? Math.min(frame.length, RING_MAX_FRAME - HEADER) : 0);
    const room = this.ring.reserve(length);
    if (!room) {
      this.lost++;
      return;
    }
    room[0] = index;
    room[1] = kind;
    if (frame) room.set(frame.subarray(0, length - HEADER), HEADER);
    this.ring.commit(length);
    if (this.ring.wakeConsumer()) this.bell.ring();
  }
}

/** The lab's side: records from the ring into the run's hops (`sinks[index]`). */
export class MirrorReader {
  /** Records naming a hop that is not in the list, or of an unknown kind (a confused peer): dropped. */
  bad = 0;
  private readonly consumer: RingConsumer;

  constructor(ring: FrameRing, clock: Clock, bell: Doorbell, sinks: CaptureSink[]) {
    this.consumer = new RingConsumer(ring, clock, bell, (record) => {
      const sink = record.length >= HEADER ? sinks[record[0]!] : undefined;
      const kind = record[1];
      if (!sink || kind === undefined || kind > KIND_REFUSED_IN) {
        this.bad++;
        return true;
      }
      const direction: CaptureDirection = kind === KIND_OUT || kind === KIND_REFUSED_OUT ? 'out' : 'in';
      if (kind <= KIND_IN) sink.record(record.subarray(HEADER), direction);
      else sink.refused?.(direction, record.length > HEADER ? decoder.decode(record.subarray(HEADER)) : undefined);
      return true;
    });
  }

  /** Take whatever is left (the VM has stopped), so the files hold everything recorded. */
  drainNow(): void {
    this.consumer.drainNow();
  }

  stop(): void {
    this.consumer.stop();
  }
}
