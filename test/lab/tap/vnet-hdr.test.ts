import { describe, expect, it } from 'vitest';
import { parseIpv4 as parseAddr } from '../../../net/addr.js';
import { foldSum, internetChecksum, pseudoHeaderSum, sumBytes } from '../../../net/wire/checksum.js';
import { emitIpv4Header } from '../../../net/wire/ipv4.js';
import { emitTcp, TH_ACK } from '../../../net/wire/tcp.js';
import { completeVnetChecksum, encodeVnetFrame, readVnetHeader, VNET_F_DATA_VALID, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_HDR_LEN } from '../../../lab/tap/vnet-hdr.js';

const SRC = parseAddr('172.22.0.1')!;
const DST = parseAddr('172.22.0.2')!;

/** A TCP/IPv4 frame with complete checksums and `payload` bytes of data. */
function tcpFrame(payload: number): Uint8Array {
  const tcpLen = 20 + payload;
  const f = new Uint8Array(14 + 20 + tcpLen);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
  emitIpv4Header(f, 14, { id: 1, ttl: 64, protocol: 6, src: SRC, dst: DST, payloadLength: tcpLen });
  emitTcp({ srcPort: 80, dstPort: 40000, seq: 1, ack: 2, flags: TH_ACK, window: 1000, urgent: 0, options: {}, payload: Uint8Array.from({ length: payload }, (_, i) => i & 0xff) }, f, 34, SRC, DST);
  return f;
}

/** The TCP checksum verifies: the sum over pseudo-header and segment folds to 0xFFFF. */
function tcpVerifies(f: Uint8Array): boolean {
  return foldSum(sumBytes(f.subarray(34), pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, f.length - 34))) === 0xffff;
}

describe('virtio-net header on a TAP (IFF_VNET_HDR)', () => {
  it('an MTU-sized frame goes out after a zero header, unchanged', () => {
    const f = tcpFrame(1000);
    const out = new Uint8Array(VNET_HDR_LEN + f.length);
    expect(encodeVnetFrame(f, out)).toBe(VNET_HDR_LEN + f.length);
    expect([...out.subarray(0, VNET_HDR_LEN)]).toEqual(new Array(12).fill(0));
    expect(out.subarray(VNET_HDR_LEN)).toEqual(f);
  });

  it('a GSO frame goes out as TSO4 with the MTU segment size and a partial checksum, the caller’s frame untouched', () => {
    const f = tcpFrame(60000);
    const copy = f.slice();
    const out = new Uint8Array(VNET_HDR_LEN + f.length);
    expect(encodeVnetFrame(f, out)).toBe(out.length);
    const dv = new DataView(out.buffer);
    expect(out[0]).toBe(VNET_F_NEEDS_CSUM);
    expect(out[1]).toBe(VNET_GSO_TCPV4);
    expect(dv.getUint16(2, true)).toBe(54); // hdr_len
    expect(dv.getUint16(4, true)).toBe(1460); // gso_size
    expect(dv.getUint16(6, true)).toBe(34); // csum_start
    expect(dv.getUint16(8, true)).toBe(16); // csum_offset
    const pseudo = foldSum(pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, f.length - 34));
    expect(dv.getUint16(VNET_HDR_LEN + 34 + 16)).toBe(pseudo);
    expect(f).toEqual(copy);
    // What the kernel does with it: completing the partial sum gives the original checksum.
    expect(completeVnetChecksum(out, VNET_HDR_LEN)).toBe(true);
    expect(out.subarray(VNET_HDR_LEN)).toEqual(f);
  });

  it('refuses a frame over the MTU that is not a TCP/IPv4 segment', () => {
    const f = new Uint8Array(3000);
    f[12] = 0x08;
    expect(encodeVnetFrame(f, new Uint8Array(3012))).toBe(0);
  });

  it('completes a NEEDS_CSUM frame from the kernel and marks it DATA_VALID', () => {
    const f = tcpFrame(3000);
    const rec = new Uint8Array(VNET_HDR_LEN + f.length);
    rec.set(f, VNET_HDR_LEN);
    // As the kernel hands it over: the pseudo-header sum in the field, csum_start/offset set.
    const pseudo = foldSum(pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, f.length - 34));
    rec[VNET_HDR_LEN + 50] = pseudo >> 8;
    rec[VNET_HDR_LEN + 51] = pseudo & 0xff;
    const dv = new DataView(rec.buffer);
    rec[0] = VNET_F_NEEDS_CSUM;
    rec[1] = VNET_GSO_TCPV4;
    dv.setUint16(4, 1448, true);
    dv.setUint16(6, 34, true);
    dv.setUint16(8, 16, true);
    expect(tcpVerifies(rec.subarray(VNET_HDR_LEN))).toBe(false);
    expect(completeVnetChecksum(rec, VNET_HDR_LEN)).toBe(true);
    expect(tcpVerifies(rec.subarray(VNET_HDR_LEN))).toBe(true);
    expect(rec[0]).toBe(VNET_F_DATA_VALID);
    expect(readVnetHeader(rec)).toEqual({ gsoType: VNET_GSO_TCPV4, gsoSize: 1448 });
  });

  it('drops a record whose checksum position lies outside the frame', () => {
    const rec = new Uint8Array(VNET_HDR_LEN + 60);
    rec[0] = VNET_F_NEEDS_CSUM;
    new DataView(rec.buffer).setUint16(6, 59, true);
    expect(completeVnetChecksum(rec, VNET_HDR_LEN)).toBe(false);
  });

  it('leaves a frame without NEEDS_CSUM alone', () => {
    const f = tcpFrame(100);
    const rec = new Uint8Array(VNET_HDR_LEN + f.length);
    rec.set(f, VNET_HDR_LEN);
    expect(completeVnetChecksum(rec, VNET_HDR_LEN)).toBe(true);
    expect(internetChecksum(rec.subarray(VNET_HDR_LEN + 14, VNET_HDR_LEN + 34))).toBe(0);
    expect(rec.subarray(VNET_HDR_LEN)).toEqual(f);
  });
});
