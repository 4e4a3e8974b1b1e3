import type { GuestDriver, GuestKernel, BoundDriver } from '../kernel.js';
import type { PciDeviceInfo } from '../pci.js';
import type { GuestHardware } from '../hardware.js';
import type { DmaRegion } from '../dma.js';
import { NetDriverPort } from '../net-driver.js';
import { copyBytes, startsAt } from '../../../net/byte-slab.js';

/**
 * The RTL8139 driver, written the way Linux's 8139too is: port I/O to BAR0, the MAC read bit by bit
 * from the 93C46 EEPROM behind 9346CR (read_eeprom), a soft reset polled on CR.RST, a 32 KiB
 * receive ring in WRAP mode (so a packet is always contiguous), four transmit buffers used
 * round-robin, interrupts acknowledged by writing ISR back, and 8139too's receiver reset after a
 * bad or oversized packet (RE off and on, RCR rewritten, reading again from offset 0). It knows
 * nothing of the device model; register offsets come from the datasheet.
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
const HLTCLK = 0x5b;
const BMSR = 0x64;

/** 9346CR in EEPROM programming mode (EEM = 10) and its pins (8139too's EE_* names). */
const EE_ENB = 0x80 | 0x08;
const EE_CS = 0x08;
const EE_SHIFT_CLK = 0x04;
const EE_DATA_WRITE = 0x02;
const EE_DATA_READ = 0x01;
const EE_READ_CMD = 6; // start bit + opcode 10

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
/** 8139too's MAX_ETH_FRAME_SIZE + 4: a longer packet in the ring means "reset the receiver". */
const RX_MAX_SIZE = 1536 + 4;
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
  /** What start() programs into RCR, and what a receiver reset writes back (8139too's rx_config). */
  private rxConfig = RCR_RBLEN_32K | RCR_WRAP | RCR_MXDMA_UNLIMITED | RCR_RXFTH_NONE | RCR_AB | RCR_APM;
  readonly driverStats = { interrupts: 0, rxErrors: 0, rxOverflows: 0, txErrors: 0, resets: 0, backlogDrops: 0, txInPlace: 0 };

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
    this.mac = readMacFromEeprom(hw, io);
  }

  linkUp(): boolean {
    return (this.hw.inw(this.io + BMSR) & 0x04) !== 0;
  }

  /** Reset and program the chip (rtl8139_hw_start). */
  start(): boolean {
    const { hw, io } = this;
    if (this.dbg.on) this.dbg.debug(`${this.name}: reset and start (RCR 0x${this.rxConfig.toString(16)}, rx ring at 0x${this.rx.phys.toString(16)})`);
    hw.outb(io + HLTCLK, 0x52); // 'R': bring the chip's clock out of low-power mode
    hw.outb(io + CR, CR_RST);
    let spins = 0;
    while (hw.inb(io + CR) & CR_RST && spins < 1000) spins++;
    if (spins >= 1000) return false;
    hw.outb(io + CFG9346, 0xc0); // unlock config registers
    hw.outb(io + CONFIG1, 0); // wake the chip (LWAKE/PMEn off)
    // Restore our idea of the MAC (IDR, two 32-bit writes while unlocked, as 8139too's hw_start).
    const m = this.mac;
    hw.outl(io + IDR0, (m[0]! | (m[1]! << 8) | (m[2]! << 16) | (m[3]! << 24)) >>> 0);
    hw.outl(io + IDR0 + 4, m[4]! | (m[5]! << 8));
    hw.outb(io + CFG9346, 0);
    // The chip needs RE/TE before RCR/TCR take effect (8139too's order).
    hw.outb(io + CR, CR_RE | CR_TE);
    hw.outl(io + RCR, this.rxConfig);
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
    this.setRxConfig(on ? this.rxConfig | RCR_AM : this.rxConfig & ~RCR_AM);
  }

  setPromiscuous(on: boolean): void {
    this.setRxConfig(on ? this.rxConfig | RCR_AAP : this.rxConfig & ~RCR_AAP);
  }

  /** 8139too's __set_rx_mode: RCR rewritten on the fly, "without stopping the chip". */
  private setRxConfig(rcr: number): void {
    if (rcr === this.rxConfig) return;
    this.rxConfig = rcr;
    this.hw.outl(this.io + RCR, rcr);
  }

  /** The next transmit buffer, when a frame sent now would go to the chip at once (not the backlog). */
  lendTx(length: number): Uint8Array | null {
    if (length > TX_BUF || this.txCur - this.txDirty >= NUM_TX || this.backlog.length > 0) return null;
    return this.tx[this.txCur % NUM_TX]!.bytes.subarray(0, length);
  }

  protected transmit(frame: Uint8Array): boolean {
    if (frame.length > TX_BUF) return false;
    if (this.txCur - this.txDirty < NUM_TX && this.backlog.length === 0) {
      this.startXmit(frame);
      return true;
    }
    if (this.backlog.length >= TX_BACKLOG) {
      this.driverStats.backlogDrops++;
      if (this.dbg.on) this.dbg.debug(`${this.name}: backlogDrops`);
      return false;
    }
    this.backlog.push(frame);
    return true;
  }

  private startXmit(frame: Uint8Array): void {
    const entry = this.txCur % NUM_TX;
    const buf = this.tx[entry]!.bytes;
    // A frame built in the buffer lendTx lent is already where the chip reads it.
    if (startsAt(frame, buf)) this.driverStats.txInPlace++;
    else buf.set(frame);
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
    if (this.dbg.on) this.dbg.debug(`${this.name}: interrupt, ISR 0x${status.toString(16).padStart(4, '0')}`);
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
      if (!(rxStatus & RX_ROK) || size < 8 || size > RX_MAX_SIZE) {
        // An error, an oversized frame (the chip stores up to 4 KiB), or we lost our place in
        // the ring: 8139too's rtl8139_rx_err resets the receiver and starts again at offset 0.
        this.driverStats.rxErrors++;
        if (this.dbg.on) this.dbg.debug(`${this.name}: rxErrors`);
        this.resetRx();
        return;
      }
      const frameLen = size - 4; // strip the FCS
      this.deliver(copyBytes(ring, off + 4, off + 4 + frameLen));
      this.rxOffset = (off + size + 4 + 3) & ~3;
      hw.outw(io + CAPR, (this.rxOffset - 16) & 0xffff);
      this.rxOffset %= RX_RING;
    }
  }

  /** rtl8139_rx_err (Linux 6.1): RE off and on again, RCR rewritten; RBSTART stays. */
  private resetRx(): void {
    const { hw, io } = this;
    this.driverStats.resets++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: resets`);
    const cr = hw.inb(io + CR);
    hw.outb(io + CR, cr & ~CR_RE);
    hw.outb(io + CR, cr);
    hw.outl(io + RCR, this.rxConfig);
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

/**
 * 8139too's read_eeprom: raise CS in programming mode, clock out the start bit, opcode 10 and the
 * address MSB first (two leading zeros included), then clock in 16 data bits, MSB first, reading
 * EEDO after each rising edge; drop CS by leaving programming mode.
 */
export function readEeprom(hw: GuestHardware, io: number, location: number, addrLen: number): number {
  const cmd = location | (EE_READ_CMD << addrLen);
  const w = (v: number): void => hw.outb(io + CFG9346, v);
  const delay = (): void => void hw.inl(io + CFG9346); // eeprom_delay(): a read to pace the clock
  w(EE_ENB & ~EE_CS);
  w(EE_ENB);
  delay();
  for (let i = 4 + addrLen; i >= 0; i--) {
    const d = cmd & (1 << i) ? EE_DATA_WRITE : 0;
    w(EE_ENB | d);
    delay();
    w(EE_ENB | d | EE_SHIFT_CLK);
    delay();
  }
  w(EE_ENB);
  delay();
  let v = 0;
  for (let i = 16; i > 0; i--) {
    w(EE_ENB | EE_SHIFT_CLK);
    delay();
    v = (v << 1) | (hw.inb(io + CFG9346) & EE_DATA_READ ? 1 : 0);
    w(EE_ENB);
    delay();
  }
  w(~EE_CS & 0xff);
  delay();
  return v;
}

/** As rtl8139_init_one: a 93C46 answers 0x8129 only when addressed with 6 bits; MAC in words 7–9. */
function readMacFromEeprom(hw: GuestHardware, io: number): Uint8Array {
  const addrLen = readEeprom(hw, io, 0, 8) === 0x8129 ? 8 : 6;
  const mac = new Uint8Array(6);
  for (let i = 0; i < 3; i++) {
    const w = readEeprom(hw, io, 7 + i, addrLen);
    mac[2 * i] = w & 0xff;
    mac[2 * i + 1] = w >> 8;
  }
  return mac;
}

export const rtl8139Driver: GuestDriver = {
  name: '8139too',
  matches: (d: PciDeviceInfo) => d.vendorId === 0x10ec && d.deviceId === 0x8139,
  attach(kernel: GuestKernel, dev: PciDeviceInfo): BoundDriver | { error: string } {
    const bar = dev.bars[0];
    if (!bar || bar.kind !== 'io') return { error: 'BAR0 is not an I/O BAR' };
    const dbg = kernel.debug('8139too');
    if (dbg.on) dbg.debug(`probe 00:${dev.slot.toString(16).padStart(2, '0')}.${dev.fn} [${dev.vendorId.toString(16).padStart(4, '0')}:${dev.deviceId.toString(16).padStart(4, '0')}] BAR0 ${bar.kind} 0x${bar.base.toString(16)} IRQ ${dev.irq ?? 'none'}`);
    kernel.pciAccess.enable(dev);
    let port: Rtl8139Port;
    try {
      port = new Rtl8139Port('eth?', kernel.hw, bar.base, kernel);
    } catch (e) {
      return { error: (e as Error).message };
    }
    port.dbg = dbg;
    if (!port.start()) return { error: 'chip did not come out of reset' };
    const name = kernel.registerNetDevice(port);
    (port as { name: string }).name = name;
    const hex = [...port.mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
    kernel.printk(`${name}: RTL-8139 at 0x${bar.base.toString(16)}, ${hex}, IRQ ${dev.irq ?? 'none'}`);
    return { name: '8139too', irq: dev.irq, handleInterrupt: () => port.handleInterrupt(), netdev: port } as BoundDriver & { netdev: Rtl8139Port };
  },
};
