/**
 * Addresses. IPv4 addresses are unsigned 32-bit numbers in host order inside the stack (cheap to
 * compare, hash and mask); MAC addresses are 6-byte arrays. Text forms only at the edges.
 */
export type Ipv4Addr = number;
export type MacAddr = Uint8Array;

export const IPV4_ANY: Ipv4Addr = 0;
export const IPV4_BROADCAST: Ipv4Addr = 0xffffffff;

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parse dotted-quad text; null when it is not a valid IPv4 address. */
export function parseIpv4(text: string): Ipv4Addr | null {
  const m = IPV4_RE.exec(text.trim());
  if (!m) return null;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255) return null;
    v = v * 256 + octet;
  }
  return v >>> 0;
}

export function formatIpv4(addr: Ipv4Addr): string {
  return `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}`;
}

export function ipv4FromBytes(b: Uint8Array, offset = 0): Ipv4Addr {
  return ((b[offset]! << 24) | (b[offset + 1]! << 16) | (b[offset + 2]! << 8) | b[offset + 3]!) >>> 0;
}

export function ipv4ToBytes(addr: Ipv4Addr, out: Uint8Array = new Uint8Array(4), offset = 0): Uint8Array {
  out[offset] = addr >>> 24;
  out[offset + 1] = (addr >>> 16) & 255;
  out[offset + 2] = (addr >>> 8) & 255;
  out[offset + 3] = addr & 255;
  return out;
}

/** Netmask for a prefix length 0..32. */
export function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** Prefix length of a contiguous netmask; null when the mask has holes. */
export function maskToPrefix(mask: Ipv4Addr): number | null {
  for (let p = 0; p <= 32; p++) if (prefixMask(p) === mask >>> 0) return p;
  return null;
}

export function sameSubnet(a: Ipv4Addr, b: Ipv4Addr, prefixLength: number): boolean {
  const m = prefixMask(prefixLength);
  return ((a & m) >>> 0) === ((b & m) >>> 0);
}

const MAC_RE = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i;

/** Parse "52:54:00:12:34:56" (or with dashes); null when malformed. */
export function parseMac(text: string): MacAddr | null {
  const m = MAC_RE.exec(text.trim());
  if (!m) return null;
  return Uint8Array.from(m.slice(1, 7).map((h) => parseInt(h, 16)));
}

export function formatMac(mac: Uint8Array, offset = 0): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(mac[offset + i]!.toString(16).padStart(2, '0'));
  return parts.join(':');
}

export const MAC_BROADCAST: MacAddr = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);

export function macEquals(a: Uint8Array, aOff: number, b: Uint8Array, bOff = 0): boolean {
  for (let i = 0; i < 6; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

export function isBroadcastMac(b: Uint8Array, offset = 0): boolean {
  for (let i = 0; i < 6; i++) if (b[offset + i] !== 0xff) return false;
  return true;
}

/** Group bit (I/G) set: multicast or broadcast. */
export function isMulticastMac(b: Uint8Array, offset = 0): boolean {
  return (b[offset]! & 1) === 1;
}

/** A random locally administered unicast MAC (Palacios gives NICs without <mac> one). */
export function randomLocalMac(random: () => number = Math.random): MacAddr {
  const mac = new Uint8Array(6);
  for (let i = 0; i < 6; i++) mac[i] = Math.floor(random() * 256) & 255;
  mac[0] = (mac[0]! & 0xfc) | 0x02;
  return mac;
}
