/**
 * Transfers under conditions the main bulk tests do not reach: sequence numbers wrapping past
 * 2^32, loss recovery without SACK (NewReno) and without timestamps, no window scaling, tiny
 * buffers (silly-window avoidance), a small MTU, heavy reordering, corruption, handshake losses.
 */
import { describe, expect, it } from 'vitest';
import type { TcpConfig } from '../../../net/tcp/config.js';
import type { TcpLayer } from '../../../net/tcp/layer.js';
import { TH_ACK, TH_SYN } from '../../../net/wire/tcp.js';
import { establish, randomBytes, sha256, Sink, Source, TestNet, type Impairments, type TestNetOptions } from './harness.js';

/** Test-only: make a layer choose a fixed ISN (the real one is a keyed hash we cannot steer). */
function forceIsn(layer: TcpLayer, isn: number): void {
  (layer as unknown as { isn: () => number }).isn = () => isn;
}

function transfer(opts: TestNetOptions, size: number, setup?: (net: TestNet) => void, limitMs = 3_600_000): TestNet {
  const net = new TestNet({ trace: false, ...opts });
  setup?.(net);
  const { client, server } = establish(net, 80, 120_000);
  const up = randomBytes(size, 21);
  const down = randomBytes(size, 22);
  const atServer = new Sink(server);
  const atClient = new Sink(client);
  new Source(client, up);
  new Source(server, down);
  const finished = (s: string): boolean => s === 'TIME_WAIT' || s === 'CLOSED';
  net.run(() => atServer.ended && atClient.ended && finished(client.state) && finished(server.state), limitMs, 'transfer');
  expect(atServer.received).toBe(size);
  expect(atClient.received).toBe(size);
  expect(atServer.digest()).toBe(sha256(up));
  expect(atClient.digest()).toBe(sha256(down));
  expect(atServer.error ?? atClient.error).toBeNull();
  return net;
}

const LOSSY: Partial<Impairments> = { delayMs: 10, bytesPerMs: 5000, queueLimitBytes: 64 * 1024, loss: 0.02, reorder: 0.02, reorderDelayMs: 4, duplicate: 0.01 };
const MB = 1024 * 1024;

describe('TCP transfers at the edges', () => {
  it('sequence numbers wrapping through 2^32 on both sides', () => {
    const net = transfer({ seed: 7, path: LOSSY }, 2 * MB, (n) => {
      forceIsn(n.a, 0xffffffff - 300_000);
      forceIsn(n.b, 0xfffff000);
    });
    expect(net.counters.lost).toBeGreaterThan(0);
  });

  const variants: [string, Partial<TcpConfig>][] = [
    ['NewReno: no SACK', { sack: false }],
    ['no timestamps (Karn-timed RTT)', { timestamps: false }],
    ['no SACK, no timestamps, no window scaling', { sack: false, timestamps: false, windowScaling: false }],
  ];
  for (const [name, tcp] of variants) {
    it(`${name}, 2 % loss with reordering`, () => {
      transfer({ seed: 8, path: LOSSY, tcp }, 2 * MB);
    });
  }

  it('one side offers SACK and timestamps, the other does not', () => {
    const net = transfer({ seed: 9, path: LOSSY, tcpA: { sack: false, timestamps: false } }, MB);
    for (const c of net.b.connections()) expect(c.info().sack).toBe(false);
  });

  it('tiny buffers (smaller than an MSS): silly-window avoidance still makes progress', () => {
    transfer({ seed: 10, path: { delayMs: 2, loss: 0.01 }, tcp: { recvBufferSize: 1000, sendBufferSize: 1500 } }, 200_000);
  });

  it('large buffers with window scaling (1 MiB windows)', () => {
    const net = transfer({ seed: 11, path: { delayMs: 20, bytesPerMs: 20_000, queueLimitBytes: 512 * 1024 }, tcp: { recvBufferSize: MB, sendBufferSize: MB } }, 8 * MB);
    expect(net.counters.sent).toBeGreaterThan(0);
  });

  it('small MTU (576: MSS 536)', () => {
    transfer({ seed: 12, path: LOSSY, mtu: 576 }, MB);
  });

  it('heavy reordering (20 % of packets held back by several RTTs worth of spacing)', () => {
    transfer({ seed: 13, path: { delayMs: 5, bytesPerMs: 5000, queueLimitBytes: 128 * 1024, reorder: 0.2, reorderDelayMs: 3, jitterMs: 2 } }, 2 * MB);
  });

  it('corrupted segments are dropped by the checksum and recovered', () => {
    const net = transfer({ seed: 14, path: { delayMs: 5 } }, MB, (n) => {
      let count = 0;
      const inner = n.carry.bind(n);
      // Flip one payload bit in every 50th datagram on its way (after the sender checksummed it).
      n.carry = (from, packet) => {
        if (++count % 50 === 0 && packet.length > 60) {
          const copy = packet.slice();
          copy[copy.length - 1]! ^= 0x01;
          return inner(from, copy);
        }
        return inner(from, packet);
      };
    });
    expect(net.a.stats.badChecksums + net.b.stats.badChecksums).toBeGreaterThan(10);
  });

  it('handshake losses: SYN, SYN-ACK and the final ACK each lost once', () => {
    for (const victim of ['syn', 'synack', 'ack'] as const) {
      const net = new TestNet({ seed: 15 });
      let done = false;
      net.filter = (from, seg) => {
        if (done) return true;
        const isSyn = seg.flags === TH_SYN;
        const isSynAck = seg.flags === (TH_SYN | TH_ACK);
        // The handshake's third segment (here carrying the data written before it completed).
        const isAck = from === 'a' && (seg.flags & (TH_SYN | TH_ACK)) === TH_ACK;
        if ((victim === 'syn' && isSyn) || (victim === 'synack' && isSynAck) || (victim === 'ack' && isAck)) {
          done = true;
          return false;
        }
        return true;
      };
      let server: import('../../../net/tcp/connection.js').TcpConnection | null = null;
      let sink: Sink | null = null;
      // The accept callback attaches the reader at once: data may ride on the handshake's last segment.
      net.b.listen(80, (c) => {
        server = c;
        sink = new Sink(c);
      });
      const client = net.a.connect(net.ipB.addr, 80);
      // Data right away: with the final ACK lost, the data segment completes the handshake.
      client.write(new TextEncoder().encode('hi'));
      net.run(() => server !== null && client.state === 'ESTABLISHED', 10_000, `handshake with ${victim} lost`);
      net.run(() => sink!.received === 2, 10_000, `data with ${victim} lost`);
      expect(done).toBe(true);
    }
  });

  it('data after a full close is answered with RST (RFC 1122 §4.2.2.13)', () => {
    const net = new TestNet();
    const { client, server } = establish(net);
    new Sink(client);
    const errs: string[] = [];
    client.onError = (e) => errs.push(e);
    server.close(); // server closes both directions
    net.run(() => client.state === 'CLOSE_WAIT', 2000, 'FIN');
    client.write(new Uint8Array(10));
    net.run(() => client.state === 'CLOSED', 2000, 'RST');
    expect(errs).toEqual(['ECONNRESET']);
    expect(server.state).toBe('CLOSED');
  });

  it('a new SYN ends TIME-WAIT early for the same 4-tuple (RFC 6191)', () => {
    const net = new TestNet();
    const { client, server } = establish(net);
    new Sink(client);
    new Sink(server);
    const port = client.localPort;
    client.shutdown();
    net.run(() => server.state === 'CLOSE_WAIT', 2000, 'close-wait');
    server.shutdown();
    net.run(() => client.state === 'TIME_WAIT', 2000, 'time-wait');
    // TIME-WAIT is on A; B opens the same 4-tuple again (from port 80 to A's old port).
    let again: import('../../../net/tcp/connection.js').TcpConnection | null = null;
    net.a.listen(port, (c) => (again = c));
    net.clock.advance(1000);
    const c2 = net.b.connect(net.ipA.addr, port, { localPort: 80 });
    net.run(() => c2.state === 'ESTABLISHED' && again !== null, 10_000, 'reuse');
    expect(client.state).toBe('CLOSED');
  });

  it('keepalive probes a silent peer and times out when it is gone', () => {
    const net = new TestNet({ tcp: { keepAlive: true, keepIdleMs: 10_000, keepIntervalMs: 1000, keepCount: 3 } });
    const { client } = establish(net);
    let err: string | null = null;
    client.onError = (e) => (err = e);
    net.clock.advance(30_000);
    expect(client.state).toBe('ESTABLISHED'); // the peer answers the probes
    expect(net.a.stats.keepaliveProbes).toBeGreaterThan(0);
    net.filter = () => false; // the path dies
    net.run(() => client.state === 'CLOSED', 60_000, 'keepalive timeout');
    expect(err).toBe('ETIMEDOUT');
  });

  it('SYN queue bound without SYN cookies: extra young half-open connections are dropped, not answered', () => {
    const net = new TestNet({ tcpB: { synCookies: false } });
    net.filter = (from) => from === 'a'; // nothing from B gets back: connections stay half-open
    net.b.listen(80, () => undefined, { synQueueLimit: 2 });
    for (let i = 0; i < 4; i++) net.a.connect(net.ipB.addr, 80);
    net.clock.advance(100);
    expect(net.b.listening()[0]!.halfOpen).toBe(2);
    expect(net.b.stats.synQueueDrops).toBeGreaterThanOrEqual(2);
  });
});

describe('receive window bookkeeping', () => {
  // The passive side's right window edge must start at its RCV.NXT. Left at 0, it compares as
  // "ahead" or "behind" depending on which half of the sequence space the peer's ISN fell in,
  // and in one half the advertised window exceeds the receive buffer.
  for (const clientIsn of [0x10000000, 0x90000000, 0xfffffff0]) {
    it(`never advertises more than the receive buffer (peer ISN ${clientIsn.toString(16)})`, () => {
      const buf = 64 * 1024;
      const net = new TestNet({ tcp: { recvBufferSize: buf } });
      forceIsn(net.a, clientIsn);
      const { client, server } = establish(net);
      expect(server.info().rcvWnd).toBeLessThanOrEqual(buf);
      expect(client.info().rcvWnd).toBeLessThanOrEqual(buf);
      // And on the wire: every window B advertised, scaled, fits the buffer.
      const shift = server.info().rcvWscale;
      for (const e of net.trace.filter((x) => x.from === 'b' && !(x.seg.flags & TH_SYN))) expect(e.seg.window << shift).toBeLessThanOrEqual(buf);
      // A sender that does not read: at most `buf` bytes ever arrive.
      const sink = new Sink(server);
      sink.reading = false;
      new Source(client, randomBytes(4 * buf, 3), false);
      net.clock.advance(20_000);
      expect(sink.received).toBeLessThanOrEqual(buf);
      expect(sink.received).toBeGreaterThan(buf - 2048);
    });
  }
});

describe('robustness', () => {
  it('random segments thrown at live connections never throw and never break the invariants', () => {
    for (let round = 0; round < 20; round++) {
      const net = new TestNet({ seed: 100 + round, trace: false, path: { delayMs: 3, loss: 0.02 } });
      const { client, server } = establish(net);
      const sink = new Sink(server);
      new Sink(client);
      new Source(client, randomBytes(300_000, round), false);
      const rnd = net.random;
      const near = (x: number, span: number): number => (x + Math.floor((rnd() - 0.5) * 2 * span)) >>> 0;
      // Learn the live sequence numbers from the connections' own view of the wire.
      let clientSeq = 0;
      let serverSeq = 0;
      net.tracing = true;
      for (let i = 0; i < 400; i++) {
        net.clock.advance(2 + rnd() * 10);
        const last = net.trace.at(-1);
        if (last) {
          if (last.from === 'a') clientSeq = last.seg.seq;
          else serverSeq = last.seg.seq;
        }
        net.trace.length = 0;
        const flags = [TH_ACK, TH_ACK, TH_ACK | 0x01, TH_SYN, TH_SYN | TH_ACK, 0x04, 0x04 | TH_ACK, 0x3f, 0][Math.floor(rnd() * 9)]!;
        const toServer = rnd() < 0.5;
        const seqBase = toServer ? clientSeq : serverSeq;
        const ackBase = toServer ? serverSeq : clientSeq;
        const payload = rnd() < 0.5 ? new Uint8Array(0) : randomBytes(Math.floor(rnd() * 1400), i);
        const sackBlocks = rnd() < 0.3 ? [{ left: near(ackBase, 100_000), right: near(ackBase, 100_000) }] : undefined;
        net.inject(toServer ? 'a' : 'b', {
          srcPort: toServer ? client.localPort : 80,
          dstPort: toServer ? 80 : client.localPort,
          seq: near(seqBase, rnd() < 0.5 ? 2000 : 1 << 30),
          ack: near(ackBase, rnd() < 0.5 ? 2000 : 1 << 30),
          flags,
          window: Math.floor(rnd() * 65536),
          urgent: 0,
          options: sackBlocks ? { sackBlocks, timestamp: { tsVal: Math.floor(rnd() * 2 ** 32), tsEcr: Math.floor(rnd() * 2 ** 32) } } : {},
          payload,
        });
      }
      net.tracing = false;
      net.clock.advance(600_000);
      for (const c of [client, server]) {
        const info = c.info();
        expect(info.unacked).toBeGreaterThanOrEqual(0);
        expect(info.rcvWnd).toBeLessThanOrEqual(256 * 1024 + 8);
        // Either still working (everything sent was delivered) or properly dead.
        if (c.state === 'ESTABLISHED') expect(c.sendQueued === 0 || info.rtoTimeouts > 0).toBe(true);
      }
      expect(sink.received).toBeGreaterThan(0);
    }
  });
});

describe('listener close', () => {
  it('resets its half-open connections instead of accepting them later', () => {
    const net = new TestNet();
    let accepted = 0;
    const l = net.b.listen(80, () => accepted++);
    // Lose the client's handshake ACK so B stays in SYN-RECEIVED.
    net.filter = (from, seg) => !(from === 'a' && (seg.flags & (TH_SYN | TH_ACK)) === TH_ACK);
    const c = net.a.connect(net.ipB.addr, 80);
    net.run(() => c.state === 'ESTABLISHED', 2000, 'client established');
    expect(net.b.listening()[0]!.halfOpen).toBe(1);
    l.close();
    expect(net.b.connections()).toHaveLength(0);
    net.filter = null;
    let err: string | null = null;
    c.onError = (e) => (err = e);
    c.write(new Uint8Array(10));
    net.run(() => c.state === 'CLOSED', 5000, 'client reset');
    expect(err).toBe('ECONNRESET');
    expect(accepted).toBe(0);
  });
});

describe('PAWS (RFC 7323 §5)', () => {
  it('drops a segment whose timestamp is older than TS.Recent, answering with an ACK', () => {
    const net = new TestNet();
    const { client, server } = establish(net);
    const sink = new Sink(server);
    client.write(new Uint8Array(10).fill(1));
    net.run(() => sink.received === 10, 2000, 'first data');
    net.clock.advance(1000);
    const last = net.trace.filter((e) => e.from === 'a' && e.seg.payload.length > 0).at(-1)!.seg;
    const nextSeq = (last.seq + last.payload.length) >>> 0;
    const tsVal = last.options.timestamp!.tsVal;
    net.trace.length = 0;
    // An old duplicate from before: right sequence number, but a timestamp from the past.
    net.inject('a', {
      srcPort: client.localPort,
      dstPort: 80,
      seq: nextSeq,
      ack: last.ack,
      flags: TH_ACK,
      window: 1000,
      urgent: 0,
      options: { timestamp: { tsVal: (tsVal - 1000) >>> 0, tsEcr: 0 } },
      payload: new Uint8Array(5).fill(9),
    });
    net.clock.advance(100);
    expect(sink.received).toBe(10);
    expect(net.b.stats.pawsDrops).toBe(1);
    expect(net.trace.filter((e) => e.from === 'b').map((e) => e.seg.flags)).toEqual([TH_ACK]);
    // The same segment with a current timestamp is accepted.
    net.inject('a', {
      srcPort: client.localPort,
      dstPort: 80,
      seq: nextSeq,
      ack: last.ack,
      flags: TH_ACK,
      window: 1000,
      urgent: 0,
      options: { timestamp: { tsVal: (tsVal + 1000) >>> 0, tsEcr: 0 } },
      payload: new Uint8Array(5).fill(9),
    });
    net.clock.advance(100);
    expect(sink.received).toBe(15);
    expect(server.state).toBe('ESTABLISHED');
  });
});
