import { describe, expect, it } from 'vitest';
import { parseIpv4 as parseAddr } from '../../net/addr.js';
import { emitIpv4Header } from '../../net/wire/ipv4.js';
import { emitTcp, TH_ACK, TH_FIN, TH_PSH, type TcpRepr } from '../../net/wire/tcp.js';
import { TcpCoalescer } from '../../src/devices/tcp-gro.js';
import { segmentTcpv4, tcpv4Layout } from '../../src/devices/tcp-gso.js';
import { parseTcpFrame } from './tcp-frames.js';

const SRC = parseAddr('172.22.0.2')!;
const DST = parseAddr('172.22.0.1')!;

/** A whole TCP/IPv4 frame with correct checksums, DF set, IP ID 0xfffe (wraps when cut). */
function frame(payload: number, flags: number, seq = 0xfffff000, port = 80, o: { ack?: number; window?: number; tsVal?: number; id?: number } = {}): Uint8Array {
  const repr: TcpRepr = {
    srcPort: port,
    dstPort: 40000,
    seq,
    ack: o.ack ?? 777,
    flags,
    window: o.window ?? 1000,
    urgent: 0,
    options: { timestamp: { tsVal: o.tsVal ?? 5, tsEcr: 6 } },
    payload: Uint8Array.from({ length: payload }, (_, i) => (i * 13 + (i >> 9)) & 0xff),
  };
  const tcpLen = 32 + payload;
  const f = new Uint8Array(14 + 20 + tcpLen);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]);
  emitIpv4Header(f, 14, { id: o.id ?? 0xfffe, ttl: 64, protocol: 6, src: SRC, dst: DST, payloadLength: tcpLen, flagsOffset: 0x4000 });
  emitTcp(repr, f, 34, SRC, DST);
  return f;
}

function parse(f: Uint8Array): ReturnType<typeof parseTcpFrame> {
  return parseTcpFrame(f, SRC, DST);
}

/** The segments a guest's stack would send for `f`, cut at `mss`. */
function cut(f: Uint8Array, mss: number): Uint8Array[] {
  return segmentTcpv4(f, tcpv4Layout(f)!, mss);
}

function collect(): { c: TcpCoalescer; out: { frame: Uint8Array; gsoSize: number; segments: number; bytesIn: number }[] } {
  const out: { frame: Uint8Array; gsoSize: number; segments: number; bytesIn: number }[] = [];
  const c = new TcpCoalescer((frame, gsoSize, segments, bytesIn) => {
    out.push({ frame: frame.slice(), gsoSize, segments, bytesIn });
    return true;
  });
  return { c, out };
}

describe('TCP segment coalescing toward a GSO far end (GRO)', () => {
  for (const mss of [1448, 1001]) {
    it(`merges the segments of one burst into one checksummed segment (segment size ${mss})`, () => {
      const whole = frame(20_000, TH_ACK | TH_PSH);
      const pieces = cut(whole, mss);
      const { c, out } = collect();
      for (const p of pieces) c.push(p);
      c.flush();
      expect(out).toHaveLength(1);
      expect(out[0]!.gsoSize).toBe(mss);
      expect(out[0]!.segments).toBe(pieces.length);
      expect(out[0]!.bytesIn).toBe(pieces.reduce((n, p) => n + p.length, 0));
      const { id, tcp } = parse(out[0]!.frame); // an odd segment size tests the byte pairing
      expect(id).toBe(0xfffe);
      expect(tcp.seq).toBe(0xfffff000);
      expect(tcp.flags).toBe(TH_ACK | TH_PSH);
      expect([...tcp.payload]).toEqual([...whole.subarray(66)]);
    });
  }

  it('a PSH or a short segment ends a merge; the next burst starts a new one', () => {
    const { c, out } = collect();
    const first = cut(frame(4 * 1448, TH_ACK | TH_PSH), 1448);
    const next = cut(frame(3 * 1448 + 100, TH_ACK, (0xfffff000 + 4 * 1448) >>> 0), 1448);
    for (const p of [...first, ...next]) c.push(p);
    expect(out.map((o) => o.segments)).toEqual([4, 4]); // the PSH and the short last one flushed
    expect(c.holding).toBe(false);
  });

  it('never grows past a 64 KiB frame', () => {
    const { c, out } = collect();
    const a = cut(frame(40 * 1448, TH_ACK), 1448);
    const b = cut(frame(40 * 1448, TH_ACK, (0xfffff000 + 40 * 1448) >>> 0, 80, { id: (0xfffe + 40) & 0xffff }), 1448);
    for (const p of [...a, ...b]) c.push(p);
    c.flush();
    expect(out.every((o) => o.frame.length <= 65535)).toBe(true);
    expect(out.reduce((n, o) => n + o.segments, 0)).toBe(80);
    expect(out.map((o) => o.segments)).toEqual([45, 35]);
  });

  it('leaves alone what GRO would not merge, in order: a bad checksum, a gap, another flow, FIN, not TCP', () => {
    const { c, out } = collect();
    const pieces = cut(frame(6 * 1448, TH_ACK), 1448);
    const bad = pieces[2]!.slice();
    bad[100] = bad[100]! ^ 0xff; // corrupt payload: its checksum no longer matches
    const other = cut(frame(1448, TH_ACK, 1, 81), 1448)[0]!;
    const fin = cut(frame(10, TH_ACK | TH_FIN, 5000), 1448)[0]!;
    const arp = new Uint8Array(42);
    arp.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 2, 0x08, 0x06]);
    const sent = [pieces[0]!, pieces[1]!, bad, pieces[4]!, other, fin, arp];
    for (const p of sent) c.push(p);
    c.flush();
    // 0+1 merge; the corrupt one goes as it came; 4 follows a gap (3 is missing); the rest alone.
    expect(out.map((o) => o.segments)).toEqual([2, 1, 1, 1, 1, 1]);
    expect(out[1]!.frame).toEqual(bad);
    expect(out.slice(2).map((o) => o.frame)).toEqual(sent.slice(3));
    expect(out.slice(1).every((o) => o.gsoSize === 0)).toBe(true);
  });

  it('does not merge segments whose ACK, window or options differ', () => {
    const next = (0xfffff000 + 1448) >>> 0;
    for (const o of [{ ack: 778 }, { window: 999 }, { tsVal: 6 }, { id: 0x1234 }]) {
      const { c, out } = collect();
      c.push(cut(frame(1448, TH_ACK), 1448)[0]!);
      c.push(frame(1448, TH_ACK, next, 80, { id: 0xffff, ...o }));
      c.flush();
      expect(out.map((x) => x.segments), JSON.stringify(o)).toEqual([1, 1]);
    }
    // The same with everything in step merges (the control for the cases above).
    const { c, out } = collect();
    c.push(cut(frame(1448, TH_ACK), 1448)[0]!);
    c.push(frame(1448, TH_ACK, next, 80, { id: 0xffff }));
    c.flush();
    expect(out.map((x) => x.segments)).toEqual([2]);
  });
});

describe('what the coalescer passes through untouched', () => {
  it('a GSO frame (larger than the MTU) goes out at once, as it came, flushing what was held', () => {
    const { c, out } = collect();
    const [a] = cut(frame(2 * 1448, TH_ACK), 1448);
    const big = frame(20_000, TH_ACK, (0xfffff000 + 1448) >>> 0);
    c.push(a!);
    c.push(big);
    expect(out.map((o) => [o.segments, o.gsoSize, o.frame.length])).toEqual([
      [1, 0, a!.length],
      [1, 0, big.length],
    ]);
    expect(c.holding).toBe(false);
  });
});

describe('what push reports', () => {
  it('false only for a frame sent at once that did not go out; a held frame is taken even when the write of what it flushed failed', () => {
    const c = new TcpCoalescer(() => false); // every write fails
    const [a] = cut(frame(2 * 1448, TH_ACK), 1448);
    const other = cut(frame(1448, TH_ACK, 1, 81), 1448)[0]!;
    expect(c.push(a!)).toBe(true); // held
    expect(c.push(other)).toBe(true); // flushes a (fails), is held itself
    const fin = cut(frame(10, TH_ACK | TH_FIN, 5000), 1448)[0]!;
    expect(c.push(fin)).toBe(false); // not mergeable: written at once, and refused
  });
});
