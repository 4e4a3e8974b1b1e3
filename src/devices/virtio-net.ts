import type { DebugLog } from '../../net/debug.js';
import type { TimerHandle } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import { CHECKSUM_PARTIAL, MAX_FRAME, MIN_FRAME } from '../../net/frame-port.js';
import { SLAB_MAX_ALLOC } from '../../net/byte-slab.js';
import { internetChecksum } from '../../net/wire/checksum.js';
import type { DeviceConfig } from '../config/types.js';
import type { DeviceContext, DeviceState, NicDevice } from '../vmm/device.js';
import type { AccessSize } from '../vmm/io-bus.js';
import { PciFunction } from '../vmm/pci.js';
import { finishIpv4HeaderChecksum, finishTcpv4Checksums, segmentTcpv4, tcpv4Layout } from './tcp-gso.js';
import { SplitVirtqueue, isVirtqError, type Chain, type VirtqError } from './virtqueue.js';
import { RxFilter, runCtrlCommand } from './virtio-net/ctrl.js';

/**
 * virtio-net over the legacy virtio-pci transport (virtio 1.x §4.1.4.8 "Legacy Interfaces: A Note
 * on PCI Device Layout", §5.1 "Network Device"): PCI 1af4:1000, subsystem id 1 (network), one I/O
 * BAR with the legacy register block, INTx only (no MSI-X, so device config starts at 0x14).
 * Queues: 0 receive, 1 transmit, 2 control (CTRL_VQ, as QEMU offers it).
 *
 * Receive filtering (virtio-net/ctrl.ts): until the driver programs it through the control queue
 * (CTRL_RX: promiscuous, all-multicast, the MAC tables; CTRL_RX_EXTRA; CTRL_MAC_ADDR) we deliver
 * what a NIC in its default mode would: frames to our own MAC (the one in config space, which a
 * legacy driver may rewrite), broadcast, and every multicast. Other frames are ignored and counted.
 *
 * Bounds (issue 10): one notify sends at most TX_CHAINS_PER_RUN chains or TX_FRAMES_PER_RUN wire
 * frames, the rest goes from a zero-delay clock timer, so the lab's other work runs in between; a
 * TSO packet whose gso_size is under TSO_MIN_GSO_SIZE or does not fit the MTU with its headers, and
 * a plain frame over ETH_MAX_FRAME, are dropped and counted; a received frame the driver's buffers
 * could never hold is dropped, never held.
 */
export const VIRTIO_PCI_HOST_FEATURES = 0x00;
export const VIRTIO_PCI_GUEST_FEATURES = 0x04;
export const VIRTIO_PCI_QUEUE_PFN = 0x08;
export const VIRTIO_PCI_QUEUE_NUM = 0x0c;
export const VIRTIO_PCI_QUEUE_SEL = 0x0e;
export const VIRTIO_PCI_QUEUE_NOTIFY = 0x10;
export const VIRTIO_PCI_STATUS = 0x12;
export const VIRTIO_PCI_ISR = 0x13;
/** Device-specific config without MSI-X: struct virtio_net_config { mac[6]; status u16 }. */
export const VIRTIO_PCI_CONFIG = 0x14;
export const VIRTIO_NET_CONFIG_MAC = VIRTIO_PCI_CONFIG;
export const VIRTIO_NET_CONFIG_STATUS = VIRTIO_PCI_CONFIG + 6;
const CONFIG_END = VIRTIO_PCI_CONFIG + 8;
/** The BAR is a power of two covering the 0x1C bytes of registers. */
const BAR_SIZE = 32;

/** Device status bits (§2.1). */
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
export const VIRTIO_CONFIG_S_DRIVER = 2;
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;
export const VIRTIO_CONFIG_S_FAILED = 0x80;

/** ISR bits (§4.1.4.5). */
export const VIRTIO_PCI_ISR_QUEUE = 1;
export const VIRTIO_PCI_ISR_CONFIG = 2;

/** Feature bits (§5.1.3, §6). */
export const VIRTIO_NET_F_CSUM = 0;
export const VIRTIO_NET_F_GUEST_CSUM = 1;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_GUEST_TSO4 = 7;
export const VIRTIO_NET_F_HOST_TSO4 = 11;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;
export const VIRTIO_NET_F_CTRL_VQ = 17;
export const VIRTIO_NET_F_CTRL_RX = 18;
export const VIRTIO_NET_F_CTRL_RX_EXTRA = 20;
export const VIRTIO_NET_F_CTRL_MAC_ADDR = 23;
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_RING_F_EVENT_IDX = 29;

export const VIRTIO_NET_S_LINK_UP = 1;

/** virtio_net_hdr (§5.1.6). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
/** Where a TCP header keeps its checksum: csum_offset for NEEDS_CSUM. */
const TCP_CHECKSUM_OFFSET = 16;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_LEN = 10;
export const VIRTIO_NET_HDR_MRG_LEN = 12;

export const VIRTIO_NET_RX_QUEUE = 0;
export const VIRTIO_NET_TX_QUEUE = 1;
export const VIRTIO_NET_CTRL_QUEUE = 2;
/** Queue size offered for the receive and transmit queues (Linux and QEMU's legacy default). */
export const VIRTIO_NET_QUEUE_SIZE = 256;
/** The control queue's size: QEMU's (commands are few and answered at once). */
export const VIRTIO_NET_CTRL_QUEUE_SIZE = 64;

/**
 * Work one transmit run may do before yielding to the clock: QEMU's tx_burst (256 chains), and at
 * most this many frames on the wire, so that segmenting TSO packets cannot keep the lab busy for
 * long (one notify over 256 TSO chains is otherwise up to 256 × 1366 segments). 512 stays under
 * the in-memory link's 1024-frame queue, which drains between runs.
 */
export const TX_CHAINS_PER_RUN = 256;
export const TX_FRAMES_PER_RUN = 512;
/**
 * The smallest gso_size a TSO packet may carry: Linux's TCP_MIN_SND_MSS (48). No Linux TCP sends
 * smaller segments, and it bounds one 64 KiB packet to 1366 segments (gso_size 1 made it 65 K).
 * Linux's virtio_net_hdr_to_skb itself refuses only 0; the upper bound is the MTU: headers plus
 * gso_size must fit a 1514-byte frame, or the "segments" would not fit the wire either.
 */
export const TSO_MIN_GSO_SIZE = 48;
/** Largest command the control queue reads (a MAC table of ~2700 entries); larger is answered ERR. */
export const CTRL_MAX_COMMAND = 16 * 1024;

const bit = (n: number): number => (1 << n) >>> 0;

export const VIRTIO_NET_HOST_FEATURES =
  (bit(VIRTIO_NET_F_CSUM) |
    bit(VIRTIO_NET_F_GUEST_CSUM) |
    bit(VIRTIO_NET_F_GUEST_TSO4) |
    bit(VIRTIO_NET_F_HOST_TSO4) |
    bit(VIRTIO_NET_F_MAC) |
    bit(VIRTIO_NET_F_MRG_RXBUF) |
    bit(VIRTIO_NET_F_STATUS) |
    bit(VIRTIO_NET_F_CTRL_VQ) |
    bit(VIRTIO_NET_F_CTRL_RX) |
    bit(VIRTIO_NET_F_CTRL_RX_EXTRA) |
    bit(VIRTIO_NET_F_CTRL_MAC_ADDR) |
    bit(VIRTIO_RING_F_INDIRECT_DESC) |
    bit(VIRTIO_RING_F_EVENT_IDX)) >>>
  0;

/** The width of each legacy header register (virtio 1.x §4.1.4.8, the legacy layout table). */
const REGISTER_WIDTH: Record<number, AccessSize> = {
  [VIRTIO_PCI_HOST_FEATURES]: 4,
  [VIRTIO_PCI_GUEST_FEATURES]: 4,
  [VIRTIO_PCI_QUEUE_PFN]: 4,
  [VIRTIO_PCI_QUEUE_NUM]: 2,
  [VIRTIO_PCI_QUEUE_SEL]: 2,
  [VIRTIO_PCI_QUEUE_NOTIFY]: 2,
  [VIRTIO_PCI_STATUS]: 1,
  [VIRTIO_PCI_ISR]: 1,
};

export class VirtioNet implements NicDevice {
  readonly className = 'LNX_VIRTIO_NIC';
  readonly model = 'virtio';
  state: DeviceState = 'running';
  readonly pci: PciFunction;
  private port: FramePort | null = null;
  /** A frame was answered `'busy'` for want of receive buffers: the port waits for ready(). */
  private rxWaiting = false;
  private readonly queues: SplitVirtqueue[];
  private filter = new RxFilter();
  /** A transmit run that used up its budget continues from this timer. */
  private txResume: TimerHandle | null = null;
  private guestFeatures = 0;
  private queueSel = 0;
  private status = 0;
  private isr = 0;
  /** struct virtio_net_config: the MAC (a legacy driver may rewrite it) and link status. */
  private readonly config = new Uint8Array(8);
  /** `--debug virtio-net`: legacy header registers by name, device status, drops with their counter. */
  private readonly dbg: DebugLog;
  private readonly stats = {
    txFrames: 0,
    txBytes: 0,
    txErrors: 0,
    /** Plain (non-GSO) frames longer than Ethernet allows: dropped, as a NIC refuses them. */
    txDropOversize: 0,
    /** TSO packets with a gso_size below TSO_MIN_GSO_SIZE or beyond the MTU: dropped. */
    txDropGsoSize: 0,
    /** Transmit runs that stopped at their budget and went on from the clock. */
    txDeferred: 0,
    txChecksumsFilled: 0,
    rxFrames: 0,
    rxBytes: 0,
    rxDropNoBuffer: 0,
    /** Times no receive buffer was posted and the link held the frame (flow control). */
    rxHeldNoBuffer: 0,
    /** TCP segments larger than the MTU handed to a GUEST_TSO4 guest whole. */
    rxGsoFrames: 0,
    /** Frames handed to the guest with NEEDS_CSUM: a sender in this host left their TCP checksum partial. */
    rxPartialChecksums: 0,
    /** TSO packets from the guest passed whole to a far end that takes GSO frames. */
    txGsoWhole: 0,
    /** Of those, passed on with the guest's partial checksum (a far end that takes them). */
    txGsoPartial: 0,
    /** Wire-sized segments cut from TSO packets for a far end that does not. */
    txGsoSegments: 0,
    rxDropNotReady: 0,
    rxDropTooBig: 0,
    rxDropRunt: 0,
    ctrlCommands: 0,
    ctrlErrors: 0,
    rxDropFiltered: 0,
    rxBuffersMerged: 0,
    notifies: 0,
    interrupts: 0,
    interruptsSuppressed: 0,
    resets: 0,
  };

  constructor(
    private readonly ctx: DeviceContext,
    readonly id: string,
    readonly mac: Uint8Array,
  ) {
    this.dbg = ctx.log.child('virtio-net');
    this.pci = new PciFunction(
      id,
      // Subsystem id 1 = network card (§4.1.2.1: legacy devices name their type there).
      { vendorId: 0x1af4, deviceId: 0x1000, classCode: 0x020000, revision: 0, subsystemVendorId: 0x1af4, subsystemId: 1, interruptPin: 1 },
      [{
        kind: 'io',
        size: BAR_SIZE,
        handler: {
          read: (o, s) => {
            const v = this.read(o, s);
            if (this.dbg.on) this.dbg.debug(`read ${virtioRegName(o)}/${s} = 0x${v.toString(16)}${o === VIRTIO_PCI_QUEUE_NUM || o === VIRTIO_PCI_QUEUE_PFN ? ` (queue ${this.queueSel})` : ''}`);
            return v;
          },
          write: (o, s, v) => {
            if (this.dbg.on) this.dbg.debug(`write ${virtioRegName(o)}/${s} ← 0x${(v >>> 0).toString(16)}${o === VIRTIO_PCI_QUEUE_PFN ? ` (queue ${this.queueSel})` : ''}`);
            this.write(o, s, v);
          },
        },
      }],
    );
    this.queues = [
      new SplitVirtqueue(ctx.memory, VIRTIO_NET_RX_QUEUE, VIRTIO_NET_QUEUE_SIZE),
      new SplitVirtqueue(ctx.memory, VIRTIO_NET_TX_QUEUE, VIRTIO_NET_QUEUE_SIZE),
      new SplitVirtqueue(ctx.memory, VIRTIO_NET_CTRL_QUEUE, VIRTIO_NET_CTRL_QUEUE_SIZE),
    ];
    this.config.set(mac, 0);
    this.config[6] = VIRTIO_NET_S_LINK_UP;
  }

  counters(): Record<string, number> {
    return { ...this.stats };
  }

  private get guestTakesGso(): boolean {
    return this.has(VIRTIO_NET_F_GUEST_TSO4) && this.has(VIRTIO_NET_F_GUEST_CSUM) && this.has(VIRTIO_NET_F_MRG_RXBUF);
  }

  attach(port: FramePort): void {
    this.port = port;
    port.setReceiver((frame, info) => {
      // A throw in delivery is a model bug: it stops this device, not the lab (issue 10).
      try {
        return this.receive(frame, info?.checksumPartial === true);
      } catch (e) {
        this.fail(`receive: ${e instanceof Error ? e.message : String(e)}`);
        return false;
      }
    });
    // Cabled after the driver came up: the new far end learns what the guest takes.
    this.offerGso();
  }

  stop(): void {
    this.state = 'stopped';
    this.cancelTxResume();
    this.port?.offerGso?.(false);
    this.port?.setReceiver(null);
    this.pci.setIntx(false);
  }

  /**
   * Tell the far end what the guest takes: GSO frames when it took GUEST_TSO4, and those with
   * unfinished checksums too, which GUEST_CSUM lets us pass on as NEEDS_CSUM (§5.1.6.4) instead of
   * summing them here, as a host's TAP hands CHECKSUM_PARTIAL packets to QEMU.
   */
  private offerGso(): void {
    const on = this.driverOk && this.guestTakesGso;
    this.port?.offerGso?.(on, on);
  }

  private has(feature: number): boolean {
    return (this.guestFeatures & bit(feature)) !== 0;
  }

  private get hdrLen(): number {
    return this.has(VIRTIO_NET_F_MRG_RXBUF) ? VIRTIO_NET_HDR_MRG_LEN : VIRTIO_NET_HDR_LEN;
  }

  private get driverOk(): boolean {
    return (this.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0 && (this.status & VIRTIO_CONFIG_S_FAILED) === 0;
  }

  private fail(message: string): void {
    if (this.state !== 'running') return;
    this.ctx.fail(this.id, message);
    // The VM calls stop(); make sure we are stopped even if no VM is listening.
    this.stop();
  }

  /** Writing 0 to the status register resets the device (§2.1.2, §4.1.4.8 legacy). */
  private reset(): void {
    this.stats.resets++;
    for (const q of this.queues) {
      q.reset();
      q.indirectEnabled = false;
      q.eventIdxEnabled = false;
    }
    this.cancelTxResume();
    // The filter and the MAC return to their power-on state, as QEMU's virtio_net_reset does.
    this.filter = new RxFilter();
    this.config.set(this.mac, 0);
    this.guestFeatures = 0;
    this.queueSel = 0;
    this.status = 0;
    this.isr = 0;
    this.pci.setIntx(false);
    this.port?.offerGso?.(false);
    if (this.rxWaiting) {
      // Let the held frame through: with the device reset it is refused (not ready) and counted.
      this.rxWaiting = false;
      this.port?.ready?.();
    }
  }

  private read(off: number, size: AccessSize): number {
    if (off >= VIRTIO_PCI_CONFIG) {
      if (off + size > CONFIG_END) return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = (v << 8) | this.config[off - VIRTIO_PCI_CONFIG + i]!;
      return v >>> 0;
    }
    switch (this.register(off, size, 'read')) {
      case VIRTIO_PCI_HOST_FEATURES:
        return VIRTIO_NET_HOST_FEATURES;
      case VIRTIO_PCI_GUEST_FEATURES:
        return this.guestFeatures;
      case VIRTIO_PCI_QUEUE_PFN:
        return this.queues[this.queueSel]?.pfn ?? 0;
      case VIRTIO_PCI_QUEUE_NUM:
        // 0 says "no such queue": how a driver finds out there is no control queue.
        return this.queues[this.queueSel]?.size ?? 0;
      case VIRTIO_PCI_QUEUE_SEL:
        return this.queueSel;
      case VIRTIO_PCI_QUEUE_NOTIFY:
        return 0;
      case VIRTIO_PCI_STATUS:
        return this.status;
      case VIRTIO_PCI_ISR: {
        // Read-to-clear, and the read is the interrupt acknowledge: INTx drops (§4.1.4.5).
        const v = this.isr;
        this.isr = 0;
        this.pci.setIntx(false);
        return v;
      }
      default:
        return 0xffffffff >>> (32 - 8 * size);
    }
  }

  /**
   * The legacy header's registers have one width each; an access of another width or offset is a
   * driver bug we report rather than guess at (Palacios' PrintError on unhandled registers).
   */
  private register(off: number, size: AccessSize, what: 'read' | 'write'): number {
    if (REGISTER_WIDTH[off] === size) return off;
    this.fail(`${size}-byte ${what} at BAR0+0x${off.toString(16)}: not a legacy virtio-pci register of that width`);
    return -1;
  }

  private write(off: number, size: AccessSize, value: number): void {
    if (this.state !== 'running') return;
    if (off >= VIRTIO_PCI_CONFIG) {
      // A legacy driver without CTRL_MAC_ADDR sets the MAC by writing config space; status is read-only.
      if (off + size > VIRTIO_NET_CONFIG_STATUS) {
        this.fail(`write to read-only device config at BAR0+0x${off.toString(16)}`);
        return;
      }
      for (let i = 0; i < size; i++) this.config[off - VIRTIO_PCI_CONFIG + i] = (value >>> (8 * i)) & 0xff;
      return;
    }
    switch (this.register(off, size, 'write')) {
      case VIRTIO_PCI_GUEST_FEATURES:
        this.setGuestFeatures(value >>> 0);
        return;
      case VIRTIO_PCI_QUEUE_PFN: {
        const q = this.queues[this.queueSel];
        if (!q) {
          this.fail(`QUEUE_PFN written for queue ${this.queueSel}, which does not exist (QUEUE_NUM reads 0)`);
          return;
        }
        const r = q.setPfn(value >>> 0);
        if (isVirtqError(r)) this.fail(r.message);
        return;
      }
      case VIRTIO_PCI_QUEUE_SEL:
        this.queueSel = value & 0xffff;
        return;
      case VIRTIO_PCI_QUEUE_NOTIFY:
        this.notify(value & 0xffff);
        return;
      case VIRTIO_PCI_STATUS:
        this.setStatus(value & 0xff);
        return;
      case VIRTIO_PCI_HOST_FEATURES:
      case VIRTIO_PCI_QUEUE_NUM:
      case VIRTIO_PCI_ISR:
        this.fail(`write of 0x${value.toString(16)} to read-only register BAR0+0x${off.toString(16)}`);
        return;
      default:
        return; // register() has already fail-stopped
    }
  }

  private setGuestFeatures(features: number): void {
    if (this.status & VIRTIO_CONFIG_S_DRIVER_OK) {
      this.fail('guest features written after DRIVER_OK');
      return;
    }
    const unknown = features & ~VIRTIO_NET_HOST_FEATURES;
    if (unknown) {
      // §2.2.1: the driver MUST NOT accept a feature the device did not offer.
      this.fail(`driver accepted features 0x${(unknown >>> 0).toString(16)} the device did not offer`);
      return;
    }
    // §5.1.3.1: the control-queue features need the control queue.
    const needsCtrlVq = bit(VIRTIO_NET_F_CTRL_RX) | bit(VIRTIO_NET_F_CTRL_RX_EXTRA) | bit(VIRTIO_NET_F_CTRL_MAC_ADDR);
    if (features & needsCtrlVq && !(features & bit(VIRTIO_NET_F_CTRL_VQ))) {
      this.fail(`driver accepted control-queue features 0x${((features & needsCtrlVq) >>> 0).toString(16)} without VIRTIO_NET_F_CTRL_VQ`);
      return;
    }
    if (features & bit(VIRTIO_NET_F_CTRL_RX_EXTRA) && !(features & bit(VIRTIO_NET_F_CTRL_RX))) {
      this.fail('driver accepted VIRTIO_NET_F_CTRL_RX_EXTRA without VIRTIO_NET_F_CTRL_RX');
      return;
    }
    this.guestFeatures = features;
    for (const q of this.queues) {
      q.indirectEnabled = this.has(VIRTIO_RING_F_INDIRECT_DESC);
      q.eventIdxEnabled = this.has(VIRTIO_RING_F_EVENT_IDX);
    }
  }

  private setStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const wasOk = this.driverOk;
    this.status = value;
    if (!wasOk && this.driverOk) {
      // GUEST_TSO4 (with GUEST_CSUM, which it needs, §5.1.3.1): the guest takes TCP segments of up
      // to 64 KiB in one packet, so the far end of our link may send them whole.
      this.offerGso();
      // Receive buffers are not asked about until a frame waits for them (flow control asks then):
      // tell the driver not to notify us about them (saves an exit each).
      const r = this.queues[VIRTIO_NET_RX_QUEUE]!.setNotify(false);
      if (isVirtqError(r)) {
        this.fail(r.message);
        return;
      }
      // The driver may have queued transmits before DRIVER_OK; they go now.
      this.processTx();
    }
  }

  private notify(queue: number): void {
    this.stats.notifies++;
    if (queue === VIRTIO_NET_TX_QUEUE) {
      // A run already waiting on the clock will see these chains too; until then the guest's kicks
      // change nothing (and it was told not to send them).
      if (this.driverOk && !this.txResume) this.processTx();
      return;
    }
    if (queue === VIRTIO_NET_CTRL_QUEUE) {
      if (this.driverOk) this.processCtrl();
      return;
    }
    if (queue === VIRTIO_NET_RX_QUEUE) {
      // Buffers are taken when frames arrive; a kick matters only while a frame is held for them.
      if (this.rxWaiting) {
        this.rxWaiting = false;
        const r = this.queues[VIRTIO_NET_RX_QUEUE]!.setNotify(false);
        if (isVirtqError(r)) {
          this.fail(r.message);
          return;
        }
        this.port?.ready?.();
      }
      return;
    }
    this.fail(`notify for queue ${queue}, which does not exist`);
  }

  /**
   * Send the chains the driver made available on the transmit queue (§5.1.6.2), at most one
   * run's budget of them; the rest go from the clock, with the driver's kicks turned off meanwhile.
   * With EVENT_IDX, finishing a run writes avail_event (the driver kicks only when its avail index
   * passes it, vring_need_event): a device that never writes it gets one kick and then silence.
   */
  private processTx(): void {
    const q = this.queues[VIRTIO_NET_TX_QUEUE]!;
    if (!q.ready || !this.pci.busMaster) return;
    let chains = 0;
    let frames = 0;
    let sent = 0;
    for (;;) {
      if (chains >= TX_CHAINS_PER_RUN || frames >= TX_FRAMES_PER_RUN) {
        const more = q.pending();
        if (isVirtqError(more)) return this.fail(more.message);
        if (more > 0) {
          this.stats.txDeferred++;
          const r = q.setNotify(false);
          if (isVirtqError(r)) return this.fail(r.message);
          this.txResume = this.ctx.clock.setTimer(0, () => this.guarded('transmit timer', () => {
            this.txResume = null;
            if (this.state === 'running' && this.driverOk) this.processTx();
          }));
          break;
        }
      }
      const chain = q.pop();
      if (chain === null) {
        // Caught up: ask for a kick at the driver's next buffer, then look once more, since the
        // driver may have added one before it could see the new avail_event.
        const r = q.setNotify(true);
        if (isVirtqError(r)) return this.fail(r.message);
        const more = q.pending();
        if (isVirtqError(more)) return this.fail(more.message);
        if (more === 0) break;
        continue;
      }
      if (isVirtqError(chain)) return this.fail(chain.message);
      chains++;
      const out = this.transmitChain(q, chain);
      if (isVirtqError(out)) return this.fail(out.message);
      frames += out;
      // Transmit buffers are only read: the used length is 0 (§2.7.8).
      const r = q.push(chain.head, 0);
      if (isVirtqError(r)) return this.fail(r.message);
      sent++;
    }
    if (sent > 0) this.completed(q);
  }

  private cancelTxResume(): void {
    this.txResume?.cancel();
    this.txResume = null;
  }

  /**
   * Run `fn`, turning any throw into a fail-stop of this device: a device's timer or callback must
   * never end the lab (issue 10). Guest errors are values here; a throw is a model bug.
   */
  private guarded(what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.fail(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * The control queue (§5.1.6.5): each chain is class, command and data (device-readable), then an
   * ack byte (device-writable). A chain without room for those is a broken driver and fail-stops
   * the device (QEMU's virtio_error "missing headers"); a command that does not parse, is unknown,
   * or needs a feature not negotiated is answered VIRTIO_NET_ERR.
   */
  private processCtrl(): void {
    const q = this.queues[VIRTIO_NET_CTRL_QUEUE]!;
    if (!q.ready || !this.pci.busMaster) return;
    let done = 0;
    // Bounded by the ring; a driver adding commands as fast as we answer cannot keep us here.
    for (let budget = 0; budget < q.size; budget++) {
      const chain = q.pop();
      if (chain === null) break;
      if (isVirtqError(chain)) return this.fail(chain.message);
      if (chain.readableLength < 2 || chain.writableLength < 1) {
        return this.fail(`control queue: command chain (head ${chain.head}) has ${chain.readableLength} readable and ${chain.writableLength} writable bytes; it needs a 2-byte header and an ack byte`);
      }
      let ack = 1; // VIRTIO_NET_ERR
      if (chain.readableLength <= CTRL_MAX_COMMAND) {
        const cmd = q.gather(chain);
        if (isVirtqError(cmd)) return this.fail(cmd.message);
        ack = runCtrlCommand(
          this.filter,
          cmd,
          { rx: this.has(VIRTIO_NET_F_CTRL_RX), rxExtra: this.has(VIRTIO_NET_F_CTRL_RX_EXTRA), macAddr: this.has(VIRTIO_NET_F_CTRL_MAC_ADDR) },
          (mac) => this.config.set(mac, 0),
        );
      }
      this.stats.ctrlCommands++;
      if (ack !== 0) this.stats.ctrlErrors++;
      const w = q.scatter(chain, new Uint8Array([ack]));
      if (isVirtqError(w)) return this.fail(w.message);
      const r = q.push(chain.head, 1);
      if (isVirtqError(r)) return this.fail(r.message);
      done++;
    }
    // EVENT_IDX: the next command must be kicked too (Linux busy-waits on the answer).
    const n = q.setNotify(true);
    if (isVirtqError(n)) return this.fail(n.message);
    if (done > 0) this.completed(q);
  }

  /**
   * One packet: header, then the frame; a malformed packet is dropped and counted, as NICs do.
   * Returns how many frames went to the wire.
   */
  private transmitChain(q: SplitVirtqueue, chain: Chain): number | VirtqError {
    const hdrLen = this.hdrLen;
    if (chain.readableLength < hdrLen + MIN_FRAME || chain.readableLength > hdrLen + MAX_FRAME) {
      this.stats.txErrors++;
      return 0;
    }
    const head = q.gather(chain, hdrLen);
    if (isVirtqError(head)) return head;
    const hv = new DataView(head.buffer, head.byteOffset, hdrLen);
    const flags = hv.getUint8(0);
    const gsoType = hv.getUint8(1);
    const gsoSize = hv.getUint16(4, true);
    const csumStart = hv.getUint16(6, true);
    const csumOffset = hv.getUint16(8, true);
    if (gsoType === VIRTIO_NET_HDR_GSO_NONE && chain.readableLength - hdrLen > ETH_MAX_FRAME) {
      // A plain frame longer than Ethernet carries: a NIC refuses it (virtio allows 64 KiB chains,
      // and such a frame would otherwise travel the switch to a neighbour that cannot take it).
      this.stats.txDropOversize++;
      if (this.dbg.on) this.dbg.debug(`drop (txDropOversize)`);
      return 0;
    }
    // A TSO packet is gathered into memory the port lends when it can (a link's pool): no 64 KiB
    // buffer of its own per packet; the loan ends unsent if the packet is dropped or cut.
    const frameLen = chain.readableLength - hdrLen;
    const lent = gsoType !== VIRTIO_NET_HDR_GSO_NONE && frameLen > SLAB_MAX_ALLOC ? (this.port?.lendTx?.(frameLen) ?? null) : null;
    let frame: Uint8Array;
    if (lent) {
      const r = q.gatherInto(chain, hdrLen, lent);
      if (r) return r;
      frame = lent;
    } else {
      const bytes = q.gather(chain);
      if (isVirtqError(bytes)) return bytes;
      frame = bytes.subarray(hdrLen);
    }
    this.ctx.telemetry.record('dma', this.id);
    if (gsoType !== VIRTIO_NET_HDR_GSO_NONE) return this.transmitGso(frame, gsoType, gsoSize, (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0);
    if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      // §5.1.6.2: checksum bytes csum_start..end and store it at csum_start + csum_offset. The
      // driver has already put the pseudo-header sum in that field, so a plain sum finishes it.
      if (!this.has(VIRTIO_NET_F_CSUM) || csumStart + csumOffset + 2 > frame.length) {
        this.stats.txErrors++;
        return 0;
      }
      const at = csumStart + csumOffset;
      const sum = internetChecksum(frame.subarray(csumStart));
      // 0 goes out as 0xFFFF (the same value in one's complement): a UDP zero means "no checksum".
      const v = sum === 0 ? 0xffff : sum;
      frame[at] = v >> 8;
      frame[at + 1] = v & 0xff;
      this.stats.txChecksumsFilled++;
    }
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    // The port counts its own drops; to the device the frame has left either way.
    this.port?.send(frame);
    return 1;
  }

  /**
   * A TSO packet (§5.1.6.2, HOST_TSO4): one TCP/IPv4 packet of up to 64 KiB with the segment size
   * in gso_size. A far end that takes GSO frames gets it whole; anything else gets it cut into
   * segments that fit the wire, each with its checksums, as a NIC's TSO engine sends them.
   * Returns how many frames went to the wire.
   */
  private transmitGso(frame: Uint8Array, gsoType: number, gsoSize: number, needsCsum: boolean): number {
    const layout = gsoType === VIRTIO_NET_HDR_GSO_TCPV4 && this.has(VIRTIO_NET_F_HOST_TSO4) ? tcpv4Layout(frame) : null;
    if (!layout) {
      // Not negotiated, not TCP/IPv4: malformed, dropped and counted.
      this.stats.txErrors++;
      return 0;
    }
    if (gsoSize < TSO_MIN_GSO_SIZE || layout.hdrLen + gsoSize > ETH_MAX_UNTAGGED) {
      // See TSO_MIN_GSO_SIZE: segments that are tiny (an amplifier) or would not fit the wire.
      this.stats.txDropGsoSize++;
      if (this.dbg.on) this.dbg.debug(`drop (txDropGsoSize)`);
      return 0;
    }
    // `frame` is already our copy (gathered out of guest memory), so it can leave as it is.
    if (this.port?.gso) {
      const whole = frame;
      // NEEDS_CSUM left the pseudo-header sum in the TCP checksum field (§5.1.6.2): a far end that
      // takes partial checksums gets it so, as Linux passes a CHECKSUM_PARTIAL skb on; anything
      // else gets it finished here.
      const partial = needsCsum && this.port.gsoChecksumPartial === true;
      if (partial) finishIpv4HeaderChecksum(whole, layout.tcpAt);
      else finishTcpv4Checksums(whole, layout);
      this.stats.txFrames++;
      this.stats.txBytes += whole.length;
      this.stats.txGsoWhole++;
      if (partial) this.stats.txGsoPartial++;
      this.port.send(whole, partial ? CHECKSUM_PARTIAL : undefined);
      return 1;
    }
    const pieces = segmentTcpv4(frame, layout, gsoSize);
    for (const piece of pieces) {
      this.stats.txFrames++;
      this.stats.txBytes += piece.length;
      this.stats.txGsoSegments++;
      this.port?.send(piece);
    }
    return pieces.length;
  }

  private accepts(frame: Uint8Array): boolean {
    return this.filter.accepts(frame, this.config.subarray(0, 6));
  }

  /**
   * A frame from the wire into the guest's receive buffers (§5.1.6.3, §5.1.6.4). `partial`: its
   * TCP checksum is unfinished (RxInfo.checksumPartial), which only a guest with GUEST_CSUM is
   * offered.
   */
  private receive(frame: Uint8Array, partial = false): boolean | 'busy' | 'copied' {
    if (this.state !== 'running') return false;
    const q = this.queues[VIRTIO_NET_RX_QUEUE]!;
    if (!this.driverOk || !q.ready || !this.pci.busMaster) {
      this.stats.rxDropNotReady++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropNotReady)`);
      return false;
    }
    if (frame.length < MIN_FRAME) {
      // A runt without even an Ethernet header: nothing a NIC passes up.
      this.stats.rxDropRunt++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropRunt)`);
      return false;
    }
    if (!this.accepts(frame)) {
      // Not for us: ignored, as a NIC ignores it; not a drop on the link.
      this.stats.rxDropFiltered++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropFiltered)`);
      return true;
    }
    const hdrLen = this.hdrLen;
    const mergeable = this.has(VIRTIO_NET_F_MRG_RXBUF);
    // Header then frame, as one byte stream laid across the buffers (written straight from the
    // frame, no staging copy). flags 0: we have not verified the frame's checksums and it has none
    // left to fill in; gso_type NONE.
    const header = new Uint8Array(hdrLen);
    let gsoFrame = false;
    const layout = partial || frame.length > ETH_MAX_FRAME ? tcpv4Layout(frame) : null;
    if (partial && layout) {
      if (this.has(VIRTIO_NET_F_GUEST_CSUM)) {
        // §5.1.6.4 NEEDS_CSUM: the guest finishes (or trusts) the sum from csum_start, as the
        // pseudo-header sum in the field expects.
        header[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        header[6] = layout.tcpAt & 0xff;
        header[7] = layout.tcpAt >> 8;
        header[8] = TCP_CHECKSUM_OFFSET;
      } else {
        // Offered only with GUEST_CSUM; a guest that reset since gets finished frames.
        finishTcpv4Checksums(frame, layout);
      }
    }
    if (frame.length > ETH_MAX_FRAME) {
      // Larger than Ethernet allows: only a TCP/IPv4 GSO segment for a guest that took GUEST_TSO4.
      if (!layout || !this.guestTakesGso) {
        this.stats.rxDropTooBig++;
        if (this.dbg.on) this.dbg.debug(`drop (rxDropTooBig)`);
        return false;
      }
      // §5.1.6.4: gso_type TCPV4, hdr_len the headers' length, gso_size the segment size the
      // packet would have been cut to; its checksums are complete (DATA_VALID, with GUEST_CSUM)
      // or left to the guest (NEEDS_CSUM above).
      if (!partial) header[0] = VIRTIO_NET_HDR_F_DATA_VALID;
      header[1] = VIRTIO_NET_HDR_GSO_TCPV4;
      // The segment size: what a 1500-byte MTU leaves after these IPv4 and TCP headers.
      const size = 1500 - (layout.hdrLen - 14);
      header[2] = layout.hdrLen & 0xff;
      header[3] = layout.hdrLen >> 8;
      header[4] = size & 0xff;
      header[5] = size >> 8;
      gsoFrame = true;
    }
    const total = hdrLen + frame.length;
    const chains: { chain: Chain; len: number }[] = [];
    let largest = 0;
    let off = 0;
    while (off < total) {
      const chain = q.pop();
      if (isVirtqError(chain)) {
        this.fail(chain.message);
        return false;
      }
      if (chain === null) {
        // Out of buffers: give back what we took. A port that holds keeps the frame until the
        // driver posts buffers (QEMU's can_receive); ask for that kick, which we otherwise suppress.
        q.unpop(chains.length);
        if (chains.length >= q.size || (largest > 0 && total > q.size * largest)) {
          // Even a full ring of buffers like these could not hold it: holding it would wedge the
          // link for good (every frame behind it waits). Refused and counted, as a giant.
          this.stats.rxDropTooBig++;
          if (this.dbg.on) this.dbg.debug(`drop (rxDropTooBig)`);
          this.refreshRxNotify();
          return false;
        }
        if (this.port?.holds) {
          const r = q.setNotify(true);
          if (isVirtqError(r)) {
            this.fail(r.message);
            return false;
          }
          this.rxWaiting = true;
          this.stats.rxHeldNoBuffer++;
          return 'busy';
        }
        this.stats.rxDropNoBuffer++;
        if (this.dbg.on) this.dbg.debug(`drop (rxDropNoBuffer)`);
        return false;
      }
      const room = chain.writableLength;
      if (!mergeable && room < total) {
        // Without MRG_RXBUF one buffer must hold the whole packet (§5.1.6.3.1). Drop the frame and
        // leave the buffer posted for a smaller one.
        q.unpop(chains.length + 1);
        this.stats.rxDropTooBig++;
        if (this.dbg.on) this.dbg.debug(`drop (rxDropTooBig)`);
        return false;
      }
      if (room === 0) {
        this.fail(`receive buffer (head ${chain.head}) has no device-writable space`);
        return false;
      }
      largest = Math.max(largest, room);
      const len = Math.min(room, total - off);
      chains.push({ chain, len });
      off += len;
    }
    if (mergeable) {
      // num_buffers: how many used entries this packet spans.
      header[10] = chains.length & 0xff;
      header[11] = chains.length >> 8;
      if (chains.length > 1) this.stats.rxBuffersMerged += chains.length - 1;
    }
    off = 0;
    for (const { chain, len } of chains) {
      // This buffer's share of the stream: part of the header (first buffer only), then frame bytes.
      const parts: Uint8Array[] = [];
      if (off < hdrLen) parts.push(header.subarray(off, Math.min(hdrLen, off + len)));
      const from = Math.max(0, off - hdrLen);
      const to = off + len - hdrLen;
      if (to > from) parts.push(frame.subarray(from, to));
      const w = q.scatter(chain, parts);
      if (isVirtqError(w)) {
        this.fail(w.message);
        return false;
      }
      const r = q.push(chain.head, len);
      if (isVirtqError(r)) {
        this.fail(r.message);
        return false;
      }
      off += len;
    }
    if (gsoFrame) this.stats.rxGsoFrames++;
    if (header[0] === VIRTIO_NET_HDR_F_NEEDS_CSUM) this.stats.rxPartialChecksums++;
    this.ctx.telemetry.record('dma', this.id);
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    this.refreshRxNotify();
    this.completed(q);
    // The frame is in the guest's buffers now; nothing here refers to it (a lent one may be reused).
    return this.state === 'running' ? 'copied' : false;
  }

  /**
   * With EVENT_IDX, "no kicks" is an avail_event just behind the device (setNotify): it has to
   * follow the device as it takes buffers, or the driver's index comes round to it every 65536.
   */
  private refreshRxNotify(): void {
    if (this.rxWaiting || !this.has(VIRTIO_RING_F_EVENT_IDX)) return;
    const r = this.queues[VIRTIO_NET_RX_QUEUE]!.setNotify(false);
    if (isVirtqError(r)) this.fail(r.message);
  }

  /** Publish used entries and interrupt unless the driver asked us not to (§2.7.10). */
  private completed(q: SplitVirtqueue): void {
    const want = q.publish();
    if (isVirtqError(want)) return this.fail(want.message);
    if (!want) {
      this.stats.interruptsSuppressed++;
      return;
    }
    this.raise(VIRTIO_PCI_ISR_QUEUE);
  }

  private raise(bits: number): void {
    if (this.state !== 'running') return;
    const wasPending = this.isr !== 0;
    this.isr |= bits;
    if (!wasPending) this.stats.interrupts++;
    this.pci.setIntx(true);
  }

  /** The link went up or down (a backend's carrier): config-change interrupt with STATUS. */
  setLink(up: boolean): void {
    const was = (this.config[6]! & VIRTIO_NET_S_LINK_UP) !== 0;
    if (was === up) return;
    this.config[6] = up ? this.config[6]! | VIRTIO_NET_S_LINK_UP : this.config[6]! & ~VIRTIO_NET_S_LINK_UP;
    if (this.driverOk && this.has(VIRTIO_NET_F_STATUS)) this.raise(VIRTIO_PCI_ISR_CONFIG);
  }
}

export function createVirtioNet(ctx: DeviceContext, cfg: DeviceConfig): VirtioNet | { error: string } {
  if (!ctx.pci) return { error: 'a virtio-net NIC is a PCI device: add <device class="PCI" id="pci0"/> before it and <bus>pci0</bus> to it' };
  if (!cfg.mac) return { error: `virtio-net "${cfg.id}" has no MAC` };
  const slot = ctx.pci.freeSlot();
  if (slot === null) return { error: 'no free PCI slot (32 slots, one taken by the host bridge)' };
  const dev = new VirtioNet(ctx, cfg.id, cfg.mac);
  ctx.pci.add(dev.pci, slot);
  return dev;
}

/** Largest frame Ethernet carries: 1500-byte payload with an 802.1Q tag, no FCS. */
const ETH_MAX_FRAME = 1518;
/** The same without a tag: what one TSO segment (untagged TCP/IPv4, tcpv4Layout) may fill. */
const ETH_MAX_UNTAGGED = 1514;

/** The legacy virtio-pci header's register names (virtio 1.0 §4.1.4.8), then the net config space. */
function virtioRegName(off: number): string {
  const names: Record<number, string> = {
    [VIRTIO_PCI_HOST_FEATURES]: 'HOST_FEATURES', [VIRTIO_PCI_GUEST_FEATURES]: 'GUEST_FEATURES', [VIRTIO_PCI_QUEUE_PFN]: 'QUEUE_PFN',
    [VIRTIO_PCI_QUEUE_NUM]: 'QUEUE_NUM', [VIRTIO_PCI_QUEUE_SEL]: 'QUEUE_SEL', [VIRTIO_PCI_QUEUE_NOTIFY]: 'QUEUE_NOTIFY',
    [VIRTIO_PCI_STATUS]: 'STATUS', [VIRTIO_PCI_ISR]: 'ISR',
  };
  const n = names[off];
  if (n) return n;
  if (off >= VIRTIO_PCI_CONFIG && off < VIRTIO_PCI_CONFIG + 6) return `config.mac[${off - VIRTIO_PCI_CONFIG}]`;
  if (off >= VIRTIO_PCI_CONFIG + 6 && off < VIRTIO_PCI_CONFIG + 8) return `config.status${off > VIRTIO_PCI_CONFIG + 6 ? '+1' : ''}`;
  return `0x${off.toString(16).padStart(2, '0')}`;
}
