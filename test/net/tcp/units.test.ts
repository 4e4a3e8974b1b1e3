/** The TCP building blocks on their own: sequence arithmetic, buffers, queues, estimators, timers. */
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../../net/clock.js';
import { initialWindow, NewReno } from '../../../net/tcp/congestion.js';
import { Cubic } from '../../../net/tcp/cubic.js';
import { IsnGenerator } from '../../../net/tcp/isn.js';
import { mulberry32 } from '../../../net/random.js';
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
    expect(q.insert(130, bytes(0, 5), 90, 200)).toBe('queued');
    expect(q.insert(140, bytes(0, 5), 90, 200)).toBe('dropped'); // third chunk: refused
    expect(q.insert(50, bytes(0, 10), 90, 200)).toBe('queued'); // entirely old: nothing to keep
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

describe('SackScoreboard (RFC 6675 §3, per segment)', () => {
  /** Ten 100-byte segments [100, 1100) sent at t = 0..9. */
  function board(): SackScoreboard {
    const s = new SackScoreboard();
    for (let i = 0; i < 10; i++) s.record(100 + i * 100, 200 + i * 100, i, false);
    return s;
  }

  it('folds in SACK blocks: D-SACK (below SND.UNA or inside the second block) and blocks beyond SND.MAX are not SACKs', () => {
    const s = board();
    const r1 = s.applySack([{ left: 300, right: 500 }], 100, 1100);
    expect(r1.newlySackedBytes).toBe(200);
    expect(r1.newlySacked.map((x) => x.start)).toEqual([300, 400]);
    expect(s.applySack([{ left: 50, right: 90 }, { left: 300, right: 500 }], 100, 1100)).toMatchObject({ dsackBytes: 40, newlySackedBytes: 0, dsack: { left: 50, right: 90 } });
    expect(s.applySack([{ left: 350, right: 400 }, { left: 300, right: 500 }], 100, 1100).dsackBytes).toBe(50);
    expect(s.applySack([{ left: 900, right: 1200 }], 100, 1100).newlySackedBytes).toBe(0);
    // A block not on a segment boundary splits the segment.
    expect(s.applySack([{ left: 650, right: 800 }], 100, 1100).newlySackedBytes).toBe(150);
    expect(s.sackedBytes).toBe(350);
    expect(s.highSacked).toBe(800);
  });

  it('pipe counts unSACKed bytes not deemed lost, and retransmissions in flight once more (RFC 6675 §4)', () => {
    const s = board();
    expect(s.pipe()).toBe(1000);
    s.applySack([{ left: 300, right: 600 }], 100, 1100);
    expect(s.pipe()).toBe(700);
    s.markLost(s.firstUnsacked()!); // [100, 200)
    expect(s.pipe()).toBe(600);
    expect(s.firstLost()!.start).toBe(100);
    s.record(100, 200, 20, true); // retransmitted
    expect(s.firstLost()).toBeNull();
    expect(s.pipe()).toBe(700);
    expect(s.firstUnsackedBelowHigh()!.start).toBe(200); // rule 3 candidate
    expect(s.lastUnsacked()!.start).toBe(1000); // rule 4 (rescue)
  });

  it('after an RTO everything unSACKed is lost, SACKed data is not; reneging clears the SACKs', () => {
    const s = board();
    s.applySack([{ left: 300, right: 600 }], 100, 1100);
    s.markAllLost();
    expect(s.lostBytes()).toBe(700);
    expect(s.segments.filter((x) => x.lost).some((x) => x.start >= 300 && x.end <= 600)).toBe(false);
    expect(s.reneged).toBe(false);
    s.ackTo(300); // cumulative ACK up to a SACKed segment that it does not cover...
    expect(s.reneged).toBe(true); // ...the first remaining segment is SACKed: the receiver must have dropped it
    s.clearSacks();
    expect(s.sackedBytes).toBe(0);
  });

  it('ackTo drops what SND.UNA covers, splitting a partly acknowledged segment', () => {
    const s = board();
    expect(s.ackTo(250).map((x) => [x.start, x.end])).toEqual([
      [100, 200],
      [200, 250],
    ]);
    expect(s.segments[0]).toMatchObject({ start: 250, end: 300 });
  });
});

describe('CUBIC (RFC 9438)', () => {
  it('reduces by β = 0.7, climbs back to W_max along the cubic curve (K seconds), then probes beyond it', () => {
    const mss = 1000;
    const cc = new Cubic(mss);
    cc.cwnd = 100 * mss; // in congestion avoidance at 100 segments
    cc.ssthresh = 50 * mss;
    cc.enterRecovery(100 * mss, true, 0);
    expect(cc.ssthresh).toBe(70 * mss);
    expect(cc.cwnd).toBe(70 * mss);
    cc.exitRecovery();
    // K = cbrt(W_max·(1 − β)/C) = cbrt(100·0.3/0.4) ≈ 4.22 s. Feed one window of ACKs per 100 ms RTT.
    const K = Math.cbrt(30 / 0.4);
    let t = 0;
    const atWmax = (): number => {
      while (t < K * 1000) {
        const w = cc.cwnd;
        for (let i = 0; i < w / mss; i++) cc.onAck(mss, t, 100);
        t += 100;
      }
      return cc.cwnd / mss;
    };
    const plateau = atWmax();
    expect(plateau).toBeGreaterThan(95);
    expect(plateau).toBeLessThan(106); // the curve flattens near W_max
    for (let i = 0; i < 30; i++) {
      const w = cc.cwnd;
      for (let j = 0; j < w / mss; j++) cc.onAck(mss, t, 100);
      t += 100;
    }
    expect(cc.cwnd / mss).toBeGreaterThan(110); // convex region: probing for more
    // Fast convergence: a loss below the previous W_max releases bandwidth (W_max·(1+β)/2).
    const before = new Cubic(mss);
    before.cwnd = 100 * mss;
    before.ssthresh = 50 * mss;
    before.enterRecovery(100 * mss, true, 0);
    before.exitRecovery();
    before.enterRecovery(70 * mss, true, 0);
    expect(before.ssthresh).toBe(49 * mss);
  });

  it('undo restores the window of before a spurious reduction', () => {
    const cc = new Cubic(1000);
    cc.cwnd = 40_000;
    cc.ssthresh = 30_000;
    cc.enterRecovery(40_000, true, 0);
    cc.undo(40_000, 30_000);
    expect(cc.cwnd).toBe(40_000);
    expect(cc.ssthresh).toBe(30_000);
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

describe('NewReno (RFC 5681/3465/6928)', () => {
  it('initial window, slow start with ABC, congestion avoidance, halving', () => {
    expect(initialWindow(1460)).toBe(14600);
    expect(initialWindow(536)).toBe(5360);
    expect(initialWindow(9000)).toBe(18000);
    const cc = new NewReno(1000);
    expect(cc.cwnd).toBe(10_000);
    cc.onAck(5000, 0); // ABC: at most 2·SMSS per ACK
    expect(cc.cwnd).toBe(12_000);
    cc.onTimeout(20_000, 0);
    expect(cc.ssthresh).toBe(10_000);
    expect(cc.cwnd).toBe(1000);
    while (cc.inSlowStart) cc.onAck(1000, 0);
    expect(cc.cwnd).toBe(10_000);
    for (let i = 0; i < 10; i++) cc.onAck(1000, 0); // one window's worth: +1 SMSS
    expect(cc.cwnd).toBe(11_000);
    cc.enterRecovery(11_000, true, 0);
    expect(cc.cwnd).toBe(5500);
    cc.enterRecovery(2000, false, 0);
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

describe('IsnGenerator (RFC 6528)', () => {
  it('keyed per 4-tuple, advancing with a 4 µs clock, reproducible from a seeded source', () => {
    const clock = new VirtualClock();
    const g1 = new IsnGenerator(clock, mulberry32(5));
    const g2 = new IsnGenerator(clock, mulberry32(5));
    const g3 = new IsnGenerator(clock, mulberry32(6));
    const a = g1.isn(1, 1000, 2, 80);
    expect(g2.isn(1, 1000, 2, 80)).toBe(a); // same secret, same tuple, same time
    expect(g3.isn(1, 1000, 2, 80)).not.toBe(a); // another secret
    const b = g1.isn(1, 1001, 2, 80);
    expect(((b - a) >>> 0) > 1000).toBe(true); // a neighbouring port is nowhere near
    clock.advance(10);
    expect((g1.isn(1, 1000, 2, 80) - a) >>> 0).toBe(2500); // 10 ms = 2500 ticks of 4 µs
  });
});
