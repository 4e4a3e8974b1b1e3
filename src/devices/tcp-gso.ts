import { internetChecksum, pseudoHeaderSum } from '../../net/wire/checksum.js';
import { allocBytes, copyBytes } from '../../net/byte-slab.js';

/**
 * TCP segmentation offload for a device model (virtio-net HOST_TSO4): the guest hands over one
 * TCP/IPv4 packet of up to 64 KiB and a segment size; the device either passes it on whole to a
 * far end that takes GSO frames, or cuts it into packets that fit the wire, as a NIC with TSO does.
 * Both finish the checksums themselves: what the driver left in the checksum fields is not used.
 */

const ETH_HLEN = 14;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

export interface Tcpv4Layout {
  /** Offset of the TCP header (Ethernet + IPv4 header lengths). */
  tcpAt: number;
  /** Ethernet + IPv4 + TCP header bytes. */
  hdrLen: number;
}

/** Where the headers of a TCP/IPv4 frame end, or null when the frame is not one (or is cut short). */
export function tcpv4Layout(frame: Uint8Array): Tcpv4Layout | null {
  if (frame.length < ETH_HLEN + 40 || frame[12] !== 0x08 || frame[13] !== 0x00) return null;
  const ihl = (frame[ETH_HLEN]! & 0x0f) * 4;
  if (frame[ETH_HLEN]! >> 4 !== 4 || ihl < 20 || frame[ETH_HLEN + 9] !== 6) return null;
  const tcpAt = ETH_HLEN + ihl;
  if (frame.length < tcpAt + 20) return null;
  const thl = (frame[tcpAt + 12]! >> 4) * 4;
  if (thl < 20 || frame.length < tcpAt + thl) return null;
  // The IPv4 total length must describe exactly this frame: no padding, no truncation.
  const total = (frame[ETH_HLEN + 2]! << 8) | frame[ETH_HLEN + 3]!;
  if (total !== frame.length - ETH_HLEN) return null;
  return { tcpAt, hdrLen: tcpAt + thl };
}

/** Recompute in place the checksum of the IPv4 header that ends at `tcpAt` (after Ethernet's). */
export function finishIpv4HeaderChecksum(frame: Uint8Array, tcpAt: number): void {
  frame[ETH_HLEN + 10] = 0;
  frame[ETH_HLEN + 11] = 0;
  const ipSum = internetChecksum(frame.subarray(ETH_HLEN, tcpAt));
  frame[ETH_HLEN + 10] = ipSum >> 8;
  frame[ETH_HLEN + 11] = ipSum & 0xff;
}

/** Recompute the IPv4 header checksum and the TCP checksum of a whole TCP/IPv4 frame in place. */
export function finishTcpv4Checksums(frame: Uint8Array, l: Tcpv4Layout): void {
  finishIpv4HeaderChecksum(frame, l.tcpAt);
  frame[l.tcpAt + 16] = 0;
  frame[l.tcpAt + 17] = 0;
  const segLen = frame.length - l.tcpAt;
  const pseudo = pseudoHeaderSum(frame.subarray(ETH_HLEN + 12, ETH_HLEN + 16), frame.subarray(ETH_HLEN + 16, ETH_HLEN + 20), 6, segLen);
  const sum = internetChecksum(frame.subarray(l.tcpAt), pseudo);
  frame[l.tcpAt + 16] = sum >> 8;
  frame[l.tcpAt + 17] = sum & 0xff;
}

/**
 * Finish in place the checksums of a TCP/IPv4 frame sent with its TCP checksum partial
 * (TxInfo.checksumPartial), for whoever must see it whole (a capture, a port that does not take
 * partial checksums). False when the frame is not a well-formed TCP/IPv4 one, which nobody sends
 * partial.
 */
export function finishPartialTcpv4(frame: Uint8Array): boolean {
  const l = tcpv4Layout(frame);
  if (!l) return false;
  finishTcpv4Checksums(frame, l);
  return true;
}

/**
 * Cut a TCP/IPv4 frame into frames carrying at most `mss` payload bytes each (RFC 9293 segments of
 * one stream): sequence numbers advance, the IPv4 identification counts up, FIN and PSH stay on the
 * last piece and CWR on the first only, and every piece gets its own lengths and checksums.
 */
export function segmentTcpv4(frame: Uint8Array, l: Tcpv4Layout, mss: number): Uint8Array[] {
  const payload = frame.length - l.hdrLen;
  if (payload <= mss) {
    const one = copyBytes(frame);
    finishTcpv4Checksums(one, l);
    return [one];
  }
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const id = dv.getUint16(ETH_HLEN + 4);
  const seq = dv.getUint32(l.tcpAt + 4);
  const flags = frame[l.tcpAt + 13]!;
  const out: Uint8Array[] = [];
  for (let off = 0, k = 0; off < payload; off += mss, k++) {
    const n = Math.min(mss, payload - off);
    const piece = allocBytes(l.hdrLen + n);
    piece.set(frame.subarray(0, l.hdrLen));
    piece.set(frame.subarray(l.hdrLen + off, l.hdrLen + off + n), l.hdrLen);
    const pv = new DataView(piece.buffer, piece.byteOffset, piece.byteLength);
    pv.setUint16(ETH_HLEN + 2, piece.length - ETH_HLEN);
    pv.setUint16(ETH_HLEN + 4, (id + k) & 0xffff);
    pv.setUint32(l.tcpAt + 4, (seq + off) >>> 0);
    const last = off + n >= payload;
    let f = flags;
    if (!last) f &= ~(TCP_FIN | TCP_PSH);
    if (k > 0) f &= ~TCP_CWR;
    piece[l.tcpAt + 13] = f;
    finishTcpv4Checksums(piece, l);
    out.push(piece);
  }
  return out;
}
