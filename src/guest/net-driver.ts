import { NO_DEBUG, type DebugLog } from '../../net/debug.js';
import { emptyStats, type FramePort, type FramePortStats, type FrameReceiver, type RxInfo } from '../../net/frame-port.js';

/**
 * What a NIC driver offers the kernel's network stack: a FramePort (the stack's netif sends frames
 * through the driver and receives what the driver's interrupt handler pulls off the ring), plus
 * the hardware address and link state the driver read from the card.
 *
 * Drivers extend this base and implement `transmit`; their receive path calls `deliver`.
 */
export abstract class NetDriverPort implements FramePort {
  readonly stats: FramePortStats = emptyStats();
  private receiver: FrameReceiver | null = null;
  abstract readonly mac: Uint8Array;
  abstract linkUp(): boolean;

  /** `--debug <driver>` (8139too, ne2k-pci, virtio_net): set by the driver's attach, before it starts the chip. */
  dbg: DebugLog = NO_DEBUG;

  constructor(readonly name: string) {}

  /** Whether the stack may send TCP segments beyond the MTU (a driver with TSO says yes). */
  get gso(): boolean {
    return false;
  }

  /** Queue a frame on the hardware; false when the TX ring is full (the frame is dropped). */
  protected abstract transmit(frame: Uint8Array): boolean;

  send(frame: Uint8Array): boolean {
    if (!this.transmit(frame)) {
      this.stats.txDrops++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: tx drop (ring full), ${frame.length} bytes`);
      return false;
    }
    if (this.dbg.on) this.dbg.debug(`${this.name}: tx ${frame.length} bytes`);
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    return true;
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
  }

  /** Hand a received frame (already copied out of DMA memory) to the stack, with what the NIC said of it. */
  protected deliver(frame: Uint8Array, info?: RxInfo): void {
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    if (this.dbg.on) this.dbg.debug(`${this.name}: rx ${frame.length} bytes`);
    if (!this.receiver || this.receiver(frame, info) === false) {
      this.stats.rxDrops++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: rx drop (${this.receiver ? 'stack refused the frame' : 'no stack attached'})`);
    }
  }
}
