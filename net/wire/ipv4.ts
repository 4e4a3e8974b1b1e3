/**
 * IPv4 headers (RFC 791): validation on input (version, IHL, total length, header checksum;
 * options are skipped, never interpreted) and header emission with the checksum filled in.
 */
import { ipv4FromBytes, ipv4ToBytes, type Ipv4Addr } from '../addr.js';
import { internetChecksum } from './checksum.js';
import type { Parsed } from './result.js';

export const IPV4_HEADER_LEN = 20;
export const IP_DF = 0x4000;
export const IP_MF = 0x2000;
export const IP_OFFMASK = 0x1fff;

export interface Ipv4Header {
  headerLength: number;
  tos: number;
  totalLength: number;
  id: number;
  /** Flags (DF, MF) in the top bits as on the wire, offset in 8-byte units below. */
  flagsOffset: number;
  ttl: number;
  protocol: number;
  src: Ipv4Addr;
  dst: Ipv4Addr;
  /** The datagram (or fragment) payload: a view trimmed to totalLength (link padding removed). */
  payload: Uint8Array;
  /** The whole packet, trimmed to totalLength. */
  packet: Uint8Array;
}

export function parseIpv4(b: Uint8Array, verifyChecksum = true): Parsed<Ipv4Header> {
  if (b.length < IPV4_HEADER_LEN) return { ok: false, error: 'truncated' };
  if (b[0]! >> 4 !== 4) return { ok: false, error: 'bad-version' };
  const headerLength = (b[0]! & 0x0f) * 4;
  if (headerLength < IPV4_HEADER_LEN) return { ok: false, error: 'bad-length' };
  const totalLength = (b[2]! << 8) | b[3]!;
  if (totalLength < headerLength) return { ok: false, error: 'bad-length' };
  if (b.length < totalLength) return { ok: false, error: 'truncated' };
  if (verifyChecksum && internetChecksum(b.subarray(0, headerLength)) !== 0) return { ok: false, error: 'bad-checksum' };
  return {
    ok: true,
    value: {
      headerLength,
      tos: b[1]!,
      totalLength,
      id: (b[4]! << 8) | b[5]!,
      flagsOffset: (b[6]! << 8) | b[7]!,
      ttl: b[8]!,
      protocol: b[9]!,
      src: ipv4FromBytes(b, 12),
      dst: ipv4FromBytes(b, 16),
      payload: b.subarray(headerLength, totalLength),
      packet: b.subarray(0, totalLength),
    },
  };
}

export interface Ipv4Emit {
  tos?: number;
  id: number;
  flagsOffset?: number;
  ttl: number;
  protocol: number;
  src: Ipv4Addr;
  dst: Ipv4Addr;
  payloadLength: number;
}

/** Write a 20-byte header at `off` in `buf`, checksum included. */
export function emitIpv4Header(buf: Uint8Array, off: number, h: Ipv4Emit): number {
  const total = IPV4_HEADER_LEN + h.payloadLength;
  buf[off] = 0x45;
  buf[off + 1] = h.tos ?? 0;
  buf[off + 2] = total >> 8;
  buf[off + 3] = total & 0xff;
  buf[off + 4] = h.id >> 8;
  buf[off + 5] = h.id & 0xff;
  const fo = h.flagsOffset ?? 0;
  buf[off + 6] = fo >> 8;
  buf[off + 7] = fo & 0xff;
  buf[off + 8] = h.ttl;
  buf[off + 9] = h.protocol;
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  ipv4ToBytes(h.src, buf, off + 12);
  ipv4ToBytes(h.dst, buf, off + 16);
  const c = internetChecksum(buf.subarray(off, off + IPV4_HEADER_LEN));
  buf[off + 10] = c >> 8;
  buf[off + 11] = c & 0xff;
  return IPV4_HEADER_LEN;
}
