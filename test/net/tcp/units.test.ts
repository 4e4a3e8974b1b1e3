/** The TCP building blocks on their own: sequence arithmetic, buffers, queues, estimators, timers. */
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../../net/clock.js';
import { CongestionControl, initialWindow } from '../../../net/tcp/congestion.js';
import { ReassemblyQueue } from '../../../net/tcp/reassembly.js';
import { RtoEstimator } from '../../../net/tcp/rto.js';
import { SackScoreboard } from '../../../net/tcp/sack.js';
import { SendBuffer } from '../../../net/tcp/send-buffer.js';
import { seqAdd, seqDiff, seqGt, seqInWindow, seqLt, seqMax, seqMin } from '../../../net/tcp/seq.js';
import { TcpTimer } from '../../../net/tcp/timer.js';

const bytes = (from: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
const concat = (chunks: Uint8Array[]): number[] => chunks.flatMap((c) => Array.from(c));

describe('sequence arithmetic (mod 2^32)', () => {
  it('compares across the wrap', () => {
    expect(seqAdd(0xfffffff0, 0x20)).toBe(0x10);
    expect(seqLt(0xfffffff0, 0x10)).toBe(true);
    expect(seqGt(0x10, 0xfffffff0)).toBe(true);
    expect(seqDiff(0x10, 0xfffffff0)).toBe(0x20);
    expect(seqMax(0xfffffff0, 0x10)).toBe(0x10);
    expect(seqMin(0xfffffff0, 0x10)).toBe(0xfffffff0);
    expect(seqInWindow(0x5, 0xfffffff0, 0x10)).toBe(true);
    expect(seqInWindow(0x10, 0xfffffff0, 0x10)).toBe(false);
    expect(seqAdd(5, -10)).toBe(0xfffffffb);
  });
});

describe('SendBuffer', () => {
  it('takes what fits, wraps around its ring, and hands ranges back intact', () => {
    const b = new SendBuffer(10);
    expect(b.write(bytes(0, 7))).toBe(7);
    b.consume(5);
    expect(b.write(bytes(7, 20))).toBe(8); // 2 held + 8 = capacity
    expect(b.free).toBe(0);
    const out = new Uint8Array(10);
    b.copyOut(0, 10, out, 0);
    expect(Array.from(out)).toEqual(Array.from(bytes(5, 10)));
    b.consume(4);
    const part = new Uint8Array(3);
    b.copyOut(2, 3, part, 0);
    expect(Array.from(part)).toEqual(Array.from(bytes(11, 3)));
    expect(() => b.copyOut(4, 3, part, 0)).toThrow(RangeError);
  });
});

describe('ReassemblyQueue', () => {
  it('merges overlapping out-of-order data and releases it in order once the gap fills', () => {
    const q = new ReassemblyQueue(100);
    const base = 0xfffffff8; // wraps during the test
    const data = bytes(0, 40);
    const at = (off: number, n: number): [number, Uint8Array] => [seqAdd(base, off), data.subarray(off, off + n)];
    q.insert(...at(20, 10), base, seqAdd(base, 1000));
    q.insert(...at(25, 10), base, seqAdd(base, 1000)); // overlaps the end
    q.insert(...at(10, 5), base, seqAdd(base, 1000));
    expect(q.bytes).toBe(20);
    expect(q.sackBlocks(4)).toEqual([
      { left: seqAdd(base, 10), right: seqAdd(base, 15) },
      { left: seqAdd(base, 20), right: seqAdd(base, 35) },
    ]);
    expect(q.takeReady(base)).toEqual([]); // gap at the front
    // The in-order segment [0, 12) arrives (the caller delivers it and advances RCV.NXT to 12).
    const ready = q.takeReady(seqAdd(base, 12));
    expect(concat(ready)).toEqual(Array.from(data.subarray(12, 15)));
    q.insert(...at(15, 5), seqAdd(base, 15), seqAdd(base, 1000));
    expect(concat(q.takeReady(seqAdd(base, 15)))).toEqual(Array.from(data.subarray(15, 35)));
    expect(q.isEmpty).toBe(true);
    expect(q.bytes).toBe(0);
    expect(q.segments).toBe(0);
  });

  it('keeps nothing outside the window and respects its chunk bound', () => {
    const q = new ReassemblyQueue(2);
    q.insert(100, bytes(0, 50), 90, 120); // trimmed to [100, 120)
    expect(q.bytes).toBe(20);
    expect(q.insert(130, bytes(0, 5), 90, 200)).toBe(true);
    expect(q.insert(140, bytes(0, 5), 90, 200)).toBe(false); // third chunk: refused
    expect(q.insert(50, bytes(0, 10), 90, 200)).toBe(true); // entirely old: nothing to keep
    expect(q.segments).toBe(2);
  });

  it('lists the most recently changed block first (RFC 2018 §4)', () => {
    const q = new ReassemblyQueue(10);
    q.insert(100, bytes(0, 10), 0, 1000);
    q.insert(200, bytes(0, 10), 0, 1000);
    q.insert(300, bytes(0, 10), 0, 1000);
    expect(q.sackBlocks(3).map((b) => b.left)).toEqual([300, 200, 100]);
    q.insert(110, bytes(0, 10), 0, 1000);
    expect(q.sackBlocks(2)).toEqual([
      { left: 100, right: 120 },
      { left: 300, right: 310 },
    ]);
  });
});

describe('SackScoreboard', () => {
  it('merges blocks, ignores D-SACK and blocks beyond SND.MAX, finds the holes', () => {
    const s = new SackScoreboard();
    expect(s.update([{ left: 200, right: 300 }], 100, 1000)).toBe(true);
    expect(s.update([{ left: 300, right: 400 }], 100, 1000)).toBe(true); // adjacent: merges
    expect(s.update([{ left: 50, right: 90 }], 100, 1000)).toBe(false); // below SND.UNA (D-SACK)
    expect(s.update([{ left: 900, right: 1100 }], 100, 1000)).toBe(false); // beyond SND.MAX
    expect(s.update([{ left: 600, right: 700 }], 100, 1000)).toBe(true);
    expect(s.sackedBytes).toBe(300);
    expect(s.highSacked).toBe(700);
    expect(s.nextHole(100)).toEqual({ start: 100, end: 200 });
    expect(s.nextHole(250)).toEqual({ start: 400, end: 600 });
    expect(s.nextHole(700)).toBeNull();
    expect(s.holeBytes(100, 700)).toBe(300);
    expect(s.sackedEnd(250)).toBe(400);
    s.ackTo(350);
    expect(s.sackedBytes).toBe(150);
    expect(s.nextHole(350)).toEqual({ start: 400, end: 600 });
  });
});

describe('RtoEstimator (RFC 6298)', () => {
  it('starts at 1 s, doubles on backoff up to the maximum, and smooths samples', () => {
    const r = new RtoEstimator(1000, 60_000, 1000);
    expect(r.rto).toBe(1000);
    const seen = [];
    for (let i = 0; i < 8; i++) {
      r.backoff();
      seen.push(r.rto);
    }
    expect(seen).toEqual([2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
    r.sample(400); // SRTT 400, RTTVAR 200: 400 + 800 = 1200, and the backoff is cleared
    expect(r.rto).toBe(1200);
    expect(r.srtt).toBe(400);
    r.sample(400); // RTTVAR 150: 400 + 600
    expect(r.rto).toBe(1000);
    const small = new RtoEstimator(200, 60_000, 1000);
    small.sample(10);
    expect(small.rto).toBe(200); // the configured floor
  });
});

describe('CongestionControl (RFC 5681/3465/6928)', () => {
  it('initial window, slow start with ABC, congestion avoidance, halving', () => {
    expect(initialWindow(1460)).toBe(14600);
    expect(initialWindow(536)).toBe(5360);
    expect(initialWindow(9000)).toBe(18000);
    const cc = new CongestionControl(1000);
    expect(cc.cwnd).toBe(10_000);
    cc.onAck(5000); // ABC: at most 2·SMSS per ACK
    expect(cc.cwnd).toBe(12_000);
    cc.onTimeout(20_000);
    expect(cc.ssthresh).toBe(10_000);
    expect(cc.cwnd).toBe(1000);
    while (cc.inSlowStart) cc.onAck(1000);
    expect(cc.cwnd).toBe(10_000);
    for (let i = 0; i < 10; i++) cc.onAck(1000); // one window's worth: +1 SMSS
    expect(cc.cwnd).toBe(11_000);
    cc.enterRecovery(11_000, true);
    expect(cc.cwnd).toBe(5500);
    cc.enterRecovery(2000, false);
    expect(cc.ssthresh).toBe(2000); // never below 2·SMSS
    expect(cc.cwnd).toBe(5000);
  });
});

describe('TcpTimer', () => {
  it('fires once at the latest deadline set, not at a superseded one; cancel and dispose stop it', () => {
    const clock = new VirtualClock();
    const fired: number[] = [];
    const t = new TcpTimer(clock, () => fired.push(clock.now()));
    t.set(100);
    clock.advance(50);
    t.set(100); // moved to 150
    clock.advance(60);
    expect(fired).toEqual([]);
    clock.advance(100);
    expect(fired).toEqual([150]);
    expect(t.armed).toBe(false);
    t.set(100);
    t.set(10); // earlier: fires at the new deadline
    clock.advance(20);
    expect(fired).toEqual([150, 220]);
    t.set(10);
    t.cancel();
    clock.advance(100);
    expect(fired).toEqual([150, 220]);
    t.ensure(10);
    t.ensure(1000); // already armed: unchanged
    expect(t.remaining).toBe(10);
    t.dispose();
    clock.advance(2000);
    expect(fired).toEqual([150, 220]);
    expect(clock.pending()).toBe(0);
  });
});
