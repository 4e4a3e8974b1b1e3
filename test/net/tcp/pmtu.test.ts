/**
 * Path MTU discovery (RFC 1191 with RFC 5927's validation) and black-hole detection (RFC 4821's
 * idea): a router at MTU 1280 in the middle of a 1500-byte path drops DF datagrams that do not fit.
 * After black-hole detection the larger MSS is probed again at an interval (Linux's
 * tcp_probe_interval).
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_TCP_CONFIG, type TcpConfig } from '../../../net/tcp/config.js';
import { ADDR_A, ADDR_B, establish, randomBytes, sha256, Sink, Source, TestNet, type TraceEntry } from './harness.js';

function transfer(net: TestNet, size: number): { client: ReturnType<typeof establish>['client']; sink: Sink; data: Uint8Array } {
  const { client, server } = establish(net);
  const sink = new Sink(server);
  const data = randomBytes(size, 21);
  new Source(client, data);
  net.run(() => sink.ended, 60_000, 'transfer over the 1280-byte hop');
  return { client, sink, data };
}

describe('path MTU discovery', () => {
  it('ICMP "fragmentation needed" from a 1280-byte hop: the MSS drops to 1240 and 2 MB arrive byte-exact', () => {
    const net = new TestNet({ path: { delayMs: 5, pathMtu: 1280 }, trace: false });
    const { client, sink, data } = transfer(net, 2 * 1024 * 1024);
    expect(sink.received).toBe(data.length);
    expect(sink.digest()).toBe(sha256(data));
    expect(net.a.stats.pmtuUpdates).toBeGreaterThanOrEqual(1);
    expect(client.info().sendMss).toBe(1240 - 12); // MTU − 40, less the timestamp option
    expect(net.a.stats.rtoTimeouts).toBe(0); // resent at once, not after a timeout
    expect(net.clock.now()).toBeLessThan(2000);
  });

  it('with the ICMP filtered (a black hole), repeated timeouts of full-sized segments lower the MSS and the transfer completes', () => {
    const net = new TestNet({ path: { delayMs: 5, pathMtu: 1280, icmpFiltered: true }, trace: false });
    const { client, sink, data } = transfer(net, 1024 * 1024);
    expect(sink.digest()).toBe(sha256(data));
    expect(net.a.stats.mtuBlackHoles).toBe(1);
    expect(client.info().sendMss).toBeLessThanOrEqual(1024);
    expect(net.a.stats.pmtuUpdates).toBe(0);
    expect(net.clock.now()).toBeLessThan(10_000);
    // The larger MSS is tried again only after Linux's tcp_probe_interval, 600 s.
    expect(DEFAULT_TCP_CONFIG.mtuProbeIntervalMs).toBe(600_000);
    expect(net.a.stats.mtuProbes).toBe(0);
  });

  it('a "fragmentation needed" quoting a sequence number not in flight is ignored (RFC 5927 §4.1)', () => {
    const net = new TestNet({ path: { delayMs: 5 } });
    const { client, server } = establish(net);
    new Sink(server);
    client.write(randomBytes(100_000, 3));
    net.clock.advance(6); // data in flight
    const header = new Uint8Array(8);
    const view = new DataView(header.buffer);
    view.setUint16(0, client.localPort);
    view.setUint16(2, client.remotePort);
    view.setUint32(4, (client.info().iss + 0x4000_0000) >>> 0); // far from SND.UNA..SND.NXT
    net.a.icmpError(3, 4, { src: ADDR_A, dst: ADDR_B, transportHeader: header, nextHopMtu: 576 });
    expect(net.a.stats.pmtuIgnored).toBe(1);
    expect(client.info().sendMss).toBe(1448);
  });
});

describe('probing the MSS back up after black-hole detection (RFC 4821, Linux tcp_probe_interval)', () => {
  const INTERVAL = 2000;
  const FULL = 1448; // 1500 − 40 − the timestamp option
  const LOW = 1024 - 12; // black-hole detection's first step, less the timestamp option

  /**
   * 3 MB over a 2 Mbit/s path through a 1280-byte hop whose ICMP is filtered (a black hole), with
   * the probe interval at 2 s; `change` alters the path `at` ms after the transfer starts.
   */
  function blackHoleTransfer(
    change?: { at: number; apply: (net: TestNet) => void },
    tcp: Partial<TcpConfig> = {},
  ): { net: TestNet; t0: number; sink: Sink; data: Uint8Array; client: ReturnType<typeof establish>['client'] } {
    const net = new TestNet({ path: { delayMs: 5, pathMtu: 1280, icmpFiltered: true, bytesPerMs: 250 }, tcp: { mtuProbeIntervalMs: INTERVAL, ...tcp } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    const data = randomBytes(3 * 1024 * 1024, 21);
    const t0 = net.clock.now();
    new Source(client, data);
    if (change) net.clock.setTimer(change.at, () => change.apply(net));
    net.run(() => sink.ended, 60_000, 'transfer through the black hole');
    return { net, t0, sink, data, client };
  }

  const dataFromA = (net: TestNet): TraceEntry[] => net.trace.filter((e) => e.from === 'a' && e.seg.payload.length > 0);
  /** When black-hole detection lowered the MSS: the first segment of the lower size. */
  const loweredAt = (net: TestNet): number => dataFromA(net).find((e) => e.seg.payload.length === LOW)!.t;
  /** Segments larger than the lowered MSS sent after it was lowered: the probes (and, once one succeeded, everything). */
  const largerAfter = (net: TestNet, t: number): TraceEntry[] => dataFromA(net).filter((e) => e.t > t && e.seg.payload.length > LOW);

  it('a black hole that heals: the probe after it is acknowledged, the MSS comes back up, and 3 MB arrive byte-exact', () => {
    const HEAL = 5000;
    const { net, t0, sink, data, client } = blackHoleTransfer({ at: HEAL, apply: (n) => (n.path.pathMtu = Infinity) });
    expect(sink.digest()).toBe(sha256(data));
    expect(net.a.stats.mtuBlackHoles).toBe(1);
    const low = loweredAt(net);
    // While the hole lasted: one probe, an interval after the MSS went down, lost; every other
    // segment stayed at the lower size.
    const before = largerAfter(net, low).filter((e) => e.t < t0 + HEAL);
    expect(before).toHaveLength(1);
    expect(before[0]!.seg.payload.length).toBe(FULL);
    expect(before[0]!.dropped).toBe(true);
    expect(before[0]!.t - low).toBeGreaterThanOrEqual(INTERVAL);
    // After it healed: the next probe, an interval after the lost one, got through.
    const after = largerAfter(net, t0 + HEAL);
    expect(after[0]!.t - before[0]!.t).toBeGreaterThanOrEqual(INTERVAL);
    expect(after[0]!.dropped).toBe(false);
    expect(net.a.stats.mtuProbes).toBe(2);
    expect(net.a.stats.mtuProbesSucceeded).toBe(1);
    expect(client.info().sendMss).toBe(FULL);
    // Once its ACK is back (a queued RTT later), the segments are full-sized again, all but the
    // very last of the data.
    const sent = dataFromA(net);
    const resumed = sent.findIndex((e) => e.t > after[0]!.t && e.seg.payload.length === FULL);
    expect(sent[resumed]!.t - after[0]!.t).toBeLessThan(500);
    const later = sent.slice(resumed);
    expect(later.length).toBeGreaterThan(1000);
    expect(later.slice(0, -1).every((e) => e.seg.payload.length === FULL)).toBe(true);
    // A probe lost to the hole is no congestion signal: no fast recovery, no timeout after the first three.
    expect(net.a.stats.fastRetransmits).toBe(0);
    expect(net.a.stats.rtoTimeouts).toBe(3);
  });

  it('while the black hole persists, the probe is retried at the interval, always lost, and the MSS stays low', () => {
    const { net, sink, data, client } = blackHoleTransfer();
    expect(sink.digest()).toBe(sha256(data));
    const low = loweredAt(net);
    const probes = largerAfter(net, low);
    expect(probes.length).toBeGreaterThanOrEqual(3);
    expect(net.a.stats.mtuProbes).toBe(probes.length);
    expect(net.a.stats.mtuProbesSucceeded).toBe(0);
    let prev = low;
    for (const p of probes) {
      expect(p.seg.payload.length).toBe(FULL);
      expect(p.dropped).toBe(true);
      // The interval counts from when the previous probe was found lost: a little after it was sent.
      expect(p.t - prev).toBeGreaterThanOrEqual(INTERVAL);
      expect(p.t - prev).toBeLessThan(INTERVAL + 500);
      prev = p.t;
    }
    expect(client.info().sendMss).toBe(LOW);
    expect(dataFromA(net).filter((e) => e.t > low && !e.dropped).every((e) => e.seg.payload.length <= LOW)).toBe(true);
    expect(net.a.stats.fastRetransmits).toBe(0);
    expect(net.a.stats.rtoTimeouts).toBe(3);
  });

  it("when the router's ICMP gets through again, a probe it reports too big makes the next probe the size it reported", () => {
    const { net, sink, data, client } = blackHoleTransfer({ at: 5000, apply: (n) => (n.path.icmpFiltered = false) });
    expect(sink.digest()).toBe(sha256(data));
    // The probes: the larger segments after the MSS went down, up to the first that got through.
    const larger = largerAfter(net, loweredAt(net));
    const probes = larger.slice(0, larger.findIndex((e) => !e.dropped) + 1);
    expect(probes.map((e) => [e.seg.payload.length, e.dropped])).toEqual([
      [FULL, true], // in the black hole
      [FULL, true], // answered with "fragmentation needed, MTU 1280"
      [1280 - 40 - 12, false],
    ]);
    expect(client.info().sendMss).toBe(1228);
    expect(net.a.stats.mtuProbesSucceeded).toBe(1);
    expect(net.a.stats.pmtuUpdates).toBe(0); // the report was about the probe, not about what we send
  });

  it('without SACK the probe works the same way: lost while the hole lasts, acknowledged once it heals', () => {
    const { net, t0, sink, data, client } = blackHoleTransfer({ at: 5000, apply: (n) => (n.path.pathMtu = Infinity) }, { sack: false });
    expect(sink.digest()).toBe(sha256(data));
    const probes = largerAfter(net, loweredAt(net));
    expect(probes[0]!.dropped).toBe(true);
    expect(probes[0]!.t).toBeLessThan(t0 + 5000);
    expect(probes[1]!.dropped).toBe(false);
    expect(net.a.stats.mtuProbes).toBe(2);
    expect(net.a.stats.mtuProbesSucceeded).toBe(1);
    expect(client.info().sendMss).toBe(FULL);
  });
});
