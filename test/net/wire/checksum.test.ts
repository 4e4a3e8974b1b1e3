import { describe, expect, it } from 'vitest';
import { foldSum, internetChecksum, sumBytes } from '../../../net/wire/checksum.js';
import { mulberry32 } from '../../../net/random.js';

/** RFC 1071 written out plainly: big-endian 16-bit words, odd byte padded, end-around carry. */
function reference(data: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i < data.length; i += 2) sum += (data[i]! << 8) | (data[i + 1] ?? 0);
  return foldSum(sum);
}

describe('Internet checksum', () => {
  it('RFC 1071 §3 example: the words 0001 f203 f4f5 f6f7 sum to ddf2', () => {
    expect(foldSum(sumBytes(new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])))).toBe(0xddf2);
  });

  it('equals the plain RFC 1071 sum for every alignment and length, short and long (the word-wide path), with a carried-in sum', () => {
    const rand = mulberry32(11);
    const buf = new Uint8Array(300_000);
    for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rand() * 256);
    const lengths = [0, 1, 2, 3, 63, 64, 65, 66, 67, 1500, 1501, 65535, 65536 * 2 + 5, 262_147];
    for (const length of lengths) {
      for (let offset = 0; offset < 8; offset++) {
        const view = buf.subarray(offset, offset + length);
        expect(foldSum(sumBytes(view, 0x1234)), `offset ${offset} length ${length}`).toBe(reference(view, 0x1234));
      }
    }
    for (let k = 0; k < 300; k++) {
      const offset = Math.floor(rand() * 100);
      const view = buf.subarray(offset, offset + Math.floor(rand() * 70_000));
      expect(foldSum(sumBytes(view))).toBe(reference(view));
    }
  });

  it('all-0xff data (the words that fold to one\'s-complement zero) and all-zero data agree with the plain sum', () => {
    for (const fill of [0x00, 0xff]) {
      for (const length of [64, 4096, 65535]) {
        const view = new Uint8Array(length + 3).fill(fill).subarray(3);
        expect(foldSum(sumBytes(view))).toBe(reference(view));
      }
    }
  });

  it('a filled-in checksum verifies: the sum over the data with it folds to 0xffff', () => {
    const rand = mulberry32(5);
    const v = new Uint8Array(9000).map(() => Math.floor(rand() * 256));
    v[100] = 0;
    v[101] = 0;
    const c2 = internetChecksum(v);
    v[100] = c2 >> 8;
    v[101] = c2 & 0xff;
    expect(foldSum(sumBytes(v))).toBe(0xffff);
  });
});
