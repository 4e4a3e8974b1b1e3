/**
 * Ethernet II frames (no preamble, no FCS), with one or two 802.1Q/802.1ad tags parsed so the
 * payload and its EtherType are found behind them.
 */
import type { Parsed } from './result.js';
import { allocBytes } from '../byte-slab.js';

export const ETH_HEADER_LEN = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;
export const ETHERTYPE_IPV6 = 0x86dd;

export interface EthernetFrame {
  dst: Uint8Array;
  src: Uint8Array;
  /** The EtherType after any VLAN tags. */
  etherType: number;
  /** VLAN ids of the tags, outermost first (empty when untagged). */
  vlans: number[];
  /** A view of the payload (no copy). */
  payload: Uint8Array;
}

export function parseEthernet(frame: Uint8Array): Parsed<EthernetFrame> {
  if (frame.length < ETH_HEADER_LEN) return { ok: false, error: 'truncated' };
  let off = 12;
  let type = (frame[off]! << 8) | frame[off + 1]!;
  const vlans: number[] = [];
  while ((type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) && vlans.length < 2) {
    if (frame.length < off + 6) return { ok: false, error: 'truncated' };
    vlans.push(((frame[off + 2]! << 8) | frame[off + 3]!) & 0x0fff);
    off += 4;
    type = (frame[off]! << 8) | frame[off + 1]!;
  }
  // Values below 0x600 are 802.3 lengths (LLC frames): not Ethernet II, not ours to parse.
  if (type < 0x600) return { ok: false, error: 'unsupported' };
  return { ok: true, value: { dst: frame.subarray(0, 6), src: frame.subarray(6, 12), etherType: type, vlans, payload: frame.subarray(off + 2) } };
}

/** Write an untagged header into `buf` at 0; returns the header length. */
export function emitEthernetHeader(buf: Uint8Array, dst: Uint8Array, src: Uint8Array, etherType: number): number {
  buf.set(dst.subarray(0, 6), 0);
  buf.set(src.subarray(0, 6), 6);
  buf[12] = etherType >> 8;
  buf[13] = etherType & 0xff;
  return ETH_HEADER_LEN;
}

/** A new frame: header + a copy of payload. */
export function buildEthernet(dst: Uint8Array, src: Uint8Array, etherType: number, payload: Uint8Array): Uint8Array {
  const f = allocBytes(ETH_HEADER_LEN + payload.length);
  emitEthernetHeader(f, dst, src, etherType);
  f.set(payload, ETH_HEADER_LEN);
  return f;
}
