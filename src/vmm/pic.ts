import { NO_DEBUG, type DebugLog } from '../../net/debug.js';
import type { IoBus, IoHandler } from './io-bus.js';

/**
 * A pair of 8259A programmable interrupt controllers (master at 0x20/0x21, slave at 0xA0/0xA1,
 * cascaded on master IR2) with the PIIX edge/level control registers (ELCR, 0x4D0/0x4D1).
 * Follows the 8259A datasheet: ICW1–ICW4 initialisation, OCW1 masking, OCW2 EOI (non-specific and
 * specific), OCW3 IRR/ISR read-back; fixed priority with IR0 highest.
 */
export interface IrqLine {
  /** Drive the line high (level) or make a rising edge. */
  raise(): void;
  /** Drive the line low. */
  lower(): void;
}

class Pic8259 {
  irr = 0; // interrupt request register
  isr = 0; // in-service register
  imr = 0xff; // all masked until the guest initialises us
  vectorBase = 0;
  elcr = 0; // bit set = level-triggered
  lines = 0; // current input pin levels
  private initStep = 0; // 0 = operational, 2..4 = expecting ICW2..ICW4
  private icw4Needed = false;
  private single = false;
  private readIsr = false;
  autoEoi = false;

  constructor(readonly isSlave: boolean) {}

  setLine(irq: number, high: boolean): void {
    const bit = 1 << irq;
    const wasHigh = (this.lines & bit) !== 0;
    if (high) {
      this.lines |= bit;
      // Edge mode latches a rising edge; level mode requests while the line is high.
      if (!wasHigh || this.elcr & bit) this.irr |= bit;
    } else {
      this.lines &= ~bit;
      if (this.elcr & bit) this.irr &= ~bit;
    }
  }

  /** Highest-priority pending, unmasked request not blocked by an equal/higher one in service. */
  pending(): number {
    const req = this.irr & ~this.imr & 0xff;
    if (!req) return -1;
    for (let i = 0; i < 8; i++) {
      if (this.isr & (1 << i)) return -1; // higher priority already in service
      if (req & (1 << i)) return i;
    }
    return -1;
  }

  acknowledge(irq: number): void {
    const bit = 1 << irq;
    if (!(this.elcr & bit)) this.irr &= ~bit;
    else if (!(this.lines & bit)) this.irr &= ~bit;
    if (!this.autoEoi) this.isr |= bit;
  }

  writeCommand(v: number): void {
    if (v & 0x10) {
      // ICW1: restart initialisation; clears IMR and ISR (datasheet: edge sense reset, IR7 priority)
      this.initStep = 2;
      this.icw4Needed = (v & 0x01) !== 0;
      this.single = (v & 0x02) !== 0;
      this.imr = 0;
      this.isr = 0;
      this.irr &= this.elcr; // pending edges are forgotten; levels still asserted remain
      this.readIsr = false;
      this.autoEoi = false;
      return;
    }
    if (v & 0x08) {
      // OCW3: select IRR or ISR for the next read of the command port.
      if (v & 0x02) this.readIsr = (v & 0x01) !== 0;
      return;
    }
    // OCW2
    const op = v >> 5;
    if (op === 1) {
      // non-specific EOI: clear the highest-priority in-service bit
      for (let i = 0; i < 8; i++) if (this.isr & (1 << i)) { this.isr &= ~(1 << i); break; }
    } else if (op === 3) {
      this.isr &= ~(1 << (v & 7)); // specific EOI
    }
    if ((this.lines & this.elcr) !== 0) this.irr |= this.lines & this.elcr;
  }

  writeData(v: number): void {
    switch (this.initStep) {
      case 2:
        this.vectorBase = v & 0xf8;
        this.initStep = this.single ? (this.icw4Needed ? 4 : 0) : 3;
        return;
      case 3:
        this.initStep = this.icw4Needed ? 4 : 0;
        return;
      case 4:
        this.autoEoi = (v & 0x02) !== 0;
        this.initStep = 0;
        return;
      default:
        this.imr = v & 0xff; // OCW1
    }
  }

  readCommand(): number {
    return this.readIsr ? this.isr : this.irr;
  }
}

export class PicPair {
  private readonly master = new Pic8259(false);
  private readonly slave = new Pic8259(true);
  /** Called when INTR to the CPU may have become asserted. */
  onInterrupt: () => void = () => {};
  raised = 0;
  /** `--debug irq`: each line change, and each interrupt the CPU acknowledges. */
  debug: DebugLog = NO_DEBUG;

  register(bus: IoBus, owner = 'pic'): string[] {
    const errors: string[] = [];
    // The 8259A and the ELCR are 8-bit devices: a wider access is one byte cycle per port, as the
    // ISA bus turns it, so `inw 0x20` reads IRR/ISR and then IMR, and `outw 0x4D0` sets both ELCRs.
    const byteWide = (readByte: (port: number) => number, writeByte: (port: number, v: number) => void): IoHandler => ({
      read: (off, size) => {
        let v = 0;
        for (let i = size - 1; i >= 0; i--) v = (v << 8) | (readByte(off + i) & 0xff);
        return v >>> 0;
      },
      write: (off, size, v) => {
        for (let i = 0; i < size; i++) writeByte(off + i, (v >>> (8 * i)) & 0xff);
        this.update();
      },
    });
    for (const [base, p] of [[0x20, this.master], [0xa0, this.slave]] as const) {
      const r = bus.registerPorts(owner, base, 2, byteWide(
        (off) => (off === 0 ? p.readCommand() : p.imr),
        (off, v) => (off === 0 ? p.writeCommand(v) : p.writeData(v)),
      ));
      if (!r.ok) errors.push(r.error);
    }
    // IRQ0-2, 8 and 13 cannot be level-triggered on the PIIX (its datasheet masks those bits).
    const r = bus.registerPorts(owner, 0x4d0, 2, byteWide(
      (off) => (off === 0 ? this.master.elcr : this.slave.elcr),
      (off, v) => {
        if (off === 0) this.master.elcr = v & 0xf8;
        else this.slave.elcr = v & 0xde;
      },
    ));
    if (!r.ok) errors.push(r.error);
    return errors;
  }

  /** An interrupt line wired to IRQ `irq` (0..15). */
  line(irq: number): IrqLine {
    return { raise: () => this.setIrq(irq, true), lower: () => this.setIrq(irq, false) };
  }

  setIrq(irq: number, high: boolean): void {
    // Sixteen input pins: a number outside them (a model's or an adapter's bug) is a fault of the
    // caller, which the fail-stop guard around it turns into that device's stop.
    if (!Number.isInteger(irq) || irq < 0 || irq > 15) throw new RangeError(`IRQ ${String(irq)} does not exist (the PIC pair has IRQ 0-15)`);
    if (irq < 8) this.master.setLine(irq, high);
    else this.slave.setLine(irq - 8, high);
    if (high) this.raised++;
    if (this.debug.on) this.debug.debug(`IRQ ${irq} ${high ? 'raised' : 'lowered'}`);
    this.update();
  }

  /** Set an IRQ to level-triggered, as firmware does for PCI interrupt lines. */
  setLevelTriggered(irq: number): void {
    if (!Number.isInteger(irq) || irq < 0 || irq > 15) return;
    if (irq < 8) this.master.elcr |= 1 << irq;
    else this.slave.elcr |= 1 << (irq - 8);
  }

  /** Whether INTR is asserted towards the CPU. */
  intr(): boolean {
    return this.master.pending() >= 0;
  }

  /** The CPU's interrupt-acknowledge cycle: the vector to run, or -1 (spurious). */
  acknowledge(): number {
    const m = this.master.pending();
    if (m < 0) return -1;
    if (m === 2) {
      const s = this.slave.pending();
      if (s < 0) {
        // spurious on the slave: IR7 vector, nothing put in service (8259A datasheet)
        if (this.debug.on) this.debug.debug(`INTA: spurious on the slave, vector 0x${(this.slave.vectorBase + 7).toString(16)}`);
        return this.slave.vectorBase + 7;
      }
      this.master.acknowledge(2);
      this.slave.acknowledge(s);
      this.update();
      if (this.debug.on) this.debug.debug(`INTA: IRQ ${8 + s} in service, vector 0x${(this.slave.vectorBase + s).toString(16)}`);
      return this.slave.vectorBase + s;
    }
    this.master.acknowledge(m);
    this.update();
    if (this.debug.on) this.debug.debug(`INTA: IRQ ${m} in service, vector 0x${(this.master.vectorBase + m).toString(16)}`);
    return this.master.vectorBase + m;
  }

  maskOf(irq: number): boolean {
    if (!Number.isInteger(irq) || irq < 0 || irq > 15) return true; // a pin that does not exist delivers nothing
    return irq < 8 ? (this.master.imr & (1 << irq)) !== 0 : (this.slave.imr & (1 << (irq - 8))) !== 0;
  }

  private update(): void {
    // The slave's INT output drives master IR2 as a level, whatever the master's trigger mode.
    if (this.slave.pending() >= 0) this.master.irr |= 1 << 2;
    else this.master.irr &= ~(1 << 2);
    if (this.master.pending() >= 0) this.onInterrupt();
  }
}
