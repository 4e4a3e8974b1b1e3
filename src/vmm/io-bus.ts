import { NO_DEBUG, type DebugLog } from '../../net/debug.js';
import type { Telemetry, ExitKind } from './telemetry.js';

/**
 * The I/O bus: port I/O (0..0xFFFF) and MMIO hooks. Every guest access is an exit, counted by kind
 * and by device. Overlapping registrations are configuration errors (returned, not thrown).
 * A handler that throws is a device bug: the device owning it is fail-stopped through `onFault`
 * and the access completes as if nothing answered; the lab keeps running. A handler only ever
 * sees accesses that lie wholly inside the range it registered: one that crosses a region's end
 * is split into byte accesses, each to whatever decodes that byte.
 */
export type AccessSize = 1 | 2 | 4;

export interface IoHandler {
  /** `offset` is relative to the registered base. */
  read(offset: number, size: AccessSize): number;
  write(offset: number, size: AccessSize, value: number): void;
}

export interface IoRegion {
  readonly owner: string;
  readonly base: number;
  readonly length: number;
  readonly handler: IoHandler;
}

export type RegisterResult = { ok: true } | { ok: false; error: string };

const ALL_ONES: Record<AccessSize, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff };

/** A CPU issues 1-, 2- and 4-byte accesses only; anything else is a fault of the caller (the guest). */
function checkSize(size: number): asserts size is AccessSize {
  if (size !== 1 && size !== 2 && size !== 4) badSize(size);
}

function badSize(size: number): never {
  throw new RangeError(`I/O access of ${String(size)} bytes (1, 2 or 4 only)`);
}

export class IoBus {
  /** Port → index+1 into `portRegions` (0 = unclaimed): O(1) dispatch on the hot path. */
  private readonly portMap = new Uint16Array(0x10000);
  private readonly portRegions: (IoRegion | null)[] = [];
  private mmioRegions: IoRegion[] = [];
  /** Called when a handler throws; the VM fail-stops that device. */
  onFault: (owner: string, error: unknown) => void = () => {};

  /** `debug`: `--debug io`, one line per access a device decodes (and per access nothing decodes). */
  constructor(
    private readonly telemetry: Telemetry,
    private readonly debug: DebugLog = NO_DEBUG,
  ) {}

  registerPorts(owner: string, base: number, length: number, handler: IoHandler): RegisterResult {
    if (!Number.isInteger(base) || !Number.isInteger(length) || length <= 0 || base < 0 || base + length > 0x10000) {
      return { ok: false, error: `${owner}: I/O ports 0x${base.toString(16)}+${length} are outside 0x0000-0xFFFF` };
    }
    for (let p = base; p < base + length; p++) {
      const idx = this.portMap[p]!;
      if (idx !== 0) {
        const other = this.portRegions[idx - 1]!;
        return { ok: false, error: `${owner}: I/O ports 0x${base.toString(16)}-0x${(base + length - 1).toString(16)} overlap ${other.owner} at 0x${other.base.toString(16)}-0x${(other.base + other.length - 1).toString(16)}` };
      }
    }
    let slot = this.portRegions.indexOf(null);
    if (slot < 0) slot = this.portRegions.length;
    this.portRegions[slot] = { owner, base, length, handler };
    this.portMap.fill(slot + 1, base, base + length);
    return { ok: true };
  }

  unregisterPorts(owner: string, base: number): boolean {
    const idx = this.portMap[base]!;
    if (idx === 0) return false;
    const region = this.portRegions[idx - 1]!;
    if (region.owner !== owner || region.base !== base) return false;
    this.portMap.fill(0, region.base, region.base + region.length);
    this.portRegions[idx - 1] = null;
    return true;
  }

  registerMmio(owner: string, base: number, length: number, handler: IoHandler): RegisterResult {
    if (!Number.isInteger(base) || !Number.isInteger(length) || length <= 0 || base < 0 || base + length > 2 ** 32) {
      return { ok: false, error: `${owner}: MMIO 0x${base.toString(16)}+${length} is outside the 32-bit space` };
    }
    for (const r of this.mmioRegions) {
      if (base < r.base + r.length && r.base < base + length) {
        return { ok: false, error: `${owner}: MMIO 0x${base.toString(16)}+0x${length.toString(16)} overlaps ${r.owner} at 0x${r.base.toString(16)}+0x${r.length.toString(16)}` };
      }
    }
    this.mmioRegions.push({ owner, base, length, handler });
    return { ok: true };
  }

  unregisterMmio(owner: string, base: number): boolean {
    const before = this.mmioRegions.length;
    this.mmioRegions = this.mmioRegions.filter((r) => !(r.owner === owner && r.base === base));
    return this.mmioRegions.length !== before;
  }

  portRegionsList(): IoRegion[] {
    return this.portRegions.filter((r): r is IoRegion => r !== null).sort((a, b) => a.base - b.base);
  }

  mmioRegionsList(): IoRegion[] {
    return [...this.mmioRegions].sort((a, b) => a.base - b.base);
  }

  // ---- the guest's side: x86 in/out and MMIO loads/stores ----

  in(port: number, size: AccessSize): number {
    checkSize(size);
    const p = port & 0xffff; // DX is 16 bits wide
    const idx = this.portMap[p]!;
    const region = idx ? this.portRegions[idx - 1]! : null;
    if (size > 1 && this.portsCross(p, size, region)) {
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = (v << 8) | (p + i <= 0xffff ? this.in(p + i, 1) : this.floating('io-in', 1));
      return v >>> 0;
    }
    return this.dispatchRead('io-in', region, p - (region?.base ?? 0), size);
  }

  out(port: number, size: AccessSize, value: number): void {
    checkSize(size);
    const p = port & 0xffff;
    const idx = this.portMap[p]!;
    const region = idx ? this.portRegions[idx - 1]! : null;
    if (size > 1 && this.portsCross(p, size, region)) {
      for (let i = 0; i < size; i++) {
        if (p + i <= 0xffff) this.out(p + i, 1, (value >>> (8 * i)) & 0xff);
        else this.floating('io-out', 1);
      }
      return;
    }
    this.dispatchWrite('io-out', region, p - (region?.base ?? 0), size, value);
  }

  /**
   * Whether a multi-byte access at `p` leaves the region its first byte decodes to (or runs past
   * port 0xFFFF, or, unclaimed, reaches a claimed port). Such an access reaches each byte's own
   * decoder, one byte at a time, as the bus cycles of an unaligned access on a PC do; so no
   * handler ever sees an offset + size beyond the length it registered.
   */
  private portsCross(p: number, size: AccessSize, region: IoRegion | null): boolean {
    if (region) return p + size > region.base + region.length;
    if (p + size > 0x10000) return true;
    for (let i = 1; i < size; i++) if (this.portMap[p + i] !== 0) return true;
    return false;
  }

  /** An access nothing decodes: counted, and the bus floats high. */
  private floating(kind: ExitKind, size: AccessSize): number {
    this.telemetry.record(kind, 'unclaimed');
    return ALL_ONES[size];
  }

  inb(port: number): number { return this.in(port, 1); }
  inw(port: number): number { return this.in(port, 2); }
  inl(port: number): number { return this.in(port, 4); }
  outb(port: number, v: number): void { this.out(port, 1, v); }
  outw(port: number, v: number): void { this.out(port, 2, v); }
  outl(port: number, v: number): void { this.out(port, 4, v); }

  mmioRead(addr: number, size: AccessSize): number {
    checkSize(size);
    const a = addr >>> 0; // a 32-bit physical address
    const region = this.findMmio(a);
    if (size > 1 && (a + size > 2 ** 32 || this.findMmio(a + size - 1) !== region)) {
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = (v << 8) | (a + i < 2 ** 32 ? this.mmioRead(a + i, 1) : this.floating('mmio-read', 1));
      return v >>> 0;
    }
    return this.dispatchRead('mmio-read', region, a - (region?.base ?? 0), size);
  }

  mmioWrite(addr: number, size: AccessSize, value: number): void {
    checkSize(size);
    const a = addr >>> 0;
    const region = this.findMmio(a);
    if (size > 1 && (a + size > 2 ** 32 || this.findMmio(a + size - 1) !== region)) {
      for (let i = 0; i < size; i++) {
        if (a + i < 2 ** 32) this.mmioWrite(a + i, 1, (value >>> (8 * i)) & 0xff);
        else this.floating('mmio-write', 1);
      }
      return;
    }
    this.dispatchWrite('mmio-write', region, a - (region?.base ?? 0), size, value);
  }

  private findMmio(addr: number): IoRegion | null {
    for (const r of this.mmioRegions) if (addr >= r.base && addr < r.base + r.length) return r;
    return null;
  }

  private dispatchRead(kind: ExitKind, region: IoRegion | null, offset: number, size: AccessSize): number {
    // Nothing decodes the address: the bus floats high, as on a PC.
    if (!region) {
      this.telemetry.record(kind, 'unclaimed');
      if (this.debug.on) this.debug.debug(`${kind} ${hexAddr(kind, offset)}/${size} unclaimed = ${hexValue(ALL_ONES[size], size)}`);
      return ALL_ONES[size];
    }
    const t0 = this.telemetry.timing ? performance.now() : 0;
    let value: number;
    try {
      value = region.handler.read(offset, size);
    } catch (e) {
      this.onFault(region.owner, e);
      value = ALL_ONES[size];
    }
    this.telemetry.record(kind, region.owner, this.telemetry.timing ? (performance.now() - t0) * 1e6 : 0);
    this.telemetry.recordRegister(kind, region.owner, offset);
    if (this.debug.on) this.debug.debug(`${kind} ${hexAddr(kind, region.base + offset)}/${size} ${region.owner}+0x${offset.toString(16)} = ${hexValue(value & ALL_ONES[size], size)}`);
    return (value & ALL_ONES[size]) >>> 0;
  }

  private dispatchWrite(kind: ExitKind, region: IoRegion | null, offset: number, size: AccessSize, value: number): void {
    if (!region) {
      this.telemetry.record(kind, 'unclaimed');
      if (this.debug.on) this.debug.debug(`${kind} ${hexAddr(kind, offset)}/${size} unclaimed ← ${hexValue(value, size)} (ignored)`);
      return;
    }
    if (this.debug.on) this.debug.debug(`${kind} ${hexAddr(kind, region.base + offset)}/${size} ${region.owner}+0x${offset.toString(16)} ← ${hexValue((value >>> 0) & ALL_ONES[size], size)}`);
    const t0 = this.telemetry.timing ? performance.now() : 0;
    try {
      region.handler.write(offset, size, (value >>> 0) & ALL_ONES[size]);
    } catch (e) {
      this.onFault(region.owner, e);
    }
    this.telemetry.record(kind, region.owner, this.telemetry.timing ? (performance.now() - t0) * 1e6 : 0);
    this.telemetry.recordRegister(kind, region.owner, offset);
  }
}

function hexAddr(kind: ExitKind, a: number): string {
  return `0x${(a >>> 0).toString(16).padStart(kind.startsWith('io') ? 4 : 8, '0')}`;
}

function hexValue(v: number, size: AccessSize): string {
  return `0x${(v >>> 0).toString(16).padStart(2 * size, '0')}`;
}
