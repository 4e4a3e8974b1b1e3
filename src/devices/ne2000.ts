import type { DebugLog } from '../../net/debug.js';
import type { FramePort } from '../../net/frame-port.js';
import type { DeviceConfig } from '../config/types.js';
import type { DeviceContext, DeviceState, NicDevice } from '../vmm/device.js';
import type { AccessSize, IoHandler } from '../vmm/io-bus.js';
import { PciFunction } from '../vmm/pci.js';
import { ethernetFcs, multicastHashBit } from './ether-crc.js';
import { copyBytes } from '../../net/byte-slab.js';

/**
 * An NE2000-compatible card built around the National DP8390 NIC core: the Realtek RTL8029 on PCI
 * (10ec:8029), or an ISA board when the machine has no PCI bus. The host never sees the card's
 * packet memory directly: it moves bytes through the data port with "remote DMA", and the 8390
 * core receives into a ring of 256-byte pages it manages with PSTART/PSTOP/BNRY/CURR.
 * Register map and behaviour: ../../../shared/FACTS.md and the DP8390D datasheet.
 *
 * I/O window (32 ports): 0x00–0x0F the 8390 registers, paged by CR.PS; 0x10–0x17 the data port;
 * 0x18–0x1F the reset port (NE2000 boards decode those ranges; Linux uses 0x10 and 0x1F).
 *
 * Frame sizes. The DP8390 itself checks no maximum length: it stores whatever arrives and sends
 * whatever TBCR says. What limits frames is the 802.3 network around it, and we model that edge:
 * - From the wire, a frame over MAX_RX_FRAME (1518 bytes without FCS: a VLAN-tagged maximum) is
 *   dropped and counted (`rxDropGiant`); Linux's 8390 driver would discard it anyway
 *   (rx_length_errors). A frame that could never fit the ring the driver set up is dropped and
 *   counted too (`rxDropRingTooSmall`) — answering `'busy'` for it would hold the link forever.
 * - To the wire, TBCR over MAX_TX_FRAME is a jabbering transmitter: the chip reports success
 *   (TSR.PTX; the DP8390 has no status bit for it), every receiver on the segment discards the
 *   frame, so it never reaches the link (`txDropGiant`). A frame under 60 bytes (the 8390 does not
 *   pad; drivers must) is a runt every receiver discards as a collision fragment: likewise sent
 *   and lost (`txDropRunt`). QEMU forwards both; a real segment does not, and a guest must not be
 *   able to push a 32 KiB "frame" into its neighbours' NICs.
 */

// ---- Command register (all pages, offset 0) ----
export const NE_CR = 0x00;
export const CR_STP = 0x01;
export const CR_STA = 0x02;
export const CR_TXP = 0x04;
export const CR_RD_READ = 0x08;
export const CR_RD_WRITE = 0x10;
export const CR_RD_SEND = 0x18;
export const CR_RD_ABORT = 0x20;
const CR_RD_MASK = 0x38;
const CR_PS_MASK = 0xc0;

// ---- Page 0 (write names; reads differ where noted) ----
export const P0_PSTART = 0x01; // read: CLDA0
export const P0_PSTOP = 0x02; // read: CLDA1
export const P0_BNRY = 0x03;
export const P0_TPSR = 0x04; // read: TSR
export const P0_TBCR0 = 0x05; // read: NCR
export const P0_TBCR1 = 0x06; // read: FIFO
export const P0_ISR = 0x07;
export const P0_RSAR0 = 0x08; // read: CRDA0
export const P0_RSAR1 = 0x09; // read: CRDA1
export const P0_RBCR0 = 0x0a; // read: RTL8029 ID 0x50
export const P0_RBCR1 = 0x0b; // read: RTL8029 ID 0x43
export const P0_RCR = 0x0c; // read: RSR
export const P0_TCR = 0x0d; // read: CNTR0 (frame alignment errors)
export const P0_DCR = 0x0e; // read: CNTR1 (CRC errors)
export const P0_IMR = 0x0f; // read: CNTR2 (missed packets)
// ---- Page 1 ----
export const P1_PAR0 = 0x01;
export const P1_CURR = 0x07;
export const P1_MAR0 = 0x08;
// ---- Page 3 (RTL8029 configuration) ----
const P3_9346CR = 0x01;
const P3_CONFIG0 = 0x03;
const P3_CONFIG2 = 0x05;
const P3_CONFIG3 = 0x06;

export const NE_DATAPORT = 0x10;
export const NE_RESET = 0x1f;
export const NE_IO_EXTENT = 0x20;

export const ISR_PRX = 0x01;
export const ISR_PTX = 0x02;
export const ISR_RXE = 0x04;
export const ISR_TXE = 0x08;
export const ISR_OVW = 0x10;
export const ISR_CNT = 0x20;
export const ISR_RDC = 0x40;
export const ISR_RST = 0x80;

export const RCR_SEP = 0x01;
export const RCR_AR = 0x02;
export const RCR_AB = 0x04;
export const RCR_AM = 0x08;
export const RCR_PRO = 0x10;
export const RCR_MON = 0x20;

export const RSR_PRX = 0x01;
export const RSR_MPA = 0x10;
export const RSR_PHY = 0x20;
export const RSR_DIS = 0x40;

export const TSR_PTX = 0x01;

export const TCR_LB_MASK = 0x06;

export const DCR_WTS = 0x01;
export const DCR_BOS = 0x02;

/** The card's 64 KiB remote-DMA address space: the station PROM at 0, 32 KiB of packet RAM at 16–48 KiB. */
export const PROM_SIZE = 32;
export const RAM_START = 0x4000;
export const RAM_END = 0xc000;
const RAM_FIRST_PAGE = RAM_START >> 8;
const RAM_END_PAGE = RAM_END >> 8;

/** Largest frame (no FCS) taken from the wire or sent to it: 1514 + an 802.1Q tag. */
export const MAX_RX_FRAME = 1518;
export const MAX_TX_FRAME = 1518;
/** Smallest frame (no FCS) a receiver on the segment keeps; shorter ones are runts. */
export const MIN_TX_FRAME = 60;

/** RTL8029 identification, read at page-0 offsets 0x0A/0x0B ("PC"). */
const RTL8029_ID0 = 0x50;
const RTL8029_ID1 = 0x43;

/** Register names by port, page by page (DP8390D datasheet table 6; RTL8029AS page 3). */
const NE_P0_WRITE = ['CR', 'PSTART', 'PSTOP', 'BNRY', 'TPSR', 'TBCR0', 'TBCR1', 'ISR', 'RSAR0', 'RSAR1', 'RBCR0', 'RBCR1', 'RCR', 'TCR', 'DCR', 'IMR'];
const NE_P0_READ = ['CR', 'CLDA0', 'CLDA1', 'BNRY', 'TSR', 'NCR', 'FIFO', 'ISR', 'CRDA0', 'CRDA1', '8029ID0', '8029ID1', 'RSR', 'CNTR0', 'CNTR1', 'CNTR2'];
const NE_P1 = ['CR', 'PAR0', 'PAR1', 'PAR2', 'PAR3', 'PAR4', 'PAR5', 'CURR', 'MAR0', 'MAR1', 'MAR2', 'MAR3', 'MAR4', 'MAR5', 'MAR6', 'MAR7'];
const NE_P3 = ['CR', '9346CR', 'BPAGE', 'CONFIG0', 'CONFIG1', 'CONFIG2', 'CONFIG3', 'TEST', '0x08', 'HLTCLK', '0x0a', 'INTR', '0x0c', 'FMWP', '0x0e', '0x0f'];

export class Ne2000 implements NicDevice {
  readonly className = 'NE2000';
  readonly model = 'ne2k';
  state: DeviceState = 'running';
  readonly pci: PciFunction | null;
  /** ISA only: the IRQ line the board drives. */
  readonly irq: number | undefined;
  /** The handler for the 32-port window (the factory registers it on the ISA bus). */
  readonly ioHandler: IoHandler;
  private port: FramePort | null = null;
  /** A frame was answered `'busy'` (ring full): the port waits for ready(). */
  private rxWaiting = false;

  /** PROM at 0x0000–0x001F, packet RAM at RAM_START–RAM_END; the rest of the space reads 0xFF. */
  private readonly prom = new Uint8Array(PROM_SIZE);
  private readonly ram = new Uint8Array(RAM_END - RAM_START);

  // The DP8390's registers, by name.
  private cr = CR_STP | CR_RD_ABORT;
  private pstart = 0;
  private pstop = 0;
  private bnry = 0;
  private tpsr = 0;
  private tbcr = 0;
  private isr = ISR_RST;
  private rsar = 0;
  private rbcr = 0;
  private rcr = 0;
  private tcr = 0;
  private dcr = 0;
  private imr = 0;
  private tsr = 0;
  private rsr = 0;
  private curr = 0;
  private readonly par = new Uint8Array(6);
  private readonly mar = new Uint8Array(8);
  /** Tally counters CNTR0–CNTR2: frame alignment, CRC, missed packets (cleared when read). */
  private readonly cntr = new Uint8Array(3);
  private readonly page3 = { cr9346: 0, config2: 0, config3: 0 };
  /** Remote DMA in progress: 'read' or 'write' until RBCR reaches 0 or the host aborts it. */
  private remote: 'idle' | 'read' | 'write' = 'idle';
  private lineHigh = false;

  /** `--debug ne2000`: register accesses by page and name, drops with their counter. */
  private readonly dbg: DebugLog;
  private readonly stats = {
    rxFrames: 0,
    rxBytes: 0,
    rxDropOverflow: 0,
    /** Times the ring was full and the link held the frame (flow control) instead of dropping it. */
    rxHeldRingFull: 0,
    rxDropFiltered: 0,
    /** Frames over MAX_RX_FRAME, and runts under an Ethernet header, from the wire. */
    rxDropGiant: 0,
    rxDropRunt: 0,
    /** Frames that need more pages than the driver's whole ring: they could never be stored. */
    rxDropRingTooSmall: 0,
    rxDropStopped: 0,
    rxDropMonitor: 0,
    rxDropLoopback: 0,
    txFrames: 0,
    txBytes: 0,
    txLoopback: 0,
    /** TBCR over MAX_TX_FRAME / under MIN_TX_FRAME: "sent" (PTX) and discarded by every receiver. */
    txDropGiant: 0,
    txDropRunt: 0,
    remoteReadBytes: 0,
    remoteWriteBytes: 0,
    dataPortIdleReads: 0,
    resets: 0,
    interrupts: 0,
  };

  constructor(
    private readonly ctx: DeviceContext,
    readonly id: string,
    readonly mac: Uint8Array,
    isa: { port: number; irq: number } | null,
  ) {
    this.dbg = ctx.log.child('ne2000');
    // Each MAC byte appears twice so a driver reading the PROM in word mode gets one per word;
    // bytes 28–31 are 'W', which NE2000 drivers check to tell the card from its relatives.
    for (let i = 0; i < 6; i++) this.prom[2 * i] = this.prom[2 * i + 1] = mac[i]!;
    this.prom.fill(0x57, 28, 32);
    const handler: IoHandler = {
      read: (off, size) => {
        const v = this.read(off, size);
        if (this.dbg.on) this.dbg.debug(`read ${this.regName(off, 'read')}/${size} = 0x${v.toString(16)}`);
        return v;
      },
      write: (off, size, v) => {
        if (this.dbg.on) this.dbg.debug(`write ${this.regName(off, 'write')}/${size} ← 0x${(v >>> 0).toString(16)}`);
        this.write(off, size, v);
      },
    };
    if (isa) {
      this.pci = null;
      this.irq = isa.irq;
    } else {
      this.irq = undefined;
      this.pci = new PciFunction(id, { vendorId: 0x10ec, deviceId: 0x8029, classCode: 0x020000, revision: 0, subsystemVendorId: 0x10ec, subsystemId: 0x8029, interruptPin: 1 }, [{ kind: 'io', size: NE_IO_EXTENT, handler }]);
    }
    this.ioHandler = handler;
  }

  counters(): Record<string, number> {
    return { ...this.stats };
  }

  attach(port: FramePort): void {
    this.port = port;
    port.setReceiver((frame) => this.receiveFromWire(frame));
  }

  stop(): void {
    this.state = 'stopped';
    this.port?.setReceiver(null);
    this.setLine(false);
  }

  // ---------------------------------------------------------------- register access

  private read(off: number, size: AccessSize): number {
    if (this.state !== 'running') return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    if (off >= NE_DATAPORT && off < 0x18) return this.dataRead(size);
    if (this.straddlesDataPort(off, size, 'read')) return size === 4 ? 0xffffffff : 0xffff;
    // Registers are 8 bits wide; a wider access reads consecutive ports, as the ISA bus splits it.
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | this.readByte(off + i);
    return v >>> 0;
  }

  private write(off: number, size: AccessSize, value: number): void {
    if (this.state !== 'running') return;
    if (off >= NE_DATAPORT && off < 0x18) {
      this.dataWrite(size, value);
      return;
    }
    if (this.straddlesDataPort(off, size, 'write')) return;
    for (let i = 0; i < size && this.state === 'running'; i++) this.writeByte(off + i, (value >>> (8 * i)) & 0xff);
  }

  /**
   * A wide access that starts among the registers and runs into the data port would be half a
   * register access and half a remote-DMA transfer: no driver does that, so it is a fault.
   */
  private straddlesDataPort(off: number, size: AccessSize, what: string): boolean {
    if (off >= NE_DATAPORT || off + size <= NE_DATAPORT) return false;
    this.fail(`${size}-byte ${what} at offset 0x${hex(off)} runs from the 8390 registers into the data port (0x10)`);
    return true;
  }

  private readByte(off: number): number {
    if (off >= 0x18) {
      // NE2000 boards reset the 8390 on a read of the reset port.
      if (off < NE_IO_EXTENT) this.reset();
      return 0;
    }
    if (off === NE_CR) return this.cr;
    switch (this.cr & CR_PS_MASK) {
      case 0x00:
        return this.readPage0(off);
      case 0x40:
        return this.readPage1(off);
      case 0x80:
        return this.readPage2(off);
      default:
        return this.readPage3(off);
    }
  }

  private readPage0(off: number): number {
    switch (off) {
      case 0x01: // CLDA0/1: where the local DMA would write next
        return 0;
      case 0x02:
        return this.curr;
      case P0_BNRY:
        return this.bnry;
      case 0x04:
        return this.tsr;
      case 0x05: // NCR: collisions never happen on a point-to-point virtual wire
      case 0x06: // FIFO
        return 0;
      case P0_ISR:
        return this.isr;
      case 0x08:
        return this.rsar & 0xff;
      case 0x09:
        return this.rsar >> 8;
      case 0x0a:
        return RTL8029_ID0;
      case 0x0b:
        return RTL8029_ID1;
      case 0x0c:
        return this.rsr;
      default: {
        // CNTR0–2 (0x0D–0x0F): the datasheet clears each tally counter when the host reads it.
        const i = off - 0x0d;
        const v = this.cntr[i]!;
        this.cntr[i] = 0;
        return v;
      }
    }
  }

  private readPage1(off: number): number {
    if (off >= P1_PAR0 && off < P1_PAR0 + 6) return this.par[off - P1_PAR0]!;
    if (off === P1_CURR) return this.curr;
    return this.mar[off - P1_MAR0]!;
  }

  /** Page 2 reads back the page-0 configuration (the datasheet's diagnostic page). */
  private readPage2(off: number): number {
    switch (off) {
      case 0x01:
        return this.pstart;
      case 0x02:
        return this.pstop;
      case 0x04:
        return this.tpsr;
      case 0x0c:
        return this.rcr | 0xc0;
      case 0x0d:
        return this.tcr | 0xe0;
      case 0x0e:
        return this.dcr | 0x80;
      case 0x0f:
        return this.imr | 0x80;
      default:
        return 0;
    }
  }

  /** Page 3 is Realtek's: the 9346 command register and CONFIG0–3 (10BASE-T, no boot ROM). */
  private readPage3(off: number): number {
    switch (off) {
      case P3_9346CR:
        return this.page3.cr9346;
      case P3_CONFIG0:
        return 0;
      case P3_CONFIG2:
        return this.page3.config2;
      case P3_CONFIG3:
        return this.page3.config3;
      default:
        return 0;
    }
  }

  private writeByte(off: number, v: number): void {
    if (off >= 0x18) return; // a write to the reset port releases reset: nothing to do here
    if (off === NE_CR) {
      this.writeCr(v);
      return;
    }
    switch (this.cr & CR_PS_MASK) {
      case 0x00:
        this.writePage0(off, v);
        return;
      case 0x40:
        this.writePage1(off, v);
        return;
      case 0x80:
        // The datasheet reserves page-2 writes for its own tests of the local DMA counters.
        this.fail(`write 0x${hex(v)} to page-2 register 0x${hex(off)}: diagnostic writes are not implemented`);
        return;
      default:
        this.writePage3(off, v);
    }
  }

  private writePage0(off: number, v: number): void {
    switch (off) {
      case P0_PSTART:
        this.pstart = v;
        this.checkRingIfActive();
        return;
      case P0_PSTOP:
        this.pstop = v;
        this.checkRingIfActive();
        return;
      case P0_BNRY:
        this.bnry = v;
        // The datasheet's RST also flags an overflowed ring and clears when the host frees a page.
        if (this.started()) this.isr &= ~ISR_RST;
        this.checkRingIfActive();
        this.wakeReceiver();
        return;
      case P0_TPSR:
        this.tpsr = v;
        return;
      case P0_TBCR0:
        this.tbcr = (this.tbcr & 0xff00) | v;
        return;
      case P0_TBCR1:
        this.tbcr = (this.tbcr & 0x00ff) | (v << 8);
        return;
      case P0_ISR:
        // Write 1 to clear; RST reports the chip's state and ignores writes.
        this.isr &= ~(v & 0x7f);
        this.updateIrq();
        // Clearing OVW ends the overflow recovery: the receiver takes frames again.
        if (v & ISR_OVW) this.wakeReceiver();
        return;
      case P0_RSAR0:
        this.rsar = (this.rsar & 0xff00) | v;
        return;
      case P0_RSAR1:
        this.rsar = (this.rsar & 0x00ff) | (v << 8);
        return;
      case P0_RBCR0:
        this.rbcr = (this.rbcr & 0xff00) | v;
        return;
      case P0_RBCR1:
        this.rbcr = (this.rbcr & 0x00ff) | (v << 8);
        return;
      case P0_RCR:
        this.rcr = v & 0x3f;
        this.checkRingIfActive();
        return;
      case P0_TCR:
        this.tcr = v & 0x1f;
        return;
      case P0_DCR:
        this.dcr = v & 0x7f;
        return;
      case P0_IMR:
        this.imr = v & 0x7f;
        this.updateIrq();
        return;
    }
  }

  private writePage1(off: number, v: number): void {
    if (off >= P1_PAR0 && off < P1_PAR0 + 6) this.par[off - P1_PAR0] = v;
    else if (off === P1_CURR) {
      this.curr = v;
      this.checkRingIfActive();
    } else this.mar[off - P1_MAR0] = v;
  }

  private writePage3(off: number, v: number): void {
    switch (off) {
      case P3_9346CR:
        this.page3.cr9346 = v & 0xc0;
        return;
      case P3_CONFIG2:
        if (this.page3.cr9346 === 0xc0) this.page3.config2 = v;
        return;
      case P3_CONFIG3:
        // Only writable with the 9346CR unlocked (EEM = 11), as ne2k-pci's full-duplex setup does.
        if (this.page3.cr9346 === 0xc0) this.page3.config3 = v;
        return;
      default:
        this.fail(`write 0x${hex(v)} to RTL8029 page-3 register 0x${hex(off)}: not implemented`);
    }
  }

  private writeCr(v: number): void {
    const wasStarted = this.started();
    // STP wins over STA; with neither bit set the chip keeps its run state (Linux's page
    // selects write NODMA|PAGEn alone and expect that).
    let run = this.cr & (CR_STP | CR_STA);
    if (v & CR_STP) run = CR_STP;
    else if (v & CR_STA) run = CR_STA;
    const rd = v & CR_RD_MASK;
    this.cr = (v & CR_PS_MASK) | rd | run | (this.cr & CR_TXP);
    if (run === CR_STP) {
      this.isr |= ISR_RST;
      this.wakeReceiver(); // a stopped NIC refuses the held frame (counted), it does not keep the link waiting
    } else if (run === CR_STA && !wasStarted) {
      this.isr &= ~ISR_RST;
      if (!this.checkRingIfActive()) return;
    }
    this.startRemote(rd);
    if (this.state === 'running' && v & CR_TXP) this.transmit();
    this.updateIrq();
  }

  private started(): boolean {
    return (this.cr & (CR_STP | CR_STA)) === CR_STA;
  }

  // ---------------------------------------------------------------- remote DMA

  private startRemote(rd: number): void {
    if (rd & CR_RD_ABORT) {
      this.remote = 'idle'; // abort/complete remote DMA
      return;
    }
    if (rd === 0) {
      this.fail('CR written with RD=000, which the datasheet marks "not allowed"');
      return;
    }
    if (rd === CR_RD_SEND) {
      this.fail('Send Packet remote DMA command (CR RD=011) is not implemented');
      return;
    }
    this.remote = rd === CR_RD_READ ? 'read' : 'write';
    // The datasheet: a transfer of 0 bytes completes at once.
    if (this.rbcr === 0) this.remoteDone();
  }

  private remoteDone(): void {
    this.remote = 'idle';
    this.isr |= ISR_RDC;
    this.updateIrq();
  }

  /**
   * One transfer unit of remote DMA: a byte in byte mode, a word in word mode (DCR.WTS), whatever
   * the width of the host's access — in word mode an `inb` returns the low byte and still
   * consumes a word, which is how ne2k-pci reads the doubled PROM bytes.
   */
  private dataRead(size: AccessSize): number {
    const word = (this.dcr & DCR_WTS) !== 0;
    const units = word ? Math.max(1, size >> 1) : size;
    let v = 0;
    for (let u = 0; u < units; u++) {
      const x = word ? this.remoteReadWord() : this.remoteReadByte();
      v |= x << (u * (word ? 16 : 8));
    }
    return v >>> 0;
  }

  private dataWrite(size: AccessSize, value: number): void {
    const word = (this.dcr & DCR_WTS) !== 0;
    const units = word ? Math.max(1, size >> 1) : size;
    for (let u = 0; u < units && this.state === 'running'; u++) {
      if (word) this.remoteWriteWord((value >>> (u * 16)) & 0xffff);
      else this.remoteWriteByte((value >>> (u * 8)) & 0xff);
    }
  }

  private remoteReadByte(): number {
    if (this.remote !== 'read') return this.idleRead(0xff);
    const b = this.memRead(this.rsar);
    this.advance(1);
    return b;
  }

  private remoteReadWord(): number {
    if (this.remote !== 'read') return this.idleRead(0xffff);
    // Word transfers ignore address bit 0 (the 8390 drives A0 low in word mode).
    const a = this.rsar & ~1;
    const lo = this.memRead(a);
    const hi = this.memRead(a + 1);
    this.rsar = a;
    this.advance(2);
    return this.dcr & DCR_BOS ? (lo << 8) | hi : (hi << 8) | lo;
  }

  /**
   * A data-port read with no remote read running: the DP8390 drives nothing and the board's
   * latch floats. ne2k-pci does this on purpose (it reads 32 PROM bytes with a 32-byte word-mode
   * count), so it is counted, not a fault.
   */
  private idleRead(allOnes: number): number {
    if (this.remote === 'write') {
      this.fail('data port read during a remote DMA write');
      return allOnes;
    }
    this.stats.dataPortIdleReads++;
    return allOnes;
  }

  private remoteWriteByte(b: number): void {
    if (!this.checkWritable()) return;
    if (!this.memWrite(this.rsar, b)) return;
    this.advance(1);
  }

  private remoteWriteWord(w: number): void {
    if (!this.checkWritable()) return;
    const a = this.rsar & ~1;
    const [first, second] = this.dcr & DCR_BOS ? [w >> 8, w & 0xff] : [w & 0xff, w >> 8];
    if (!this.memWrite(a, first) || !this.memWrite(a + 1, second)) return;
    this.rsar = a;
    this.advance(2);
  }

  private checkWritable(): boolean {
    if (this.remote === 'write') return true;
    // Bytes written with no remote write set up would vanish: a driver bug worth stopping on.
    this.fail(this.remote === 'read' ? 'data port written during a remote DMA read' : 'data port written with no remote DMA write set up (RBCR exhausted or CR.RD not "remote write")');
    return false;
  }

  /** Move RSAR on and count RBCR down; remote reads wrap from PSTOP to PSTART like the ring. */
  private advance(n: number): void {
    if (this.remote === 'read') this.stats.remoteReadBytes += n;
    else this.stats.remoteWriteBytes += n;
    let a = (this.rsar + n) & 0xffff;
    if (this.remote === 'read' && this.pstop > this.pstart && a === this.pstop << 8) a = this.pstart << 8;
    this.rsar = a;
    this.rbcr = Math.max(0, this.rbcr - n);
    if (this.rbcr === 0) this.remoteDone();
  }

  private memRead(a: number): number {
    if (a < PROM_SIZE) return this.prom[a]!;
    if (a >= RAM_START && a < RAM_END) return this.ram[a - RAM_START]!;
    return 0xff; // nothing decodes there
  }

  private memWrite(a: number, b: number): boolean {
    if (a < RAM_START || a >= RAM_END) {
      this.fail(`remote DMA write to 0x${hex(a, 4)}: outside the packet RAM 0x${hex(RAM_START, 4)}-0x${hex(RAM_END - 1, 4)}`);
      return false;
    }
    this.ram[a - RAM_START] = b;
    return true;
  }

  // ---------------------------------------------------------------- transmit

  private transmit(): void {
    if (!this.started()) {
      this.fail('CR.TXP with the NIC stopped (STP): the transmitter cannot run');
      return;
    }
    const start = this.tpsr << 8;
    const len = this.tbcr;
    // Giants and runts leave the chip and die on the segment (see the class comment): the
    // transmitter reports success, nothing reaches the link, and no guest-chosen length is read.
    const lost = len > MAX_TX_FRAME ? 'giant' : len < MIN_TX_FRAME ? 'runt' : null;
    if (lost === null && (start < RAM_START || start + len > RAM_END)) {
      this.fail(`transmit of ${len} bytes from page 0x${hex(this.tpsr)}: outside the packet RAM`);
      return;
    }
    // A virtual wire sends instantly: TXP is set and cleared within this write.
    this.cr &= ~CR_TXP;
    this.tsr = TSR_PTX;
    if (lost !== null) {
      if (lost === 'giant') this.stats.txDropGiant++;
      else this.stats.txDropRunt++;
      this.isr |= ISR_PTX;
      this.updateIrq();
      return;
    }
    const frame = copyBytes(this.ram, start - RAM_START, start - RAM_START + len);
    this.stats.txFrames++;
    this.stats.txBytes += len;
    if (this.tcr & TCR_LB_MASK) {
      // Loopback: the frame comes back to our own receiver and never reaches the wire.
      this.stats.txLoopback++;
      this.receive(frame);
    } else {
      // The port counts its own drops; for the 8390 the frame has left either way.
      this.port?.send(frame);
    }
    this.isr |= ISR_PTX;
    this.updateIrq();
  }

  // ---------------------------------------------------------------- receive

  /** Which frames RCR lets in: -1 rejected, else the RSR.PHY bit for the header's status. */
  private accepts(frame: Uint8Array): number {
    const dst = frame.subarray(0, 6);
    if ((dst[0]! & 1) === 0) {
      if (this.rcr & RCR_PRO) return 0;
      return dst.every((b, i) => b === this.par[i]) ? 0 : -1;
    }
    if (dst.every((b) => b === 0xff)) return this.rcr & RCR_AB ? RSR_PHY : -1;
    if (!(this.rcr & RCR_AM)) return -1;
    const bit = multicastHashBit(dst);
    return this.mar[bit >> 3]! & (1 << (bit & 7)) ? RSR_PHY : -1;
  }

  private receiveFromWire(frame: Uint8Array): boolean | 'busy' {
    if (this.state !== 'running') return false;
    if (this.tcr & TCR_LB_MASK) {
      // In loopback the receiver listens to our own transmitter, not to the network.
      this.stats.rxDropLoopback++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropLoopback)`);
      return false;
    }
    return this.receive(frame, this.port?.holds === true);
  }

  /** The driver moved BNRY (freed pages) or restarted the NIC: offer the held frame again. */
  private wakeReceiver(): void {
    if (!this.rxWaiting) return;
    this.rxWaiting = false;
    this.port?.ready?.();
  }

  /**
   * Store a frame in the ring. False when it could not be stored (the port counts the drop);
   * `'busy'` when the ring is full and the port holds frames (`canHold`) until BNRY moves.
   */
  private receive(frame: Uint8Array, canHold = false): boolean | 'busy' {
    if (!this.started()) {
      this.stats.rxDropStopped++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropStopped)`);
      return false;
    }
    if (frame.length < 14) {
      this.stats.rxDropRunt++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropRunt)`);
      return false;
    }
    if (frame.length > MAX_RX_FRAME) {
      this.stats.rxDropGiant++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropGiant)`);
      return false;
    }
    const phy = this.accepts(frame);
    if (phy < 0) {
      // Not for us: ignored silently, which is not a drop on the link.
      this.stats.rxDropFiltered++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropFiltered)`);
      return true;
    }
    if (this.rcr & RCR_MON) {
      // Monitor mode: the packet is checked and counted as missed, never buffered.
      this.stats.rxDropMonitor++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropMonitor)`);
      this.rsr = RSR_MPA | RSR_DIS | phy;
      this.countMissed();
      return false;
    }
    if (this.isr & ISR_OVW || !this.ringValid()) {
      this.overflow();
      return false;
    }
    // The sender's MAC pads short frames to 60 bytes; the 8390 stores the FCS it received.
    const body = frame.length < 60 ? padTo60(frame) : frame;
    const count = body.length + 4;
    const total = 4 + count;
    const pages = (total + 255) >> 8;
    // The local DMA never writes into the page BNRY names, so an empty ring (CURR = BNRY + 1)
    // has ring − 1 free pages and a full one (CURR = BNRY) none.
    const ringPages = this.pstop - this.pstart;
    if (pages > ringPages - 1) {
      // No amount of freeing makes room: holding it would stall the link for good. Counted as
      // missed (CNTR2) without OVW: the ring itself is fine for every frame that fits it.
      this.stats.rxDropRingTooSmall++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropRingTooSmall)`);
      this.rsr = RSR_MPA;
      this.countMissed();
      return false;
    }
    const free = (this.boundaryPage() - this.curr + ringPages) % ringPages;
    if (pages > free) {
      if (canHold) {
        // Flow control (QEMU's can_receive): the link keeps the frame until the driver frees pages.
        this.rxWaiting = true;
        this.stats.rxHeldRingFull++;
        return 'busy';
      }
      this.overflow();
      return false;
    }
    let next = this.curr;
    for (let i = 0; i < pages; i++) next = this.nextPage(next);
    const packet = new Uint8Array(total);
    packet[0] = RSR_PRX | phy;
    packet[1] = next;
    packet[2] = count & 0xff;
    packet[3] = count >> 8;
    packet.set(body, 4);
    new DataView(packet.buffer).setUint32(4 + body.length, ethernetFcs(body), true);
    let page = this.curr;
    for (let off = 0; off < total; off += 256, page = this.nextPage(page)) {
      this.ram.set(packet.subarray(off, Math.min(total, off + 256)), (page << 8) - RAM_START);
    }
    this.curr = next;
    this.rsr = RSR_PRX | phy;
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    this.isr |= ISR_PRX;
    this.updateIrq();
    return true;
  }

  /**
   * The page the local DMA must not enter. Linux's 8390 driver (like every DP8390 driver) writes
   * PSTART − 1 when the next packet to read starts at PSTART; the chip treats that as PSTOP − 1,
   * the page before PSTART going round the ring.
   */
  private boundaryPage(): number {
    return this.bnry === this.pstart - 1 ? this.pstop - 1 : this.bnry;
  }

  private nextPage(p: number): number {
    const n = p + 1;
    return n >= this.pstop ? this.pstart : n;
  }

  /** The ring is exhausted: the packet is lost, counted as missed, and OVW is raised. */
  private overflow(): void {
    this.stats.rxDropOverflow++;
    if (this.dbg.on) this.dbg.debug(`drop (rxDropOverflow)`);
    this.rsr = RSR_MPA;
    this.countMissed();
    // Until the host clears OVW (the datasheet's recovery sequence) every packet is missed.
    this.isr |= ISR_OVW | ISR_RST;
    this.updateIrq();
  }

  private countMissed(): void {
    const v = Math.min(0xff, this.cntr[2]! + 1);
    this.cntr[2] = v;
    if (v & 0x80) this.isr |= ISR_CNT;
    this.updateIrq();
  }

  private ringValid(): boolean {
    return this.ringProblem() === null;
  }

  /** What is wrong with the receive ring registers, or null. */
  private ringProblem(): string | null {
    const { pstart, pstop, curr, bnry } = this;
    if (pstart >= pstop) return `PSTART 0x${hex(pstart)} is not below PSTOP 0x${hex(pstop)}`;
    if (pstart < RAM_FIRST_PAGE || pstop > RAM_END_PAGE) return `ring pages 0x${hex(pstart)}-0x${hex(pstop - 1)} are outside the packet RAM (pages 0x${hex(RAM_FIRST_PAGE)}-0x${hex(RAM_END_PAGE - 1)})`;
    if (curr < pstart || curr >= pstop) return `CURR 0x${hex(curr)} is outside the ring 0x${hex(pstart)}-0x${hex(pstop - 1)}`;
    // PSTART − 1 is how drivers say "one behind PSTART" (boundaryPage).
    if (bnry < pstart - 1 || bnry >= pstop) return `BNRY 0x${hex(bnry)} is outside the ring 0x${hex(pstart)}-0x${hex(pstop - 1)} (or PSTART − 1)`;
    return null;
  }

  /**
   * The ring must make sense whenever the receiver may store packets: started and not in monitor
   * mode. Drivers legitimately start the chip with an unprogrammed ring to read the PROM (in
   * monitor mode), and rewrite ring registers one at a time while stopped.
   */
  private checkRingIfActive(): boolean {
    if (!this.started() || this.rcr & RCR_MON) return true;
    const problem = this.ringProblem();
    if (problem === null) return true;
    this.fail(`receiver started with a bad ring: ${problem}`);
    return false;
  }

  // ---------------------------------------------------------------- reset and interrupts

  /** The reset port: the 8390 goes to its reset state (datasheet: STP, RD abort, RST, IMR 0). */
  private reset(): void {
    this.stats.resets++;
    this.cr = CR_STP | CR_RD_ABORT;
    this.isr = ISR_RST;
    this.imr = 0;
    this.remote = 'idle';
    this.rbcr = 0;
    this.tsr = 0;
    this.rsr = 0;
    this.cntr.fill(0);
    this.updateIrq();
    this.wakeReceiver();
  }

  private updateIrq(): void {
    if (this.state !== 'running') return;
    this.setLine((this.isr & this.imr & 0x7f) !== 0);
  }

  private setLine(high: boolean): void {
    if (high === this.lineHigh) return;
    this.lineHigh = high;
    if (high) this.stats.interrupts++;
    // PCI INTA# is level-triggered; an ISA board drives its line the same way and the PIC,
    // in edge mode, latches the rising edge.
    if (this.pci) this.pci.setIntx(high);
    else if (this.irq !== undefined) this.ctx.pic.setIrq(this.irq, high);
  }

  /** The DP8390/RTL8029 name of port `off` on the current page (read and write names differ on page 0). */
  private regName(off: number, dir: 'read' | 'write'): string {
    if (off === 0) return 'CR';
    if (off >= NE_DATAPORT && off < 0x18) return 'DATAPORT';
    if (off >= 0x18) return 'RESET';
    const page = (this.cr & CR_PS_MASK) >> 6;
    const table = page === 0 ? (dir === 'read' ? NE_P0_READ : NE_P0_WRITE) : page === 1 ? NE_P1 : page === 3 ? NE_P3 : undefined;
    return `${table?.[off] ?? `0x${off.toString(16).padStart(2, '0')}`}(p${page})`;
  }

  private fail(message: string): void {
    if (this.state !== 'running') return;
    this.ctx.fail(this.id, message);
    // The VM calls stop(); make sure we go quiet even when a test harness does not.
    this.state = 'failed';
    this.port?.setReceiver(null);
  }
}

function padTo60(frame: Uint8Array): Uint8Array {
  const p = new Uint8Array(60);
  p.set(frame);
  return p;
}

function hex(n: number, width = 2): string {
  return n.toString(16).padStart(width, '0');
}

function parseNumber(text: string): number | null {
  const t = text.trim();
  const n = /^0x[0-9a-f]+$/i.test(t) ? parseInt(t, 16) : /^\d+$/.test(t) ? parseInt(t, 10) : NaN;
  return Number.isFinite(n) ? n : null;
}

/** Palacios' ISA placement when the machine has no PCI bus. */
export const NE2000_ISA_PORT = 0xc100;
export const NE2000_ISA_IRQ = 11;

export function createNe2000(ctx: DeviceContext, cfg: DeviceConfig): Ne2000 | { error: string } {
  if (!cfg.mac) return { error: `NE2000 "${cfg.id}": no MAC address` };
  if (ctx.pci) {
    const slot = ctx.pci.freeSlot();
    if (slot === null) return { error: 'no free PCI slot (32 slots, one taken by the host bridge)' };
    const dev = new Ne2000(ctx, cfg.id, cfg.mac, null);
    ctx.pci.add(dev.pci!, slot);
    return dev;
  }
  const port = cfg.params.port === undefined ? NE2000_ISA_PORT : parseNumber(cfg.params.port);
  if (port === null || port < 0 || port > 0x10000 - NE_IO_EXTENT || port % NE_IO_EXTENT !== 0) {
    return { error: `<port> "${cfg.params.port}": an I/O port aligned to 32 like 0x300 or 0xC100` };
  }
  const irq = cfg.params.irq === undefined ? NE2000_ISA_IRQ : parseNumber(cfg.params.irq);
  if (irq === null || irq > 15 || irq === 2) return { error: `<irq> "${cfg.params.irq}": an ISA IRQ 0-15 other than 2 (NE2000 boards use 3, 5, 9, 10, 11)` };
  const dev = new Ne2000(ctx, cfg.id, cfg.mac, { port, irq });
  const r = ctx.io.registerPorts(cfg.id, port, NE_IO_EXTENT, dev.ioHandler);
  return r.ok ? dev : { error: r.error };
}
