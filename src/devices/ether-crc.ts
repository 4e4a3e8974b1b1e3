import * as zlib from 'node:zlib';

/**
 * The Ethernet CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as NICs compute it: the FCS a
 * card appends to a received frame, and the big-endian form multicast hash filters index by.
 */

/**
 * zlib's CRC-32 is the same function (same polynomial, initial value and final XOR), in native
 * code: ~0.5 µs for a 1514-byte frame against ~1.4 µs for the tables below, on every frame an
 * RTL8139 or NE2000 receives. Node has it from 20.15; older ones use the tables.
 */
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
/**
 * Slicing-by-8 tables: T[k][b] is the CRC of byte b followed by k zero bytes, so eight input bytes
 * are folded per step with eight lookups (the byte-at-a-time loop was the receive path's top cost).
 */
const T = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();

/** The FCS value; stored on the wire little-endian (least significant byte first). */
export function ethernetFcs(data: Uint8Array): number {
  return nativeCrc32 ? nativeCrc32(data) : tableFcs(data);
}

/** The FCS by slicing-by-8 tables (exported for the test that holds it equal to zlib's). */
export function tableFcs(data: Uint8Array): number {
  let c = -1;
  let i = 0;
  const n = data.length;
  for (; i + 8 <= n; i += 8) {
    const lo = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    const hi = data[i + 4]! | (data[i + 5]! << 8) | (data[i + 6]! << 16) | (data[i + 7]! << 24);
    c =
      T[7 * 256 + (lo & 0xff)]! ^
      T[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      T[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      T[4 * 256 + (lo >>> 24)]! ^
      T[3 * 256 + (hi & 0xff)]! ^
      T[2 * 256 + ((hi >>> 8) & 0xff)]! ^
      T[256 + ((hi >>> 16) & 0xff)]! ^
      T[hi >>> 24]!;
  }
  for (; i < n; i++) c = T[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/**
 * The non-reflected CRC over a MAC address (Linux's ether_crc): its top 6 bits select one of the
 * 64 bits in a DP8390/RTL8139 multicast address register.
 */
export function multicastHashBit(mac: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < 6; i++) {
    let b = mac[i]!;
    for (let bit = 0; bit < 8; bit++, b >>= 1) {
      const msb = crc >>> 31;
      crc = (crc << 1) >>> 0;
      if ((msb ^ (b & 1)) !== 0) crc = (crc ^ 0x04c11db7) >>> 0;
    }
  }
  return crc >>> 26;
}
