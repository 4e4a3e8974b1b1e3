/**
 * The Ethernet CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as NICs compute it: the FCS a
 * card appends to a received frame, and the big-endian form multicast hash filters index by.
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** The FCS value; stored on the wire little-endian (least significant byte first). */
export function ethernetFcs(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
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
