import { copyBytes } from '../../net/byte-slab.js';
/**
 * Guest physical memory. Devices reach it only through bounds-checked accessors: an access outside
 * guest memory is a DmaFault value the device handles (fail-stop), never an exception or a read of
 * host memory. Multi-byte values are little-endian, as on x86.
 */
export class DmaFault {
  readonly kind = 'dma-out-of-range';
  constructor(
    readonly addr: number,
    readonly length: number,
    readonly memorySize: number,
  ) {}
  get message(): string {
    return `DMA outside guest memory: 0x${this.addr.toString(16)}+${this.length} (guest has 0x${this.memorySize.toString(16)} bytes)`;
  }
}

export type Dma<T> = T | DmaFault;

export const MIN_MEMORY_MB = 1;
export const MAX_MEMORY_MB = 16384;

/**
 * Guest physical memory as device models reach it (DMA). The VMM core's `GuestRam` implements it;
 * so can an adapter onto another emulator's RAM (v86: `read_blob` / `write_blob`).
 *
 * Writes have an explicit path: `write`, `writeU8`…`writeU64` and `writeWith`. An implementation
 * whose memory has other observers (v86's JIT caches translated code per page and must hear of
 * every store) sees every DMA write there. `view` is for reading: on `GuestRam` it is live and a
 * store into it lands in guest memory, but nothing else is told, so new code writes through
 * `writeWith`, which is just as zero-copy on `GuestRam`.
 */
export interface GuestMemory {
  readonly size: number;
  /** Whether [addr, addr + length) lies inside guest memory (integers only). */
  inRange(addr: number, length: number): boolean;
  /** Bytes to read in place (no copy where the implementation can avoid one). */
  view(addr: number, length: number): Dma<Uint8Array>;
  /** Copy `length` bytes out of guest memory. */
  read(addr: number, length: number): Dma<Uint8Array>;
  /** Copy `data` into guest memory at `addr`. */
  write(addr: number, data: Uint8Array): Dma<true>;
  /**
   * Let `fill` write `length` bytes at `addr` in place (a DMA engine streaming into a ring). The
   * bytes `fill` sees are guest memory on `GuestRam` and a buffer copied in afterwards elsewhere;
   * `fill` must write all of them and keep no reference. Nothing is called when out of range.
   */
  writeWith(addr: number, length: number, fill: (dst: Uint8Array) => void): Dma<true>;
  readU8(addr: number): Dma<number>;
  readU16(addr: number): Dma<number>;
  readU32(addr: number): Dma<number>;
  readU64(addr: number): Dma<bigint>;
  writeU8(addr: number, v: number): Dma<true>;
  writeU16(addr: number, v: number): Dma<true>;
  writeU32(addr: number, v: number): Dma<true>;
  writeU64(addr: number, v: bigint): Dma<true>;
}

/** The VMM core's guest RAM: one host ArrayBuffer, every access bounds-checked. */
export class GuestRam implements GuestMemory {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;

  constructor(readonly size: number) {
    this.bytes = new Uint8Array(size);
    this.dv = new DataView(this.bytes.buffer);
  }

  inRange(addr: number, length: number): boolean {
    // Number.isInteger rules out NaN and ±Infinity, so the sum below is exact.
    return Number.isInteger(addr) && Number.isInteger(length) && addr >= 0 && length >= 0 && addr + length <= this.size;
  }

  private fault(addr: number, length: number): DmaFault {
    return new DmaFault(addr, length, this.size);
  }

  /** A live view of guest memory (no copy). */
  view(addr: number, length: number): Dma<Uint8Array> {
    if (!this.inRange(addr, length)) return this.fault(addr, length);
    return this.bytes.subarray(addr, addr + length);
  }

  /** Copy `data` into guest memory at `addr`. */
  write(addr: number, data: Uint8Array): Dma<true> {
    if (!this.inRange(addr, data.length)) return this.fault(addr, data.length);
    this.bytes.set(data, addr);
    return true;
  }

  writeWith(addr: number, length: number, fill: (dst: Uint8Array) => void): Dma<true> {
    if (!this.inRange(addr, length)) return this.fault(addr, length);
    fill(this.bytes.subarray(addr, addr + length));
    return true;
  }

  /** Copy `length` bytes out of guest memory. */
  read(addr: number, length: number): Dma<Uint8Array> {
    if (!this.inRange(addr, length)) return this.fault(addr, length);
    return copyBytes(this.bytes, addr, addr + length);
  }

  readU8(addr: number): Dma<number> {
    return this.inRange(addr, 1) ? this.bytes[addr]! : this.fault(addr, 1);
  }
  readU16(addr: number): Dma<number> {
    return this.inRange(addr, 2) ? this.dv.getUint16(addr, true) : this.fault(addr, 2);
  }
  readU32(addr: number): Dma<number> {
    return this.inRange(addr, 4) ? this.dv.getUint32(addr, true) : this.fault(addr, 4);
  }
  readU64(addr: number): Dma<bigint> {
    return this.inRange(addr, 8) ? this.dv.getBigUint64(addr, true) : this.fault(addr, 8);
  }
  writeU8(addr: number, v: number): Dma<true> {
    if (!this.inRange(addr, 1)) return this.fault(addr, 1);
    this.bytes[addr] = v;
    return true;
  }
  writeU16(addr: number, v: number): Dma<true> {
    if (!this.inRange(addr, 2)) return this.fault(addr, 2);
    this.dv.setUint16(addr, v, true);
    return true;
  }
  writeU32(addr: number, v: number): Dma<true> {
    if (!this.inRange(addr, 4)) return this.fault(addr, 4);
    this.dv.setUint32(addr, v >>> 0, true);
    return true;
  }
  writeU64(addr: number, v: bigint): Dma<true> {
    if (!this.inRange(addr, 8)) return this.fault(addr, 8);
    this.dv.setBigUint64(addr, v, true);
    return true;
  }
}

export function isDmaFault(v: unknown): v is DmaFault {
  return v instanceof DmaFault;
}
