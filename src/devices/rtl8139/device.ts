import type { DebugLog } from '../../../net/debug.js';
import type { FramePort } from '../../../net/frame-port.js';
import type { DeviceConfig } from '../../config/types.js';
import type { DeviceContext, DeviceState, NicDevice } from '../../vmm/device.js';
import type { AccessSize } from '../../vmm/io-bus.js';
import { isDmaFault } from '../../vmm/memory.js';
import { PciFunction } from '../../vmm/pci.js';
import { multicastHashBit } from '../ether-crc.js';
import { Eeprom93c46, rtl8139EepromImage } from './eeprom-93c46.js';
import { ANER_VALUE, ANLPAR_PARTNER, BMSR_VALUE, Media } from './media.js';
import * as R from './registers.js';
import { RxRing } from './rx-ring.js';

/**
 * Realtek RTL8139 (PCI 10ec:8139), the original chip without C+ mode: 256 bytes of registers in an
 * I/O BAR and the same registers again in an MMIO BAR; four transmit descriptors (TSD/TSAD pairs)
 * and one contiguous receive ring in guest memory; a 93C46 EEPROM holding the MAC. PCI revision
 * 0x10 and the TCR version bits of the original RTL8139, so Linux binds 8139too (not 8139cp).
 *
 * Rules this model keeps (datasheet first, QEMU's rtl8139.c where the datasheet is silent):
 * - Every register Linux's 8139too touches is implemented. A write to any other offset (the
 *   twister/PHY parameter, wake-up pattern, flash and C+ registers, reserved bytes) fail-stops the
 *   device with the register's name — one rule with the NE2000. Reads never fail (ethtool dumps
 *   all 256 bytes); unimplemented registers read 0. Writes to read-only registers are ignored as
 *   the chip ignores them; Config0/1/3/4 writes are ignored unless 9346CR unlocks them (EEM = 11).
 * - Receive ring: CBR and CAPR go back to the ring's start on a soft reset and whenever the
 *   receiver is (re)enabled (CR.RE 0 → 1) — Linux's rtl8139_rx_err restarts the receiver exactly
 *   that way and then reads from offset 0 — and when RCR changes the ring size. A plain RCR
 *   rewrite (8139too's set_rx_mode, "safely update without stopping the chip") keeps them: QEMU
 *   resets the ring there too, which makes a running driver read stale packets at its old offset.
 * - Frame sizes. The chip itself stores frames up to 4 KiB (it flags LONG beyond), and Linux's
 *   8139too answers anything over 1540 bytes in its ring with a receiver reset (see above). The
 *   model plays the 802.3 segment around the chip, as the NE2000 model does, so that one rule holds
 *   lab-wide: a frame over 1518 bytes (no FCS: 1514 + an 802.1Q tag) from the wire is a giant the
 *   segment discards — dropped and counted (`rxDropGiant`), never stored and never answered
 *   `'busy'`; so is one under an Ethernet header. `'busy'` (flow control) is answered only for a
 *   frame that fits the ring once the driver frees room — every frame the segment carries fits
 *   the smallest (8 KiB) ring.
 * - Transmit: TE off keeps a descriptor pending until TE is set (the datasheet's "the transmitter
 *   must be enabled"). SIZE 0 or over 1792 bytes (the datasheet's early-TX limit) never leaves:
 *   the descriptor comes back with OWN|TUN and ISR.TER. Frames the chip does send but every
 *   receiver on the segment discards — giants over 1518 bytes, runts under 60 (the chip does not
 *   pad; drivers must) — complete with TOK and never reach the link, so a guest cannot push
 *   giants into its neighbours.
 * - Work per guest access is bounded (one frame per TSD write, at most four on TE 0 → 1, one EEPROM
 *   bit per 9346CR write); DMA outside guest memory fail-stops the device.
 */
export const RTL_MAX_TX = 1792;
/** Largest frame the lab's 802.3 segment carries (no FCS): 1514 + an 802.1Q tag. */
export const SEGMENT_MAX_FRAME = 1518;
export const SEGMENT_MIN_FRAME = 60;

// Re-exported so callers keep one import for the model and its register names.
export * from './registers.js';

interface Reg {
  readonly name: string;
  readonly len: number;
  /** `value` holds the written bytes at their offsets within the register; `mask` says which. */
  readonly write: ((value: number, mask: number) => void) | 'ignore';
}

export class Rtl8139 implements NicDevice {
  readonly className = 'RTL8139';
  readonly model = 'rtl8139';
  state: DeviceState = 'running';
  readonly pci: PciFunction;
  readonly eeprom: Eeprom93c46;
  private readonly regs = new Uint8Array(256);
  private readonly dv = new DataView(this.regs.buffer);
  private readonly media = new Media();
  /** Register map by byte offset (undefined: no register the model implements). */
  private readonly map: (readonly [number, Reg] | undefined)[] = new Array(256);
  private port: FramePort | null = null;
  private readonly rx = new RxRing();
  /** A frame was answered `'busy'`: the port waits for ready(). */
  private rxWaiting = false;
  /** HLTCLK: 'H' stops the chip's clock (no receive) until 'R'. */
  private clockRunning = true;
  /** The descriptor the transmitter serves next when it is (re)enabled with several pending. */
  private txNext = 0;
  /** TCTR counts from here (ns of the lab clock); a write to TCTR restarts it. */
  private tctrStartNs = 0;
  private lineHigh = false;
  /** `--debug rtl8139`: register accesses by name, commands, drops with their counter. */
  private readonly dbg: DebugLog;
  private readonly stats = {
    rxFrames: 0,
    rxBytes: 0,
    rxDropRingFull: 0,
    /** Times the ring was full and the link held the frame (flow control) instead of dropping it. */
    rxHeldRingFull: 0,
    rxDropFiltered: 0,
    rxDropDisabled: 0,
    /** Giants over SEGMENT_MAX_FRAME from the wire. */
    rxDropGiant: 0,
    /** Frames shorter than an Ethernet header (a link never delivers them; a bare port might). */
    rxDropRunt: 0,
    /** CBR/CAPR returned to the ring's start (reset, RE re-enabled, ring size changed). */
    rxRingResets: 0,
    txFrames: 0,
    txBytes: 0,
    txErrors: 0,
    /** SIZE 0 or over RTL_MAX_TX: not sent, descriptor back with TUN, ISR.TER. */
    txBadLength: 0,
    /** Sent by the chip, discarded by the segment (over SEGMENT_MAX_FRAME / under SEGMENT_MIN_FRAME). */
    txDropGiant: 0,
    txDropRunt: 0,
    txLoopback: 0,
    interrupts: 0,
  };

  constructor(
    private readonly ctx: DeviceContext,
    readonly id: string,
    readonly mac: Uint8Array,
  ) {
    this.dbg = ctx.log.child('rtl8139');
    const handler = {
      read: (off: number, size: AccessSize): number => {
        const v = this.read(off, size);
        if (this.dbg.on) this.dbg.debug(`read ${this.regName(off)}/${size} = 0x${v.toString(16)}`);
        return v;
      },
      write: (off: number, size: AccessSize, v: number): void => {
        if (this.dbg.on) this.dbg.debug(`write ${this.regName(off)}/${size} ← 0x${(v >>> 0).toString(16)}`);
        this.write(off, size, v);
      },
    };
    const identity = { vendorId: 0x10ec, deviceId: 0x8139, classCode: 0x020000, revision: 0x10, subsystemVendorId: 0x10ec, subsystemId: 0x8139, interruptPin: 1 };
    this.pci = new PciFunction(id, identity, [
      { kind: 'io', size: 256, handler },
      { kind: 'mem', size: 256, handler },
    ]);
    this.eeprom = new Eeprom93c46(rtl8139EepromImage(mac, identity));
    this.buildRegisterMap();
    this.reset(true);
  }

  counters(): Record<string, number> {
    return { ...this.stats, eepromReads: this.eeprom.reads, eepromWrites: this.eeprom.writes };
  }

  attach(port: FramePort): void {
    this.port = port;
    port.setReceiver((frame) => this.receive(frame));
  }

  stop(): void {
    this.state = 'stopped';
    this.port?.setReceiver(null);
    this.pci.setIntx(false);
  }

  /** The datasheet's name of the register at `off` (`TSD2`, `ISR+1`), for `--debug rtl8139`. */
  private regName(off: number): string {
    const e = this.map[off];
    if (!e) return off < 256 ? unimplementedName(off) : `0x${off.toString(16)}`;
    return off === e[0] ? e[1].name : `${e[1].name}+${off - e[0]}`;
  }

  private fail(message: string): void {
    if (this.state !== 'running') return;
    this.ctx.fail(this.id, message);
    // The VM calls stop(); go quiet even where no VM does (a bare test harness).
    this.state = 'failed';
    this.port?.setReceiver(null);
  }

  // ---- registers ----

  private get isr(): number {
    return this.dv.getUint16(R.RTL_ISR, true);
  }
  private get imr(): number {
    return this.dv.getUint16(R.RTL_IMR, true);
  }
  private get rcr(): number {
    return this.dv.getUint32(R.RTL_RCR, true);
  }
  private get tcr(): number {
    return this.dv.getUint32(R.RTL_TCR, true);
  }
  private get cr(): number {
    return this.regs[R.RTL_CR]!;
  }
  private get configUnlocked(): boolean {
    return (this.regs[R.RTL_9346CR]! & R.CR9346_EEM_MASK) === R.CR9346_EEM_CONFIG;
  }

  /**
   * Power-on (full), or software (CR.RST) reset. The datasheet's RST "disables the transmitter and
   * receiver, reinitializes the FIFOs, resets the system buffer pointer to the initial value";
   * IDR and MAR keep their values, and so do the EEPROM-loaded configuration and the PHY.
   */
  private reset(powerOn: boolean): void {
    if (powerOn) {
      this.regs.fill(0);
      // The chip loads its Ethernet address from EEPROM words 7–9.
      for (let i = 0; i < 3; i++) {
        const w = this.eeprom.words[7 + i]!;
        this.regs[R.RTL_IDR + 2 * i] = w & 0xff;
        this.regs[R.RTL_IDR + 2 * i + 1] = w >> 8;
      }
      this.regs[R.RTL_CONFIG1] = 0x0c; // IOMAP | MEMMAP: both BARs decode
      this.media.reset();
      this.clockRunning = true;
    }
    this.regs[R.RTL_CR] = 0;
    this.dv.setUint16(R.RTL_IMR, 0, true);
    this.dv.setUint16(R.RTL_ISR, 0, true);
    for (let i = 0; i < 4; i++) this.dv.setUint32(R.RTL_TSD0 + 4 * i, R.TSD_OWN, true);
    this.txNext = 0;
    this.dv.setUint32(R.RTL_TCR, R.TCR_HWVER_RTL8139, true);
    this.dv.setUint32(R.RTL_RCR, 0, true);
    this.dv.setUint16(R.RTL_MULINT, 0, true);
    this.resetRxRing();
    this.updateIrq();
  }

  /** CBR and CAPR back to the ring's start (CAPR then reads 0xFFF0); a held frame may now fit. */
  private resetRxRing(): void {
    this.rx.reset();
    this.stats.rxRingResets++;
    this.wakeReceiver();
  }

  private read(off: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | this.readByte(off + i);
    return v >>> 0;
  }

  private readByte(off: number): number {
    if (off >= 256) return 0xff;
    const byte = (v: number, base: number): number => (v >>> (8 * (off - base))) & 0xff;
    switch (off) {
      case R.RTL_CR:
        return (this.regs[R.RTL_CR]! & (R.CR_RE | R.CR_TE)) | (this.rx.empty ? R.CR_BUFE : 0);
      case R.RTL_CAPR:
      case R.RTL_CAPR + 1:
        return byte(this.rx.capr, R.RTL_CAPR);
      case R.RTL_CBR:
      case R.RTL_CBR + 1:
        return byte(this.rx.write, R.RTL_CBR);
      case R.RTL_TSAD:
      case R.RTL_TSAD + 1:
        return byte(this.tsadSummary(), R.RTL_TSAD);
      case R.RTL_TCTR:
      case R.RTL_TCTR + 1:
      case R.RTL_TCTR + 2:
      case R.RTL_TCTR + 3: {
        // Free-running at the 33 MHz PCI clock since the last write to TCTR.
        const ticks = Math.floor(((this.ctx.clock.now() * 1e6 - this.tctrStartNs) / 1e9) * 33_000_000) >>> 0;
        return byte(ticks, R.RTL_TCTR);
      }
      case R.RTL_9346CR: {
        const v = this.regs[R.RTL_9346CR]!;
        const program = (v & R.CR9346_EEM_MASK) === R.CR9346_EEM_PROGRAM;
        return (v & ~R.CR9346_EEDO) | (program ? this.eeprom.dataOut : 0);
      }
      case R.RTL_MSR:
        return (this.regs[R.RTL_MSR]! & (R.MSR_TXFCE | R.MSR_RXFCE)) | this.media.msrMedia;
      case R.RTL_BMCR:
      case R.RTL_BMCR + 1:
        return byte(this.media.bmcr, R.RTL_BMCR);
      case R.RTL_BMSR:
      case R.RTL_BMSR + 1:
        return byte(BMSR_VALUE, R.RTL_BMSR);
      case R.RTL_ANAR:
      case R.RTL_ANAR + 1:
        return byte(this.media.anar, R.RTL_ANAR);
      case R.RTL_ANLPAR:
      case R.RTL_ANLPAR + 1:
        return byte(ANLPAR_PARTNER, R.RTL_ANLPAR);
      case R.RTL_ANER:
      case R.RTL_ANER + 1:
        return byte(ANER_VALUE, R.RTL_ANER);
      default:
        return this.regs[off]!;
    }
  }

  private write(off: number, size: AccessSize, value: number): void {
    if (this.state !== 'running') return;
    // Split the access into the registers it touches; each sees its own bytes and a byte mask,
    // so 8-, 16- and 32-bit accesses (and ones straddling two registers) all behave.
    let i = 0;
    while (i < size && off + i < 256) {
      const at = off + i;
      const entry = this.map[at];
      if (!entry) {
        this.fail(`write 0x${(value >>> 0).toString(16)} (${size} byte${size > 1 ? 's' : ''}) at 0x${off.toString(16)}: ${unimplementedName(at)} is not implemented`);
        return;
      }
      const [base, reg] = entry;
      let v = 0;
      let mask = 0;
      for (; i < size && off + i < base + reg.len; i++) {
        const shift = 8 * (off + i - base);
        v |= ((value >>> (8 * i)) & 0xff) << shift;
        mask |= 0xff << shift;
      }
      if (reg.write !== 'ignore') reg.write(v >>> 0, mask >>> 0);
      else if (this.dbg.on) this.dbg.debug(`write 0x${(v >>> 0).toString(16)} to read-only ${reg.name} ignored`);
      if (this.state !== 'running') return;
    }
  }

  private buildRegisterMap(): void {
    const add = (off: number, reg: Reg): void => {
      for (let i = 0; i < reg.len; i++) this.map[off + i] = [off, reg];
    };
    const stored = (off: number, len: number) => (v: number, m: number): void => {
      for (let i = 0; i < len; i++) if ((m >>> (8 * i)) & 0xff) this.regs[off + i] = (v >>> (8 * i)) & 0xff;
    };
    const merged = (off: number, len: number, v: number, m: number): number => {
      const old = len === 4 ? this.dv.getUint32(off, true) : len === 2 ? this.dv.getUint16(off, true) : this.regs[off]!;
      return ((old & ~m) | (v & m)) >>> 0;
    };
    const configByte = (off: number, writable: number) => (v: number): void => {
      // Config registers take writes only while 9346CR unlocks them (EEM = 11), as on the chip;
      // 8139too's old-chip wakeup writes Config1 while locked and the chip ignores it.
      if (!this.configUnlocked) return;
      this.regs[off] = (this.regs[off]! & ~writable) | (v & writable);
    };

    // Registers are at most 4 bytes wide here, so byte shifts stay within 32 bits.
    add(R.RTL_IDR, { name: 'IDR0-3', len: 4, write: stored(R.RTL_IDR, 4) });
    add(R.RTL_IDR + 4, { name: 'IDR4-5', len: 2, write: stored(R.RTL_IDR + 4, 2) });
    // 8139too writes the MAC as two 32-bit words; the chip ignores bytes 6–7.
    add(0x06, { name: 'IDR reserved', len: 2, write: 'ignore' });
    add(R.RTL_MAR, { name: 'MAR0-3', len: 4, write: stored(R.RTL_MAR, 4) });
    add(R.RTL_MAR + 4, { name: 'MAR4-7', len: 4, write: stored(R.RTL_MAR + 4, 4) });
    for (let n = 0; n < 4; n++) {
      const off = R.RTL_TSD0 + 4 * n;
      add(off, {
        name: `TSD${n}`,
        len: 4,
        write: (v, m) => {
          // The driver sets SIZE, OWN and the early-TX threshold; TOK/TUN and the status byte clear.
          this.dv.setUint32(off, merged(off, 4, v, m) & (R.TSD_SIZE | R.TSD_OWN | R.TSD_ERTXTH), true);
          this.transmitPending(n);
        },
      });
      add(R.RTL_TSAD0 + 4 * n, { name: `TSAD${n}`, len: 4, write: stored(R.RTL_TSAD0 + 4 * n, 4) });
    }
    add(R.RTL_RBSTART, { name: 'RBSTART', len: 4, write: stored(R.RTL_RBSTART, 4) });
    add(R.RTL_ERBCR, { name: 'ERBCR', len: 2, write: 'ignore' });
    add(R.RTL_ERSR, { name: 'ERSR', len: 1, write: 'ignore' });
    add(R.RTL_CR, { name: 'CR', len: 1, write: (v) => this.writeCommand(v) });
    add(R.RTL_CAPR, {
      name: 'CAPR',
      len: 2,
      write: (v, m) => {
        // Merged with CAPR as it reads now (a ring reset moves it), so byte writes work too.
        this.rx.setCapr(((this.rx.capr & ~m) | (v & m)) & 0xffff, R.rxRingSize(this.rcr));
        this.wakeReceiver();
      },
    });
    add(R.RTL_CBR, { name: 'CBR', len: 2, write: 'ignore' });
    add(R.RTL_IMR, {
      name: 'IMR',
      len: 2,
      write: (v, m) => {
        this.dv.setUint16(R.RTL_IMR, merged(R.RTL_IMR, 2, v, m) & R.IMR_MASK, true);
        this.updateIrq();
      },
    });
    add(R.RTL_ISR, {
      name: 'ISR',
      len: 2,
      write: (v) => {
        // Write 1 to clear.
        this.dv.setUint16(R.RTL_ISR, this.isr & ~v, true);
        this.updateIrq();
      },
    });
    add(R.RTL_TCR, {
      name: 'TCR',
      len: 4,
      write: (v, m) => {
        // CLRABT retransmits an aborted frame; a virtual wire never aborts one, so it is a no-op.
        const tcr = (merged(R.RTL_TCR, 4, v, m) & R.TCR_WRITABLE) | R.TCR_HWVER_RTL8139;
        this.dv.setUint32(R.RTL_TCR, tcr >>> 0, true);
      },
    });
    add(R.RTL_RCR, {
      name: 'RCR',
      len: 4,
      write: (v, m) => {
        const before = R.rxRingSize(this.rcr);
        this.dv.setUint32(R.RTL_RCR, merged(R.RTL_RCR, 4, v, m) & R.RCR_WRITABLE, true);
        if (R.rxRingSize(this.rcr) !== before) this.resetRxRing();
      },
    });
    add(R.RTL_TCTR, { name: 'TCTR', len: 4, write: () => void (this.tctrStartNs = this.ctx.clock.now() * 1e6) });
    // Missed-packet counter: any write clears it.
    add(R.RTL_MPC, { name: 'MPC', len: 4, write: () => this.dv.setUint32(R.RTL_MPC, 0, true) });
    add(R.RTL_9346CR, { name: '9346CR', len: 1, write: (v) => this.write9346(v) });
    add(R.RTL_CONFIG0, { name: 'CONFIG0', len: 1, write: configByte(R.RTL_CONFIG0, 0x07) });
    add(R.RTL_CONFIG1, { name: 'CONFIG1', len: 1, write: configByte(R.RTL_CONFIG1, 0xf3) });
    add(R.RTL_TIMERINT, {
      name: 'TimerInt',
      len: 4,
      write: (v, m) => {
        const t = merged(R.RTL_TIMERINT, 4, v, m);
        // 0 means "no timer interrupt", which is what the model gives; a deadline is not modelled.
        if (t !== 0) this.fail(`TimerInt (0x54) set to 0x${t.toString(16)}: the TCTR timer interrupt is not implemented`);
      },
    });
    add(R.RTL_MSR, { name: 'MSR', len: 1, write: (v) => void (this.regs[R.RTL_MSR] = v & (R.MSR_TXFCE | R.MSR_RXFCE)) });
    add(R.RTL_CONFIG3, { name: 'CONFIG3', len: 1, write: configByte(R.RTL_CONFIG3, 0x70) });
    add(R.RTL_CONFIG4, { name: 'CONFIG4', len: 1, write: configByte(R.RTL_CONFIG4, 0xf5) });
    add(R.RTL_HLTCLK, {
      name: 'HLTCLK',
      len: 1,
      write: (v) => {
        this.regs[R.RTL_HLTCLK] = v;
        if (v === R.HLTCLK_RUN) this.clockRunning = true;
        else if (v === R.HLTCLK_HALT) this.clockRunning = false;
      },
    });
    // Early-receive interrupt threshold: 8139too clears bits 11:0; bits 15:12 are reserved.
    add(R.RTL_MULINT, { name: 'MULINT', len: 2, write: (v, m) => this.dv.setUint16(R.RTL_MULINT, merged(R.RTL_MULINT, 2, v, m) & 0x0fff, true) });
    add(0x5e, { name: 'RERID', len: 1, write: 'ignore' });
    add(R.RTL_TSAD, { name: 'TSAD', len: 2, write: 'ignore' });
    add(R.RTL_BMCR, { name: 'BMCR', len: 2, write: (v, m) => this.media.writeBmcr(merged(R.RTL_BMCR, 2, v, m) & m) });
    add(R.RTL_BMSR, { name: 'BMSR', len: 2, write: 'ignore' });
    add(R.RTL_ANAR, { name: 'ANAR', len: 2, write: (v, m) => this.media.writeAnar(((this.media.anar & ~m) | (v & m)) & 0xffff) });
    add(R.RTL_ANLPAR, { name: 'ANLPAR', len: 2, write: 'ignore' });
    add(R.RTL_ANER, { name: 'ANER', len: 2, write: 'ignore' });
    // Disconnect, false-carrier and RX_ER counters: read-only, always 0 on a clean virtual cable.
    add(0x6c, { name: 'DIS', len: 2, write: 'ignore' });
    add(0x6e, { name: 'FCSC', len: 2, write: 'ignore' });
    add(0x72, { name: 'REC', len: 2, write: 'ignore' });
    // Config5 needs no unlock (8139too's set_wol says so); bit 7 is reserved.
    add(R.RTL_CONFIG5, { name: 'CONFIG5', len: 1, write: (v) => void (this.regs[R.RTL_CONFIG5] = v & 0x7f) });
  }

  private writeCommand(v: number): void {
    if (v & R.CR_RST) {
      // The reset completes within the write: RST reads back 0 at once.
      this.reset(false);
      return;
    }
    const prev = this.cr;
    const next = v & (R.CR_RE | R.CR_TE);
    this.regs[R.RTL_CR] = next;
    // The receiver restarts at the ring's start (8139too's rtl8139_rx_err relies on it).
    if (next & R.CR_RE && !(prev & R.CR_RE)) this.resetRxRing();
    else this.wakeReceiver();
    if (next & R.CR_TE && !(prev & R.CR_TE)) {
      // Descriptors handed over while the transmitter was off go now, in ring order.
      for (let k = 0, n = this.txNext; k < 4 && this.state === 'running'; k++, n = (n + 1) % 4) this.transmitPending(n);
    }
  }

  private write9346(v: number): void {
    const mode = v & R.CR9346_EEM_MASK;
    if (mode === R.CR9346_EEM_AUTOLOAD) {
      // "Like when the RSTB signal is asserted": reload from the EEPROM, then back to normal mode.
      this.reset(true);
      this.wakeReceiver();
      return;
    }
    // Bits 5:4 are reserved; EEDO is the EEPROM's, not the driver's.
    this.regs[R.RTL_9346CR] = v & (R.CR9346_EEM_MASK | R.CR9346_EECS | R.CR9346_EESK | R.CR9346_EEDI);
    // Outside programming mode the chip, not the register, drives the pins: CS is low.
    const program = mode === R.CR9346_EEM_PROGRAM;
    this.eeprom.setPins(program && (v & R.CR9346_EECS) !== 0, program && (v & R.CR9346_EESK) !== 0, (v & R.CR9346_EEDI) !== 0);
  }

  private tsadSummary(): number {
    let v = 0;
    for (let n = 0; n < 4; n++) {
      const tsd = this.dv.getUint32(R.RTL_TSD0 + 4 * n, true);
      if (tsd & R.TSD_TOK) v |= 1 << (12 + n);
      if (tsd & R.TSD_TUN) v |= 1 << (8 + n);
      if (tsd & R.TSD_OWN) v |= 1 << n;
    }
    return v;
  }

  // ---- transmit ----

  /** Descriptor n, if the driver handed it over (OWN clear) and the transmitter is on: send it. */
  private transmitPending(n: number): void {
    const reg = R.RTL_TSD0 + 4 * n;
    const tsd = this.dv.getUint32(reg, true);
    if (tsd & R.TSD_OWN) return; // the host still owns it (or it is done)
    if (!(this.cr & R.CR_TE)) return; // pending until TE is set
    if (!this.pci.busMaster) return; // no DMA until the driver enables bus mastering
    this.txNext = (n + 1) % 4;
    const size = tsd & R.TSD_SIZE;
    const done = (ok: boolean): void => {
      this.dv.setUint32(reg, (tsd | R.TSD_OWN | (ok ? R.TSD_TOK : R.TSD_TUN)) >>> 0, true);
      this.raise(ok ? R.ISR_TOK : R.ISR_TER);
    };
    if (size === 0 || size > RTL_MAX_TX) {
      this.stats.txBadLength++;
      this.stats.txErrors++;
      done(false);
      return;
    }
    const addr = this.dv.getUint32(R.RTL_TSAD0 + 4 * n, true);
    const frame = this.ctx.memory.read(addr, size);
    if (isDmaFault(frame)) {
      this.fail(`TX descriptor ${n}: ${frame.message}`);
      return;
    }
    this.ctx.telemetry.record('dma', this.id);
    done(true);
    // With "no CRC" the driver's own FCS ends the buffer; the lab's frames carry none.
    const out = this.tcr & R.TCR_CRC && frame.length > 4 ? frame.subarray(0, frame.length - 4) : frame;
    if ((this.tcr & R.TCR_LBK) === R.TCR_LBK) {
      // Loopback: the frame never reaches the cable; the receiver takes it (no flow control here).
      this.stats.txLoopback++;
      this.receive(out.slice(), false);
      return;
    }
    if (out.length > SEGMENT_MAX_FRAME) {
      this.stats.txDropGiant++;
      if (this.dbg.on) this.dbg.debug(`drop (txDropGiant)`);
      return;
    }
    if (out.length < SEGMENT_MIN_FRAME) {
      this.stats.txDropRunt++;
      if (this.dbg.on) this.dbg.debug(`drop (txDropRunt)`);
      return;
    }
    this.stats.txFrames++;
    this.stats.txBytes += out.length;
    // The port counts its own drops; to the chip the frame has left either way.
    this.port?.send(out);
  }

  // ---- receive ----

  /** The driver freed ring space (CAPR) or reset the receiver: offer the held frame again. */
  private wakeReceiver(): void {
    if (!this.rxWaiting) return;
    this.rxWaiting = false;
    this.port?.ready?.();
  }

  private accepts(frame: Uint8Array): number {
    const rcr = this.rcr;
    const regs = this.regs;
    if ((frame[0]! & 1) === 0) {
      let mine = true;
      for (let i = 0; i < 6; i++) if (frame[i] !== regs[R.RTL_IDR + i]) mine = false;
      if (mine && rcr & R.RCR_APM) return R.RX_STATUS_PAM;
      return rcr & R.RCR_AAP ? 0 : -1; // promiscuous: accepted, no match bit
    }
    if (frame[0] === 0xff && frame[1] === 0xff && frame[2] === 0xff && frame[3] === 0xff && frame[4] === 0xff && frame[5] === 0xff) return rcr & (R.RCR_AB | R.RCR_AAP) ? R.RX_STATUS_BAR : -1;
    if (rcr & R.RCR_AAP) return R.RX_STATUS_MAR;
    if (!(rcr & R.RCR_AM)) return -1;
    const bit = multicastHashBit(frame.subarray(0, 6));
    return regs[R.RTL_MAR + (bit >> 3)]! & (1 << (bit & 7)) ? R.RX_STATUS_MAR : -1;
  }

  /**
   * A frame from the wire (or the transmitter in loopback). False when it could not be stored (the
   * port counts the drop); `'busy'` only to a port that holds frames, and only for a frame that
   * fits the ring once the driver frees room.
   */
  private receive(frame: Uint8Array, canHold = this.port?.holds === true): boolean | 'busy' {
    if (this.state !== 'running') return false;
    if (!this.clockRunning || !(this.cr & R.CR_RE) || !this.pci.busMaster) {
      this.stats.rxDropDisabled++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropDisabled)`);
      return false;
    }
    if (frame.length < 14) {
      this.stats.rxDropRunt++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropRunt)`);
      return false;
    }
    if (frame.length > SEGMENT_MAX_FRAME) {
      this.stats.rxDropGiant++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropGiant)`);
      return false;
    }
    const status = this.accepts(frame);
    if (status < 0) {
      // Not for us: a real NIC ignores it silently; that is not a drop on the link.
      this.stats.rxDropFiltered++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropFiltered)`);
      return true;
    }
    // The wire pads short frames to 60 bytes; the chip stores the FCS it received.
    const body = frame.length < 60 ? padTo60(frame) : frame;
    // The largest record (4 + 1518 + 4 bytes) always fits the smallest ring (8 KiB), so a frame
    // answered 'busy' below always fits once the driver frees room: flow control cannot wedge.
    const size = R.rxRingSize(this.rcr);
    if (!this.rx.fits(RxRing.recordBytes(body.length), size)) {
      if (canHold) {
        // Flow control (QEMU's can_receive): the link keeps the frame until the driver frees room.
        this.rxWaiting = true;
        this.stats.rxHeldRingFull++;
        return 'busy';
      }
      this.stats.rxDropRingFull++;
      if (this.dbg.on) this.dbg.debug(`drop (rxDropRingFull)`);
      this.countMissed();
      this.raise(R.ISR_RXOVW);
      return false;
    }
    const base = this.dv.getUint32(R.RTL_RBSTART, true);
    const stored = this.rx.store(this.ctx.memory, base, size, (this.rcr & R.RCR_WRAP) !== 0, status | R.RX_STATUS_ROK, body);
    if (isDmaFault(stored)) {
      this.fail(`receive ring at 0x${base.toString(16)}: ${stored.message}`);
      return false;
    }
    this.ctx.telemetry.record('dma', this.id);
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    this.raise(R.ISR_ROK);
    return true;
  }

  private countMissed(): void {
    this.dv.setUint32(R.RTL_MPC, (this.dv.getUint32(R.RTL_MPC, true) + 1) & 0xffffff, true);
  }

  private raise(bits: number): void {
    this.dv.setUint16(R.RTL_ISR, this.isr | bits, true);
    this.updateIrq();
  }

  private updateIrq(): void {
    if (this.state !== 'running') return;
    const want = (this.isr & this.imr) !== 0;
    if (want && !this.lineHigh) this.stats.interrupts++;
    this.lineHigh = want;
    this.pci.setIntx(want);
  }
}

/** What lives at a register offset the model does not implement (for the fail-stop message). */
function unimplementedName(off: number): string {
  const hex = `0x${off.toString(16).padStart(2, '0')}`;
  if (off >= 0x70 && off < 0x74) return `NWAYTR (${hex}, PHY test)`;
  if (off >= 0x74 && off < 0x78) return `CSCR (${hex}, twister/PHY configuration)`;
  if (off >= 0x78 && off < 0x7c) return `PHY1_PARM (${hex})`;
  if (off >= 0x7c && off < 0x80) return `TW_PARM (${hex}, twister parameter)`;
  if (off >= 0x80 && off < 0x84) return `PHY2_PARM (${hex})`;
  if (off >= 0x84 && off < 0x8c) return `wake-up frame CRC register ${hex}`;
  if (off >= 0x8c && off < 0xcc) return `wake-up frame mask register ${hex}`;
  if (off >= 0xcc && off < 0xd4) return `LSBCRC register ${hex}`;
  if (off >= 0xd4 && off < 0xd8) return `FLASH (${hex})`;
  if (off >= 0xd9) return `register ${hex} (C+ mode registers exist only on the RTL8139C+)`;
  return `reserved register ${hex}`;
}

function padTo60(frame: Uint8Array): Uint8Array {
  const p = new Uint8Array(60);
  p.set(frame);
  return p;
}

export function createRtl8139(ctx: DeviceContext, cfg: DeviceConfig): Rtl8139 | { error: string } {
  if (!ctx.pci) return { error: 'an RTL8139 is a PCI card: add <device class="PCI" id="pci0"/> before it and <bus>pci0</bus> to it' };
  const slot = ctx.pci.freeSlot();
  if (slot === null) return { error: 'no free PCI slot (32 slots, one taken by the host bridge)' };
  const dev = new Rtl8139(ctx, cfg.id, cfg.mac!);
  ctx.pci.add(dev.pci, slot);
  return dev;
}
