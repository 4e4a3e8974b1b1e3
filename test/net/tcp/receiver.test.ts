/**
 * The receiver as a Linux peer sees it: D-SACK for every duplicate (RFC 2883), and timestamps
 * that a forged segment cannot poison (RFC 7323 §4.3, §3.2, §5).
 */
import { describe, expect, it } from 'vitest';
import { TH_ACK, TH_SYN, type TcpRepr } from '../../../net/wire/tcp.js';
import { establish, randomBytes, Sink, TestNet } from './harness.js';

function lastFrom(net: TestNet, side: 'a' | 'b'): TcpRepr {
  return net.trace.filter((e) => e.from === side).at(-1)!.seg;
}

describe('D-SACK (RFC 2883)', () => {
  it('a segment received twice is reported in the first SACK block of the next ACK', () => {
    const net = new TestNet();
    const { client, server } = establish(net);
    new Sink(server);
    client.write(randomBytes(1000, 1));
    net.run(() => client.sendQueued === 0, 5000, 'delivery');
    const data = net.trace.find((e) => e.from === 'a' && e.seg.payload.length > 0)!.seg;
    const ts = lastFrom(net, 'a').options.timestamp!;
    net.trace.length = 0;
    // The same segment again, as a spurious retransmission would bring it (fresh timestamp).
    net.inject('a', { ...data, options: { timestamp: { tsVal: (ts.tsVal + 1) >>> 0, tsEcr: ts.tsEcr } } });
    net.clock.advance(50);
    const ack = lastFrom(net, 'b');
    expect(ack.flags & TH_ACK).toBe(TH_ACK);
    expect(ack.options.sackBlocks?.[0]).toEqual({ left: data.seq, right: (data.seq + 1000) >>> 0 });
    expect(net.b.stats.dsacksOut).toBe(1);
  });

  it('a duplicate of out-of-order data already held is D-SACKed, then the held block follows', () => {
    const net = new TestNet();
    const { client, server } = establish(net);
    new Sink(server);
    let first = true;
    net.filter = (from, seg) => {
      if (from === 'a' && seg.payload.length > 0 && first) {
        first = false;
        return false; // lose the first segment: the rest waits out of order
      }
      return true;
    };
    client.noDelay = true;
    client.write(randomBytes(1448 * 3, 2));
    net.clock.advance(7); // the last two arrived, the first not yet retransmitted
    const held = net.trace.filter((e) => e.from === 'a' && !e.dropped && e.seg.payload.length > 0).at(-1)!.seg;
    net.trace.length = 0;
    net.inject('a', { ...held, options: { timestamp: { tsVal: (held.options.timestamp!.tsVal + 1) >>> 0, tsEcr: held.options.timestamp!.tsEcr } } });
    net.clock.advance(1);
    const blocks = lastFrom(net, 'b').options.sackBlocks!;
    expect(blocks[0]).toEqual({ left: held.seq, right: (held.seq + held.payload.length) >>> 0 });
    expect(blocks.length).toBe(2);
    expect(blocks[1]!.right).toBe(blocks[0]!.right);
  });
});

describe('timestamps and PAWS (RFC 7323)', () => {
  it('one forged in-window SYN with a far-future TSval does not poison TS.Recent: all data arrives', () => {
    const net = new TestNet();
    const { client, server } = establish(net);
    const sink = new Sink(server);
    net.clock.advance(100);
    const a = lastFrom(net, 'a');
    const b = lastFrom(net, 'b');
    // Blind: right ports, a sequence number inside B's window, TSval from the far future.
    net.inject('a', {
      srcPort: client.localPort,
      dstPort: server.localPort,
      seq: a.seq, // at RCV.NXT: the segment "covers Last.ACK.sent", the case RFC 7323 §4.3 updates on
      ack: b.seq,
      flags: TH_SYN,
      window: 1024,
      urgent: 0,
      options: { timestamp: { tsVal: (a.options.timestamp!.tsVal + 0x7000_0000) >>> 0, tsEcr: 0 } },
      payload: new Uint8Array(0),
    });
    net.clock.advance(10);
    const data = randomBytes(1000, 3);
    client.write(data);
    net.run(() => sink.received === 1000, 20_000, 'all data after the forged SYN');
    expect(net.b.stats.pawsDrops).toBe(0);
    expect(server.state).toBe('ESTABLISHED');
  });

  it('a non-RST segment without a timestamp on a timestamps connection is dropped (RFC 7323 §3.2)', () => {
    const net = new TestNet();
    const { server } = establish(net);
    const sink = new Sink(server);
    net.clock.advance(100);
    const a = lastFrom(net, 'a');
    net.trace.length = 0;
    net.inject('a', { ...a, flags: TH_ACK, options: {}, payload: new Uint8Array(10).fill(9) });
    net.clock.advance(300);
    expect(sink.received).toBe(0);
    expect(net.b.stats.missingTimestampDrops).toBe(1);
    expect(net.trace.filter((e) => e.from === 'b')).toHaveLength(0); // silently
  });
});

describe('ACKs for in-order data (RFC 5681 §4.2, as a Linux receiver with GRO)', () => {
  function ackCount(net: TestNet, t0: number): { n: number; times: number[] } {
    const acks = net.trace.filter((e) => e.from === 'b' && e.t >= t0 && e.seg.payload.length === 0);
    return { n: acks.length, times: acks.map((e) => e.t) };
  }

  it('a burst of segments that arrives together is acknowledged once, at once, after the burst', () => {
    const net = new TestNet({ path: { delayMs: 5 } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    client.noDelay = true;
    client.write(randomBytes(64 * 1024, 7)); // leave quick-ACK mode
    net.run(() => client.sendQueued === 0, 5000, 'warm-up');
    net.clock.advance(1);
    const mss = client.info().sendMss;
    const t0 = net.clock.now();
    client.write(randomBytes(8 * mss, 8));
    net.run(() => client.sendQueued === 0, 5000, 'burst');
    const { n, times } = ackCount(net, t0);
    expect(n).toBe(1);
    expect(times[0]).toBe(t0 + 5); // when the burst arrived: no delayed-ACK wait
    expect(net.b.stats.burstAcks).toBeGreaterThan(0);
    expect(sink.received).toBe(64 * 1024 + 8 * mss);
  });

  it('segments that arrive one by one are acknowledged every second segment, as each pair completes', () => {
    // 1448-byte segments at 1448 bytes/ms: one arrives every millisecond.
    const net = new TestNet({ path: { delayMs: 5, bytesPerMs: 1500 } });
    const { client, server } = establish(net);
    new Sink(server);
    client.noDelay = true;
    client.write(randomBytes(64 * 1024, 9));
    net.run(() => client.sendQueued === 0, 20_000, 'warm-up');
    net.clock.advance(100);
    net.clock.advance(1);
    const mss = client.info().sendMss;
    const t0 = net.clock.now();
    client.write(randomBytes(8 * mss, 10));
    net.run(() => client.sendQueued === 0, 5000, 'paced');
    const arrivals = net.trace.filter((e) => e.from === 'a' && e.t >= t0 && e.seg.payload.length > 0).map((e) => e.t);
    const { n } = ackCount(net, t0);
    expect(arrivals.length).toBe(8);
    expect(n).toBe(4);
  });
});
