import { describe, expect, it } from 'vitest';
import { parseIpv4 } from '../../../net/addr.js';
import {
  emitTcp,
  formatTcpFlags,
  parseTcp,
  parseTcpOptions,
  tcpEncodingLength,
  TcpView,
  TH_ACK,
  TH_FIN,
  TH_PSH,
  TH_SYN,
  type TcpRepr,
} from '../../../net/wire/tcp.js';

const SRC = parseIpv4('10.0.0.1')!;
const DST = parseIpv4('10.0.0.2')!;

function repr(over: Partial<TcpRepr> = {}): TcpRepr {
  return {
    srcPort: 49152,
    dstPort: 80,
    seq: 0xfffffff0, // near the wrap, so 32-bit handling is exercised
    ack: 0x80000001,
    flags: TH_ACK | TH_PSH,
    window: 0xfedc,
    urgent: 0,
    options: {},
    payload: new Uint8Array(0),
    ...over,
  };
}

function encode(r: TcpRepr): Uint8Array {
  const buf = new Uint8Array(tcpEncodingLength(r));
  const n = emitTcp(r, buf, 0, SRC, DST);
  expect(n).toBe(buf.length);
  return buf;
}

const PAYLOAD = Uint8Array.from({ length: 37 }, (_, i) => (i * 7 + 3) & 0xff); // odd length: checksum padding

// Every option the stack emits, in the combinations it emits them (SYN: MSS + WS + SACK-perm + TS;
// data: TS + SACK blocks; and each one alone, since the layout differs when SACK-perm and TS share words).
const OPTION_CASES: [string, TcpRepr['options']][] = [
  ['none', {}],
  ['MSS', { mss: 1460 }],
  ['window scale', { windowScale: 7 }],
  ['SACK-permitted', { sackPermitted: true }],
  ['timestamps', { timestamp: { tsVal: 0xdeadbeef, tsEcr: 0x01020304 } }],
  ['SACK blocks ×1', { sackBlocks: [{ left: 1000, right: 2000 }] }],
  [
    'SACK blocks ×4',
    {
      sackBlocks: [
        { left: 1, right: 2 },
        { left: 0xfffffff0, right: 0x10 },
        { left: 5000, right: 6000 },
        { left: 7000, right: 8000 },
      ],
    },
  ],
  ['SYN set', { mss: 1460, windowScale: 14, sackPermitted: true, timestamp: { tsVal: 1, tsEcr: 0 } }],
  [
    'TS + 3 SACK blocks',
    {
      timestamp: { tsVal: 7, tsEcr: 9 },
      sackBlocks: [
        { left: 10, right: 20 },
        { left: 30, right: 40 },
        { left: 50, right: 60 },
      ],
    },
  ],
];

describe('TCP wire codec', () => {
  for (const [name, options] of OPTION_CASES) {
    it(`round-trips a segment with options: ${name}`, () => {
      const r = repr({ options, payload: PAYLOAD, flags: name === 'SYN set' ? TH_SYN : TH_ACK | TH_PSH });
      const bytes = encode(r);
      expect((bytes.length - PAYLOAD.length) % 4).toBe(0); // header padded to 32-bit words
      const parsed = parseTcp(bytes, { src: SRC, dst: DST });
      expect(parsed.ok).toBe(true);
      if (!parsed.ok) return;
      expect(parsed.value).toEqual({ ...r, options });
      expect(Array.from(parsed.value.payload)).toEqual(Array.from(PAYLOAD));
    });
  }

  it('emits the same bytes when the payload was already placed in the output buffer', () => {
    const options = { timestamp: { tsVal: 11, tsEcr: 12 } };
    const copied = encode(repr({ options, payload: PAYLOAD }));
    const hlen = copied.length - PAYLOAD.length;
    const buf = new Uint8Array(8 + copied.length);
    buf.set(PAYLOAD, 8 + hlen);
    const n = emitTcp(repr({ options, payload: buf.subarray(8 + hlen) }), buf, 8, SRC, DST);
    expect(n).toBe(copied.length);
    expect(Array.from(buf.subarray(8))).toEqual(Array.from(copied));
  });

  it('lays out the header field by field', () => {
    const bytes = encode(repr({ options: { mss: 1460 }, flags: TH_SYN, window: 0x1234, urgent: 0 }));
    // ports
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0xc0, 0x00, 0x00, 0x50]);
    // seq, ack
    expect(Array.from(bytes.subarray(4, 12))).toEqual([0xff, 0xff, 0xff, 0xf0, 0x80, 0x00, 0x00, 0x01]);
    // data offset 6 words, flags SYN, window
    expect(Array.from(bytes.subarray(12, 16))).toEqual([0x60, TH_SYN, 0x12, 0x34]);
    // MSS option: kind 2, len 4, 1460
    expect(Array.from(bytes.subarray(20, 24))).toEqual([2, 4, 0x05, 0xb4]);
    const v = TcpView.check(bytes);
    expect(v.ok && v.value.dataOffset).toBe(6);
  });

  it('gives an error value for every truncation of a valid segment, never throws', () => {
    const full = encode(
      repr({ options: { mss: 1460, windowScale: 3, sackPermitted: true, timestamp: { tsVal: 5, tsEcr: 6 } }, payload: PAYLOAD }),
    );
    for (let len = 0; len < full.length; len++) {
      const cut = full.slice(0, len);
      let result: ReturnType<typeof parseTcp> | undefined;
      expect(() => (result = parseTcp(cut, { src: SRC, dst: DST })), `length ${len}`).not.toThrow();
      expect(result!.ok, `length ${len}`).toBe(false);
      // Without the checksum only the header can be judged: a cut inside it must still be refused.
      const headerOnly = parseTcp(cut);
      if (len < 40) expect(headerOnly.ok, `header-only parse of length ${len}`).toBe(false);
    }
  });

  it('detects a bad checksum in header, options and payload', () => {
    const good = encode(repr({ options: { timestamp: { tsVal: 1, tsEcr: 2 } }, payload: PAYLOAD }));
    expect(parseTcp(good, { src: SRC, dst: DST }).ok).toBe(true);
    for (const at of [0, 13, 16, 25, good.length - 1]) {
      const bad = good.slice();
      bad[at]! ^= 0x10;
      expect(parseTcp(bad, { src: SRC, dst: DST })).toEqual({ ok: false, error: 'bad-checksum' });
    }
    // The pseudo-header counts too: the same bytes between other addresses are refused.
    expect(parseTcp(good, { src: DST, dst: SRC }).ok).toBe(true); // swapping is a symmetric sum…
    expect(parseTcp(good, { src: SRC, dst: parseIpv4('10.0.0.3')! })).toEqual({ ok: false, error: 'bad-checksum' });
  });

  it('refuses a data offset below 5 words and option lengths that run off the header', () => {
    const b = encode(repr({ options: { mss: 1460 } }));
    const small = b.slice();
    small[12] = 0x40;
    expect(parseTcp(small)).toEqual({ ok: false, error: 'bad-length' });
    const badLen = b.slice();
    badLen[21] = 9; // MSS length beyond the 4 option bytes
    expect(parseTcp(badLen)).toEqual({ ok: false, error: 'bad-option' });
    const zeroLen = b.slice();
    zeroLen[21] = 0;
    expect(parseTcp(zeroLen)).toEqual({ ok: false, error: 'bad-option' });
  });

  it('skips unknown options, stops at EOL and clamps the window shift to 14', () => {
    const opts = Uint8Array.from([30, 4, 0xaa, 0xbb, 3, 3, 20, 0, 2, 4, 1, 1]);
    const p = parseTcpOptions(opts);
    expect(p).toEqual({ ok: true, value: { windowScale: 14 } });
  });

  it('never throws on arbitrary bytes (a small seeded fuzz), and mutated options stay in bounds', () => {
    let s = 12345;
    const rnd = (): number => {
      // xorshift32: deterministic, no dependency on the harness
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) / 4294967296;
    };
    const base = encode(
      repr({ options: { mss: 1460, windowScale: 7, sackPermitted: true, timestamp: { tsVal: 1, tsEcr: 2 }, sackBlocks: [{ left: 1, right: 2 }] }, payload: PAYLOAD }),
    );
    for (let i = 0; i < 5000; i++) {
      const b = i % 2 === 0 ? Uint8Array.from({ length: Math.floor(rnd() * 80) }, () => Math.floor(rnd() * 256)) : base.slice();
      if (i % 2 === 1) for (let k = 0; k < 3; k++) b[20 + Math.floor(rnd() * 40)] = Math.floor(rnd() * 256); // scramble options
      const r = parseTcp(b);
      if (r.ok) {
        expect(r.value.payload.length).toBeLessThanOrEqual(b.length - 20);
        for (const blk of r.value.options.sackBlocks ?? []) expect(blk.left).toBeGreaterThanOrEqual(0);
      }
    }
  });

  it('formats flags tcpdump style', () => {
    expect(formatTcpFlags(TH_SYN | TH_ACK)).toBe('S.');
    expect(formatTcpFlags(TH_FIN | TH_ACK)).toBe('F.');
  });

  it('refuses to emit into a buffer too small, or options beyond 40 bytes', () => {
    const r = repr({ payload: PAYLOAD });
    expect(() => emitTcp(r, new Uint8Array(10), 0, SRC, DST)).toThrow(RangeError);
    const tooMany = repr({
      options: { timestamp: { tsVal: 1, tsEcr: 1 }, sackBlocks: [1, 2, 3, 4].map((i) => ({ left: i, right: i + 1 })) },
    });
    expect(() => encode(tooMany)).toThrow(RangeError);
  });
});
