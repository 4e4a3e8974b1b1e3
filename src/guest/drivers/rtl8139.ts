import type { GuestDriver, GuestKernel, BoundDriver } from '../kernel.js';
import type { PciDeviceInfo } from '../pci.js';
import type { GuestHardware } from '../hardware.js';
import type { DmaRegion } from '../dma.js';
import { NetDriverPort } from '../net-driver.js';

/**
 * The RTL8139 driver, written the way Linux's 8139too is: port I/O to BAR0, a soft reset polled
 * on CR.RST, a 32 KiB receive ring in WRAP mode (so a packet is always contiguous), four transmit
 * buffers used round-robin, interrupts acknowledged by writing ISR back. It knows nothing of the
 * device model; register offsets come from the datasheet.
 */
const IDR0 = 0x00;
const MAR0 = 0x08;
const TSD0 = 0x10;
const TSAD0 = 0x20;
const RBSTART = 0x30;
const CR = 0x37;
const CAPR = 0x38;
const IMR = 0x3c;
const ISR = 0x3e;
const TCR = 0x40;
const RCR = 0x44;
const CFG9346 = 0x50;
const CONFIG1 = 0x52;
const BMSR = 0x64;

const CR_RST = 0x10;
const CR_RE = 0x08;
const CR_TE = 0x04;
const CR_BUFE = 0x01;

const INT_ROK = 0x01;
const INT_RER = 0x02;
const INT_TOK = 0x04;
const INT_TER = 0x08;
const INT_RXOVW = 0x10;
const INT_PUN = 0x20;
const INT_FOVW = 0x40;
const INT_SERR = 0x8000;
const INT_MASK = INT_ROK | INT_RER | INT_TOK | INT_TER | INT_RXOVW | INT_PUN | INT_FOVW | INT_SERR;

const TSD_TUN = 0x4000;
const TSD_TOK = 0x8000;
const TSD_TABT = 0x40000000;

const RX_ROK = 0x0001;
const RX_BAD = 0x001e; // FAE | CRC | LONG | RUNT
const RCR_AAP = 0x01;
const RCR_APM = 0x02;
const RCR_AM = 0x04;
const RCR_AB = 0x08;
const RCR_WRAP = 0x80;
const RCR_RBLEN_32K = 2 << 11;
const RCR_MXDMA_UNLIMITED = 7 << 8;
const RCR_RXFTH_NONE = 7 << 13;
const TCR_MXDMA_1024 = 6 << 8;
const TCR_IFG_NORMAL = 3 << 24;

const RX_RING = 32 * 1024;
/** 8139too's slack: with WRAP the chip writes a packet past the ring's end. */
const RX_ALLOC = RX_RING + 16 + 2048;
const TX_BUF = 1536 + 256; // the chip takes at most 1792 bytes per descriptor
const NUM_TX = 4;
/** Frames waiting for a free descriptor (the software queue in front of the hardware). */
const TX_BACKLOG = 256;

export class Rtl8139Port extends NetDriverPort {
  readonly mac: Uint8Array;
  private readonly rx: DmaRegion;
  private readonly tx: DmaRegion[];
  private rxOffset = 0;
  private txCur = 0;
  private txDirty = 0;
  private readonly backlog: Uint8Array[] = [];
  readonly driverStats = { interrupts: 0, rxErrors: 0, rxOverflows: 0, txErrors: 0, resets: 0, backlogDrops: 0 };

  constructor(
    name: string,
    private readonly hw: GuestHardware,
    private readonly io: number,
    kernel: GuestKernel,
  ) {
    super(name);
    const rx = kernel.dma.alloc(RX_ALLOC, 16);
    const tx = Array.from({ length: NUM_TX }, () => kernel.dma.alloc(TX_BUF, 16));
    if (!rx || tx.some((t) => !t)) throw new Error('out of DMA memory for the rings');
    this.rx = rx;
    this.tx = tx as DmaRegion[];
    this.mac = new Uint8Array(6).map((_, i) => hw.inb(io + IDR0 + i));
  }

  linkUp(): boolean {
    return (this.hw.inw(this.io + BMSR) & 0x04) !== 0;
  }

  /** Reset and program the chip (rtl8139_hw_start). */
  start(): boolean {
    const { hw, io } = this;
    hw.outb(io + CR, CR_RST);
    let spins = 0;
    while (hw.inb(io + CR) & CR_RST && spins < 1000) spins++;
    if (spins >= 1000) return false;
    hw.outb(io + CFG9346, 0xc0); // unlock config registers
    hw.outb(io + CONFIG1, 0); // wake the chip (LWAKE/PMEn off)
    hw.outb(io + CFG9346, 0);
    // The chip needs RE/TE before RCR/TCR take effect (8139too's order).
    hw.outb(io + CR, CR_RE | CR_TE);
    hw.outl(io + RCR, RCR_RBLEN_32K | RCR_WRAP | RCR_MXDMA_UNLIMITED | RCR_RXFTH_NONE | RCR_AB | RCR_APM);
    hw.outl(io + TCR, TCR_IFG_NORMAL | TCR_MXDMA_1024);
    hw.outl(io + RBSTART, this.rx.phys);
    for (let i = 0; i < NUM_TX; i++) hw.outl(io + TSAD0 + 4 * i, this.tx[i]!.phys);
    this.rxOffset = 0;
    this.txCur = this.txDirty = 0;
    hw.outl(io + MAR0, 0);
    hw.outl(io + MAR0 + 4, 0);
    hw.outw(io + IMR, INT_MASK);
    return true;
  }

  /** Accept every multicast (IFF_ALLMULTI) or only broadcast and our own address. */
  setAllMulticast(on: boolean): void {
    const v = on ? 0xffffffff : 0;
    this.hw.outl(this.io + MAR0, v);
    this.hw.outl(this.io + MAR0 + 4, v);
    const rcr = this.hw.inl(this.io + RCR);
    this.hw.outl(this.io + RCR, on ? rcr | RCR_AM : rcr & ~RCR_AM);
  }

  setPromiscuous(on: boolean): void {
    const rcr = this.hw.inl(this.io + RCR);
    this.hw.outl(this.io + RCR, on ? rcr | RCR_AAP : rcr & ~RCR_AAP);
  }

  protected transmit(frame: Uint8Array): boolean {
    if (frame.length > TX_BUF) return false;
    if (this.txCur - this.txDirty < NUM_TX && this.backlog.length === 0) {
      this.startXmit(frame);
      return true;
    }
    if (this.backlog.length >= TX_BACKLOG) {
      this.driverStats.backlogDrops++;
      return false;
    }
    this.backlog.push(frame);
    return true;
  }

  private startXmit(frame: Uint8Array): void {
    const entry = this.txCur % NUM_TX;
    const buf = this.tx[entry]!.bytes;
    buf.set(frame);
    let len = frame.length;
    if (len < 60) {
      buf.fill(0, len, 60); // pad runts ourselves: the chip sends what it is told
      len = 60;
    }
    this.txCur++;
    // Size with OWN clear hands the descriptor to the chip; early-TX threshold 0 = 8 bytes.
    this.hw.outl(this.io + TSD0 + 4 * entry, len);
  }

  handleInterrupt(): void {
    const { hw, io } = this;
    const status = hw.inw(io + ISR);
    if (status === 0 || status === 0xffff) return; // shared line, not ours (or the card is gone)
    this.driverStats.interrupts++;
    // Acknowledge first, so that events arriving while we work raise a new interrupt.
    hw.outw(io + ISR, status);
    if (status & (INT_ROK | INT_RER | INT_RXOVW | INT_FOVW)) this.receive(status);
    if (status & (INT_TOK | INT_TER)) this.reapTx();
    if (status & INT_SERR) this.driverStats.txErrors++;
  }

  private receive(status: number): void {
    const { hw, io } = this;
    if (status & (INT_RXOVW | INT_FOVW)) this.driverStats.rxOverflows++;
    const ring = this.rx.bytes;
    // Bounded: at most one ring's worth of packets per interrupt (NAPI-like budget).
    for (let budget = 0; budget < 1024 && !(hw.inb(io + CR) & CR_BUFE); budget++) {
      const off = this.rxOffset;
      const rxStatus = ring[off]! | (ring[off + 1]! << 8);
      const size = ring[off + 2]! | (ring[off + 3]! << 8);
      if (!(rxStatus & RX_ROK) || rxStatus & RX_BAD || size < 64 || size > 1518 + 4 + 4) {
        // A corrupt header: the chip and we disagree on where packets are. 8139too resets RX.
        this.driverStats.rxErrors++;
        this.resetRx();
        return;
      }
      const frameLen = size - 4; // strip the FCS
      this.deliver(ring.slice(off + 4, off + 4 + frameLen));
      this.rxOffset = (off + size + 4 + 3) & ~3;
      hw.outw(io + CAPR, (this.rxOffset - 16) & 0xffff);
      this.rxOffset %= RX_RING;
    }
  }

  private resetRx(): void {
    const { hw, io } = this;
    this.driverStats.resets++;
    const rcr = hw.inl(io + RCR);
    hw.outb(io + CR, CR_TE);
    hw.outb(io + CR, CR_RE | CR_TE);
    hw.outl(io + RCR, rcr);
    hw.outl(io + RBSTART, this.rx.phys);
    this.rxOffset = 0;
  }

  private reapTx(): void {
    const { hw, io } = this;
    while (this.txDirty < this.txCur) {
      const entry = this.txDirty % NUM_TX;
      const tsd = hw.inl(io + TSD0 + 4 * entry);
      if (!(tsd & (TSD_TOK | TSD_TUN | TSD_TABT))) break; // still on the wire
      if (tsd & (TSD_TUN | TSD_TABT)) this.driverStats.txErrors++;
      this.txDirty++;
    }
    while (this.backlog.length > 0 && this.txCur - this.txDirty < NUM_TX) this.startXmit(this.backlog.shift()!);
  }
}

export const rtl8139Driver: GuestDriver = {
  name: '8139too',
  matches: (d: PciDeviceInfo) => d.vendorId === 0x10ec && d.deviceId === 0x8139,
  attach(kernel: GuestKernel, dev: PciDeviceInfo): BoundDriver | { error: string } {
    const bar = dev.bars[0];
    if (!bar || bar.kind !== 'io') return { error: 'BAR0 is not an I/O BAR' };
    kernel.pciAccess.enable(dev);
    let port: Rtl8139Port;
    try {
      port = new Rtl8139Port('eth?', kernel.hw, bar.base, kernel);
    } catch (e) {
      return { error: (e as Error).message };
    }
    if (!port.start()) return { error: 'chip did not come out of reset' };
    const name = kernel.registerNetDevice(port);
    (port as { name: string }).name = name;
    const hex = [...port.mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
    kernel.printk(`${name}: RTL-8139 at 0x${bar.base.toString(16)}, ${hex}, IRQ ${dev.irq ?? 'none'}`);
    return { name: '8139too', irq: dev.irq, handleInterrupt: () => port.handleInterrupt(), netdev: port } as BoundDriver & { netdev: Rtl8139Port };
  },
};
