import type { GuestHardware } from './hardware.js';

/**
 * The kernel's serial console on a 16550 UART (COM1 at 0x3F8), programmed as Linux's 8250 driver
 * does for 115200 8N1: divisor latch through LCR.DLAB, FIFOs on, receive-data interrupts on.
 * Output polls LSR.THRE like early printk; input arrives by interrupt.
 */
export const COM1 = 0x3f8;
const THR = 0;
const RBR = 0;
const DLL = 0;
const IER = 1;
const DLM = 1;
const FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LCR_DLAB = 0x80;
const LCR_8N1 = 0x03;
const IER_RDI = 0x01;
const MCR_DTR_RTS_OUT2 = 0x0b;

export class SerialConsole {
  /** Whether a UART answered at the port (the scratch register test Linux uses). */
  present = false;
  private lineBuffer = '';
  onLine: (line: string) => void = () => {};
  onChar: (ch: string) => void = () => {};

  constructor(
    private readonly hw: GuestHardware,
    readonly port = COM1,
    readonly irq = 4,
  ) {}

  init(): boolean {
    const hw = this.hw;
    hw.outb(this.port + 7, 0x5a); // SCR
    this.present = hw.inb(this.port + 7) === 0x5a;
    if (!this.present) return false;
    hw.outb(this.port + IER, 0);
    hw.outb(this.port + LCR, LCR_DLAB);
    hw.outb(this.port + DLL, 1); // 115200 baud
    hw.outb(this.port + DLM, 0);
    hw.outb(this.port + LCR, LCR_8N1);
    hw.outb(this.port + FCR, 0x07); // enable and clear FIFOs
    hw.outb(this.port + MCR, MCR_DTR_RTS_OUT2);
    hw.outb(this.port + IER, IER_RDI);
    return true;
  }

  write(text: string): void {
    if (!this.present) return;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 10) this.putByte(13);
      this.putByte(c & 0xff);
    }
  }

  private putByte(b: number): void {
    // Bounded poll: a UART that never drains must not hang the kernel.
    for (let spins = 0; spins < 1000 && !(this.hw.inb(this.port + LSR) & LSR_THRE); spins++);
    this.hw.outb(this.port + THR, b);
  }

  /** Interrupt handler: drain the receive FIFO. */
  handleInterrupt(): void {
    for (let n = 0; n < 4096 && this.hw.inb(this.port + LSR) & LSR_DR; n++) {
      const ch = String.fromCharCode(this.hw.inb(this.port + RBR));
      this.onChar(ch);
      if (ch === '\r' || ch === '\n') {
        const line = this.lineBuffer;
        this.lineBuffer = '';
        this.onLine(line);
      } else if (ch === '\x7f' || ch === '\b') {
        this.lineBuffer = this.lineBuffer.slice(0, -1);
      } else this.lineBuffer += ch;
    }
  }
}
