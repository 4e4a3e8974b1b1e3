/** ICMP for IPv4 (RFC 792): the messages the stack sends and understands. */
import { internetChecksum } from './checksum.js';
import type { Parsed } from './result.js';
import { allocBytes } from '../byte-slab.js';

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAM_PROBLEM = 12;
export const ICMP_UNREACH_NET = 0;
export const ICMP_UNREACH_HOST = 1;
export const ICMP_UNREACH_PROTOCOL = 2;
export const ICMP_UNREACH_PORT = 3;
export const ICMP_UNREACH_NEEDFRAG = 4;

export interface IcmpMessage {
  type: number;
  code: number;
  /** The 4 bytes after the checksum (echo id/sequence, next-hop MTU, …). */
  rest: number;
  /** Echo data, or the quoted IP header + 8 bytes of an error. A view. */
  body: Uint8Array;
}

export function parseIcmp(b: Uint8Array): Parsed<IcmpMessage> {
  if (b.length < 8) return { ok: false, error: 'truncated' };
  if (internetChecksum(b) !== 0) return { ok: false, error: 'bad-checksum' };
  return { ok: true, value: { type: b[0]!, code: b[1]!, rest: ((b[4]! << 24) | (b[5]! << 16) | (b[6]! << 8) | b[7]!) >>> 0, body: b.subarray(8) } };
}

export function emitIcmp(m: IcmpMessage): Uint8Array {
  const b = allocBytes(8 + m.body.length);
  b[0] = m.type;
  b[1] = m.code;
  b[4] = m.rest >>> 24;
  b[5] = (m.rest >>> 16) & 0xff;
  b[6] = (m.rest >>> 8) & 0xff;
  b[7] = m.rest & 0xff;
  b.set(m.body, 8);
  const c = internetChecksum(b);
  b[2] = c >> 8;
  b[3] = c & 0xff;
  return b;
}
