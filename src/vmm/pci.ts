import { NO_DEBUG, type DebugLog } from '../../net/debug.js';
import type { IoBus, IoHandler, AccessSize, RegisterResult } from './io-bus.js';
import type { PicPair } from './pic.js';

/**
 * A PCI bus with configuration mechanism #1 (CONFIG_ADDRESS 0xCF8, CONFIG_DATA 0xCFC–0xCFF), type-0
 * headers, BAR sizing (write 0xFFFFFFFF, read back the size mask), I/O and memory decode switched by
 * the command register, and INTx routed to the PIC by the chipset's fixed PIRQ routing (never by the
 * Interrupt Line register, which is scratch storage for software; FACTS.md, RTL8139 details).
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
/** A conventional (non-express) function's configuration space. */
export const PCI_CONFIG_SIZE = 256;

/**
 * The chipset's INTx routing (PIIX: PIRQA–D, which the firmware points at IRQ 10, 10, 11, 11),
 * rotated by slot as a PC's board wiring does: INTA# of slot s is PIRQ[(s + pin − 1) mod 4].
 * Fixed for the machine's life, so what a device asserted is always withdrawn from the same IRQ.
 */
const PIRQ_TO_IRQ = [10, 10, 11, 11] as const;

export function pirqRoute(slot: number, pin: number): number | null {
  if (!Number.isInteger(pin) || pin < 1 || pin > 4) return null;
  return PIRQ_TO_IRQ[(slot + pin - 1) & 3]!;
}

/**
 * The bus a PciFunction sits on, as the function and the device factories see it: slots, BAR
 * decode, INTx. The VMM core's PciHostBridge implements it; so can an adapter onto another
 * emulator's PCI bus (v86: register_device, raise_irq/lower_irq, io.register_read/write).
 */
export interface PciBus {
  /** The next free slot, or null when the bus is full. */
  freeSlot(): number | null;
  /** Plug `fn` in at `slot` (function 0); returns its address. */
  add(fn: PciFunction, slot: number): PciAddress;
  /** Decode `bar` of `fn` at `base` (I/O port or MMIO address); a clash is an error value. */
  mapBar(fn: PciFunction, bar: BarSpec, base: number): RegisterResult;
  /** Stop decoding `bar` of `fn` at `base`. */
  unmapBar(fn: PciFunction, bar: BarSpec, base: number): void;
  /** A BAR the guest placed could not be decoded (overlap): the owner is fail-stopped. */
  reportConflict(fn: PciFunction, error: string): void;
  /** `fn`'s INTx output changed (already gated by its command register's Interrupt Disable). */
  intxChanged(fn: PciFunction, asserted: boolean): void;
  /** The PIC IRQ `fn`'s interrupt pin is wired to, or null (no pin, or not routed). */
  intxRoute(fn: PciFunction): number | null;
}

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
/**
 * INTx lines wire-ORed per IRQ, as on a PCI board: which functions hold each line high. Shared by
 * every PciBus (the core's and the v86 adapter's), which drive their interrupt controller only when
 * a line's level changes.
 */
export class IntxLines {
  private readonly holders = new Map<number, Set<PciFunction>>();

  /** Record `fn`'s pin on `irq`; the line's level before and after. */
  set(irq: number, fn: PciFunction, asserted: boolean): { before: boolean; after: boolean } {
    let set = this.holders.get(irq);
    if (!set) {
      set = new Set();
      this.holders.set(irq, set);
    }
    const before = set.size > 0;
    if (asserted) set.add(fn);
    else set.delete(fn);
    return { before, after: set.size > 0 };
  }

  /** A function holding `irq` high, if any. */
  holder(irq: number): PciFunction | undefined {
    return this.holders.get(irq)?.values().next().value;
  }
}

export class PciFunction {
  readonly config = new Uint8Array(PCI_CONFIG_SIZE);
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
  /** Software's scratch byte (what firmware told the OS); it routes nothing. */
  get interruptLine(): number {
    return this.config[PCI_INTERRUPT_LINE]!;
  }
  /** 1 = INTA# … 4 = INTD#, 0 = none (read-only). */
  get interruptPin(): number {
    return this.config[PCI_INTERRUPT_PIN]!;
  }
  /** Whether the function currently drives its INTx line (asserted and not disabled). */
  get intxLevel(): boolean {
    return this.intxAsserted;
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

  /**
   * A configuration read of `size` bytes at `offset`, as the host bridge would return it. Bytes
   * beyond the 256-byte header read 0xFF (nothing decodes them), so an offset a guest or an adapter
   * chose can never reach past the array. Little-endian, assembled byte by byte: unaligned reads
   * behave as the same bytes read one at a time would.
   */
  readConfig(offset: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) {
      const at = offset + i;
      v = (v << 8) | (Number.isInteger(at) && at >= 0 && at < PCI_CONFIG_SIZE ? this.config[at]! : 0xff);
    }
    return v >>> 0;
  }

  /**
   * A configuration write of `size` bytes at `offset` (the guest's, through 0xCFC, or one an
   * emulator such as v86 already applied to its own copy and feeds here). Read-only and reserved
   * bits are masked per byte; bytes beyond the header are ignored.
   */
  writeConfig(offset: number, size: AccessSize, value: number): void {
    let touchedDecode = false;
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      if (!Number.isInteger(at) || at < 0 || at >= PCI_CONFIG_SIZE) continue;
      this.writeConfigByte(at, (value >>> (8 * i)) & 0xff);
      if (at === PCI_COMMAND || (at >= PCI_BAR0 && at < PCI_BAR0 + 24)) touchedDecode = true;
    }
    if (touchedDecode) this.remap();
  }

  /**
   * For an emulator that keeps the guest-visible configuration space itself and never calls the
   * device on a configuration write (v86: FACTS.md): hand over its current image, and every
   * writable register that differs from ours (command, BARs, interrupt line) is applied through
   * `writeConfig` exactly as if the guest had written it here, so decode, Interrupt Disable and
   * BAR moves follow. Write-1-to-clear status bits cannot be seen in an image and are left alone.
   * Returns our own image afterwards (BARs masked to their size), for the emulator to copy back.
   */
  feedConfigImage(image: Uint8Array): Uint8Array {
    const byteAt = (i: number): number => (i < image.length ? image[i]! : 0);
    const le = (at: number, n: number): number => {
      let v = 0;
      for (let i = n - 1; i >= 0; i--) v = (v << 8) | byteAt(at + i);
      return v >>> 0;
    };
    if (le(PCI_COMMAND, 2) !== this.readConfig(PCI_COMMAND, 2)) this.writeConfig(PCI_COMMAND, 2, le(PCI_COMMAND, 2));
    for (let i = 0; i < 6; i++) {
      const at = PCI_BAR0 + 4 * i;
      if (this.bars[i] && le(at, 4) !== this.readConfig(at, 4)) this.writeConfig(at, 4, le(at, 4));
    }
    if (byteAt(PCI_INTERRUPT_LINE) !== this.interruptLine) this.writeConfig(PCI_INTERRUPT_LINE, 1, byteAt(PCI_INTERRUPT_LINE));
    return this.config.slice();
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
      // All 32 bits are read/write, as on the RTL8139 (IOAR bits 31:8) and in QEMU: a sized I/O BAR
      // reads back 0xFFFFFF01, and SeaBIOS computes the size as ~(value & ~3) + 1, so upper bits
      // hardwired to 0 read as a 4 GiB-scale I/O BAR to it (it then never boots the guest). An
      // address above 0xFFFF decodes nothing (remap).
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
      const base = bar.kind === 'io' ? (raw & 0xfffffffc) >>> 0 : (raw & 0xfffffff0) >>> 0;
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

export class PciHostBridge implements PciBus {
  private readonly functions = new Map<number, PciFunction>();
  private configAddress = 0;
  /** Functions asserting each PIC IRQ (level-triggered, shared lines wired-OR). */
  private readonly lines = new IntxLines();
  onConflict: (owner: string, error: string) => void = () => {};

  constructor(
    private readonly io: IoBus,
    private readonly pic: PicPair,
    readonly busNumber = 0,
    /** `--debug pci`: configuration reads and writes by register name, BAR moves, INTx changes. */
    private readonly debug: DebugLog = NO_DEBUG,
  ) {
    this.add(new PciFunction('pci-host-bridge', HOST_BRIDGE), 0);
  }

  register(owner = 'pci0'): string[] {
    const errors: string[] = [];
    const r1 = this.io.registerPorts(owner, 0xcf8, 4, {
      read: (off, size) => (size === 4 && off === 0 ? this.configAddress : 0xffffffff),
      write: (off, size, v) => {
        if (size === 4 && off === 0) this.configAddress = (v & 0x80fffffc) >>> 0;
        else if (this.debug.on) this.debug.debug(`CONFIG_ADDRESS write 0x${v.toString(16)} at +${off}/${size} ignored (only 32-bit writes at 0xcf8 latch)`);
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
    if (!t) {
      if (this.debug.on) this.debug.debug(`config read ${this.addressText()} +0x${off.toString(16)}/${size}: no function, master abort`);
      return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    }
    const v = t.fn.readConfig(t.reg + off, size);
    if (this.debug.on) this.debug.debug(`config read ${formatPciAddress(t.fn.address)} ${t.fn.owner} ${configRegName(t.reg + off)}/${size} = 0x${v.toString(16)}`);
    return v;
  }

  /** CONFIG_ADDRESS as bus:slot.fn register, for debug lines. */
  private addressText(): string {
    const a = this.configAddress;
    if (!(a & 0x80000000)) return '(CONFIG_ADDRESS disabled)';
    return `${((a >>> 16) & 0xff).toString(16).padStart(2, '0')}:${((a >>> 11) & 0x1f).toString(16).padStart(2, '0')}.${(a >>> 8) & 7} reg 0x${(a & 0xfc).toString(16)}`;
  }

  private configWrite(off: number, size: AccessSize, value: number): void {
    const t = this.target();
    if (t) {
      if (this.debug.on) this.debug.debug(`config write ${formatPciAddress(t.fn.address)} ${t.fn.owner} ${configRegName(t.reg + off)}/${size} ← 0x${(value >>> 0).toString(16)}`);
      t.fn.writeConfig(t.reg + off, size, value);
    } else if (this.debug.on) this.debug.debug(`config write ${this.addressText()} +0x${off.toString(16)}/${size} ← 0x${(value >>> 0).toString(16)}: no function, ignored`);
  }

  mapBar(fn: PciFunction, bar: BarSpec, base: number): RegisterResult {
    if (this.debug.on) this.debug.debug(`${fn.owner}: map ${bar.kind} BAR at 0x${base.toString(16)} (${bar.size} bytes)`);
    return bar.kind === 'io' ? this.io.registerPorts(fn.owner, base, bar.size, bar.handler) : this.io.registerMmio(fn.owner, base, bar.size, bar.handler);
  }

  unmapBar(fn: PciFunction, bar: BarSpec, base: number): void {
    if (this.debug.on) this.debug.debug(`${fn.owner}: unmap ${bar.kind} BAR at 0x${base.toString(16)}`);
    if (bar.kind === 'io') this.io.unregisterPorts(fn.owner, base);
    else this.io.unregisterMmio(fn.owner, base);
  }

  reportConflict(fn: PciFunction, error: string): void {
    this.onConflict(fn.owner, error);
  }

  intxRoute(fn: PciFunction): number | null {
    if (this.functions.get(fn.address.slot << 3) !== fn) return null;
    return pirqRoute(fn.address.slot, fn.interruptPin);
  }

  intxChanged(fn: PciFunction, asserted: boolean): void {
    const irq = this.intxRoute(fn);
    if (irq === null) return; // no pin or not on this bus: the interrupt goes nowhere, as on hardware
    const { before, after } = this.lines.set(irq, fn, asserted);
    if (this.debug.on) this.debug.debug(`${fn.owner}: INTx ${asserted ? 'asserted' : 'deasserted'} → IRQ ${irq} ${after ? 'high' : 'low'}${before === after ? ' (unchanged, shared line)' : ''}`);
    if (before !== after) this.pic.setIrq(irq, after);
  }
}

/** The type-0 header's register names (PCI Local Bus 3.0 §6.1), for `--debug pci`. */
function configRegName(off: number): string {
  const names: Record<number, string> = {
    [PCI_VENDOR_ID]: 'VENDOR_ID', [PCI_DEVICE_ID]: 'DEVICE_ID', [PCI_COMMAND]: 'COMMAND', [PCI_STATUS]: 'STATUS',
    [PCI_REVISION_ID]: 'REVISION_ID', [PCI_CLASS_PROG]: 'CLASS_PROG', [PCI_CLASS_DEVICE]: 'CLASS_DEVICE',
    0x0c: 'CACHE_LINE_SIZE', 0x0d: 'LATENCY_TIMER', [PCI_HEADER_TYPE]: 'HEADER_TYPE', 0x0f: 'BIST',
    [PCI_SUBSYSTEM_VENDOR_ID]: 'SUBSYSTEM_VENDOR_ID', [PCI_SUBSYSTEM_ID]: 'SUBSYSTEM_ID', 0x30: 'ROM_ADDRESS',
    0x34: 'CAPABILITY_LIST', [PCI_INTERRUPT_LINE]: 'INTERRUPT_LINE', [PCI_INTERRUPT_PIN]: 'INTERRUPT_PIN', 0x3e: 'MIN_GNT', 0x3f: 'MAX_LAT',
  };
  if (off >= PCI_BAR0 && off < PCI_BAR0 + 24) return `BAR${(off - PCI_BAR0) >> 2}${off & 3 ? `+${off & 3}` : ''}`;
  return names[off] ?? `0x${off.toString(16).padStart(2, '0')}`;
}
