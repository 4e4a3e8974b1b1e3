import { describe, expect, it } from 'vitest';
import { parseIpv4 as parseAddr } from '../../net/addr.js';
import { emitIpv4Header } from '../../net/wire/ipv4.js';
import { emitTcp, TH_ACK, TH_CWR, TH_FIN, TH_PSH, type TcpRepr } from '../../net/wire/tcp.js';
import { finishTcpv4Checksums, segmentTcpv4, tcpv4Layout } from '../../src/devices/tcp-gso.js';
import { parseTcpFrame } from './tcp-frames.js';

const SRC = parseAddr('10.0.2.15')!;
const DST = parseAddr('10.0.2.2')!;

/** A TCP/IPv4 frame as a guest stack hands it to a TSO driver (checksum fields then scribbled on). */
function bigSegment(payload: number, flags: number): Uint8Array {
  const repr: TcpRepr = {
    srcPort: 49200,
    dstPort: 80,
    seq: 0xfffff000, // wraps inside the packet
    ack: 12345,
    flags,
    window: 500,
    urgent: 0,
    options: { timestamp: { tsVal: 7, tsEcr: 9 } },
    payload: Uint8Array.from({ length: payload }, (_, i) => (i * 7 + (i >> 8)) & 0xff),
  };
  const tcpLen = 32 + payload;
  const f = new Uint8Array(14 + 20 + tcpLen);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
  emitIpv4Header(f, 14, { id: 0xfffe, ttl: 64, protocol: 6, src: SRC, dst: DST, payloadLength: tcpLen, flagsOffset: 0x4000 });
  emitTcp(repr, f, 34, SRC, DST);
  // What the driver leaves there (a partial sum) must not matter: the device recomputes.
  f[34 + 16] = 0x12;
  f[34 + 17] = 0x34;
  f[24] = 0;
  f[25] = 0;
  return f;
}

function parseFrame(f: Uint8Array): ReturnType<typeof parseTcpFrame> {
  return parseTcpFrame(f, SRC, DST);
}

describe('TCP segmentation offload (device side)', () => {
  it('cuts a 10 000-byte packet into checksummed 1448-byte segments of one stream', () => {
    const f = bigSegment(10_000, TH_ACK | TH_PSH | TH_FIN | TH_CWR);
    const l = tcpv4Layout(f)!;
    expect(l).toEqual({ tcpAt: 34, hdrLen: 66 });
    const pieces = segmentTcpv4(f, l, 1448);
    expect(pieces.map((p) => p.length - 66)).toEqual([1448, 1448, 1448, 1448, 1448, 1448, 1312]);
    const data: number[] = [];
    pieces.forEach((p, k) => {
      const { id, totalLength, tcp } = parseFrame(p);
      expect(id).toBe((0xfffe + k) & 0xffff);
      expect(totalLength).toBe(p.length - 14);
      expect(tcp.seq).toBe((0xfffff000 + 1448 * k) >>> 0);
      expect(tcp.ack).toBe(12345);
      expect(tcp.options.timestamp).toEqual({ tsVal: 7, tsEcr: 9 });
      const last = k === pieces.length - 1;
      expect(tcp.flags & TH_FIN).toBe(last ? TH_FIN : 0);
      expect(tcp.flags & TH_PSH).toBe(last ? TH_PSH : 0);
      expect(tcp.flags & TH_CWR).toBe(k === 0 ? TH_CWR : 0);
      expect(tcp.flags & TH_ACK).toBe(TH_ACK);
      data.push(...tcp.payload);
    });
    expect(data).toEqual([...f.subarray(66)]);
  });

  it('finishes the checksums of a packet passed on whole', () => {
    const f = bigSegment(30_000, TH_ACK);
    const l = tcpv4Layout(f)!;
    finishTcpv4Checksums(f, l);
    const { tcp } = parseFrame(f);
    expect(tcp.payload.length).toBe(30_000);
  });

  it('recognises only whole TCP/IPv4 frames', () => {
    const f = bigSegment(100, TH_ACK);
    expect(tcpv4Layout(f.subarray(0, f.length - 1))).toBeNull(); // total length disagrees
    const udp = f.slice();
    udp[23] = 17;
    expect(tcpv4Layout(udp)).toBeNull();
    const arp = f.slice();
    arp[13] = 0x06;
    expect(tcpv4Layout(arp)).toBeNull();
    expect(tcpv4Layout(f.subarray(0, 40))).toBeNull();
  });
});
