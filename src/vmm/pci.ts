import type { IoBus, IoHandler, AccessSize, RegisterResult } from './io-bus.js';
import type { PicPair } from './pic.js';

/**
 * A PCI bus with configuration mechanism #1 (CONFIG_ADDRESS 0xCF8, CONFIG_DATA 0xCFC–0xCFF), type-0
 * headers, BAR sizing (write 0xFFFFFFFF, read back the size mask), I/O and memory decode switched by
 * the command register, and INTx routed to the PIC through the interrupt line the firmware wrote.
 */
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BAR0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;

export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_INTX_DISABLE = 0x400;
export const PCI_STATUS_INTERRUPT = 0x8;

export const PCI_BAR_IO = 0x1;

export interface BarSpec {
  kind: 'io' | 'mem';
  /** Power of two; I/O BARs at least 4 bytes, memory BARs at least 16. */
  size: number;
  handler: IoHandler;
}

export interface PciIdentity {
  vendorId: number;
  deviceId: number;
  classCode: number; // 24-bit: class, subclass, prog-if
  revision?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 1 = INTA#, 0 = none. */
  interruptPin?: number;
}

export interface PciAddress {
  bus: number;
  slot: number;
  fn: number;
}

export function formatPciAddress(a: PciAddress): string {
  return `${a.bus.toString(16).padStart(2, '0')}:${a.slot.toString(16).padStart(2, '0')}.${a.fn}`;
}

/** One PCI function's configuration space and BARs. Device models own one each. */
export class PciFunction {
  readonly config = new Uint8Array(256);
  private readonly dv = new DataView(this.config.buffer);
  readonly bars: (BarSpec | null)[] = [null, null, null, null, null, null];
  /** Where each BAR is currently decoded on the I/O bus (null = not mapped). */
  private readonly mapped: (number | null)[] = [null, null, null, null, null, null];
  address: PciAddress = { bus: 0, slot: 0, fn: 0 };
  private bus: PciBus | null = null;
  private intxAsserted = false;

  constructor(
    readonly owner: string,
    identity: PciIdentity,
    bars: (BarSpec | null)[] = [],
  ) {
    this.dv.setUint16(PCI_VENDOR_ID, identity.vendorId, true);
    this.dv.setUint16(PCI_DEVICE_ID, identity.deviceId, true);
    this.config[PCI_REVISION_ID] = identity.revision ?? 0;
    this.config[PCI_CLASS_PROG] = identity.classCode & 0xff;
    this.dv.setUint16(PCI_CLASS_DEVICE, (identity.classCode >> 8) & 0xffff, true);
    this.config[PCI_HEADER_TYPE] = 0;
    this.dv.setUint16(PCI_SUBSYSTEM_VENDOR_ID, identity.subsystemVendorId ?? 0, true);
    this.dv.setUint16(PCI_SUBSYSTEM_ID, identity.subsystemId ?? 0, true);
    this.config[PCI_INTERRUPT_PIN] = identity.interruptPin ?? 1;
    this.config[PCI_INTERRUPT_LINE] = 0xff; // "unknown / not connected" until firmware routes it
    bars.forEach((b, i) => {
      if (!b) return;
      this.bars[i] = b;
      this.dv.setUint32(PCI_BAR0 + 4 * i, b.kind === 'io' ? PCI_BAR_IO : 0, true);
    });
  }

  attach(bus: PciBus, address: PciAddress): void {
    this.bus = bus;
    this.address = address;
  }

  get command(): number {
    return this.dv.getUint16(PCI_COMMAND, true);
  }
  get busMaster(): boolean {
    return (this.command & PCI_COMMAND_MASTER) !== 0;
  }
  get interruptLine(): number {
    return this.config[PCI_INTERRUPT_LINE]!;
  }

  /** The base address a BAR decodes at now (null when decode is off or the BAR is unassigned). */
  barAddress(i: number): number | null {
    return this.mapped[i] ?? null;
  }

  /** Device side: assert or deassert INTA#. Level-triggered, as PCI interrupts are. */
  setIntx(asserted: boolean): void {
    const status = this.dv.getUint16(PCI_STATUS, true);
    this.dv.setUint16(PCI_STATUS, asserted ? status | PCI_STATUS_INTERRUPT : status & ~PCI_STATUS_INTERRUPT, true);
    const effective = asserted && (this.command & PCI_COMMAND_INTX_DISABLE) === 0;
    if (effective === this.intxAsserted) return;
    this.intxAsserted = effective;
    this.bus?.intxChanged(this, effective);
  }

  readConfig(offset: number, size: AccessSize): number {
    if (size === 1) return this.config[offset]!;
    if (size === 2) return this.dv.getUint16(offset, true);
    return this.dv.getUint32(offset, true);
  }

  writeConfig(offset: number, size: AccessSize, value: number): void {
    for (let i = 0; i < size; i++) this.writeConfigByte(offset + i, (value >>> (8 * i)) & 0xff);
    if (offset < PCI_COMMAND + 2 && offset + size > PCI_COMMAND || (offset >= PCI_BAR0 && offset < PCI_BAR0 + 24)) this.remap();
  }

  private writeConfigByte(off: number, v: number): void {
    if (off === PCI_COMMAND) {
      this.config[off] = v & 0x07; // IO, MEM, MASTER (others hardwired 0 here)
    } else if (off === PCI_COMMAND + 1) {
      this.config[off] = v & 0x04; // INTx disable (bit 10)
      this.setIntx((this.dv.getUint16(PCI_STATUS, true) & PCI_STATUS_INTERRUPT) !== 0);
    } else if (off === PCI_STATUS || off === PCI_STATUS + 1) {
      // Status: error bits are write-1-to-clear; the interrupt bit is read-only.
      this.config[off] = this.config[off]! & ~(v & (off === PCI_STATUS ? 0x00 : 0xf9));
    } else if (off >= PCI_BAR0 && off < PCI_BAR0 + 24) {
      const i = (off - PCI_BAR0) >> 2;
      const bar = this.bars[i];
      if (!bar) return; // unimplemented BARs are hardwired to zero
      const cur = this.dv.getUint32(PCI_BAR0 + 4 * i, true);
      const shift = 8 * ((off - PCI_BAR0) & 3);
      let next = ((cur & ~(0xff << shift)) | (v << shift)) >>> 0;
      // Address bits below the BAR's size are hardwired to zero: that is how sizing works.
      const mask = (~(bar.size - 1) >>> 0) & (bar.kind === 'io' ? 0xfffffffc : 0xfffffff0);
      next = ((next & mask) | (bar.kind === 'io' ? PCI_BAR_IO : 0)) >>> 0;
      if (bar.kind === 'io') next &= 0xffff | PCI_BAR_IO; // x86 I/O space is 64 KiB; upper bits read 0
      this.dv.setUint32(PCI_BAR0 + 4 * i, next >>> 0, true);
    } else if (off === PCI_INTERRUPT_LINE) {
      this.config[off] = v;
    }
    // Everything else (IDs, class, header type, pin) is read-only.
  }

  /** Re-decode BARs after the command register or a BAR changed. */
  private remap(): void {
    if (!this.bus) return;
    for (let i = 0; i < 6; i++) {
      const bar = this.bars[i];
      if (!bar) continue;
      const raw = this.dv.getUint32(PCI_BAR0 + 4 * i, true);
      const base = bar.kind === 'io' ? raw & 0xfffc : (raw & 0xfffffff0) >>> 0;
      const enabled = (this.command & (bar.kind === 'io' ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY)) !== 0;
      // A BAR mid-sizing (all ones) or still zero decodes nothing.
      const sizing = bar.kind === 'io' ? base + bar.size > 0x10000 : base + bar.size > 2 ** 32;
      const want = enabled && base !== 0 && !sizing ? base : null;
      if (want === this.mapped[i]) continue;
      if (this.mapped[i] !== null) this.bus.unmapBar(this, bar, this.mapped[i]!);
      this.mapped[i] = null;
      if (want !== null) {
        const r = this.bus.mapBar(this, bar, want);
        if (r.ok) this.mapped[i] = want;
        else this.bus.reportConflict(this, r.error);
      }
    }
  }
}

/** The host bridge at 00:00.0 (an i440FX, as QEMU and Palacios' guests see it). */
const HOST_BRIDGE: PciIdentity = { vendorId: 0x8086, deviceId: 0x1237, classCode: 0x060000, revision: 2, interruptPin: 0 };

export class PciBus {
  private readonly functions = new Map<number, PciFunction>();
  private configAddress = 0;
  /** PIC IRQ lines currently asserted by each function (level, shared lines OR together). */
  private readonly asserted = new Map<number, Set<PciFunction>>();
  onConflict: (owner: string, error: string) => void = () => {};

  constructor(
    private readonly io: IoBus,
    private readonly pic: PicPair,
    readonly busNumber = 0,
  ) {
    this.add(new PciFunction('pci-host-bridge', HOST_BRIDGE), 0);
  }

  register(owner = 'pci0'): string[] {
    const errors: string[] = [];
    const r1 = this.io.registerPorts(owner, 0xcf8, 4, {
      read: (off, size) => (size === 4 && off === 0 ? this.configAddress : 0xffffffff),
      write: (off, size, v) => {
        if (size === 4 && off === 0) this.configAddress = (v & 0x80fffffc) >>> 0;
      },
    });
    if (!r1.ok) errors.push(r1.error);
    const r2 = this.io.registerPorts(owner, 0xcfc, 4, {
      read: (off, size) => this.configRead(off, size),
      write: (off, size, v) => this.configWrite(off, size, v),
    });
    if (!r2.ok) errors.push(r2.error);
    return errors;
  }

  /** Plug a function in at `slot` (function 0); returns its address. */
  add(fn: PciFunction, slot: number): PciAddress {
    const key = slot << 3;
    const address = { bus: this.busNumber, slot, fn: 0 };
    this.functions.set(key, fn);
    fn.attach(this, address);
    return address;
  }

  /** The next free slot (slots 1..31; 0 is the host bridge). */
  freeSlot(): number | null {
    for (let s = 1; s < 32; s++) if (!this.functions.has(s << 3)) return s;
    return null;
  }

  list(): PciFunction[] {
    return [...this.functions.entries()].sort((a, b) => a[0] - b[0]).map(([, f]) => f);
  }

  private target(): { fn: PciFunction; reg: number } | null {
    const a = this.configAddress;
    if (!(a & 0x80000000)) return null;
    const bus = (a >>> 16) & 0xff;
    const devfn = (a >>> 8) & 0xff;
    if (bus !== this.busNumber) return null;
    const fn = this.functions.get(devfn);
    return fn ? { fn, reg: a & 0xfc } : null;
  }

  private configRead(off: number, size: AccessSize): number {
    const t = this.target();
    // No device answers: master abort, all ones (how enumeration finds empty slots).
    if (!t) return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    return t.fn.readConfig(t.reg + off, size);
  }

  private configWrite(off: number, size: AccessSize, value: number): void {
    const t = this.target();
    if (t) t.fn.writeConfig(t.reg + off, size, value);
  }

  mapBar(fn: PciFunction, bar: BarSpec, base: number): RegisterResult {
    return bar.kind === 'io' ? this.io.registerPorts(fn.owner, base, bar.size, bar.handler) : this.io.registerMmio(fn.owner, base, bar.size, bar.handler);
  }

  unmapBar(fn: PciFunction, bar: BarSpec, base: number): void {
    if (bar.kind === 'io') this.io.unregisterPorts(fn.owner, base);
    else this.io.unregisterMmio(fn.owner, base);
  }

  reportConflict(fn: PciFunction, error: string): void {
    this.onConflict(fn.owner, error);
  }

  intxChanged(fn: PciFunction, asserted: boolean): void {
    const irq = fn.interruptLine;
    if (irq > 15) return; // not routed by firmware: the interrupt goes nowhere, as on hardware
    let set = this.asserted.get(irq);
    if (!set) {
      set = new Set();
      this.asserted.set(irq, set);
    }
    const before = set.size > 0;
    if (asserted) set.add(fn);
    else set.delete(fn);
    const after = set.size > 0;
    if (before !== after) this.pic.setIrq(irq, after);
  }
}
