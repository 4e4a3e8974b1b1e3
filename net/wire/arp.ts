/** ARP for IPv4 over Ethernet (RFC 826): the only hardware/protocol pair the lab speaks. */
import { ipv4FromBytes, ipv4ToBytes, type Ipv4Addr } from '../addr.js';
import type { Parsed } from './result.js';

export const ARP_LEN = 28;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

export interface ArpPacket {
  op: number;
  senderMac: Uint8Array;
  senderIp: Ipv4Addr;
  targetMac: Uint8Array;
  targetIp: Ipv4Addr;
}

export function parseArp(b: Uint8Array): Parsed<ArpPacket> {
  if (b.length < ARP_LEN) return { ok: false, error: 'truncated' };
  const htype = (b[0]! << 8) | b[1]!;
  const ptype = (b[2]! << 8) | b[3]!;
  if (htype !== 1 || ptype !== 0x0800 || b[4] !== 6 || b[5] !== 4) return { ok: false, error: 'unsupported' };
  const op = (b[6]! << 8) | b[7]!;
  if (op !== ARP_REQUEST && op !== ARP_REPLY) return { ok: false, error: 'unsupported' };
  return {
    ok: true,
    value: { op, senderMac: b.slice(8, 14), senderIp: ipv4FromBytes(b, 14), targetMac: b.slice(18, 24), targetIp: ipv4FromBytes(b, 24) },
  };
}

export function emitArp(p: ArpPacket): Uint8Array {
  const b = new Uint8Array(ARP_LEN);
  b.set([0, 1, 0x08, 0x00, 6, 4, 0, p.op]);
  b.set(p.senderMac.subarray(0, 6), 8);
  ipv4ToBytes(p.senderIp, b, 14);
  b.set(p.targetMac.subarray(0, 6), 18);
  ipv4ToBytes(p.targetIp, b, 24);
  return b;
}
