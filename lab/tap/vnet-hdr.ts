import { foldSum, internetChecksum, pseudoHeaderSum } from '../../net/wire/checksum.js';
import { tcpv4Layout, type Tcpv4Layout } from '../../src/devices/tcp-gso.js';

/**
 * The virtio-net header a TAP opened with IFF_VNET_HDR puts in front of every frame (Linux
 * include/uapi/linux/virtio_net.h, virtio 1.x §5.1.6): 12 bytes as set with TUNSETVNETHDRSZ, the
 * virtio_net_hdr_v1 layout (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
 * num_buffers), little-endian on the hosts we run on (x86-64, arm64).
 */
export const VNET_HDR_LEN = 12;
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;

const ETH_HLEN = 14;

/**
 * Finish the partial checksum of a frame the kernel marked NEEDS_CSUM (`record` = header + frame):
 * the kernel left the pseudo-header sum in the field at csum_start + csum_offset, so summing from
 * csum_start to the end and storing the complement completes it. False when the header points
 * outside the frame (the record is then dropped).
 */
export function completeVnetChecksum(record: Uint8Array, hdrLen: number): boolean {
  const flags = record[0]!;
  if (!(flags & VNET_F_NEEDS_CSUM)) return true;
  const dv = new DataView(record.buffer, record.byteOffset, hdrLen);
  const start = dv.getUint16(6, true);
  const offset = dv.getUint16(8, true);
  const frame = record.subarray(hdrLen);
  if (start + offset + 2 > frame.length || start < ETH_HLEN) return false;
  const sum = internetChecksum(frame.subarray(start));
  // A zero result goes out as 0xFFFF: a UDP checksum of 0 would mean "none".
  const v = sum === 0 ? 0xffff : sum;
  frame[start + offset] = v >> 8;
  frame[start + offset + 1] = v & 0xff;
  record[0] = (flags & ~VNET_F_NEEDS_CSUM) | VNET_F_DATA_VALID;
  return true;
}

/**
 * Whether a NEEDS_CSUM record's partial sum is a TCP/IPv4 one (csum_start at the TCP header,
 * csum_offset at its checksum field): the kind that travels on as RxInfo.checksumPartial.
 */
export function partialIsTcpv4(record: Uint8Array, hdrLen: number): boolean {
  const start = record[6]! | (record[7]! << 8);
  const offset = record[8]! | (record[9]! << 8);
  const l = tcpv4Layout(record.subarray(hdrLen));
  return l !== null && start === l.tcpAt && offset === 16;
}

export interface VnetInfo {
  gsoType: number;
  gsoSize: number;
}

export function readVnetHeader(record: Uint8Array): VnetInfo {
  return { gsoType: record[1]!, gsoSize: record[4]! | (record[5]! << 8) };
}

/**
 * Write the header for `frame` into `out[0..12)` and the frame after it, ready for one write(2).
 * A frame longer than the 1500-byte MTU is a GSO frame (the FramePort contract lets only TCP/IPv4
 * segments be so): gso_type TCPV4 with the segment size the MTU leaves, and NEEDS_CSUM with the
 * pseudo-header sum in the TCP checksum field (in the copy), as Linux's own virtio_net_hdr_from_skb
 * writes, so the kernel treats it as a CHECKSUM_PARTIAL packet of its own. `gsoSize` makes any
 * TCP/IPv4 frame a GSO frame of that segment size (segments merged by tcp-gro.ts). Returns the
 * byte count, or 0 when a GSO frame is not a well-formed TCP/IPv4 segment.
 */
export function encodeVnetFrame(frame: Uint8Array, out: Uint8Array, gsoSize = 0): number {
  out.fill(0, 0, VNET_HDR_LEN);
  out.set(frame, VNET_HDR_LEN);
  const total = VNET_HDR_LEN + frame.length;
  if (frame.length <= ETH_HLEN + 1500 && gsoSize === 0) return total;
  const l: Tcpv4Layout | null = tcpv4Layout(frame);
  if (!l) return 0;
  const mss = gsoSize > 0 ? gsoSize : 1500 - (l.hdrLen - ETH_HLEN);
  const dv = new DataView(out.buffer, out.byteOffset, VNET_HDR_LEN);
  dv.setUint8(0, VNET_F_NEEDS_CSUM);
  dv.setUint8(1, VNET_GSO_TCPV4);
  dv.setUint16(2, l.hdrLen, true);
  dv.setUint16(4, mss, true);
  dv.setUint16(6, l.tcpAt, true);
  dv.setUint16(8, 16, true);
  const f = out.subarray(VNET_HDR_LEN);
  const pseudo = foldSum(pseudoHeaderSum(f.subarray(ETH_HLEN + 12, ETH_HLEN + 16), f.subarray(ETH_HLEN + 16, ETH_HLEN + 20), 6, frame.length - l.tcpAt));
  f[l.tcpAt + 16] = pseudo >> 8;
  f[l.tcpAt + 17] = pseudo & 0xff;
  return total;
}
