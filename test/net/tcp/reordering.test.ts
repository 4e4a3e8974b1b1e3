/**
 * RACK's reordering window adapts to the path (RFC 8985 §6.2 step 4): a D-SACK shows a
 * retransmission was spurious, so the window widens (once per round trip); sixteen recoveries
 * without one narrow it back.
 */
import { describe, expect, it } from 'vitest';
import { Rack, RACK_REO_WND_PERSIST } from '../../../net/tcp/rack.js';
import type { SentSegment } from '../../../net/tcp/sack.js';
import { establish, randomBytes, sha256, Sink, Source, TestNet } from './harness.js';

describe('RACK reordering window (RFC 8985 §6.2 RACK_update_reo_wnd)', () => {
  /** A Rack that has seen one segment, sent at 0 and delivered at `minRtt`. */
  function rackWithMinRtt(minRtt: number, adaptive = true): Rack {
    const rack = new Rack(adaptive);
    const seg: SentSegment = { start: 0, end: 1000, xmitTs: 0, sacked: false, lost: false, rtxInFlight: false, retransmitted: false };
    rack.delivered(seg, minRtt);
    return rack;
  }
  const SRTT = 1000; // large: the cap is tested on its own

  it('starts at a quarter of the minimum RTT and grows by a quarter for each round trip that brings a D-SACK', () => {
    const rack = rackWithMinRtt(40);
    expect(rack.reoWnd(false, false, SRTT)).toBe(10);
    rack.updateReoWnd(true, false, 1000, 5000); // a D-SACK while 1000..5000 is in flight
    expect(rack.reoWndMult).toBe(2);
    expect(rack.reoWnd(false, false, SRTT)).toBe(20);
    // More D-SACKs before SND.UNA reaches 5000 belong to the same round trip.
    rack.updateReoWnd(true, false, 3000, 7000);
    rack.updateReoWnd(true, false, 4999, 8000);
    expect(rack.reoWndMult).toBe(2);
    // The round is over once SND.UNA passes the SND.NXT of the step; the next D-SACK counts.
    rack.updateReoWnd(true, false, 5000, 9000);
    expect(rack.reoWndMult).toBe(3);
    expect(rack.reoWnd(false, false, SRTT)).toBe(30);
  });

  it('is never more than SRTT', () => {
    const rack = rackWithMinRtt(40);
    for (let una = 0; una < 10; una++) rack.updateReoWnd(true, false, una * 1000, una * 1000 + 1);
    expect(rack.reoWndMult).toBe(11);
    expect(rack.reoWnd(false, false, 60)).toBe(60);
  });

  it('a D-SACK counts as reordering seen: the window then holds during recovery too', () => {
    const rack = rackWithMinRtt(40);
    expect(rack.reoWnd(true, false, SRTT)).toBe(0); // no reordering seen: repair at once
    rack.updateReoWnd(true, false, 0, 1000);
    expect(rack.reoWnd(true, true, SRTT)).toBe(20);
  });

  it(`falls back to one step after ${RACK_REO_WND_PERSIST} recoveries without a D-SACK; a D-SACK restarts the count`, () => {
    const rack = rackWithMinRtt(40);
    rack.updateReoWnd(true, false, 0, 1000);
    rack.updateReoWnd(true, false, 1000, 2000);
    expect(rack.reoWndMult).toBe(3);
    let una = 2000;
    const recoveryEnds = (n: number): void => {
      for (let i = 0; i < n; i++) rack.updateReoWnd(false, true, (una += 1000), una + 1000);
    };
    recoveryEnds(RACK_REO_WND_PERSIST - 1);
    expect(rack.reoWndMult).toBe(3);
    rack.updateReoWnd(true, false, (una += 1000), una + 1000); // a D-SACK: persist again 16
    expect(rack.reoWndMult).toBe(4);
    recoveryEnds(RACK_REO_WND_PERSIST - 1);
    expect(rack.reoWndMult).toBe(4);
    // ACKs that end no recovery do not count.
    for (let i = 0; i < 50; i++) rack.updateReoWnd(false, false, (una += 1000), una + 1000);
    expect(rack.reoWndMult).toBe(4);
    recoveryEnds(1);
    expect(rack.reoWndMult).toBe(1);
    expect(rack.reoWnd(false, false, SRTT)).toBe(10);
  });

  it('with adaptation off (rackAdaptiveReoWnd: false) the window stays a quarter of the minimum RTT', () => {
    const rack = rackWithMinRtt(40, false);
    for (let una = 0; una < 5; una++) rack.updateReoWnd(true, false, una * 1000, una * 1000 + 1);
    expect(rack.reoWndMult).toBe(1);
    expect(rack.reoWnd(true, true, SRTT)).toBe(10);
  });
});

describe('a path that reorders (and never loses) segments', () => {
  /**
   * 8 MB over a 10 Mbit/s path with a 40 ms RTT where 0.5 % of the datagrams arrive 30 ms late:
   * later than a quarter of the RTT, so until the window grows each late segment is resent.
   * Every retransmission here is spurious (nothing is lost). Returns those of each half.
   */
  function reorderedTransfer(adaptive: boolean): { firstHalf: number; secondHalf: number; dsacks: number } {
    const net = new TestNet({
      seed: 1,
      path: { delayMs: 20, reorder: 0.005, reorderDelayMs: 30, bytesPerMs: 1250 },
      trace: false,
      tcp: { rackAdaptiveReoWnd: adaptive },
    });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    const data = randomBytes(8 * 1024 * 1024, 9);
    new Source(client, data);
    net.run(() => sink.received >= data.length / 2, 60_000, 'first half');
    const firstHalf = net.a.stats.retransmits;
    net.run(() => sink.ended, 60_000, 'second half');
    expect(sink.digest()).toBe(sha256(data));
    expect(net.counters.lost + net.counters.queueDrops).toBe(0);
    expect(net.counters.reordered).toBeGreaterThan(30);
    expect(net.a.stats.rtoTimeouts).toBe(0);
    return { firstHalf, secondHalf: net.a.stats.retransmits - firstHalf, dsacks: net.a.stats.dsacksIn };
  }

  it('after the first D-SACKs the window has grown: the second half sees fewer spurious retransmissions than the first, and far fewer than with a fixed window', () => {
    const adaptive = reorderedTransfer(true);
    const fixed = reorderedTransfer(false);
    expect(adaptive.firstHalf).toBeGreaterThan(0); // it had to learn
    expect(adaptive.secondHalf).toBeLessThan(adaptive.firstHalf);
    expect(adaptive.secondHalf * 3).toBeLessThan(fixed.secondHalf);
    expect(adaptive.firstHalf + adaptive.secondHalf).toBeLessThan(fixed.firstHalf + fixed.secondHalf);
    expect(adaptive.dsacks).toBeLessThan(fixed.dsacks);
  });
});
