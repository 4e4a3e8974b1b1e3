import type { GuestHardware } from './hardware.js';

/**
 * The kernel's 8259A driver, as Linux's i8259.c programs it: ICW1–ICW4 to remap IRQ 0–7 to
 * vectors 0x20–0x27 and IRQ 8–15 to 0x28–0x2F, everything masked, then unmask per IRQ.
 */
export const PIC1_CMD = 0x20;
export const PIC1_DATA = 0x21;
export const PIC2_CMD = 0xa0;
export const PIC2_DATA = 0xa1;
export const IRQ_VECTOR_BASE = 0x20;
const ICW1_INIT = 0x10;
const ICW1_ICW4 = 0x01;
const ICW4_8086 = 0x01;
const OCW2_EOI = 0x20;

export class GuestPic {
  private masterMask = 0xff;
  private slaveMask = 0xff;

  constructor(private readonly hw: GuestHardware) {}

  init(): void {
    const hw = this.hw;
    hw.outb(PIC1_CMD, ICW1_INIT | ICW1_ICW4);
    hw.outb(PIC2_CMD, ICW1_INIT | ICW1_ICW4);
    hw.outb(PIC1_DATA, IRQ_VECTOR_BASE); // ICW2: vector base
    hw.outb(PIC2_DATA, IRQ_VECTOR_BASE + 8);
    hw.outb(PIC1_DATA, 1 << 2); // ICW3: slave on IR2
    hw.outb(PIC2_DATA, 2); // ICW3: slave identity
    hw.outb(PIC1_DATA, ICW4_8086);
    hw.outb(PIC2_DATA, ICW4_8086);
    this.masterMask = 0xff & ~(1 << 2); // cascade always open
    this.slaveMask = 0xff;
    hw.outb(PIC1_DATA, this.masterMask);
    hw.outb(PIC2_DATA, this.slaveMask);
  }

  unmask(irq: number): void {
    if (irq < 8) {
      this.masterMask &= ~(1 << irq);
      this.hw.outb(PIC1_DATA, this.masterMask);
    } else {
      this.slaveMask &= ~(1 << (irq - 8));
      this.hw.outb(PIC2_DATA, this.slaveMask);
    }
  }

  mask(irq: number): void {
    if (irq < 8) {
      this.masterMask |= 1 << irq;
      this.hw.outb(PIC1_DATA, this.masterMask);
    } else {
      this.slaveMask |= 1 << (irq - 8);
      this.hw.outb(PIC2_DATA, this.slaveMask);
    }
  }

  /** End of interrupt, slave first for IRQ 8–15. */
  eoi(irq: number): void {
    if (irq >= 8) this.hw.outb(PIC2_CMD, OCW2_EOI);
    this.hw.outb(PIC1_CMD, OCW2_EOI);
  }
}
