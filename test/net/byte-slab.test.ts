import { describe, expect, it } from 'vitest';
import { allocBytes, copyBytes, SLAB_MAX_ALLOC, startsAt } from '../../net/byte-slab.js';

describe('byte slab', () => {
  it('hands out zeroed, 8-byte aligned views that never overlap', () => {
    const views = Array.from({ length: 400 }, (_, i) => allocBytes(1 + ((i * 997) % 1600)));
    views.forEach((v, i) => {
      expect(v.every((b) => b === 0)).toBe(true);
      expect(v.byteOffset % 8).toBe(0);
      v.fill(i & 0xff || 1);
    });
    // Filling each view left every other one as it was.
    views.forEach((v, i) => expect(v.every((b) => b === (i & 0xff || 1))).toBe(true));
    // 400 views of up to 1.6 KB span more than one slab.
    expect(new Set(views.map((v) => v.buffer)).size).toBeGreaterThan(1);
  });

  it('gives a large allocation its own buffer', () => {
    const big = allocBytes(SLAB_MAX_ALLOC + 1);
    expect(big.byteOffset).toBe(0);
    expect(big.buffer.byteLength).toBe(SLAB_MAX_ALLOC + 1);
  });

  it('copies a range as slice would, into memory of its own', () => {
    const src = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    const c = copyBytes(src, 10, 110);
    expect([...c]).toEqual([...src.slice(10, 110)]);
    c[0] = 0xee;
    expect(src[10]).toBe(10);
    expect(copyBytes(src, 5).length).toBe(295);
    expect(copyBytes(src, 50, 40).length).toBe(0);
  });

  it('tells bytes already in place from a copy of them (startsAt)', () => {
    const region = new Uint8Array(64).subarray(8);
    expect(startsAt(region.subarray(4, 10), region, 4)).toBe(true);
    expect(startsAt(region.subarray(4, 10), region, 5)).toBe(false);
    expect(startsAt(region, region)).toBe(true);
    expect(startsAt(region.slice(4, 10), region, 4)).toBe(false); // same bytes, other memory
  });
});
