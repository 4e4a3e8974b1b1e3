import type { GuestDriver, GuestKernel, BoundDriver } from '../kernel.js';
import type { PciDeviceInfo } from '../pci.js';
import type { GuestHardware } from '../hardware.js';
import { NetDriverPort } from '../net-driver.js';
import { allocBytes } from '../../../net/byte-slab.js';

/**
 * The NE2000 driver for PCI clones (RTL8029), written the way Linux's ne2k-pci and 8390 core
 * drive a DP8390: every byte moves through the data port with remote DMA (no host memory is
 * shared with the card), two transmit buffers at the start of the card's RAM used ping-pong, the
 * receive ring after them, and the datasheet's overflow recovery. Register offsets come from the
 * DP8390 datasheet; it knows nothing of the device model.
 */
const CR = 0x00;
const PSTART = 0x01;
const PSTOP = 0x02;
const BNRY = 0x03;
const TPSR = 0x04;
const TSR = 0x04;
const TBCR0 = 0x05;
const TBCR1 = 0x06;
const ISR = 0x07;
const RSAR0 = 0x08;
const RSAR1 = 0x09;
const RBCR0 = 0x0a;
const RBCR1 = 0x0b;
const RCR = 0x0c;
const TCR = 0x0d;
const DCR = 0x0e;
const IMR = 0x0f;
const CNTR0 = 0x0d;
const CNTR1 = 0x0e;
const CNTR2 = 0x0f;
const PAR0 = 0x01; // page 1
const CURR = 0x07; // page 1
const MAR0 = 0x08; // page 1
const DATAPORT = 0x10;
const RESET = 0x1f;

const CR_STOP = 0x01;
const CR_START = 0x02;
const CR_TRANS = 0x04;
const CR_RREAD = 0x08;
const CR_RWRITE = 0x10;
const CR_NODMA = 0x20;
const CR_PAGE0 = 0x00;
const CR_PAGE1 = 0x40;

const ISR_RX = 0x01;
const ISR_TX = 0x02;
const ISR_RX_ERR = 0x04;
const ISR_TX_ERR = 0x08;
const ISR_OVER = 0x10;
const ISR_COUNTERS = 0x20;
const ISR_RDC = 0x40;
const ISR_RESET = 0x80;
const ISR_ALL = 0x3f; // everything but RDC, which the driver polls

const RSR_RXOK = 0x01;
const TSR_ABT = 0x08;
const TSR_FU = 0x20;

/** RCR values: monitor while configuring; then broadcast plus our own address. */
const RCR_MONITOR = 0x20;
const RCR_AB = 0x04;
const RCR_AM = 0x08;
const RCR_PRO = 0x10;
/** TCR internal loopback (LB = 01): the transmitter is kept off the wire while configuring. */
const TCR_LOOPBACK = 0x02;
const TCR_NORMAL = 0x00;
/** DCR: word-wide transfers, normal operation (LS), FIFO threshold 8 bytes — ne2k-pci's 0x49. */
const DCR_WORD = 0x49;

/** Card RAM as ne2k-pci lays it out: pages 0x40–0x4B two 6-page TX buffers, 0x4C–0x7F the RX ring. */
const TX_START_PAGE = 0x40;
const TX_PAGES_PER_BUF = 6;
const RX_START_PAGE = TX_START_PAGE + 2 * TX_PAGES_PER_BUF;
const RX_STOP_PAGE = 0x80;
const MAX_TX = TX_PAGES_PER_BUF * 256;
const ETH_ZLEN = 60;
/** Frames waiting while both transmit buffers are busy (the qdisc in front of the card). */
const TX_QUEUE_LIMIT = 64;
/** Polling bounds: the chip answers at once; these only stop a dead card from hanging boot. */
const SPIN_LIMIT = 10_000;

type TxSlot = { page: number; len: number; state: 'free' | 'loaded' | 'sending' };

export class Ne2kPort extends NetDriverPort {
  mac: Uint8Array = new Uint8Array(6);
  private readonly slots: TxSlot[] = [
    { page: TX_START_PAGE, len: 0, state: 'free' },
    { page: TX_START_PAGE + TX_PAGES_PER_BUF, len: 0, state: 'free' },
  ];
  private readonly txQueue: Uint8Array[] = [];
  private rcr = RCR_AB;
  private readonly mcFilter = new Uint8Array(8);
  readonly driverStats = {
    interrupts: 0,
    rxErrors: 0,
    /** Headers whose length is not an Ethernet frame's (Linux: rx_length_errors). */
    rxLengthErrors: 0,
    /** Headers whose next-page pointer disagrees with their length: the ring was skipped to CURR. */
    rxBadHeaders: 0,
    rxOverruns: 0,
    rxMissed: 0,
    rxFrameErrors: 0,
    rxCrcErrors: 0,
    txErrors: 0,
    txQueueDrops: 0,
    txResends: 0,
    ringResets: 0,
    dmaTimeouts: 0,
  };

  constructor(
    name: string,
    private readonly hw: GuestHardware,
    private readonly io: number,
  ) {
    super(name);
  }

  /** The NE2000 has no link status register; ne2k-pci reports carrier on. */
  linkUp(): boolean {
    return true;
  }

  /** ne2k_pci_init_one: is there an 8390, reset it, read the station PROM. Null or why not. */
  probe(): string | null {
    const { hw, io } = this;
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_STOP);
    const reg0 = hw.inb(io + CR);
    if (reg0 === 0xff) return 'nothing answers at the I/O BAR';
    // An 8390 clears its tally counters when they are read: a second read must give 0.
    hw.outb(io + CR, CR_NODMA | CR_PAGE1 | CR_STOP);
    const regd = hw.inb(io + 0x0d);
    hw.outb(io + 0x0d, 0xff);
    hw.outb(io + CR, CR_NODMA | CR_PAGE0);
    hw.inb(io + CNTR0);
    if (hw.inb(io + CNTR0) !== 0) {
      hw.outb(io + CR, reg0);
      hw.outb(io + 0x0d, regd);
      return 'not an 8390 (tally counter does not clear on read)';
    }
    if (!this.resetChip()) return 'the 8390 did not signal reset (ISR.RST)';

    // Read the station address PROM: the 8390 must be set up first (word mode, monitor, loopback).
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_STOP);
    hw.outb(io + DCR, DCR_WORD);
    hw.outb(io + RBCR0, 0);
    hw.outb(io + RBCR1, 0);
    hw.outb(io + IMR, 0);
    hw.outb(io + ISR, 0xff);
    hw.outb(io + RCR, RCR_MONITOR);
    hw.outb(io + TCR, TCR_LOOPBACK);
    const prom = this.remoteRead(0x0000, 32);
    // Each PROM byte is doubled; a word-mode read gives one per word.
    const sa = new Uint8Array(16).map((_, i) => prom[2 * i]!);
    if (sa[14] !== 0x57 || sa[15] !== 0x57) return `station PROM signature is ${hex(sa[14]!)} ${hex(sa[15]!)}, not 57 57`;
    this.mac = sa.slice(0, 6);
    return null;
  }

  /** ne2k_pci_reset_8390: a read of the reset port resets the chip; wait for ISR.RST. */
  private resetChip(): boolean {
    const { hw, io } = this;
    hw.outb(io + RESET, hw.inb(io + RESET));
    for (let i = 0; i < SPIN_LIMIT; i++) {
      if (hw.inb(io + ISR) & ISR_RESET) {
        hw.outb(io + ISR, 0xff);
        return true;
      }
    }
    return false;
  }

  /** NS8390_init followed by the start sequence (ei_open). */
  start(): void {
    const { hw, io } = this;
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_STOP);
    hw.outb(io + DCR, DCR_WORD);
    hw.outb(io + RBCR0, 0);
    hw.outb(io + RBCR1, 0);
    hw.outb(io + RCR, RCR_MONITOR);
    hw.outb(io + TCR, TCR_LOOPBACK);
    hw.outb(io + TPSR, TX_START_PAGE);
    hw.outb(io + PSTART, RX_START_PAGE);
    // BNRY trails the next packet to read by one page; CURR is where the chip writes next.
    hw.outb(io + BNRY, RX_STOP_PAGE - 1);
    hw.outb(io + PSTOP, RX_STOP_PAGE);
    hw.outb(io + ISR, 0xff);
    hw.outb(io + IMR, 0);
    hw.outb(io + CR, CR_NODMA | CR_PAGE1 | CR_STOP);
    for (let i = 0; i < 6; i++) hw.outb(io + PAR0 + i, this.mac[i]!);
    hw.outb(io + CURR, RX_START_PAGE);
    for (let i = 0; i < 8; i++) hw.outb(io + MAR0 + i, this.mcFilter[i]!);
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_STOP);
    for (const s of this.slots) s.state = 'free';
    // Start: unmask, run, transmitter on the wire, receiver accepting.
    hw.outb(io + ISR, 0xff);
    hw.outb(io + IMR, ISR_ALL);
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_START);
    hw.outb(io + TCR, TCR_NORMAL);
    hw.outb(io + RCR, this.rcr);
  }

  /** Accept every multicast (IFF_ALLMULTI): all MAR bits set and RCR.AM. */
  setAllMulticast(on: boolean): void {
    this.mcFilter.fill(on ? 0xff : 0);
    this.rcr = on ? this.rcr | RCR_AM : this.rcr & ~RCR_AM;
    this.writeFilters();
  }

  /** Promiscuous, as Linux's 8390 sets it: every physical address, and all multicast too. */
  setPromiscuous(on: boolean): void {
    this.rcr = on ? this.rcr | RCR_PRO | RCR_AM : this.rcr & ~RCR_PRO;
    if (on) this.mcFilter.fill(0xff);
    this.writeFilters();
  }

  private writeFilters(): void {
    const { hw, io } = this;
    hw.outb(io + CR, CR_NODMA | CR_PAGE1);
    for (let i = 0; i < 8; i++) hw.outb(io + MAR0 + i, this.mcFilter[i]!);
    hw.outb(io + CR, CR_NODMA | CR_PAGE0);
    hw.outb(io + RCR, this.rcr);
  }

  // ---------------------------------------------------------------- remote DMA

  /** ne2k_pci_block_input: `count` bytes from card address `addr` (the chip wraps the ring). */
  private remoteRead(addr: number, count: number): Uint8Array {
    const { hw, io } = this;
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_START);
    hw.outb(io + RBCR0, count & 0xff);
    hw.outb(io + RBCR1, count >> 8);
    hw.outb(io + RSAR0, addr & 0xff);
    hw.outb(io + RSAR1, addr >> 8);
    hw.outb(io + CR, CR_RREAD | CR_START);
    const out = allocBytes(count);
    // As ne2k-pci on an RTL8029 (no ONLY_16BIT_IO): 32-bit reads of the data port, then a word
    // and a byte for the tail — half the port exits of word transfers.
    const dwords = count >> 2;
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    for (let i = 0; i < dwords; i++) dv.setUint32(4 * i, hw.inl(io + DATAPORT) >>> 0, true);
    let at = dwords * 4;
    if (count & 2) {
      dv.setUint16(at, hw.inw(io + DATAPORT), true);
      at += 2;
    }
    if (count & 1) out[at] = hw.inb(io + DATAPORT);
    hw.outb(io + ISR, ISR_RDC);
    return out;
  }

  /** ne2k_pci_block_output: copy to card RAM and wait for the chip to report RDC. */
  private remoteWrite(addr: number, data: Uint8Array): boolean {
    const { hw, io } = this;
    const count = (data.length + 3) & ~3; // dword transfers move whole dwords (ne2k-pci rounds so too)
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_START);
    hw.outb(io + ISR, ISR_RDC);
    hw.outb(io + RBCR0, count & 0xff);
    hw.outb(io + RBCR1, count >> 8);
    hw.outb(io + RSAR0, addr & 0xff);
    hw.outb(io + RSAR1, addr >> 8);
    hw.outb(io + CR, CR_RWRITE | CR_START);
    for (let i = 0; i < count; i += 4) hw.outl(io + DATAPORT, (data[i]! | ((data[i + 1] ?? 0) << 8) | ((data[i + 2] ?? 0) << 16) | ((data[i + 3] ?? 0) << 24)) >>> 0);
    for (let i = 0; i < SPIN_LIMIT; i++) {
      if (hw.inb(io + ISR) & ISR_RDC) {
        hw.outb(io + ISR, ISR_RDC);
        return true;
      }
    }
    this.driverStats.dmaTimeouts++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: dmaTimeouts`);
    return false;
  }

  // ---------------------------------------------------------------- transmit

  protected transmit(frame: Uint8Array): boolean {
    if (frame.length > MAX_TX) return false;
    const free = this.slots.find((s) => s.state === 'free');
    if (!free || this.txQueue.length > 0) {
      if (this.txQueue.length >= TX_QUEUE_LIMIT) {
        this.driverStats.txQueueDrops++;
        if (this.dbg.on) this.dbg.debug(`${this.name}: txQueueDrops`);
        return false;
      }
      this.txQueue.push(frame);
      return true;
    }
    if (!this.load(free, frame)) return false;
    this.kick();
    return true;
  }

  /** Copy a frame into a transmit buffer, padded to the Ethernet minimum (the 8390 does not pad). */
  private load(slot: TxSlot, frame: Uint8Array): boolean {
    let data = frame;
    if (frame.length < ETH_ZLEN) {
      data = new Uint8Array(ETH_ZLEN);
      data.set(frame);
    }
    if (!this.remoteWrite(slot.page << 8, data)) {
      this.recover();
      return false;
    }
    slot.len = data.length;
    slot.state = 'loaded';
    return true;
  }

  /** Start the oldest loaded buffer if the transmitter is idle. */
  private kick(): void {
    if (this.slots.some((s) => s.state === 'sending')) return;
    const next = this.slots.find((s) => s.state === 'loaded');
    if (!next) return;
    const { hw, io } = this;
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_START);
    hw.outb(io + TPSR, next.page);
    hw.outb(io + TBCR0, next.len & 0xff);
    hw.outb(io + TBCR1, next.len >> 8);
    next.state = 'sending';
    hw.outb(io + CR, CR_NODMA | CR_TRANS | CR_START);
  }

  /** ei_tx_intr / ei_tx_err: the buffer on the wire is done; start the other, refill from the queue. */
  private txDone(): void {
    const tsr = this.hw.inb(this.io + TSR);
    if (tsr & (TSR_ABT | TSR_FU)) this.driverStats.txErrors++;
    const sending = this.slots.find((s) => s.state === 'sending');
    if (sending) sending.state = 'free';
    this.kick();
    this.refill();
  }

  private refill(): void {
    for (let slot = this.slots.find((s) => s.state === 'free'); slot && this.txQueue.length > 0; slot = this.slots.find((s) => s.state === 'free')) {
      if (!this.load(slot, this.txQueue.shift()!)) return;
      this.kick();
    }
  }

  // ---------------------------------------------------------------- interrupts and receive

  /** ei_interrupt: service until ISR is quiet (bounded, as Linux's MAX_SERVICE). */
  handleInterrupt(): void {
    const { hw, io } = this;
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_START);
    let serviced = 0;
    for (let raw = hw.inb(io + ISR); (raw & 0x7f) !== 0 && serviced < 12; raw = hw.inb(io + ISR), serviced++) {
      if (raw === 0xff) break; // the card is gone
      const isr = raw & 0x7f;
      this.driverStats.interrupts++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: interrupt, ISR 0x${isr.toString(16).padStart(2, '0')}`);
      if (isr & ISR_OVER) {
        this.rxOverrun();
      } else if (isr & (ISR_RX | ISR_RX_ERR)) {
        // Acknowledge first, so a packet arriving while we drain raises a new interrupt.
        hw.outb(io + ISR, ISR_RX | ISR_RX_ERR);
        if (isr & ISR_RX_ERR) this.driverStats.rxErrors++;
        this.receive();
      }
      if (isr & (ISR_TX | ISR_TX_ERR)) {
        hw.outb(io + ISR, isr & (ISR_TX | ISR_TX_ERR));
        this.txDone();
      }
      if (isr & ISR_COUNTERS) {
        this.readCounters();
        hw.outb(io + ISR, ISR_COUNTERS);
      }
      if (isr & ISR_RDC) hw.outb(io + ISR, ISR_RDC);
      hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_START);
    }
    // Like netif_rx, hand frames up after the card is serviced: replies the stack sends from
    // here must not start a transmit in the middle of the overflow recovery's loopback.
    const frames = this.received.splice(0);
    for (const f of frames) this.deliver(f);
  }

  private readonly received: Uint8Array[] = [];

  private readCounters(): void {
    const { hw, io } = this;
    this.driverStats.rxFrameErrors += hw.inb(io + CNTR0);
    this.driverStats.rxCrcErrors += hw.inb(io + CNTR1);
    this.driverStats.rxMissed += hw.inb(io + CNTR2);
  }

  /**
   * ei_receive: take packets from BNRY+1 up to CURR; each begins with the chip's 4-byte header.
   * BNRY is written as Linux's 8390 core writes it — next − 1, which is PSTART − 1 when the next
   * packet starts at PSTART — so the model's handling of that value is exercised on every wrap.
   */
  private receive(): void {
    const { hw, io } = this;
    const ringPages = RX_STOP_PAGE - RX_START_PAGE;
    for (let budget = 0; budget < ringPages; budget++) {
      hw.outb(io + CR, CR_NODMA | CR_PAGE1 | CR_START);
      const curr = hw.inb(io + CURR);
      hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_START);
      let frame = hw.inb(io + BNRY) + 1;
      if (frame >= RX_STOP_PAGE) frame = RX_START_PAGE;
      if (frame === curr) return;
      const hdr = this.remoteRead(frame << 8, 4);
      const status = hdr[0]!;
      const next = hdr[1]!;
      const count = hdr[2]! | (hdr[3]! << 8);
      const len = count - 4; // the chip's count includes the FCS
      // The next-page pointer must agree with the length (Linux allows one page of slack).
      const expected = frame + 1 + (count >> 8);
      const fits = [expected, expected + 1, expected - ringPages, expected + 1 - ringPages].includes(next);
      if (!fits || next < RX_START_PAGE || next >= RX_STOP_PAGE) {
        // A header we cannot trust: skip everything up to where the chip writes next.
        this.driverStats.rxErrors++;
        if (this.dbg.on) this.dbg.debug(`${this.name}: rxErrors`);
        this.driverStats.rxBadHeaders++;
        if (this.dbg.on) this.dbg.debug(`${this.name}: rxBadHeaders`);
        hw.outb(io + BNRY, curr - 1);
        continue;
      }
      let data: Uint8Array | null = null;
      if (len < ETH_ZLEN || len > 1518) {
        this.driverStats.rxErrors++;
        if (this.dbg.on) this.dbg.debug(`${this.name}: rxErrors`);
        this.driverStats.rxLengthErrors++;
        if (this.dbg.on) this.dbg.debug(`${this.name}: rxLengthErrors`);
      } else if ((status & 0x0f) === RSR_RXOK) data = this.remoteRead((frame << 8) + 4, len);
      else this.driverStats.rxErrors++;
      hw.outb(io + BNRY, next - 1);
      if (data) this.received.push(data);
    }
  }

  /**
   * ei_rx_overrun, the datasheet's recovery: stop, clear the remote byte count, note whether a
   * transmit was cut short, go to loopback, start, drain the ring, clear OVW, leave loopback, and
   * resend if needed.
   */
  private rxOverrun(): void {
    const { hw, io } = this;
    this.driverStats.rxOverruns++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: rxOverruns`);
    const wasTxing = (hw.inb(io + CR) & CR_TRANS) !== 0;
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_STOP);
    hw.outb(io + RBCR0, 0);
    hw.outb(io + RBCR1, 0);
    const mustResend = wasTxing && (hw.inb(io + ISR) & (ISR_TX | ISR_TX_ERR)) === 0;
    hw.outb(io + TCR, TCR_LOOPBACK);
    hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_START);
    hw.outb(io + ISR, ISR_RX | ISR_RX_ERR);
    this.receive();
    hw.outb(io + ISR, ISR_OVER);
    hw.outb(io + TCR, TCR_NORMAL);
    if (mustResend) {
      this.driverStats.txResends++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: txResends`);
      hw.outb(io + CR, CR_NODMA | CR_PAGE0 | CR_START | CR_TRANS);
    }
  }

  /** A remote write that never completed: the chip is wedged; reset and reprogram it. */
  private recover(): void {
    this.driverStats.ringResets++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: ringResets`);
    this.resetChip();
    this.start();
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

export const ne2kDriver: GuestDriver = {
  name: 'ne2k-pci',
  matches: (d: PciDeviceInfo) => d.vendorId === 0x10ec && d.deviceId === 0x8029,
  attach(kernel: GuestKernel, dev: PciDeviceInfo): BoundDriver | { error: string } {
    const bar = dev.bars[0];
    if (!bar || bar.kind !== 'io') return { error: 'BAR0 is not an I/O BAR' };
    const dbg = kernel.debug('ne2k-pci');
    if (dbg.on) dbg.debug(`probe 00:${dev.slot.toString(16).padStart(2, '0')}.${dev.fn} [${dev.vendorId.toString(16).padStart(4, '0')}:${dev.deviceId.toString(16).padStart(4, '0')}] BAR0 ${bar.kind} 0x${bar.base.toString(16)} IRQ ${dev.irq ?? 'none'}`);
    // pci_enable_device: I/O decode only — the card never masters the bus.
    const cmd = kernel.pciAccess.read16(dev, 0x04);
    kernel.pciAccess.write16(dev, 0x04, cmd | 0x1);
    const port = new Ne2kPort('eth?', kernel.hw, bar.base);
    port.dbg = dbg;
    const err = port.probe();
    if (err) return { error: err };
    port.start();
    const name = kernel.registerNetDevice(port);
    (port as { name: string }).name = name;
    const mac = [...port.mac].map((b) => hex(b)).join(':');
    kernel.printk(`${name}: RealTek RTL-8029 found at 0x${bar.base.toString(16)}, IRQ ${dev.irq ?? 'none'}, ${mac}`);
    const bound: BoundDriver & { readonly netdev: Ne2kPort } = { name: 'ne2k-pci', irq: dev.irq, handleInterrupt: () => port.handleInterrupt(), netdev: port };
    return bound;
  },
};
