import { emptyStats, type FramePort, type FramePortStats, type FrameReceiver, type RxInfo, type TxInfo } from '../../net/frame-port.js';
import { finishPartialTcpv4 } from '../../src/devices/tcp-gso.js';
import type { CaptureDirection, CaptureSink } from './sink.js';

/**
 * A capture point: a FramePort pass-through that records both directions of the frames crossing
 * one link end (DESIGN.md, Captures; smoltcp's pcap writer stacked as an ordinary device).
 *
 * Put it in front of a port and hand it to whoever would have used the port:
 *
 *     const [nicSide, backendSide] = createLink(clock, ['vm0.eth0', 'net0-back']);
 *     nic.attach(captureBetween(nicSide, 'vm0.eth0', run.hop('vm0.eth0')));
 *
 * Seen from the side holding the capture point ("outer", here the NIC), frames it sends are `out`
 * and frames delivered to it are `in`.
 *
 * FramePort semantics are unchanged:
 * - `send` returns exactly what the wrapped port returns. A refusal was counted in the wrapped
 *   port's `txDrops` (the port that refused), so the capture point's own FramePort stats never
 *   count it again; a refused frame is still in the pcap (it did reach this hop) and is counted as
 *   a drop in the capture point's `counters` and reported to the sink (`refused`), which is where
 *   the run's manifest gets its per-hop drops.
 * - A frame the outer receiver refuses is reported back to the wrapped port (`false`), which counts
 *   it in its `rxDrops`; delivery stays non-re-entrant because the tap adds no queue of its own.
 * - Frames are recorded before being handed on: ownership passes on `send`, so afterwards the frame
 *   may not be read. Recording copies the bytes once, into the pcap writer's batch; the frame
 *   itself is passed on as is.
 * - A capture records finished checksums, as a NIC puts them on the wire: it never offers to take
 *   partial ones (`offerGso` passes on without them, `gsoChecksumPartial` is false), and a frame
 *   that arrives with one anyway (a driver's NEEDS_CSUM packet on its way to the stack) is finished
 *   in place first and handed on as vouched for.
 */

export interface DirectionCounters {
  frames: number;
  bytes: number;
  /** Of the frames recorded, how many the next element refused. */
  drops: number;
}

export interface CaptureCounters {
  /** Frames the outer side sent through the capture point. */
  out: DirectionCounters;
  /** Frames delivered from the wrapped port to the outer side. */
  in: DirectionCounters;
}

export function emptyCaptureCounters(): CaptureCounters {
  return { out: { frames: 0, bytes: 0, drops: 0 }, in: { frames: 0, bytes: 0, drops: 0 } };
}

export class CapturePoint implements FramePort {
  readonly name: string;
  /**
   * The pass-through's own FramePort counters: frames it passed on and that were accepted (tx) and
   * frames it delivered (rx). It never refuses a frame itself, so its drop counters stay 0.
   */
  readonly stats: FramePortStats = emptyStats();
  readonly counters: CaptureCounters;
  private receiver: FrameReceiver | null = null;
  /** The frame the receiver last answered `'busy'` (already recorded). */
  private heldFrame: Uint8Array | null = null;

  /**
   * @param inner the port being tapped (frames sent to the capture point go to it)
   * @param hop the hop's name, used as this port's name (`vm0.eth0`)
   * @param sink where frames are recorded (and told of drops)
   */
  constructor(
    readonly inner: FramePort,
    readonly hop: string,
    private readonly sink: CaptureSink,
  ) {
    this.name = hop;
    this.counters = emptyCaptureCounters();
    inner.setReceiver((frame, info) => this.deliver(frame, info));
  }

  send(frame: Uint8Array, info?: TxInfo): boolean {
    if (info?.checksumPartial) finishPartialTcpv4(frame);
    this.count('out', frame);
    const ok = this.inner.send(frame);
    if (ok) {
      this.stats.txFrames++;
      this.stats.txBytes += frame.length;
    } else {
      this.counters.out.drops++;
      this.sink.refused?.('out', `${this.inner.name} refused it`);
    }
    return ok;
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
  }

  /** Flow control passes straight through: the tapped port is the one that holds frames. */
  get holds(): boolean {
    return this.inner.holds === true;
  }

  ready(): void {
    this.inner.ready?.();
  }

  get gso(): boolean {
    return this.inner.gso === true;
  }

  offerGso(on: boolean): void {
    // Never partial checksums through a capture point (see above).
    this.inner.offerGso?.(on);
  }

  /** Stop recording and give the wrapped port back its receiver (the outer one). */
  detach(): FramePort {
    this.inner.setReceiver(this.receiver);
    return this.inner;
  }

  private deliver(frame: Uint8Array, info?: RxInfo): boolean | 'busy' | 'copied' {
    // A frame the receiver called busy comes back later, the same object: record it once, when
    // first seen, so the pcap keeps wire order (the guest may answer inside the receiver).
    if (info?.checksumPartial) {
      finishPartialTcpv4(frame);
      info = info.lent ? VOUCHED_LENT : VOUCHED;
    }
    if (frame !== this.heldFrame) this.count('in', frame);
    this.heldFrame = null;
    // No receiver is a refusal, as it is for a link end (the frame is counted as dropped there).
    const answer = this.receiver ? this.receiver(frame, info) : false;
    if (answer === 'busy' && this.holds) {
      this.heldFrame = frame;
      return 'busy';
    }
    const ok = answer !== false && answer !== 'busy';
    if (ok) {
      this.stats.rxFrames++;
      this.stats.rxBytes += frame.length;
    } else {
      this.counters.in.drops++;
      this.sink.refused?.('in', this.receiver ? 'the receiver refused it' : 'no receiver attached');
    }
    // Recording copied it, so the receiver's word for the frame stands for the pair.
    return answer === 'copied' ? 'copied' : ok;
  }

  private count(direction: CaptureDirection, frame: Uint8Array): void {
    const c = this.counters[direction];
    c.frames++;
    c.bytes += frame.length;
    this.sink.record(frame, direction);
  }
}

const VOUCHED: RxInfo = Object.freeze({ checksumValid: true });
const VOUCHED_LENT: RxInfo = Object.freeze({ checksumValid: true, lent: true });

/**
 * Insert a capture point in front of `port`: returns the FramePort to use instead of `port`.
 * Frames sent to it go to `port`; frames from `port` go to its receiver; both are recorded in `sink`.
 */
export function captureBetween(port: FramePort, hop: string, sink: CaptureSink): CapturePoint {
  return new CapturePoint(port, hop, sink);
}
