import type { GuestDriver, GuestKernel, BoundDriver } from '../kernel.js';
import type { PciDeviceInfo } from '../pci.js';
import type { GuestHardware } from '../hardware.js';
import type { DmaRegion } from '../dma.js';
import { NetDriverPort } from '../net-driver.js';
import { MAX_FRAME, type RxInfo } from '../../../net/frame-port.js';
import { allocBytes, SLAB_MAX_ALLOC, startsAt } from '../../../net/byte-slab.js';

/**
 * A virtio-net driver over the legacy virtio-pci transport, shaped like Linux's virtio_net on
 * virtio_pci_legacy: reset, ACKNOWLEDGE, DRIVER, feature negotiation, one legacy ring per queue
 * (the device fixes its size; we hand over a page frame number), receive buffers posted before
 * DRIVER_OK. Transmit completions are reaped on the next transmit with their interrupts
 * suppressed (as virtio_net's start_xmit does); receive completions arrive by interrupt.
 * With VIRTIO_RING_F_EVENT_IDX it notifies the device only when the device's avail_event says so
 * (vring_need_event, as Linux's virtqueue_kick_prepare), so the built-in tests exercise the rule
 * a device model must keep for Linux. With CTRL_VQ + CTRL_RX it programs the receive filter over
 * the control queue (promiscuous, all-multicast), waiting for the answer as virtnet_send_command.
 * Everything here comes from the virtio spec; the driver knows nothing of the device model.
 */
const VIRTIO_PCI_HOST_FEATURES = 0x00;
const VIRTIO_PCI_GUEST_FEATURES = 0x04;
const VIRTIO_PCI_QUEUE_PFN = 0x08;
const VIRTIO_PCI_QUEUE_NUM = 0x0c;
const VIRTIO_PCI_QUEUE_SEL = 0x0e;
const VIRTIO_PCI_QUEUE_NOTIFY = 0x10;
const VIRTIO_PCI_STATUS = 0x12;
const VIRTIO_PCI_ISR = 0x13;
const VIRTIO_PCI_CONFIG = 0x14; // no MSI-X
const VIRTIO_PCI_QUEUE_ADDR_SHIFT = 12;
const VIRTIO_PCI_VRING_ALIGN = 4096;

const S_ACKNOWLEDGE = 1;
const S_DRIVER = 2;
const S_DRIVER_OK = 4;
const S_FAILED = 0x80;

const ISR_QUEUE = 1;
const ISR_CONFIG = 2;

const F_CSUM = 0;
const F_GUEST_CSUM = 1;
const F_MAC = 5;
const F_GUEST_TSO4 = 7;
const F_HOST_TSO4 = 11;
const HDR_F_NEEDS_CSUM = 1;
const HDR_F_DATA_VALID = 2;
/**
 * What the driver tells the stack of a frame, by [lent][DATA_VALID][NEEDS_CSUM] (shared objects:
 * receivers only read them). DATA_VALID: the device vouched for the checksum; NEEDS_CSUM: a sender
 * in the host left its TCP checksum partial (Linux: CHECKSUM_PARTIAL); lent: a large frame handed
 * over in the receive buffers themselves (or the driver's one assembly buffer), reused after the call.
 */
const RX_INFO: (RxInfo | undefined)[] = [undefined, { checksumPartial: true }, { checksumValid: true }, { checksumValid: true, checksumPartial: true }, { lent: true }, { lent: true, checksumPartial: true }, { lent: true, checksumValid: true }, { lent: true, checksumValid: true, checksumPartial: true }].map((i) => (i ? Object.freeze(i) : undefined));
const HDR_GSO_TCPV4 = 1;
/** Transmit buffers for TSO packets (64 KiB each): few, since each carries ~44 segments. */
const LARGE_TX_BUFFERS = 16;
const LARGE_TX_PACKET = 65536;
const F_MRG_RXBUF = 15;
const F_STATUS = 16;
const F_CTRL_VQ = 17;
const F_CTRL_RX = 18;
const F_EVENT_IDX = 29;
const NET_S_LINK_UP = 1;

const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const AVAIL_F_NO_INTERRUPT = 1;
const USED_F_NO_NOTIFY = 1;

const RX_QUEUE = 0;
const TX_QUEUE = 1;
const CTRL_QUEUE = 2;
/** virtio_net_ctrl classes and commands (§5.1.6.5), and the ack. */
const CTRL_RX = 0;
const CTRL_RX_PROMISC = 0;
const CTRL_RX_ALLMULTI = 1;
const CTRL_OK = 0;
/**
 * How many times we look at the control queue's used ring for the answer. The device answers
 * within the notify on every implementation we know; a device that does not is broken, and the
 * bound keeps the guest from spinning forever where Linux would (virtnet_send_command).
 */
const CTRL_POLLS = 1000;
/** Largest frame we send or expect in one buffer: Ethernet with a VLAN tag, no FCS. */
const MAX_PACKET = 1518;
/** Receive buffers with MRG_RXBUF: a frame larger than one spans several (num_buffers). */
const MRG_RX_BUF = 2048;

const bit = (n: number): number => (1 << n) >>> 0;

/** The driver's side of one legacy split ring in DMA memory (vring_init's layout). */
class DriverRing {
  readonly size: number;
  private readonly dv: DataView;
  private readonly availOff: number;
  private readonly usedOff: number;
  /** Free-running 16-bit indices: ours for avail, how far we have read used. */
  private availIdx = 0;
  /** avail.idx when we last decided whether to notify (vring_need_event's old index). */
  private kickedIdx = 0;
  lastUsed = 0;

  constructor(
    readonly region: DmaRegion,
    size: number,
  ) {
    this.size = size;
    this.dv = new DataView(region.bytes.buffer, region.bytes.byteOffset, region.bytes.byteLength);
    this.availOff = 16 * size;
    this.usedOff = align(this.availOff + 6 + 2 * size, VIRTIO_PCI_VRING_ALIGN);
  }

  static bytes(size: number): number {
    const used = align(16 * size + 6 + 2 * size, VIRTIO_PCI_VRING_ALIGN);
    return align(used + 6 + 8 * size, VIRTIO_PCI_VRING_ALIGN);
  }

  setDesc(i: number, addr: number, len: number, flags: number, next = 0): void {
    const at = 16 * i;
    this.dv.setUint32(at, addr >>> 0, true);
    this.dv.setUint32(at + 4, Math.floor(addr / 2 ** 32), true);
    this.dv.setUint32(at + 8, len, true);
    this.dv.setUint16(at + 12, flags, true);
    this.dv.setUint16(at + 14, next, true);
  }

  /** Put a chain head in the available ring; visible to the device after `publish`. */
  add(head: number): void {
    this.dv.setUint16(this.availOff + 4 + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  publish(): void {
    this.dv.setUint16(this.availOff + 2, this.availIdx, true);
  }

  setAvailFlags(flags: number): void {
    this.dv.setUint16(this.availOff, flags, true);
  }

  /**
   * Whether the device wants a notify for what was added since the last call: with EVENT_IDX when
   * the new entries reach avail_event (the last word of the used ring, vring_need_event: the
   * 16-bit distance from avail_event to the new index is within what was added), otherwise unless
   * the device set VRING_USED_F_NO_NOTIFY.
   */
  kickNeeded(eventIdx: boolean): boolean {
    const old = this.kickedIdx;
    const now = this.availIdx;
    this.kickedIdx = now;
    if (!eventIdx) return (this.dv.getUint16(this.usedOff, true) & USED_F_NO_NOTIFY) === 0;
    const event = this.dv.getUint16(this.usedOff + 4 + 8 * this.size, true);
    return ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);
  }

  /** EVENT_IDX: interrupt when the device's used index passes `idx` (used_event, after avail.ring). */
  setUsedEvent(idx: number): void {
    this.dv.setUint16(this.availOff + 4 + 2 * this.size, idx & 0xffff, true);
  }

  /** Used entries not yet read; null when the device's index is impossible. */
  usedPending(): number | null {
    const n = (this.dv.getUint16(this.usedOff + 2, true) - this.lastUsed) & 0xffff;
    return n > this.size ? null : n;
  }

  /** The next used entry (call only when usedPending() > 0). */
  nextUsed(): { id: number; len: number } {
    const at = this.usedOff + 4 + 8 * (this.lastUsed % this.size);
    this.lastUsed = (this.lastUsed + 1) & 0xffff;
    return { id: this.dv.getUint32(at, true), len: this.dv.getUint32(at + 4, true) };
  }
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export class VirtioNetPort extends NetDriverPort {
  mac: Uint8Array = new Uint8Array(6);
  private features: number;
  /** TSO: large transmit buffers, the free ones, and which descriptor holds which (−1: none). */
  private largeTx: DmaRegion | null = null;
  private largeFree: number[] = [];
  private largeOf: Int16Array = new Int16Array(0);
  private readonly hdrLen: number;
  private rx!: DriverRing;
  private tx!: DriverRing;
  /** The control queue and its one command buffer (header, data, ack), when CTRL_VQ was agreed. */
  private ctrl: DriverRing | null = null;
  private ctrlBuf: DmaRegion | null = null;
  private rxBufSize = 0;
  /** Where a large frame whose buffers are not back to back is gathered (lent to the stack per call). */
  private assembly: Uint8Array | null = null;
  private rxBufs!: DmaRegion;
  private txBufs!: DmaRegion;
  private txBufSize = 0;
  /** Transmit descriptors not in flight (one descriptor and one buffer per packet). */
  private txFree: number[] = [];
  /** The transmit descriptor whose buffer is lent (lendTx), or -1; it is out of txFree meanwhile. */
  private loanIndex = -1;
  /** The large transmit buffer lent, or -1; out of largeFree meanwhile. */
  private loanSlot = -1;
  readonly driverStats = { interrupts: 0, configChanges: 0, rxErrors: 0, txErrors: 0, txRingFull: 0, txLarge: 0, txInPlace: 0, rxLent: 0, rxInPlace: 0, kicks: 0, kicksSuppressed: 0, ctrlCommands: 0, ctrlErrors: 0 };

  constructor(
    name: string,
    private readonly hw: GuestHardware,
    private readonly io: number,
    hostFeatures: number,
  ) {
    super(name);
    const wanted = bit(F_MAC) | bit(F_STATUS) | bit(F_MRG_RXBUF) | bit(F_EVENT_IDX) | bit(F_CTRL_VQ);
    let features = (hostFeatures & wanted) >>> 0;
    // The receive filter commands travel on the control queue (§5.1.3.1).
    if (features & bit(F_CTRL_VQ) && hostFeatures & bit(F_CTRL_RX)) features = (features | bit(F_CTRL_RX)) >>> 0;
    // Large receives (virtnet_probe's GUEST_TSO4): TCP segments up to 64 KiB in one packet across
    // merged buffers. They need GUEST_CSUM too (§5.1.3.1) and, for us, MRG_RXBUF to land anywhere.
    const large = bit(F_GUEST_TSO4) | bit(F_GUEST_CSUM);
    if ((hostFeatures & large) === large && features & bit(F_MRG_RXBUF)) features = (features | large) >>> 0;
    // Large sends (TSO): the device takes TCP packets up to 64 KiB and cuts them if it must. They
    // need CSUM (§5.1.3.1): the device finishes each piece's checksum.
    const tso = bit(F_HOST_TSO4) | bit(F_CSUM);
    if ((hostFeatures & tso) === tso) features = (features | tso) >>> 0;
    this.features = features;
    this.hdrLen = this.has(F_MRG_RXBUF) ? 12 : 10;
  }

  get negotiatedFeatures(): number {
    return this.features;
  }

  private has(f: number): boolean {
    return (this.features & bit(f)) !== 0;
  }

  linkUp(): boolean {
    if (!this.has(F_STATUS)) return true; // without STATUS the link is always up (§5.1.4)
    return (this.hw.inb(this.io + VIRTIO_PCI_CONFIG + 6) & NET_S_LINK_UP) !== 0;
  }

  /** virtnet_probe after feature negotiation: MAC, rings, receive buffers. Null or an error. */
  setup(kernel: GuestKernel): string | null {
    const { hw, io } = this;
    if (this.has(F_HOST_TSO4)) {
      // No memory for the large buffers: go without TSO rather than fail the device.
      this.largeTx = kernel.dma.alloc(LARGE_TX_BUFFERS * (this.hdrLen + LARGE_TX_PACKET), 64);
      if (!this.largeTx) this.features = (this.features & ~(bit(F_HOST_TSO4) | bit(F_CSUM))) >>> 0;
      else this.largeFree = Array.from({ length: LARGE_TX_BUFFERS }, (_, i) => i);
    }
    hw.outl(io + VIRTIO_PCI_GUEST_FEATURES, this.features);
    if (this.has(F_MAC)) {
      this.mac = new Uint8Array(6).map((_, i) => hw.inb(io + VIRTIO_PCI_CONFIG + i));
    } else {
      // No MAC from the device: pick a locally administered one and tell the device (legacy way).
      const t = Math.floor(kernel.hw.clock.now()) >>> 0;
      this.mac = new Uint8Array([0x02, 0x00, (t >>> 24) & 0xff, (t >>> 16) & 0xff, (t >>> 8) & 0xff, (io & 0xff) ^ t]);
      this.mac.forEach((b, i) => hw.outb(io + VIRTIO_PCI_CONFIG + i, b));
    }
    const rx = this.setupQueue(kernel, RX_QUEUE);
    if (typeof rx === 'string') return rx;
    const tx = this.setupQueue(kernel, TX_QUEUE);
    if (typeof tx === 'string') return tx;
    this.rx = rx;
    this.tx = tx;
    if (this.has(F_CTRL_VQ)) {
      const ctrl = this.setupQueue(kernel, CTRL_QUEUE);
      if (typeof ctrl === 'string') return ctrl;
      this.ctrlBuf = kernel.dma.alloc(64, 64);
      if (!this.ctrlBuf) return 'out of DMA memory for the control queue';
      this.ctrl = ctrl;
      // Answers are polled for, as Linux does (its control queue has no callback): no interrupts.
      ctrl.setAvailFlags(AVAIL_F_NO_INTERRUPT);
      ctrl.setUsedEvent(0x8000);
    }
    // With mergeable buffers the header counts as part of the first buffer's data.
    this.rxBufSize = this.has(F_MRG_RXBUF) ? MRG_RX_BUF : this.hdrLen + MAX_PACKET;
    this.txBufSize = this.hdrLen + MAX_PACKET;
    const rxBufs = kernel.dma.alloc(rx.size * this.rxBufSize, 64);
    const txBufs = kernel.dma.alloc(tx.size * this.txBufSize, 64);
    if (!rxBufs || !txBufs) return 'out of DMA memory for packet buffers';
    this.rxBufs = rxBufs;
    this.txBufs = txBufs;
    // Receive: descriptor i always describes buffer i; posting a buffer is putting i in avail.
    for (let i = 0; i < rx.size; i++) {
      rx.setDesc(i, rxBufs.phys + i * this.rxBufSize, this.rxBufSize, DESC_F_WRITE);
      rx.add(i);
    }
    rx.publish();
    this.kick(rx, RX_QUEUE);
    // Transmit completions are reaped on the next transmit: no interrupt needed for them. With
    // EVENT_IDX the flag is not looked at; used_event half the index space ahead says the same.
    tx.setAvailFlags(AVAIL_F_NO_INTERRUPT);
    tx.setUsedEvent(tx.lastUsed + 0x8000);
    this.txFree = Array.from({ length: tx.size }, (_, i) => tx.size - 1 - i);
    this.largeOf = new Int16Array(tx.size).fill(-1);
    return null;
  }

  /** The stack may hand us TCP segments up to 64 KiB: the device (HOST_TSO4) cuts them if needed. */
  override get gso(): boolean {
    return this.has(F_HOST_TSO4);
  }

  /** transmitLarge writes its own partial sum over the stack's, and the device recomputes it. */
  get gsoChecksumPartial(): boolean {
    return this.has(F_HOST_TSO4);
  }

  private setupQueue(kernel: GuestKernel, index: number): DriverRing | string {
    const { hw, io } = this;
    hw.outw(io + VIRTIO_PCI_QUEUE_SEL, index);
    const num = hw.inw(io + VIRTIO_PCI_QUEUE_NUM);
    if (num === 0) return `queue ${index} does not exist`;
    if ((num & (num - 1)) !== 0 || num > 32768) return `queue ${index} size ${num} is not a power of two`;
    if (hw.inl(io + VIRTIO_PCI_QUEUE_PFN) !== 0) return `queue ${index} is already active`;
    const region = kernel.dma.alloc(DriverRing.bytes(num), VIRTIO_PCI_VRING_ALIGN);
    if (!region) return `out of DMA memory for queue ${index} (${num} entries)`;
    hw.outl(io + VIRTIO_PCI_QUEUE_PFN, region.phys / 2 ** VIRTIO_PCI_QUEUE_ADDR_SHIFT);
    return new DriverRing(region, num);
  }

  /** Notify the device about new buffers unless it said it does not need to hear. */
  private kick(ring: DriverRing, queue: number): void {
    if (!ring.kickNeeded(this.has(F_EVENT_IDX))) {
      this.driverStats.kicksSuppressed++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: kicksSuppressed`);
      return;
    }
    this.driverStats.kicks++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: kicks`);
    this.hw.outw(this.io + VIRTIO_PCI_QUEUE_NOTIFY, queue);
  }

  /**
   * A transmit buffer for the stack to build its next frame in (after the virtio-net header's
   * place), so `transmit` posts it without a copy: small frames in the descriptor's own buffer,
   * TSO segments in a large one. The buffer stays out of the free lists until the next send or
   * loan, which ends the loan.
   */
  lendTx(length: number): Uint8Array | null {
    this.endLoan();
    this.reapTx();
    if (length <= MAX_PACKET) {
      const i = this.txFree.pop();
      if (i === undefined) return null;
      this.loanIndex = i;
      const at = i * this.txBufSize + this.hdrLen;
      return this.txBufs.bytes.subarray(at, at + length);
    }
    if (!this.largeTx || length > LARGE_TX_PACKET || this.largeFree.length === 0 || this.txFree.length === 0) return null;
    const slot = this.largeFree.pop()!;
    this.loanSlot = slot;
    const at = slot * (this.hdrLen + LARGE_TX_PACKET) + this.hdrLen;
    return this.largeTx.bytes.subarray(at, at + length);
  }

  /** A loan not sent returns its buffer to the free lists. */
  private endLoan(): void {
    if (this.loanIndex >= 0) this.txFree.push(this.loanIndex);
    if (this.loanSlot >= 0) this.largeFree.push(this.loanSlot);
    this.loanIndex = -1;
    this.loanSlot = -1;
  }

  protected transmit(frame: Uint8Array): boolean {
    if (frame.length > MAX_PACKET) return this.transmitLarge(frame);
    const lent = this.loanIndex;
    const inPlace = lent >= 0 && startsAt(frame, this.txBufs.bytes, lent * this.txBufSize + this.hdrLen);
    if (inPlace) this.loanIndex = -1;
    this.endLoan();
    if (!inPlace) this.reapTx();
    const i = inPlace ? lent : this.txFree.pop();
    if (i === undefined) {
      this.driverStats.txRingFull++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: txRingFull`);
      return false;
    }
    const off = i * this.txBufSize;
    const buf = this.txBufs.bytes;
    // virtio_net_hdr all zero: no checksum to fill in, no GSO (and num_buffers 0 on transmit).
    buf.fill(0, off, off + this.hdrLen);
    if (inPlace) this.driverStats.txInPlace++;
    else buf.set(frame, off + this.hdrLen);
    this.tx.setDesc(i, this.txBufs.phys + off, this.hdrLen + frame.length, 0);
    this.tx.add(i);
    this.tx.publish();
    this.kick(this.tx, TX_QUEUE);
    return true;
  }

  /**
   * A TCP/IPv4 packet beyond the MTU, as virtio_net's start_xmit sends a GSO skb: header with
   * NEEDS_CSUM (csum_start at the TCP header, offset 16, the field holding the pseudo-header sum
   * without length, as Linux leaves it), gso_type TCPV4 and gso_size the MTU's segment size.
   */
  private transmitLarge(frame: Uint8Array): boolean {
    const ihl = (frame[14]! & 0x0f) * 4;
    const tcpAt = 14 + ihl;
    const isTcp4 = frame.length <= LARGE_TX_PACKET && frame[12] === 0x08 && frame[13] === 0x00 && frame[14]! >> 4 === 4 && frame[23] === 6 && frame.length >= tcpAt + 20;
    if (!this.largeTx || !isTcp4) {
      this.driverStats.txErrors++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: txErrors`);
      return false;
    }
    const lent = this.loanSlot;
    const inPlace = lent >= 0 && this.largeTx !== null && startsAt(frame, this.largeTx.bytes, lent * (this.hdrLen + LARGE_TX_PACKET) + this.hdrLen);
    if (inPlace) this.loanSlot = -1;
    this.endLoan();
    this.reapTx();
    const i = this.txFree.length > 0 && (inPlace || this.largeFree.length > 0) ? this.txFree.pop()! : undefined;
    if (i === undefined) {
      if (inPlace) this.largeFree.push(lent);
      this.driverStats.txRingFull++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: txRingFull`);
      return false;
    }
    const slot = inPlace ? lent : this.largeFree.pop()!;
    this.largeOf[i] = slot;
    const hdrLen = 14 + ihl + (frame[tcpAt + 12]! >> 4) * 4;
    const off = slot * (this.hdrLen + LARGE_TX_PACKET);
    const buf = this.largeTx.bytes;
    const dv = new DataView(buf.buffer, buf.byteOffset + off, this.hdrLen);
    buf.fill(0, off, off + this.hdrLen);
    dv.setUint8(0, HDR_F_NEEDS_CSUM);
    dv.setUint8(1, HDR_GSO_TCPV4);
    dv.setUint16(2, hdrLen, true);
    dv.setUint16(4, 1500 - (hdrLen - 14), true);
    dv.setUint16(6, tcpAt, true);
    dv.setUint16(8, 16, true);
    const at = off + this.hdrLen;
    if (inPlace) this.driverStats.txInPlace++;
    else buf.set(frame, at);
    let pseudo = 6;
    for (let k = 26; k < 34; k += 2) pseudo += (frame[k]! << 8) | frame[k + 1]!;
    while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >>> 16);
    buf[at + tcpAt + 16] = pseudo >> 8;
    buf[at + tcpAt + 17] = pseudo & 0xff;
    this.tx.setDesc(i, this.largeTx.phys + off, this.hdrLen + frame.length, 0);
    this.tx.add(i);
    this.tx.publish();
    this.kick(this.tx, TX_QUEUE);
    this.driverStats.txLarge++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: txLarge`);
    return true;
  }

  private reapTx(): void {
    const n = this.tx.usedPending();
    if (n === null) {
      this.driverStats.txErrors++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: txErrors`);
      return;
    }
    // Keep used_event out of the device's reach: it can use at most a ring's worth before we look.
    if (n > 0) this.tx.setUsedEvent(this.tx.lastUsed + n + 0x8000);
    for (let k = 0; k < n; k++) {
      const { id } = this.tx.nextUsed();
      if (id < this.tx.size && !this.txFree.includes(id)) {
        this.txFree.push(id);
        const slot = this.largeOf[id]!;
        if (slot >= 0) {
          this.largeFree.push(slot);
          this.largeOf[id] = -1;
        }
      }
    }
  }

  /** Receive every frame whatever its destination (IFF_PROMISC); false when the device refused. */
  setPromiscuous(on: boolean): boolean {
    return this.ctrlCommand(CTRL_RX, CTRL_RX_PROMISC, new Uint8Array([on ? 1 : 0]));
  }

  /** Receive every multicast frame (IFF_ALLMULTI); false when the device refused. */
  setAllMulticast(on: boolean): boolean {
    return this.ctrlCommand(CTRL_RX, CTRL_RX_ALLMULTI, new Uint8Array([on ? 1 : 0]));
  }

  /**
   * One control-queue command, as virtnet_send_command: header, data and ack byte in one chain,
   * kick (if the device asks for it), then wait for the device to use the chain and read the ack.
   */
  private ctrlCommand(cls: number, cmd: number, data: Uint8Array): boolean {
    const ring = this.ctrl;
    const buf = this.ctrlBuf;
    if (!ring || !buf || !this.has(F_CTRL_RX) || data.length > 8) return false;
    this.driverStats.ctrlCommands++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: ctrlCommands`);
    const b = buf.bytes;
    b[0] = cls;
    b[1] = cmd;
    b.set(data, 8);
    b[16] = 0xff; // not an ack value: tells "never answered" from an answer
    ring.setDesc(0, buf.phys, 2, DESC_F_NEXT, 1);
    ring.setDesc(1, buf.phys + 8, data.length, DESC_F_NEXT, 2);
    ring.setDesc(2, buf.phys + 16, 1, DESC_F_WRITE);
    ring.add(0);
    ring.publish();
    this.kick(ring, CTRL_QUEUE);
    for (let i = 0; i < CTRL_POLLS; i++) {
      const n = ring.usedPending();
      if (n === null) break;
      if (n > 0) {
        for (let k = 0; k < n; k++) ring.nextUsed();
        ring.setUsedEvent(ring.lastUsed + 0x8000);
        if (b[16] === CTRL_OK) return true;
        break;
      }
    }
    this.driverStats.ctrlErrors++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: ctrlErrors`);
    return false;
  }

  handleInterrupt(): void {
    // Reading ISR acknowledges the interrupt and lowers the line.
    const isr = this.hw.inb(this.io + VIRTIO_PCI_ISR);
    if (isr === 0) return; // shared line, not ours
    this.driverStats.interrupts++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: interrupt, ISR 0x${isr.toString(16)}`);
    if (isr & ISR_CONFIG) this.driverStats.configChanges++;
    if (isr & ISR_QUEUE) {
      this.reapTx();
      this.receive();
    }
  }

  /**
   * Harvest receive buffers; with EVENT_IDX then ask for an interrupt at the next used entry and
   * look once more (virtqueue_enable_cb + more_used), so nothing the device used meanwhile waits.
   */
  private receive(): void {
    for (let round = 0; round < 4; round++) {
      this.receiveUsed();
      if (!this.has(F_EVENT_IDX)) return;
      this.rx.setUsedEvent(this.rx.lastUsed);
      if (this.rx.usedPending() === 0) return;
    }
  }

  /** The parts (views into the receive buffers) as one view when each starts where the last ended. */
  private inPlace(parts: Uint8Array[], total: number): Uint8Array | null {
    const first = parts[0]!;
    let end = first.byteOffset + first.length;
    for (let k = 1; k < parts.length; k++) {
      if (parts[k]!.byteOffset !== end) return null;
      end += parts[k]!.length;
    }
    this.driverStats.rxInPlace++;
    return new Uint8Array(first.buffer, first.byteOffset, total);
  }

  private gather(parts: Uint8Array[], total: number, into: Uint8Array): Uint8Array {
    let o = 0;
    for (const p of parts) {
      into.set(p, o);
      o += p.length;
    }
    return into.length === total ? into : into.subarray(0, total);
  }

  /** Take every used receive buffer, deliver the frames, and post the buffers again. */
  private receiveUsed(): void {
    const rx = this.rx;
    const pending = rx.usedPending();
    if (pending === null) {
      this.driverStats.rxErrors++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: rxErrors`);
      return;
    }
    const bufs = this.rxBufs.bytes;
    let left = pending;
    const repost: number[] = [];
    const take = (): { id: number; len: number } | null => {
      if (left === 0) return null;
      left--;
      const e = rx.nextUsed();
      if (e.id >= rx.size || e.len > this.rxBufSize) return null;
      repost.push(e.id);
      return e;
    };
    while (left > 0) {
      const first = take();
      if (!first) {
        this.driverStats.rxErrors++;
        if (this.dbg.on) this.dbg.debug(`${this.name}: rxErrors`);
        continue;
      }
      const base = first.id * this.rxBufSize;
      if (first.len < this.hdrLen) {
        this.driverStats.rxErrors++;
        if (this.dbg.on) this.dbg.debug(`${this.name}: rxErrors`);
        continue;
      }
      const numBuffers = this.has(F_MRG_RXBUF) ? bufs[base + 10]! | (bufs[base + 11]! << 8) : 1;
      // DATA_VALID (§5.1.6.4, with GUEST_CSUM): the device vouches for the checksum, and the stack
      // skips summing the payload again, as virtio_net marks the skb CHECKSUM_UNNECESSARY.
      const checksumValid = this.has(F_GUEST_CSUM) && (bufs[base]! & HDR_F_DATA_VALID) !== 0;
      // NEEDS_CSUM (§5.1.6.4): the sum from csum_start is ours to finish, which a receiver that
      // trusts the host need not do; the stack takes it as vouched, as Linux takes CHECKSUM_PARTIAL.
      const checksumPartial = this.has(F_GUEST_CSUM) && (bufs[base]! & HDR_F_NEEDS_CSUM) !== 0;
      const parts = [bufs.subarray(base + this.hdrLen, base + first.len)];
      let ok = numBuffers >= 1;
      for (let k = 1; ok && k < numBuffers; k++) {
        const e = take();
        if (!e) ok = false;
        else parts.push(bufs.subarray(e.id * this.rxBufSize, e.id * this.rxBufSize + e.len));
      }
      const total = parts.reduce((s, p) => s + p.length, 0);
      if (!ok || total < 14) {
        this.driverStats.rxErrors++;
        if (this.dbg.on) this.dbg.debug(`${this.name}: rxErrors`);
        continue;
      }
      // A large (GSO) frame is lent to the stack for the call, as Linux hands up an skb over the
      // receive pages: where its buffers lie back to back it is read where the device wrote it,
      // otherwise gathered into the driver's one assembly buffer. Either way no 64 KiB is
      // allocated per frame, and the buffers are posted again only after the loop.
      const lent = total > SLAB_MAX_ALLOC;
      const frame = lent ? (this.inPlace(parts, total) ?? this.gather(parts, total, this.assembly ??= new Uint8Array(MAX_FRAME))) : this.gather(parts, total, allocBytes(total));
      if (lent) this.driverStats.rxLent++;
      this.deliver(frame, RX_INFO[(lent ? 4 : 0) | (checksumValid ? 2 : 0) | (checksumPartial ? 1 : 0)]);
    }
    for (const id of repost) rx.add(id);
    if (repost.length > 0) {
      rx.publish();
      this.kick(rx, RX_QUEUE);
    }
  }
}

export const virtioNetDriver: GuestDriver = {
  name: 'virtio_net',
  // Legacy virtio devices are 1af4:1000–103f; the subsystem id says which kind (1 = network).
  matches: (d: PciDeviceInfo) => d.vendorId === 0x1af4 && d.deviceId === 0x1000 && d.subsystemId === 1,
  attach(kernel: GuestKernel, dev: PciDeviceInfo): BoundDriver | { error: string } {
    const bar = dev.bars[0];
    if (!bar || bar.kind !== 'io') return { error: 'BAR0 is not an I/O BAR' };
    const dbg = kernel.debug('virtio_net');
    if (dbg.on) dbg.debug(`probe 00:${dev.slot.toString(16).padStart(2, '0')}.${dev.fn} [${dev.vendorId.toString(16).padStart(4, '0')}:${dev.deviceId.toString(16).padStart(4, '0')}] BAR0 ${bar.kind} 0x${bar.base.toString(16)} IRQ ${dev.irq ?? 'none'}`);
    kernel.pciAccess.enable(dev);
    const hw = kernel.hw;
    const io = bar.base;
    hw.outb(io + VIRTIO_PCI_STATUS, 0);
    hw.outb(io + VIRTIO_PCI_STATUS, S_ACKNOWLEDGE);
    hw.outb(io + VIRTIO_PCI_STATUS, S_ACKNOWLEDGE | S_DRIVER);
    const port = new VirtioNetPort('eth?', hw, io, hw.inl(io + VIRTIO_PCI_HOST_FEATURES));
    port.dbg = dbg;
    const err = port.setup(kernel);
    if (err) {
      hw.outb(io + VIRTIO_PCI_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FAILED);
      return { error: err };
    }
    hw.outb(io + VIRTIO_PCI_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_DRIVER_OK);
    const name = kernel.registerNetDevice(port);
    (port as { name: string }).name = name;
    const hex = [...port.mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
    kernel.printk(`${name}: virtio-net at 0x${io.toString(16)}, ${hex}, IRQ ${dev.irq ?? 'none'}, features 0x${port.negotiatedFeatures.toString(16)}`);
    return { name: 'virtio_net', irq: dev.irq, handleInterrupt: () => port.handleInterrupt(), netdev: port } as BoundDriver & { netdev: VirtioNetPort };
  },
};
