import { describe, expect, it } from 'vitest';
import { siphash24, sipKey } from '../../net/siphash.js';

const hex = ([hi, lo]: [number, number]): string => hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');

describe('SipHash-2-4', () => {
  // The reference implementation's vectors (key 00 01 … 0f, message 00 01 … len−1), each 64-bit
  // output read as a little-endian number.
  const key = sipKey(Uint8Array.from({ length: 16 }, (_, i) => i));
  const vectors: [number, string][] = [
    [0, '726fdb47dd0e0e31'],
    [1, '74f839c593dc67fd'],
    [8, '93f5f5799a932462'],
    [15, 'a129ca6149be45e5'],
    [63, '958a324ceb064572'],
  ];
  for (const [len, want] of vectors) {
    it(`matches the reference vector for a ${len}-byte message`, () => {
      expect(hex(siphash24(key, Uint8Array.from({ length: len }, (_, i) => i)))).toBe(want);
    });
  }

  it('depends on every key bit', () => {
    const msg = new Uint8Array(20);
    const base = hex(siphash24(key, msg));
    for (let bit = 0; bit < 128; bit++) {
      const k = Uint8Array.from({ length: 16 }, (_, i) => i);
      k[bit >> 3]! ^= 1 << (bit & 7);
      expect(hex(siphash24(sipKey(k), msg)), `key bit ${bit}`).not.toBe(base);
    }
  });

  it('takes only 16-byte keys', () => {
    expect(() => sipKey(new Uint8Array(15))).toThrow(RangeError);
  });
});
