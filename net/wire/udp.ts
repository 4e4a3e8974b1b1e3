/** UDP datagrams (RFC 768) with the pseudo-header checksum; a zero checksum means "none". */
import { ipv4ToBytes, type Ipv4Addr } from '../addr.js';
import { finishChecksum, pseudoHeaderSum, sumBytes } from './checksum.js';
import type { Parsed } from './result.js';
import { allocBytes } from '../byte-slab.js';

export const UDP_HEADER_LEN = 8;

export interface UdpDatagram {
  srcPort: number;
  dstPort: number;
  /** A view, trimmed to the UDP length field. */
  payload: Uint8Array;
}

const a4 = new Uint8Array(4);
const b4 = new Uint8Array(4);

function udpSum(seg: Uint8Array, src: Ipv4Addr, dst: Ipv4Addr): number {
  return finishChecksum(sumBytes(seg, pseudoHeaderSum(ipv4ToBytes(src, a4), ipv4ToBytes(dst, b4), 17, seg.length)));
}

export function parseUdp(b: Uint8Array, pseudo?: { src: Ipv4Addr; dst: Ipv4Addr }): Parsed<UdpDatagram> {
  if (b.length < UDP_HEADER_LEN) return { ok: false, error: 'truncated' };
  const len = (b[4]! << 8) | b[5]!;
  if (len < UDP_HEADER_LEN) return { ok: false, error: 'bad-length' };
  if (len > b.length) return { ok: false, error: 'truncated' };
  const seg = b.subarray(0, len);
  const sum = (b[6]! << 8) | b[7]!;
  if (pseudo && sum !== 0 && udpSum(seg, pseudo.src, pseudo.dst) !== 0) return { ok: false, error: 'bad-checksum' };
  return { ok: true, value: { srcPort: (b[0]! << 8) | b[1]!, dstPort: (b[2]! << 8) | b[3]!, payload: seg.subarray(UDP_HEADER_LEN) } };
}

export function emitUdp(d: UdpDatagram, src: Ipv4Addr, dst: Ipv4Addr): Uint8Array {
  const len = UDP_HEADER_LEN + d.payload.length;
  const b = allocBytes(len);
  b[0] = d.srcPort >> 8;
  b[1] = d.srcPort & 0xff;
  b[2] = d.dstPort >> 8;
  b[3] = d.dstPort & 0xff;
  b[4] = len >> 8;
  b[5] = len & 0xff;
  b.set(d.payload, UDP_HEADER_LEN);
  let c = udpSum(b, src, dst);
  if (c === 0) c = 0xffff; // RFC 768: a computed zero is sent as all ones
  b[6] = c >> 8;
  b[7] = c & 0xff;
  return b;
}
