import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import type { FramePort } from '../../net/frame-port.js';
import { LearningSwitch } from '../../lab/switch.js';
import { ImpairedPort } from '../../lab/impair.js';

function frame(dst: number, src: number, tag = 0): Uint8Array {
  const f = new Uint8Array(60);
  f.set([dst === 0xff ? 0xff : 0x02, dst === 0xff ? 0xff : 0, dst === 0xff ? 0xff : 0, dst === 0xff ? 0xff : 0, dst === 0xff ? 0xff : 0, dst]);
  f.set([0x02, 0, 0, 0, 0, src], 6);
  f[12] = 0x08;
  f[14] = tag;
  return f;
}

/** A switch with `n` stations, each on its own link; returns what each station received. */
function lan(n: number, agingMs = 300_000) {
  const clock = new VirtualClock();
  const sw = new LearningSwitch(clock, agingMs);
  const stations: FramePort[] = [];
  const got: number[][] = [];
  for (let i = 0; i < n; i++) {
    const [station, swSide] = createLink(clock, [`h${i}`, `sw${i}`]);
    sw.attach(swSide, `p${i}`);
    got.push([]);
    station.setReceiver((f) => void got[i]!.push(f[14]!));
    stations.push(station);
  }
  return { clock, sw, stations, got };
}

describe('learning switch', () => {
  it('floods unknown unicast and broadcast, then forwards learned unicast to one port only', () => {
    const { clock, sw, stations, got } = lan(3);
    stations[0]!.send(frame(2, 1, 1)); // unknown dst: flood to 1 and 2
    clock.runUntil(() => false, 1);
    expect(got.map((g) => g.length)).toEqual([0, 1, 1]);
    stations[1]!.send(frame(1, 2, 2)); // dst 1 learned behind port 0
    clock.runUntil(() => false, 1);
    expect(got[0]).toEqual([2]);
    expect(got[2]).toEqual([1]);
    stations[2]!.send(frame(0xff, 3, 3)); // broadcast
    clock.runUntil(() => false, 1);
    expect(got[0]).toEqual([2, 3]);
    expect(got[1]).toEqual([1, 3]);
    expect(sw.stats).toMatchObject({ flooded: 2, forwarded: 1, learned: 3 });
    expect(sw.macTable().map((e) => e.port).sort()).toEqual(['p0', 'p1', 'p2']);
  });

  it('ages entries out and floods again', () => {
    const { clock, sw, stations, got } = lan(3, 1000);
    stations[0]!.send(frame(2, 1, 1));
    stations[1]!.send(frame(1, 2, 2));
    clock.runUntil(() => false, 1);
    clock.advance(2000);
    stations[1]!.send(frame(1, 2, 4)); // station 1's entry is stale: flood
    clock.runUntil(() => false, 1);
    expect(got[2]).toContain(4);
    void sw;
  });

  it('follows a station that moved to another port', () => {
    const { clock, stations, got } = lan(3);
    stations[0]!.send(frame(0xff, 1, 1));
    clock.runUntil(() => false, 1);
    stations[2]!.send(frame(0xff, 1, 2)); // MAC 1 now behind port 2
    clock.runUntil(() => false, 1);
    stations[1]!.send(frame(1, 2, 3));
    clock.runUntil(() => false, 1);
    expect(got[2]).toContain(3);
    expect(got[0]).not.toContain(3);
  });
});

describe('link impairments', () => {
  function measure(o: ConstructorParameters<typeof ImpairedPort>[2], count = 2000) {
    const clock = new VirtualClock();
    const [a, b] = createLink(clock, ['a', 'b'], { queueLimit: 100_000 });
    const imp = new ImpairedPort(clock, a, o);
    const arrivals: { seq: number; at: number }[] = [];
    b.setReceiver((f) => void arrivals.push({ seq: (f[14]! << 8) | f[15]!, at: clock.now() }));
    for (let i = 0; i < count; i++) {
      const f = frame(2, 1);
      f[14] = i >> 8;
      f[15] = i & 0xff;
      imp.send(f);
    }
    clock.runUntil(() => false, 100_000);
    return { arrivals, imp };
  }

  it('loses about the asked share, reproducibly from the seed', () => {
    const r1 = measure({ lossPct: 10, seed: 5 });
    const r2 = measure({ lossPct: 10, seed: 5 });
    expect(r1.arrivals.length).toBe(r2.arrivals.length);
    expect(r1.imp.impairStats.lost).toBeGreaterThan(140);
    expect(r1.imp.impairStats.lost).toBeLessThan(260);
    expect(measure({ lossPct: 10, seed: 6 }).arrivals.map((a) => a.seq)).not.toEqual(r1.arrivals.map((a) => a.seq));
  });

  it('delays by delay ± jitter, duplicates and reorders', () => {
    const d = measure({ delayMs: 50, jitterMs: 10, seed: 1 }, 200);
    expect(Math.min(...d.arrivals.map((a) => a.at))).toBeGreaterThanOrEqual(40);
    expect(Math.max(...d.arrivals.map((a) => a.at))).toBeLessThanOrEqual(60.001);
    const dup = measure({ duplicatePct: 20, seed: 2 }, 1000);
    expect(dup.arrivals.length).toBe(1000 + dup.imp.impairStats.duplicated);
    expect(dup.imp.impairStats.duplicated).toBeGreaterThan(120);
    const re = measure({ delayMs: 5, reorderPct: 10, seed: 3 }, 1000);
    const seqs = re.arrivals.map((a) => a.seq);
    expect(seqs).not.toEqual([...seqs].sort((x, y) => x - y));
    expect(re.imp.impairStats.reordered).toBeGreaterThan(50);
  });

  it('rate-limits to the asked bandwidth and drops beyond its queue', () => {
    const r = measure({ rateMbps: 8, queueLimit: 10_000, seed: 1 }, 1000); // 60-byte frames: 60 µs each at 8 Mb/s
    const last = Math.max(...r.arrivals.map((a) => a.at));
    expect(last).toBeGreaterThan(59);
    expect(last).toBeLessThan(61);
    const q = measure({ rateMbps: 1, queueLimit: 100, seed: 1 }, 1000);
    expect(q.imp.impairStats.rateDrops).toBe(900);
    expect(q.arrivals.length).toBe(100);
  });

  it('impairs the receive direction too', () => {
    const clock = new VirtualClock();
    const [a, b] = createLink(clock, ['a', 'b'], { queueLimit: 10_000 });
    const imp = new ImpairedPort(clock, a, { lossPct: 50, seed: 9 });
    let got = 0;
    imp.setReceiver(() => void got++);
    for (let i = 0; i < 1000; i++) b.send(frame(1, 2));
    clock.runUntil(() => false, 1000);
    expect(got).toBeGreaterThan(400);
    expect(got).toBeLessThan(600);
  });
});
