import type { DeviceConfig } from '../config/types.js';
import type { Device, DeviceContext, DeviceState } from '../vmm/device.js';
import type { AccessSize } from '../vmm/io-bus.js';

/**
 * A 16550A UART (the PC's COM port): eight registers at `port`, an edge-triggered ISA IRQ gated by
 * MCR.OUT2 as on PC boards. The host side is `onOutput` (bytes the guest wrote to THR, batched per
 * clock turn) and `input(bytes)` (bytes typed at the console). Transmission is instantaneous: the
 * transmitter is always ready again by the time the guest polls LSR.
 */
const RX_QUEUE_LIMIT = 4096; // a real 16550 holds 16; the host side queues more, bounded

const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IIR_NONE = 0x01;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_FIFO = 0xc0;
const LCR_DLAB = 0x80;
const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;

export class Serial16550 implements Device {
  readonly className = 'SERIAL';
  state: DeviceState = 'running';
  onOutput: ((bytes: Uint8Array) => void) | null = null;
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private dll = 0x0c; // 9600 baud until programmed
  private dlm = 0;
  private fcr = 0;
  private lsrErrors = 0;
  /** THR-empty interrupt pending: set when THR empties, cleared by reading IIR or writing THR. */
  private thriPending = false;
  private readonly rx: number[] = [];
  private out: number[] = [];
  private flushScheduled = false;
  private irqHigh = false;
  private readonly stats = { txBytes: 0, rxBytes: 0, rxOverruns: 0, interrupts: 0 };

  constructor(
    private readonly ctx: DeviceContext,
    readonly id: string,
    readonly port: number,
    readonly irq: number,
  ) {}

  register(): string | null {
    const r = this.ctx.io.registerPorts(this.id, this.port, 8, {
      read: (off, size) => this.read(off, size),
      write: (off, size, v) => this.write(off, size, v),
    });
    return r.ok ? null : r.error;
  }

  counters(): Record<string, number> {
    return { ...this.stats };
  }

  /** Host → guest: bytes typed at the console. Beyond the bounded queue they are overruns. */
  input(bytes: Uint8Array): void {
    if (this.state !== 'running') return;
    for (const b of bytes) {
      if (this.rx.length >= RX_QUEUE_LIMIT) {
        this.stats.rxOverruns++;
        this.lsrErrors |= LSR_OE;
        continue;
      }
      this.rx.push(b);
      this.stats.rxBytes++;
    }
    this.updateIrq();
  }

  stop(): void {
    this.state = 'stopped';
    this.flush();
    if (this.irqHigh) this.ctx.pic.setIrq(this.irq, false);
    this.irqHigh = false;
  }

  private read(off: number, _size: AccessSize): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (off) {
      case 0: {
        if (dlab) return this.dll;
        const b = this.rx.shift() ?? 0;
        this.updateIrq();
        return b;
      }
      case 1:
        return dlab ? this.dlm : this.ier;
      case 2: {
        const id = this.interruptId();
        if (id === IIR_THRI) {
          this.thriPending = false;
          this.updateIrq();
        }
        return id | (this.fcr & 1 ? IIR_FIFO : 0);
      }
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5: {
        const lsr = (this.rx.length > 0 ? LSR_DR : 0) | LSR_THRE | LSR_TEMT | this.lsrErrors;
        this.lsrErrors = 0; // error bits clear on read
        return lsr;
      }
      case 6:
        // MSR: CTS, DSR and DCD asserted (a terminal is attached); in loopback they follow MCR.
        return this.mcr & MCR_LOOP ? ((this.mcr & 0x0f) << 4) : 0xb0;
      default:
        return this.scr;
    }
  }

  private write(off: number, _size: AccessSize, value: number): void {
    const v = value & 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (off) {
      case 0:
        if (dlab) {
          this.dll = v;
          return;
        }
        this.transmit(v);
        return;
      case 1:
        if (dlab) {
          this.dlm = v;
          return;
        }
        // Enabling THRI with THR empty raises it at once (Linux's 8250 probes on this).
        if (!(this.ier & IER_THRI) && v & IER_THRI) this.thriPending = true;
        this.ier = v & 0x0f;
        this.updateIrq();
        return;
      case 2:
        this.fcr = v & 0xc9;
        if (v & 0x02) this.rx.length = 0; // clear receive FIFO
        this.updateIrq();
        return;
      case 3:
        this.lcr = v;
        return;
      case 4:
        this.mcr = v & 0x1f;
        this.updateIrq();
        return;
      case 5:
      case 6:
        return; // LSR/MSR are read-only (factory test writes are ignored)
      default:
        this.scr = v;
    }
  }

  private transmit(b: number): void {
    this.stats.txBytes++;
    if (this.mcr & MCR_LOOP) {
      if (this.rx.length < RX_QUEUE_LIMIT) this.rx.push(b);
    } else {
      this.out.push(b);
      this.scheduleFlush();
    }
    // The byte leaves at once: THR is empty again.
    this.thriPending = (this.ier & IER_THRI) !== 0;
    this.updateIrq();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.ctx.clock.setTimer(0, () => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.out.length === 0) return;
    const bytes = Uint8Array.from(this.out);
    this.out = [];
    this.onOutput?.(bytes);
  }

  private interruptId(): number {
    if (this.ier & IER_RDI && this.rx.length > 0) return IIR_RDI;
    if (this.ier & IER_THRI && this.thriPending) return IIR_THRI;
    return IIR_NONE;
  }

  private updateIrq(): void {
    if (this.state !== 'running') return;
    const want = this.interruptId() !== IIR_NONE && (this.mcr & MCR_OUT2) !== 0;
    if (want === this.irqHigh) return;
    this.irqHigh = want;
    if (want) this.stats.interrupts++;
    this.ctx.pic.setIrq(this.irq, want);
  }
}

function parseNumber(text: string | undefined): number | null {
  if (text === undefined) return null;
  const t = text.trim();
  const n = /^0x[0-9a-f]+$/i.test(t) ? parseInt(t, 16) : /^\d+$/.test(t) ? parseInt(t, 10) : NaN;
  return Number.isFinite(n) ? n : null;
}

export function createSerial(ctx: DeviceContext, cfg: DeviceConfig): Serial16550 | { error: string } {
  const port = cfg.params.port === undefined ? 0x3f8 : parseNumber(cfg.params.port);
  if (port === null || port < 0 || port > 0xfff8) return { error: `<port> "${cfg.params.port}": an I/O port like 0x3F8 (0x0000-0xFFF8)` };
  const irq = cfg.params.irq === undefined ? 4 : parseNumber(cfg.params.irq);
  if (irq === null || irq > 15 || irq === 2) return { error: `<irq> "${cfg.params.irq}": an ISA IRQ 0-15 other than 2 (COM1 uses 4, COM2 3)` };
  const dev = new Serial16550(ctx, cfg.id, port, irq);
  const err = dev.register();
  return err ? { error: err } : dev;
}
