import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import type { FramePort } from '../../net/frame-port.js';
import { foldSum, internetChecksum, pseudoHeaderSum } from '../../net/wire/checksum.js';
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
    expect(sw.macTable().map((e) => e.mac).sort()).toEqual(['02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03']);
    // Every bit of a 48-bit address survives the table's numeric key (a locally administered,
    // high-bit-heavy one here, as unicast, and then found again as a destination).
    const odd = frame(9, 0);
    odd.set([0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54], 6);
    stations[0]!.send(odd);
    clock.runUntil(() => false, 1);
    expect(sw.macTable().map((e) => e.mac)).toContain('fe:dc:ba:98:76:54');
    const back = frame(9, 2);
    back.set([0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54], 0);
    const before = sw.stats.forwarded;
    stations[1]!.send(back);
    clock.runUntil(() => false, 1);
    expect(sw.stats.forwarded).toBe(before + 1);
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
    expect(q.imp.impairStats.queueDrops).toBe(900);
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

describe('link impairments keep the FramePort contract (issue 10)', () => {
  it('with --loss, holds/ready/gso are those of the wrapped port: flow control and GSO stay on', () => {
    const clock = new VirtualClock();
    const [a, b] = createLink(clock, ['a', 'b']);
    const imp = new ImpairedPort(clock, a, { lossPct: 1, seed: 4 });
    expect(imp.holds).toBe(true);
    b.offerGso!(true);
    expect(imp.gso).toBe(true);
    imp.offerGso(true);
    expect(b.gso).toBe(true);
    // A busy receiver behind the impairment: the link holds the frames, none is lost to it.
    let room = 0;
    const got: number[] = [];
    imp.setReceiver((f) => {
      if (room === 0) return 'busy';
      room--;
      got.push(f[14]!);
      return true;
    });
    for (let i = 0; i < 50; i++) b.send(frame(1, 2, i));
    clock.runUntil(() => false, 10);
    expect(got).toEqual([]);
    room = 1000;
    imp.ready();
    clock.runUntil(() => false, 10);
    // Every frame the impairment did not lose arrives, in order, and the loss is counted as such.
    expect(got.length + imp.impairStats.lost).toBe(50);
    expect(got).toEqual([...got].sort((x, y) => x - y));
    expect(imp.stats.rxDrops).toBe(imp.impairStats.lost);
    expect(imp.stats.rxFrames).toBe(got.length);
    expect(a.stats.rxDrops).toBe(0);
  });

  it('a frame the impairment loses is a drop (send returns false, txDrops), not a sent frame', () => {
    const clock = new VirtualClock();
    const [a, b] = createLink(clock, ['a', 'b'], { queueLimit: 10_000 });
    let got = 0;
    b.setReceiver(() => void got++);
    const imp = new ImpairedPort(clock, a, { lossPct: 30, seed: 8 });
    let refused = 0;
    for (let i = 0; i < 1000; i++) if (!imp.send(frame(2, 1, i))) refused++;
    clock.runUntil(() => false, 10);
    expect(imp.impairStats.lost).toBeGreaterThan(200);
    expect(refused).toBe(imp.impairStats.lost);
    expect(imp.stats.txDrops).toBe(imp.impairStats.lost);
    expect(imp.stats.txFrames).toBe(got);
    expect(imp.stats.txFrames + imp.stats.txDrops).toBe(1000);
  });

  it('the delay line is bounded: beyond queueLimit frames are dropped and counted', () => {
    const clock = new VirtualClock();
    const [a, b] = createLink(clock, ['a', 'b'], { queueLimit: 100_000 });
    let got = 0;
    b.setReceiver(() => void got++);
    const imp = new ImpairedPort(clock, a, { delayMs: 100, queueLimit: 64 });
    const accepted = Array.from({ length: 200 }, (_, i) => imp.send(frame(2, 1, i))).filter(Boolean).length;
    expect(accepted).toBe(64);
    expect(imp.impairStats.queueDrops).toBe(136);
    expect(imp.stats.txDrops).toBe(136);
    clock.runUntil(() => false, 200);
    expect(got).toBe(64);
    // The default bound is netem's 1000 frames.
    const [c] = createLink(clock, ['c', 'd'], { queueLimit: 100_000 });
    const deep = new ImpairedPort(clock, c, { delayMs: 100 });
    expect(Array.from({ length: 5000 }, () => deep.send(frame(2, 1))).filter(Boolean).length).toBe(1000);
  });

  it('a delayed frame the receiver calls busy waits in the impairment until ready(), then arrives in order', () => {
    const clock = new VirtualClock();
    const [a, b] = createLink(clock, ['a', 'b']);
    const imp = new ImpairedPort(clock, a, { delayMs: 5 });
    let room = 3;
    const got: number[] = [];
    imp.setReceiver((f) => {
      if (room === 0) return 'busy';
      room--;
      got.push(f[14]!);
      return true;
    });
    for (let i = 0; i < 10; i++) b.send(frame(1, 2, i));
    clock.runUntil(() => false, 50);
    expect(got).toEqual([0, 1, 2]);
    room = 100;
    imp.ready();
    clock.runUntil(() => false, 50);
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(imp.stats).toMatchObject({ rxFrames: 10, rxDrops: 0 });
  });
});

describe('learning switch and frames over the MTU (a TAP passes up to 64 KiB whatever its MTU)', () => {
  it('drops and counts frames over 1518 bytes towards ports without GSO; what follows still goes through', () => {
    const { clock, sw, stations, got } = lan(3);
    const big = new Uint8Array(65535);
    big.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    stations[0]!.send(big); // broadcast: flooded, but neither other port may take it
    stations[0]!.send(frame(0xff, 1, 7)); // an ordinary frame behind it still goes through
    clock.runUntil(() => false, 1);
    expect(got[1]).toEqual([7]);
    expect(got[2]).toEqual([7]);
    expect(sw.stats.oversize).toBe(2);
  });
});

describe('learning switch and GSO frames', () => {
  /** A 20000-byte TCP/IPv4 GSO frame from station 1 to station 2 (complete checksums not needed: the cut recomputes them). */
  function gsoFrame(): Uint8Array {
    const payload = 20000;
    const f = new Uint8Array(14 + 20 + 20 + payload);
    f.set([0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    const total = 40 + payload;
    f.set([0x45, 0, total >> 8, total & 0xff, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
    f[34 + 12] = 5 << 4;
    f[34 + 13] = 0x18; // PSH ACK
    return f;
  }

  it('carries a GSO frame whole to a port whose far end takes GSO, and cuts it into MTU segments for one that does not', () => {
    const clock = new VirtualClock();
    const sw = new LearningSwitch(clock);
    const sizes: number[][] = [[], [], []];
    const stations: FramePort[] = [];
    for (let i = 0; i < 3; i++) {
      const [station, swSide] = createLink(clock, [`h${i}`, `sw${i}`]);
      sw.attach(swSide, `p${i}`);
      station.setReceiver((f) => void sizes[i]!.push(f.length));
      stations.push(station);
    }
    // The switch takes GSO on every port; station 1 takes GSO, station 2 does not.
    expect(stations[0]!.gso).toBe(true);
    stations[1]!.offerGso!(true);
    // Broadcast from station 0 floods: one whole frame to station 1, 14 MTU segments to station 2.
    const f = gsoFrame();
    f.fill(0xff, 0, 6);
    stations[0]!.send(f);
    clock.runUntil(() => false, 1);
    expect(sizes[1]).toEqual([f.length]);
    expect(sizes[2]!.length).toBe(Math.ceil(20000 / 1460));
    expect(Math.max(...sizes[2]!)).toBe(1514);
    expect(sw.stats.gsoCut).toBe(1);
    expect(sw.stats.gsoSegments).toBe(14);
  });

  it('carries a partial checksum to ports that take them, finishes it once for a port that does not, and cuts need none', () => {
    const clock = new VirtualClock();
    const sw = new LearningSwitch(clock);
    const got: { f: Uint8Array; partial: boolean }[][] = [[], [], [], []];
    const stations: FramePort[] = [];
    for (let i = 0; i < 4; i++) {
      const [station, swSide] = createLink(clock, [`h${i}`, `sw${i}`]);
      sw.attach(swSide, `p${i}`);
      station.setReceiver((f, info) => void got[i]!.push({ f, partial: info?.checksumPartial === true }));
      stations.push(station);
    }
    expect(stations[0]!.gsoChecksumPartial).toBe(true); // the switch takes them on every port
    stations[1]!.offerGso!(true, true); // a virtio-net guest with GUEST_CSUM
    stations[2]!.offerGso!(true); // GSO, but finished checksums only
    // station 3 takes neither: its copy is cut
    const partialGso = (): Uint8Array => {
      const f = gsoFrame();
      const sum = foldSum(pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, f.length - 34));
      f[50] = sum >> 8;
      f[51] = sum & 0xff;
      return f;
    };
    // Unicast to station 1 (learned from a frame it sent): partial all the way.
    stations[1]!.send(frame(0xff, 2));
    clock.runUntil(() => false, 1);
    for (const g of got) g.length = 0;
    stations[0]!.send(partialGso(), { checksumPartial: true });
    clock.runUntil(() => false, 1);
    expect(got[1]!.map((g) => g.partial)).toEqual([true]);
    expect(tcpOk(got[1]![0]!.f)).toBe(false);
    expect(got[2]!.length + got[3]!.length).toBe(0);
    // Flooded: station 2 needs it finished, so every port gets the finished bytes; station 3's cut is right too.
    const flood = partialGso();
    flood.fill(0xff, 0, 6);
    stations[0]!.send(flood, { checksumPartial: true });
    clock.runUntil(() => false, 1);
    expect(got[1]!.slice(1).map((g) => [g.partial, tcpOk(g.f)])).toEqual([[false, true]]);
    expect(got[2]!.map((g) => [g.partial, tcpOk(g.f)])).toEqual([[false, true]]);
    expect(got[3]!.length).toBe(14);
    expect(got[3]!.every((g) => !g.partial && tcpOk(g.f))).toBe(true);
  });
});

/** Whether a TCP/IPv4 frame's TCP checksum is right. */
function tcpOk(f: Uint8Array): boolean {
  return internetChecksum(f.subarray(34), pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, f.length - 34)) === 0;
}
