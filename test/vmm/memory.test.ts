import { describe, expect, it } from 'vitest';
import { DmaFault, GuestRam, isDmaFault } from '../../src/vmm/memory.js';

describe('GuestRam', () => {
  const mem = new GuestRam(4096);

  it('reads back little-endian values it wrote', () => {
    expect(mem.writeU32(16, 0x11223344)).toBe(true);
    expect(mem.readU8(16)).toBe(0x44);
    expect(mem.readU16(16)).toBe(0x3344);
    expect(mem.readU32(16)).toBe(0x11223344);
  });

  it('gives a live view: DMA through a view is seen by later reads', () => {
    const v = mem.view(100, 4);
    if (isDmaFault(v)) throw new Error('unexpected fault');
    v.set([1, 2, 3, 4]);
    expect(mem.readU32(100)).toBe(0x04030201);
  });

  it.each([
    [4093, 4],
    [-1, 1],
    [4096, 1],
    [0, 4097],
    [1.5, 2],
  ])('returns a DmaFault for an access at %d+%d, never throws', (addr, len) => {
    const r = mem.view(addr, len);
    expect(r).toBeInstanceOf(DmaFault);
    expect((r as DmaFault).message).toContain('outside guest memory');
    expect(mem.read(addr, len)).toBeInstanceOf(DmaFault);
    expect(mem.write(addr, new Uint8Array(len > 0 && Number.isInteger(len) ? len : 1))).toBeInstanceOf(DmaFault);
  });

  it('allows an access ending exactly at the top of memory', () => {
    expect(mem.writeU32(4092, 0xdeadbeef)).toBe(true);
    expect(mem.readU32(4092)).toBe(0xdeadbeef);
    expect(mem.readU32(4093)).toBeInstanceOf(DmaFault);
  });
});

describe('GuestMemory write path', () => {
  it('writeWith lets a DMA engine fill guest memory in place, and calls nothing when out of range', () => {
    const mem = new GuestRam(4096);
    expect(mem.writeWith(200, 4, (dst) => dst.set([9, 8, 7, 6]))).toBe(true);
    expect(mem.readU32(200)).toBe(0x06070809);
    let called = false;
    const r = mem.writeWith(4094, 4, () => void (called = true));
    expect(r).toBeInstanceOf(DmaFault);
    expect(called).toBe(false);
    expect(mem.writeWith(-4, 4, () => void (called = true))).toBeInstanceOf(DmaFault);
    expect(called).toBe(false);
  });
});
