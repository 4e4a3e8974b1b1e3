/**
 * SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012): a keyed hash made
 * for exactly what a stack needs from one — SYN cookies and secret ISNs over a few header words —
 * and what Linux uses for both. Written with 32-bit halves of each 64-bit lane, so it runs at
 * JavaScript's native integer width without BigInt.
 */

/** A 128-bit SipHash key as four 32-bit words: k0 = (w[1], w[0]), k1 = (w[3], w[2]) (hi, lo). */
export type SipKey = Readonly<Uint32Array>;

/** The key from 16 bytes, little-endian as the specification reads them. */
export function sipKey(bytes: Uint8Array): SipKey {
  if (bytes.length !== 16) throw new RangeError(`SipHash key of ${bytes.length} bytes: 16 needed`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 16);
  return Uint32Array.of(dv.getUint32(0, true), dv.getUint32(4, true), dv.getUint32(8, true), dv.getUint32(12, true));
}

/**
 * SipHash-2-4 of `msg`. Returns the 64-bit result as [hi, lo] 32-bit words (the specification's
 * output is that 64-bit number, written little-endian).
 */
export function siphash24(key: SipKey, msg: Uint8Array): [number, number] {
  const k0l = key[0]!, k0h = key[1]!, k1l = key[2]!, k1h = key[3]!;
  // Initialisation constants: "somepseudorandomlygeneratedbytes".
  let v0h = k0h ^ 0x736f6d65, v0l = k0l ^ 0x70736575;
  let v1h = k1h ^ 0x646f7261, v1l = k1l ^ 0x6e646f6d;
  let v2h = k0h ^ 0x6c796765, v2l = k0l ^ 0x6e657261;
  let v3h = k1h ^ 0x74656462, v3l = k1l ^ 0x79746573;

  // Lanes are kept as signed 32-bit halves (what JavaScript's bit operators yield); an addition
  // takes both low halves unsigned to see its carry.
  const round = (): void => {
    let l: number, t: number;
    // v0 += v1; v1 = rotl(v1, 13) ^ v0; v0 = rotl(v0, 32)
    l = (v0l >>> 0) + (v1l >>> 0); v0h = (v0h + v1h + (l > 0xffffffff ? 1 : 0)) | 0; v0l = l | 0;
    t = (v1h << 13) | (v1l >>> 19); v1l = ((v1l << 13) | (v1h >>> 19)) ^ v0l; v1h = t ^ v0h;
    t = v0h; v0h = v0l; v0l = t;
    // v2 += v3; v3 = rotl(v3, 16) ^ v2
    l = (v2l >>> 0) + (v3l >>> 0); v2h = (v2h + v3h + (l > 0xffffffff ? 1 : 0)) | 0; v2l = l | 0;
    t = (v3h << 16) | (v3l >>> 16); v3l = ((v3l << 16) | (v3h >>> 16)) ^ v2l; v3h = t ^ v2h;
    // v0 += v3; v3 = rotl(v3, 21) ^ v0
    l = (v0l >>> 0) + (v3l >>> 0); v0h = (v0h + v3h + (l > 0xffffffff ? 1 : 0)) | 0; v0l = l | 0;
    t = (v3h << 21) | (v3l >>> 11); v3l = ((v3l << 21) | (v3h >>> 11)) ^ v0l; v3h = t ^ v0h;
    // v2 += v1; v1 = rotl(v1, 17) ^ v2; v2 = rotl(v2, 32)
    l = (v2l >>> 0) + (v1l >>> 0); v2h = (v2h + v1h + (l > 0xffffffff ? 1 : 0)) | 0; v2l = l | 0;
    t = (v1h << 17) | (v1l >>> 15); v1l = ((v1l << 17) | (v1h >>> 15)) ^ v2l; v1h = t ^ v2h;
    t = v2h; v2h = v2l; v2l = t;
  };
  const compress = (mh: number, ml: number): void => {
    v3h ^= mh; v3l ^= ml;
    round();
    round();
    v0h ^= mh; v0l ^= ml;
  };

  const len = msg.length;
  const whole = len - (len % 8);
  const le32 = (i: number): number => (msg[i]! | (msg[i + 1]! << 8) | (msg[i + 2]! << 16) | (msg[i + 3]! << 24)) >>> 0;
  for (let i = 0; i < whole; i += 8) compress(le32(i + 4), le32(i));
  // Last block: the remaining bytes, little-endian, with len mod 256 in the top byte.
  let ml = 0;
  let mh = (len & 0xff) << 24;
  for (let i = whole; i < len; i++) {
    const shift = 8 * (i - whole);
    if (shift < 32) ml |= msg[i]! << shift;
    else mh |= msg[i]! << (shift - 32);
  }
  compress(mh >>> 0, ml >>> 0);
  v2l ^= 0xff;
  round();
  round();
  round();
  round();
  return [(v0h ^ v1h ^ v2h ^ v3h) >>> 0, (v0l ^ v1l ^ v2l ^ v3l) >>> 0];
}
