import type { FramePort } from '../../net/frame-port.js';
import type { DeviceConfig } from '../config/types.js';
import type { DeviceContext, DeviceState, NicDevice } from '../vmm/device.js';
import type { AccessSize } from '../vmm/io-bus.js';
import { isDmaFault } from '../vmm/memory.js';
import { PciFunction } from '../vmm/pci.js';
import { ethernetFcs, multicastHashBit } from './ether-crc.js';

/**
 * Realtek RTL8139 (PCI 10ec:8139), the original chip without C+ mode: 256 bytes of registers in an
 * I/O BAR and the same registers again in an MMIO BAR; four transmit descriptors (TSD/TSAD pairs)
 * and one contiguous receive ring in guest memory. Register map: ../../../shared/FACTS.md and the
 * RTL8139 datasheet. The TCR hardware-version bits say "RTL8139" so drivers do not try C+ mode.
 */
export const RTL_IDR = 0x00;
export const RTL_MAR = 0x08;
export const RTL_TSD0 = 0x10;
export const RTL_TSAD0 = 0x20;
export const RTL_RBSTART = 0x30;
export const RTL_CR = 0x37;
export const RTL_CAPR = 0x38;
export const RTL_CBR = 0x3a;
export const RTL_IMR = 0x3c;
export const RTL_ISR = 0x3e;
export const RTL_TCR = 0x40;
export const RTL_RCR = 0x44;
export const RTL_TCTR = 0x48;
export const RTL_MPC = 0x4c;
export const RTL_9346CR = 0x50;
export const RTL_CONFIG1 = 0x52;
export const RTL_MSR = 0x58;
export const RTL_TSAD = 0x60;
export const RTL_BMCR = 0x62;
export const RTL_BMSR = 0x64;

export const CR_RST = 0x10;
export const CR_RE = 0x08;
export const CR_TE = 0x04;
export const CR_BUFE = 0x01;

export const ISR_ROK = 0x01;
export const ISR_RER = 0x02;
export const ISR_TOK = 0x04;
export const ISR_TER = 0x08;
export const ISR_RXOVW = 0x10;
export const ISR_PUN = 0x20;
export const ISR_FOVW = 0x40;
export const ISR_TIMEOUT = 0x4000;
export const ISR_SERR = 0x8000;

export const TSD_OWN = 0x2000;
export const TSD_TUN = 0x4000;
export const TSD_TOK = 0x8000;
export const TSD_SIZE = 0x1fff;

export const RCR_AAP = 0x01;
export const RCR_APM = 0x02;
export const RCR_AM = 0x04;
export const RCR_AB = 0x08;
export const RCR_WRAP = 0x80;

export const RX_STATUS_ROK = 0x0001;
export const RX_STATUS_PAM = 0x1000;
export const RX_STATUS_BAR = 0x2000;
export const RX_STATUS_MAR = 0x8000;

/** "RTL8139" in TCR's hardware version bits (HWVERID_A = 11, HWVERID_B = 0). */
const TCR_HWVER_RTL8139 = 0x60000000;
/** The chip transmits at most this much per descriptor (its 2 KiB TX FIFO less slack). */
export const RTL_MAX_TX = 1792;
const IMR_MASK = 0xe07f;

export function rxRingSize(rcr: number): number {
  return 8192 << ((rcr >>> 11) & 3);
}

export class Rtl8139 implements NicDevice {
  readonly className = 'RTL8139';
  readonly model = 'rtl8139';
  state: DeviceState = 'running';
  readonly pci: PciFunction;
  private readonly regs = new Uint8Array(256);
  private readonly dv = new DataView(this.regs.buffer);
  private port: FramePort | null = null;
  /** Where the next received packet goes (CBR) and where the driver has read up to (CAPR + 16). */
  private rxWrite = 0;
  private rxRead = 0;
  /** A frame was answered `'busy'`: the port waits for ready(). */
  private rxWaiting = false;
  /** TCTR counts from here (ns of the lab clock); a write to TCTR restarts it. */
  private tctrStartNs = 0;
  private readonly stats = {
    rxFrames: 0,
    rxBytes: 0,
    rxDropRingFull: 0,
    /** Times the ring was full and the link held the frame (flow control) instead of dropping it. */
    rxHeldRingFull: 0,
    rxDropFiltered: 0,
    rxDropDisabled: 0,
    txFrames: 0,
    txBytes: 0,
    txErrors: 0,
    interrupts: 0,
  };

  constructor(
    private readonly ctx: DeviceContext,
    readonly id: string,
    readonly mac: Uint8Array,
  ) {
    const handler = { read: (off: number, size: AccessSize) => this.read(off, size), write: (off: number, size: AccessSize, v: number) => this.write(off, size, v) };
    this.pci = new PciFunction(id, { vendorId: 0x10ec, deviceId: 0x8139, classCode: 0x020000, revision: 0x10, subsystemVendorId: 0x10ec, subsystemId: 0x8139, interruptPin: 1 }, [
      { kind: 'io', size: 256, handler },
      { kind: 'mem', size: 256, handler },
    ]);
    this.reset(true);
  }

  counters(): Record<string, number> {
    return { ...this.stats };
  }

  attach(port: FramePort): void {
    this.port = port;
    port.setReceiver((frame) => this.receive(frame));
  }

  /** The driver freed ring space (CAPR) or reset the receiver: offer the held frame again. */
  private wakeReceiver(): void {
    if (!this.rxWaiting) return;
    this.rxWaiting = false;
    this.port?.ready?.();
  }

  stop(): void {
    this.state = 'stopped';
    this.port?.setReceiver(null);
    this.pci.setIntx(false);
  }

  private get isr(): number {
    return this.dv.getUint16(RTL_ISR, true);
  }
  private get imr(): number {
    return this.dv.getUint16(RTL_IMR, true);
  }
  private get rcr(): number {
    return this.dv.getUint32(RTL_RCR, true);
  }
  private get cr(): number {
    return this.regs[RTL_CR]!;
  }

  /** Power-on (full) or software (CR.RST) reset. A software reset keeps IDR and MAR. */
  private reset(powerOn: boolean): void {
    if (powerOn) {
      this.regs.fill(0);
      this.regs.set(this.mac, RTL_IDR);
    }
    this.regs[RTL_CR] = 0;
    this.dv.setUint16(RTL_IMR, 0, true);
    this.dv.setUint16(RTL_ISR, 0, true);
    for (let i = 0; i < 4; i++) this.dv.setUint32(RTL_TSD0 + 4 * i, TSD_OWN, true);
    this.dv.setUint32(RTL_TCR, TCR_HWVER_RTL8139, true);
    this.dv.setUint32(RTL_RCR, 0, true);
    this.rxWrite = 0;
    this.rxRead = 0;
    this.regs[RTL_CONFIG1] = 0x0d;
    this.dv.setUint16(RTL_BMCR, 0x3100, true); // 100 Mb/s, autonegotiation on, full duplex
    this.dv.setUint16(RTL_BMSR, 0x782d, true); // capabilities, link up, autonegotiation complete
    this.regs[RTL_MSR] = 0x08; // 100 Mb/s; LINKB (bit 2) clear = link OK
    this.updateIrq();
  }

  private read(off: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | this.readByte(off + i);
    return v >>> 0;
  }

  private readByte(off: number): number {
    if (off >= 256) return 0xff;
    switch (off) {
      case RTL_CR:
        return (this.regs[RTL_CR]! & (CR_RE | CR_TE)) | (this.rxRead === this.rxWrite ? CR_BUFE : 0);
      case RTL_CAPR:
      case RTL_CAPR + 1:
        return (((this.rxRead - 16) & 0xffff) >> (8 * (off - RTL_CAPR))) & 0xff;
      case RTL_CBR:
      case RTL_CBR + 1:
        return ((this.rxWrite & 0xffff) >> (8 * (off - RTL_CBR))) & 0xff;
      case RTL_TSAD:
      case RTL_TSAD + 1:
        return (this.tsadSummary() >> (8 * (off - RTL_TSAD))) & 0xff;
      case RTL_TCTR:
      case RTL_TCTR + 1:
      case RTL_TCTR + 2:
      case RTL_TCTR + 3: {
        // Free-running at the 33 MHz PCI clock since the last write to TCTR.
        const ticks = Math.floor(((this.ctx.clock.now() * 1e6 - this.tctrStartNs) / 1e9) * 33_000_000) >>> 0;
        return (ticks >>> (8 * (off - RTL_TCTR))) & 0xff;
      }
      default:
        return this.regs[off]!;
    }
  }

  private write(off: number, size: AccessSize, value: number): void {
    if (this.state !== 'running') return;
    // Registers wider than a byte act on the merged value, so 8/16/32-bit accesses all work.
    const old = this.regs.slice(off, off + size);
    for (let i = 0; i < size && off + i < 256; i++) this.regs[off + i] = (value >>> (8 * i)) & 0xff;
    const touches = (reg: number, len: number): boolean => off < reg + len && reg < off + size;

    if (touches(RTL_ISR, 2)) {
      // Write 1 to clear: restore the old bits, then clear those written as 1.
      let isr = 0;
      let written = 0;
      for (let i = 0; i < 2; i++) {
        const a = RTL_ISR + i;
        const prev = a >= off && a < off + size ? old[a - off]! : this.regs[a]!;
        isr |= prev << (8 * i);
        if (a >= off && a < off + size) written |= ((value >>> (8 * (a - off))) & 0xff) << (8 * i);
      }
      this.dv.setUint16(RTL_ISR, isr & ~written, true);
      this.updateIrq();
    }
    if (touches(RTL_IMR, 2)) {
      this.dv.setUint16(RTL_IMR, this.imr & IMR_MASK, true);
      this.updateIrq();
    }
    if (touches(RTL_CR, 1)) {
      const cr = this.regs[RTL_CR]!;
      if (cr & CR_RST) this.reset(false);
      else this.regs[RTL_CR] = cr & (CR_RE | CR_TE);
      this.wakeReceiver();
    }
    if (touches(RTL_CAPR, 2)) {
      const ring = rxRingSize(this.rcr);
      this.rxRead = (this.dv.getUint16(RTL_CAPR, true) + 16) % ring;
      this.wakeReceiver();
    }
    if (touches(RTL_TCR, 4)) {
      // Hardware version bits are read-only.
      const tcr = this.dv.getUint32(RTL_TCR, true);
      this.dv.setUint32(RTL_TCR, ((tcr & ~0x7cc00000) | TCR_HWVER_RTL8139) >>> 0, true);
    }
    if (touches(RTL_TCTR, 4)) this.tctrStartNs = this.ctx.clock.now() * 1e6;
    if (touches(RTL_MPC, 4)) this.dv.setUint32(RTL_MPC, 0, true); // any write clears the missed-packet count
    if (touches(RTL_BMSR, 2) || touches(RTL_MSR, 1) || touches(RTL_TSAD, 2) || touches(RTL_CBR, 2)) {
      // Read-only status registers: put back what was there.
      for (let i = 0; i < size; i++) {
        const a = off + i;
        if (a === RTL_BMSR || a === RTL_BMSR + 1 || a === RTL_MSR || a === RTL_CBR || a === RTL_CBR + 1) this.regs[a] = old[i]!;
      }
    }
    for (let n = 0; n < 4; n++) {
      if (touches(RTL_TSD0 + 4 * n, 4)) this.transmit(n);
    }
  }

  private tsadSummary(): number {
    let v = 0;
    for (let n = 0; n < 4; n++) {
      const tsd = this.dv.getUint32(RTL_TSD0 + 4 * n, true);
      if (tsd & TSD_TOK) v |= 1 << (12 + n);
      if (tsd & TSD_TUN) v |= 1 << (8 + n);
      if (tsd & TSD_OWN) v |= 1 << n;
    }
    return v;
  }

  /** The driver handed descriptor n to the chip (TSD written with OWN clear). */
  private transmit(n: number): void {
    const reg = RTL_TSD0 + 4 * n;
    const tsd = this.dv.getUint32(reg, true);
    if (tsd & TSD_OWN) return; // the driver only touched thresholds; nothing to send
    const size = tsd & TSD_SIZE;
    const done = (ok: boolean): void => {
      this.dv.setUint32(reg, ((tsd & ~(TSD_TOK | TSD_TUN)) | TSD_OWN | (ok ? TSD_TOK : TSD_TUN)) >>> 0, true);
      this.raise(ok ? ISR_TOK : ISR_TER);
    };
    if (!(this.cr & CR_TE)) {
      // Transmitter off: the descriptor stays with the chip until TE is set; real chips sit on it.
      this.stats.txErrors++;
      done(false);
      return;
    }
    if (!this.pci.busMaster) {
      this.stats.txErrors++;
      done(false);
      return;
    }
    if (size < 14 || size > RTL_MAX_TX) {
      this.stats.txErrors++;
      done(false);
      return;
    }
    const addr = this.dv.getUint32(RTL_TSAD0 + 4 * n, true);
    const frame = this.ctx.memory.read(addr, size);
    if (isDmaFault(frame)) {
      this.ctx.fail(this.id, `TX descriptor ${n}: ${frame.message}`);
      return;
    }
    this.ctx.telemetry.record('dma', this.id);
    this.stats.txFrames++;
    this.stats.txBytes += size;
    // The port counts its own drops; to the chip the frame has left either way.
    this.port?.send(frame);
    done(true);
  }

  private accepts(frame: Uint8Array): number {
    const rcr = this.rcr;
    const regs = this.regs;
    if ((frame[0]! & 1) === 0) {
      let mine = true;
      for (let i = 0; i < 6; i++) if (frame[i] !== regs[RTL_IDR + i]) mine = false;
      if (mine && rcr & RCR_APM) return RX_STATUS_PAM;
      return rcr & RCR_AAP ? 0 : -1; // promiscuous: accepted, no match bit
    }
    const dst = frame.subarray(0, 6);
    if (frame[0] === 0xff && frame[1] === 0xff && frame[2] === 0xff && frame[3] === 0xff && frame[4] === 0xff && frame[5] === 0xff) return rcr & (RCR_AB | RCR_AAP) ? RX_STATUS_BAR : -1;
    if (rcr & RCR_AAP) return RX_STATUS_MAR;
    if (!(rcr & RCR_AM)) return -1;
    const bit = multicastHashBit(dst);
    return this.regs[RTL_MAR + (bit >> 3)]! & (1 << (bit & 7)) ? RX_STATUS_MAR : -1;
  }

  /** A frame from the wire. False when it could not be stored (the port counts the drop). */
  private receive(frame: Uint8Array): boolean | 'busy' {
    if (this.state !== 'running') return false;
    if (!(this.cr & CR_RE) || !this.pci.busMaster) {
      this.stats.rxDropDisabled++;
      return false;
    }
    if (frame.length < 14) return false;
    const status = this.accepts(frame);
    if (status < 0) {
      // Not for us: a real NIC ignores it silently; that is not a drop on the link.
      this.stats.rxDropFiltered++;
      return true;
    }
    // The wire pads short frames to 60 bytes; the chip stores the FCS it received.
    const body = frame.length < 60 ? padTo60(frame) : frame;
    const length = body.length + 4;
    const need = (4 + length + 3) & ~3;
    const ring = rxRingSize(this.rcr);
    const used = (this.rxWrite - this.rxRead + ring) % ring;
    if (used + need >= ring) {
      if (this.port?.holds) {
        // Flow control (QEMU's can_receive): the link keeps the frame until the driver frees room.
        this.rxWaiting = true;
        this.stats.rxHeldRingFull++;
        return 'busy';
      }
      this.stats.rxDropRingFull++;
      this.dv.setUint32(RTL_MPC, (this.dv.getUint32(RTL_MPC, true) + 1) & 0xffffff, true);
      this.raise(ISR_RXOVW);
      return false;
    }
    const base = this.dv.getUint32(RTL_RBSTART, true);
    const wrap = (this.rcr & RCR_WRAP) !== 0;
    const fcs = ethernetFcs(body);
    const total = 4 + length;
    // With WRAP set the chip runs past the ring's end into the driver's overflow area, so the
    // packet is one contiguous DMA straight into guest memory; without it, it wraps to the start.
    if (wrap || this.rxWrite + total <= ring) {
      const view = this.ctx.memory.view(base + this.rxWrite, total);
      if (isDmaFault(view)) {
        this.ctx.fail(this.id, `receive ring at 0x${base.toString(16)}: ${view.message}`);
        return false;
      }
      writeRxPacket(view, status | RX_STATUS_ROK, length, body, fcs);
    } else {
      const packet = new Uint8Array(total);
      writeRxPacket(packet, status | RX_STATUS_ROK, length, body, fcs);
      const first = ring - this.rxWrite;
      let r = this.ctx.memory.write(base + this.rxWrite, packet.subarray(0, first));
      if (!isDmaFault(r)) r = this.ctx.memory.write(base, packet.subarray(first));
      if (isDmaFault(r)) {
        this.ctx.fail(this.id, `receive ring at 0x${base.toString(16)}: ${r.message}`);
        return false;
      }
    }
    this.ctx.telemetry.record('dma', this.id);
    this.rxWrite = (this.rxWrite + need) % ring;
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    this.raise(ISR_ROK);
    return true;
  }

  private raise(bits: number): void {
    this.dv.setUint16(RTL_ISR, this.isr | bits, true);
    this.updateIrq();
  }

  private updateIrq(): void {
    if (this.state !== 'running') return;
    const want = (this.isr & this.imr) !== 0;
    const wasHigh = this.lineHigh;
    this.lineHigh = want;
    if (want && !wasHigh) this.stats.interrupts++;
    this.pci.setIntx(want);
  }
  private lineHigh = false;
}

/** The receive-ring record: status (LE16), length incl. FCS (LE16), the frame, the FCS (LE32). */
function writeRxPacket(out: Uint8Array, status: number, length: number, body: Uint8Array, fcs: number): void {
  out[0] = status & 0xff;
  out[1] = status >> 8;
  out[2] = length & 0xff;
  out[3] = length >> 8;
  out.set(body, 4);
  const o = 4 + body.length;
  out[o] = fcs & 0xff;
  out[o + 1] = (fcs >>> 8) & 0xff;
  out[o + 2] = (fcs >>> 16) & 0xff;
  out[o + 3] = fcs >>> 24;
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
