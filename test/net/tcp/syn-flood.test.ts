/**
 * SYN floods in virtual time (issue 10): thousands of SYNs from random spoofed sources that never
 * complete, against a listener on B, while host A is a legitimate client. The flood's SYN-ACKs go
 * to addresses nobody answers (B's IP layer has no route to them), exactly as spoofed sources.
 */
import { describe, expect, it } from 'vitest';
import type { Ipv4Addr } from '../../../net/addr.js';
import { IPPROTO_TCP, type IpDatagramInfo } from '../../../net/ip-layer.js';
import { mulberry32 } from '../../../net/random.js';
import type { TcpConnection } from '../../../net/tcp/connection.js';
import type { TcpLayer } from '../../../net/tcp/layer.js';
import { emitTcp, TH_ACK, TH_RST, TH_SYN, tcpEncodingLength, type TcpRepr } from '../../../net/wire/tcp.js';
import { collect, sendAll } from '../tcp-io.js';
import { ADDR_A, ADDR_B, randomBytes, sha256, Sink, Source, TestNet, type TestNetOptions } from './harness.js';

interface Flood {
  sent: number;
  /** Virtual time the last SYN goes in. */
  endsAt: number;
}

/**
 * `perSecond` SYNs for `seconds` to `to`:`port`, each from a random address in 198.18.0.0/15
 * (RFC 2544 benchmarking space, never A) with a random port and ISN and the options a Linux client
 * sends, delivered straight into the layer as the wire would.
 */
function synFlood(net: TestNet, to: TcpLayer, port: number, perSecond: number, seconds: number, seed = 99): Flood {
  const rnd = mulberry32(seed);
  const total = perSecond * seconds;
  const gap = 1000 / perSecond;
  const flood: Flood = { sent: 0, endsAt: net.clock.now() + (total - 1) * gap };
  const one = (): void => {
    const src = (0xc6120000 + Math.floor(rnd() * 0x20000)) >>> 0;
    inject(to, src, ADDR_B, {
      srcPort: 1024 + Math.floor(rnd() * 64000),
      dstPort: port,
      seq: Math.floor(rnd() * 2 ** 32) >>> 0,
      ack: 0,
      flags: TH_SYN,
      window: 64240,
      urgent: 0,
      options: { mss: 1460, sackPermitted: true, timestamp: { tsVal: Math.floor(rnd() * 2 ** 32) >>> 0, tsEcr: 0 }, windowScale: 7 },
      payload: new Uint8Array(0),
    });
    flood.sent++;
    if (flood.sent < total) net.clock.setTimer(gap, one);
  };
  one();
  return flood;
}

/** Hand `repr` from `src` to `layer` as a checksummed segment, as the IP layer would. */
function inject(layer: TcpLayer, src: Ipv4Addr, dst: Ipv4Addr, repr: TcpRepr): void {
  const bytes = new Uint8Array(tcpEncodingLength(repr));
  emitTcp(repr, bytes, 0, src, dst);
  const info: IpDatagramInfo = { src, dst, protocol: IPPROTO_TCP, ttl: 64, netif: 'eth0', foreignDestination: false, broadcast: false };
  layer.input(info, bytes, bytes);
}

/** An echo server on B: every byte back, then FIN after the client's. */
function echoServer(conn: TcpConnection): void {
  conn.onData = (d) => {
    conn.write(d.slice());
    conn.recved(d.length);
  };
  conn.onEnd = () => conn.shutdown();
}

/** Connect A → B:port, echo `data`, and return when all of it came back (or throw). */
function echoFromA(net: TestNet, port: number, data: Uint8Array, limitMs: number): { conn: TcpConnection; connectedAt: number; doneAt: number } {
  const start = net.clock.now();
  const conn = net.a.connect(ADDR_B, port);
  let connectedAt = -1;
  sendAll(conn, data);
  const pump = conn.onConnected!;
  conn.onConnected = () => {
    connectedAt = net.clock.now() - start;
    pump();
  };
  const back = collect(conn);
  net.run(() => back.ended, limitMs, 'echo during/after flood');
  expect(Buffer.compare(back.bytes(), Buffer.from(data))).toBe(0);
  return { conn, connectedAt, doneAt: net.clock.now() - start };
}

function floodNet(opts: TestNetOptions = {}): TestNet {
  return new TestNet({ seed: 7, trace: false, ...opts });
}

describe('SYN flood', () => {
  it('during a 10 s flood of 5000 SYNs a legitimate client connects at once and exchanges data', () => {
    const net = floodNet();
    net.b.listen(80, echoServer);
    const flood = synFlood(net, net.b, 80, 500, 10);
    net.clock.advance(2000); // the queue has been full for a while
    expect(net.b.listening()[0]!.halfOpen).toBe(128);
    const data = randomBytes(100_000, 3);
    const r = echoFromA(net, 80, data, 5000);
    expect(r.connectedAt).toBeLessThanOrEqual(20); // one round trip (2 × 5 ms), not a SYN retransmission
    expect(net.clock.now()).toBeLessThan(flood.endsAt); // all of it while the flood went on
    expect(net.b.stats.synCookiesSent).toBeGreaterThan(500);
    expect(net.b.stats.synCookiesValidated).toBe(1);
    expect(net.b.stats.synCookiesFailed).toBe(0);
    // The flood left no state beyond the queue bound: only cookies answered the rest.
    net.clock.advance(flood.endsAt - net.clock.now());
    expect(net.b.connections().filter((c) => c.state === 'SYN_RECEIVED').length).toBeLessThanOrEqual(128);
  });

  it('right after the flood a new client connects at once, and the queue drains within seconds', () => {
    const net = floodNet();
    net.b.listen(80, echoServer);
    const flood = synFlood(net, net.b, 80, 500, 10);
    net.clock.advance(flood.endsAt - net.clock.now() + 1);
    const r = echoFromA(net, 80, new TextEncoder().encode('GET / HTTP/1.0\r\n\r\n'), 2000);
    expect(r.connectedAt).toBeLessThanOrEqual(20);
    // Linux's young/old rule: while the queue is more than half full, old half-open entries get
    // as few as 2 SYN-ACK retries instead of 6, so within 1 + 2 + 4 s of the flood's end at least
    // half the queue is free again for stateful handshakes (not after 127 s).
    net.clock.advance(8000);
    expect(net.b.listening()[0]!.halfOpen).toBeLessThanOrEqual(64);
    expect(net.b.stats.synQueuePruned).toBeGreaterThan(0);
    // And a client after that gets a stateful handshake again (no cookie).
    const cookiesBefore = net.b.stats.synCookiesValidated;
    echoFromA(net, 80, new Uint8Array([1, 2, 3]), 2000);
    expect(net.b.stats.synCookiesValidated).toBe(cookiesBefore);
  });

  it('without SYN cookies, the flood\'s old entries make room: a client right after it gets in on its first SYN', () => {
    const net = floodNet({ tcpB: { synCookies: false } });
    net.b.listen(80, echoServer);
    const flood = synFlood(net, net.b, 80, 500, 10);
    net.clock.advance(flood.endsAt - net.clock.now() + 1);
    const r = echoFromA(net, 80, new Uint8Array([7, 8, 9]), 2000);
    expect(r.connectedAt).toBeLessThanOrEqual(20);
    expect(net.b.stats.synCookiesSent).toBe(0);
    expect(net.b.stats.synQueuePruned).toBeGreaterThan(0);
  });

  it('a cookie connection keeps window scale, SACK and timestamps (in TSval) and moves 2 MB both ways under loss', () => {
    const net = floodNet({ path: { loss: 0.01, delayMs: 5 } });
    let server: TcpConnection | null = null;
    net.b.listen(80, (c) => (server = c));
    synFlood(net, net.b, 80, 500, 30);
    net.clock.advance(1000);
    const client = net.a.connect(ADDR_B, 80);
    net.run(() => server !== null && client.state === 'ESTABLISHED', 10_000, 'handshake');
    expect(net.b.stats.synCookiesValidated).toBe(1);
    const s = server!.info();
    const c = client.info();
    expect(s.iss).toBe(c.irs);
    expect(s.sack && c.sack && s.timestamps && c.timestamps).toBe(true);
    expect(s.sndWscale).toBe(c.rcvWscale); // what A offered, carried in TSval
    expect(s.rcvWscale).toBe(c.sndWscale); // what B's cookie SYN-ACK offered
    expect(s.rcvWscale).toBeGreaterThan(0);
    expect(s.sendMss).toBe(1460 - 12); // table MSS 1460 less the timestamp option
    const up = randomBytes(2_000_000, 11);
    const down = randomBytes(2_000_000, 12);
    const atB = new Sink(server!);
    const atA = new Sink(client);
    new Source(client, up);
    new Source(server!, down);
    net.run(() => atB.ended && atA.ended, 120_000, 'bulk both ways');
    expect(atB.received).toBe(up.length);
    expect(atA.received).toBe(down.length);
    expect(atB.digest()).toBe(sha256(up));
    expect(atA.digest()).toBe(sha256(down));
    expect(server!.info().retransmits).toBeGreaterThan(0); // the loss was real and SACK/RTO coped
  });

  it('without timestamps a cookie carries only the MSS, rounded down to the table', () => {
    const net = floodNet({ tcpA: { timestamps: false }, mtu: 1400 });
    let server: TcpConnection | null = null;
    net.b.listen(80, (c) => (server = c));
    synFlood(net, net.b, 80, 500, 5);
    net.clock.advance(1000);
    const client = net.a.connect(ADDR_B, 80);
    net.run(() => server !== null && client.state === 'ESTABLISHED', 10_000, 'handshake');
    expect(net.b.stats.synCookiesValidated).toBe(1);
    const s = server!.info();
    expect(s.timestamps || s.sack).toBe(false);
    expect(s.sndWscale).toBe(0);
    expect(s.rcvWscale).toBe(0);
    expect(client.info().sndWscale).toBe(0);
    expect(s.sendMss).toBe(1300); // A's MSS 1360 (MTU 1400) → table entry 1300
    const data = randomBytes(300_000, 4);
    const atB = new Sink(server!);
    new Source(client, data);
    net.run(() => atB.ended, 60_000, 'transfer');
    expect(atB.received).toBe(data.length);
  });

  it('an ACK with a bad cookie is answered with RST and counted; no connection is made', () => {
    const net = floodNet({ trace: true });
    net.b.listen(80, echoServer);
    synFlood(net, net.b, 80, 500, 5);
    net.clock.advance(1000);
    const before = net.b.connections().length;
    const forged: TcpRepr = { srcPort: 5555, dstPort: 80, seq: 1000, ack: 0x12345678, flags: TH_ACK, window: 1000, urgent: 0, options: {}, payload: new Uint8Array(0) };
    net.inject('a', forged);
    net.clock.advance(20);
    expect(net.b.stats.synCookiesFailed).toBe(1);
    expect(net.b.connections().length).toBe(before);
    const rst = net.sent('b').filter((e) => e.seg.flags & TH_RST && e.seg.dstPort === 5555);
    expect(rst).toHaveLength(1);
    expect(rst[0]!.seg.seq).toBe(0x12345678); // <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.1)
  });

  it('a cookie with an echoed TSval we could not have sent (reserved bit) fails', () => {
    const net = floodNet({ trace: true });
    net.b.listen(80, echoServer);
    synFlood(net, net.b, 80, 500, 5);
    net.clock.advance(1000);
    // Take a real cookie SYN-ACK from B, then answer it with its TSecr bit 5 set.
    net.filter = (from, seg) => !(from === 'a' && seg.flags === TH_ACK); // A's own ACK never arrives
    const client = net.a.connect(ADDR_B, 80);
    net.clock.advance(20);
    const synAck = net.sent('b').find((e) => e.seg.flags === (TH_SYN | TH_ACK) && e.seg.dstPort === client.localPort)!.seg;
    const ts = synAck.options.timestamp!;
    net.filter = null;
    const ack = (tsEcr: number): TcpRepr => ({
      srcPort: client.localPort, dstPort: 80, seq: synAck.ack, ack: (synAck.seq + 1) >>> 0, flags: TH_ACK, window: 1000, urgent: 0,
      options: { timestamp: { tsVal: 5, tsEcr } }, payload: new Uint8Array(0),
    });
    net.inject('a', ack((ts.tsVal | 0x20) >>> 0));
    net.clock.advance(20);
    expect(net.b.stats.synCookiesFailed).toBe(1);
    expect(net.b.stats.synCookiesValidated).toBe(0);
    net.inject('a', ack(ts.tsVal)); // the genuine echo still works
    net.clock.advance(20);
    expect(net.b.stats.synCookiesValidated).toBe(1);
  });

  it('an ACK for no connection when no cookie went out lately is a plain RST, not a cookie check', () => {
    const net = floodNet();
    net.b.listen(80, echoServer);
    inject(net.b, ADDR_A, ADDR_B, { srcPort: 5555, dstPort: 80, seq: 1, ack: 2, flags: TH_ACK, window: 1000, urgent: 0, options: {}, payload: new Uint8Array(0) });
    expect(net.b.stats.synCookiesFailed).toBe(0);
    expect(net.b.stats.noListener).toBe(1);
    expect(net.b.stats.resetsOut).toBe(1);
  });

  it('accept-any (the user-mode network\'s NAT) has one bounded SYN queue and answers a flood with cookies', () => {
    const net = floodNet();
    const accepted: TcpConnection[] = [];
    let asked = 0;
    net.b.acceptAny = () => {
      asked++;
      return { onAccept: (c) => accepted.push(c) };
    };
    synFlood(net, net.b, 443, 500, 4);
    net.clock.advance(2000);
    expect(net.b.connections().length).toBeLessThanOrEqual(128);
    expect(net.b.stats.synCookiesSent).toBeGreaterThan(500);
    const client = net.a.connect(ADDR_B, 443);
    net.run(() => client.state === 'ESTABLISHED' && accepted.length === 1, 1000, 'handshake via accept-any');
    expect(net.b.stats.synCookiesValidated).toBe(1);
    expect(accepted[0]!.remotePort).toBe(client.localPort);
    expect(asked).toBeGreaterThan(1000); // every SYN, and the cookie's ACK once more
  });
});

describe('SYN queue under pressure (Linux young/old rule)', () => {
  /** `n` SYNs from distinct spoofed sources at t = 0 to a listener with a queue of 16. */
  function halfOpen(n: number): TestNet {
    const net = floodNet();
    net.b.listen(80, echoServer, { synQueueLimit: 16 });
    for (let i = 0; i < n; i++) {
      inject(net.b, (0xc6120000 + i) >>> 0, ADDR_B, { srcPort: 2000 + i, dstPort: 80, seq: i * 1000, ack: 0, flags: TH_SYN, window: 1000, urgent: 0, options: { mss: 1460 }, payload: new Uint8Array(0) });
    }
    return net;
  }

  it('a full queue of never-answered entries gives them 2 SYN-ACK retries (t = 1, 3 s) and frees them at 7 s', () => {
    const net = halfOpen(16);
    net.clock.advance(6999);
    expect(net.b.listening()[0]!.halfOpen).toBe(16);
    net.clock.advance(2);
    expect(net.b.listening()[0]!.halfOpen).toBe(0);
    expect(net.b.stats.synQueuePruned).toBe(16);
    expect(net.b.stats.attemptFails).toBe(0); // pruned silently, as Linux drops a request
  });

  it('a queue no more than half full keeps every retry: entries last through all 6 (1, 3, 7, 15, 31, 63 s; gone at 123 s)', () => {
    const net = halfOpen(8);
    net.clock.advance(122_999);
    expect(net.b.listening()[0]!.halfOpen).toBe(8);
    net.clock.advance(2);
    expect(net.b.listening()[0]!.halfOpen).toBe(0);
    expect(net.b.stats.synQueuePruned).toBe(0);
  });
});

describe('SYN cookie key', () => {
  /** The cookie ISN B answers a fixed SYN with when its queue holds nothing (limit 0). */
  function cookieFor(opts: TestNetOptions): number {
    const net = new TestNet({ trace: true, ...opts });
    net.b.listen(80, () => undefined, { synQueueLimit: 0 });
    net.inject('a', { srcPort: 4000, dstPort: 80, seq: 777, ack: 0, flags: TH_SYN, window: 1000, urgent: 0, options: { mss: 1460 }, payload: new Uint8Array(0) });
    net.clock.advance(20);
    expect(net.b.stats.synCookiesSent).toBe(1);
    return net.sent('b').find((e) => e.seg.flags === (TH_SYN | TH_ACK))!.seg.seq;
  }

  it('comes from the seeded random source when one is given, so a lab reproduces from its seed', () => {
    expect(cookieFor({ seed: 5 })).toBe(cookieFor({ seed: 5 }));
    expect(cookieFor({ seed: 5 })).not.toBe(cookieFor({ seed: 6 }));
  });

  it('comes from node:crypto by default (Math.random is no secret), or from secretBytes when given', () => {
    // Same seed for everything else: only the key differs.
    expect(cookieFor({ seed: 5, tcpB: { random: Math.random } })).not.toBe(cookieFor({ seed: 5, tcpB: { random: Math.random } }));
    const fixed = (n: number): Uint8Array => new Uint8Array(n).fill(9);
    expect(cookieFor({ seed: 5, tcpB: { random: Math.random, secretBytes: fixed } })).toBe(cookieFor({ seed: 6, tcpB: { random: Math.random, secretBytes: fixed } }));
  });
});
