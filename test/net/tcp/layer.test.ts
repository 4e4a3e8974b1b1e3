/** TcpLayer: demultiplexing, listeners, accept-any, ICMP errors, API errors. */
import { describe, expect, it } from 'vitest';
import type { TcpConnection } from '../../../net/tcp/connection.js';
import { TcpApiError } from '../../../net/tcp/layer.js';
import { emitTcp, TH_ACK, TH_RST, TH_SYN } from '../../../net/wire/tcp.js';
import { ADDR_A, ADDR_B, Sink, TestNet } from './harness.js';

describe('TcpLayer', () => {
  it('refuses a second listener on the same address and port, and bad ports', () => {
    const net = new TestNet();
    net.b.listen(80, () => undefined);
    expect(() => net.b.listen(80, () => undefined)).toThrow(TcpApiError);
    net.b.listen(80, () => undefined, { addr: ADDR_B }); // a specific address beside the wildcard
    expect(() => net.b.listen(0, () => undefined)).toThrow(TcpApiError);
    expect(() => net.a.connect(ADDR_B, 70000)).toThrow(TcpApiError);
    expect(() => net.a.connect(0x08080808, 80)).toThrow(/no route/);
  });

  it('prefers the listener bound to the exact address over the wildcard', () => {
    const net = new TestNet();
    const got: string[] = [];
    net.b.listen(80, () => got.push('any'));
    net.b.listen(80, () => got.push('exact'), { addr: ADDR_B });
    net.a.connect(ADDR_B, 80);
    net.clock.advance(100);
    expect(got).toEqual(['exact']);
  });

  it('gives different connections different ephemeral ports, and demultiplexes them', () => {
    const net = new TestNet();
    const servers: TcpConnection[] = [];
    net.b.listen(80, (c) => servers.push(c));
    const clients = [0, 1, 2].map(() => net.a.connect(ADDR_B, 80));
    expect(new Set(clients.map((c) => c.localPort)).size).toBe(3);
    for (const c of clients) expect(c.localPort).toBeGreaterThanOrEqual(49152);
    net.run(() => servers.length === 3, 1000, 'three accepts');
    const sinks = servers.map((s) => new Sink(s));
    clients.forEach((c, i) => c.write(new Uint8Array(10 * (i + 1))));
    // Each server connection gets exactly what its own client wrote.
    const expected = (s: TcpConnection): number => 10 * (clients.findIndex((c) => c.localPort === s.remotePort) + 1);
    net.run(() => sinks.every((k, i) => k.received === expected(servers[i]!)), 2000, 'data');
    expect(net.a.connections()).toHaveLength(3);
  });

  it('accept-any takes SYNs no listener claims; refusing it answers with RST', () => {
    const net = new TestNet();
    const offered: number[] = [];
    const accepted: TcpConnection[] = [];
    net.b.acceptAny = (info) => {
      offered.push(info.localPort);
      if (info.localPort === 1234) return true;
      if (info.localPort === 2345) return { onAccept: (c) => accepted.push(c), options: { recvBufferSize: 8192 } };
      return false;
    };
    net.b.onAcceptAny = (c) => accepted.push(c);
    const c1 = net.a.connect(ADDR_B, 1234);
    const c2 = net.a.connect(ADDR_B, 2345);
    const c3 = net.a.connect(ADDR_B, 3456);
    let refused: string | null = null;
    c3.onError = (e) => (refused = e);
    net.run(() => accepted.length === 2 && refused !== null, 2000, 'accept-any');
    expect(offered.sort()).toEqual([1234, 2345, 3456]);
    expect(c1.state).toBe('ESTABLISHED');
    expect(c2.state).toBe('ESTABLISHED');
    expect(refused).toBe('ECONNREFUSED');
    expect(accepted.find((c) => c.localPort === 2345)!.info().rcvWnd).toBeLessThanOrEqual(8192);
    expect(net.b.stats.acceptAnyAccepted).toBe(2);
    expect(net.b.stats.acceptAnyRefused).toBe(1);
  });

  it('an ICMP port unreachable aborts an opening connection; other ICMP errors do not', () => {
    const net = new TestNet();
    net.filter = (from) => from !== 'a';
    const c = net.a.connect(ADDR_B, 80);
    let err: string | null = null;
    c.onError = (e) => (err = e);
    const header = new Uint8Array(8);
    header[0] = c.localPort >> 8;
    header[1] = c.localPort & 0xff;
    header[3] = 80;
    net.a.icmpError(3, 1, { src: ADDR_A, dst: ADDR_B, transportHeader: header }); // host unreachable: soft
    expect(c.state).toBe('SYN_SENT');
    net.a.icmpError(3, 3, { src: ADDR_A, dst: ADDR_B, transportHeader: header });
    expect(c.state).toBe('CLOSED');
    expect(err).toBe('ECONNREFUSED');
  });

  it('drops and counts malformed and mis-checksummed segments without answering', () => {
    const net = new TestNet();
    const info = { src: ADDR_A, dst: ADDR_B, protocol: 6, ttl: 64, netif: 'eth0', foreignDestination: false, broadcast: false };
    net.b.input(info, new Uint8Array(10), new Uint8Array(30));
    const bogus = new Uint8Array(20);
    bogus[12] = 0x50;
    bogus[13] = TH_SYN;
    net.b.input(info, bogus, new Uint8Array(40)); // checksum 0: wrong
    net.clock.advance(10);
    expect(net.b.stats.malformed).toBe(1);
    expect(net.b.stats.badChecksums).toBe(1);
    expect(net.trace.filter((e) => e.from === 'b')).toHaveLength(0);
    // A SYN to a closed port is answered with RST, but not when it came as a broadcast
    // (RFC 1122 §4.2.3.10: TCP is unicast only).
    const syn = { srcPort: 1, dstPort: 99, seq: 1, ack: 0, flags: TH_SYN, window: 0, urgent: 0, options: {}, payload: new Uint8Array(0) };
    const buf = new Uint8Array(20);
    emitTcp(syn, buf, 0, ADDR_A, ADDR_B);
    net.b.input({ ...info, broadcast: true }, buf, buf);
    net.clock.advance(10);
    expect(net.trace.filter((e) => e.from === 'b')).toHaveLength(0);
    expect(net.b.stats.dropped).toBe(1);
    net.b.input(info, buf, buf);
    net.clock.advance(10);
    expect(net.trace.filter((e) => e.from === 'b').map((e) => e.seg.flags)).toEqual([TH_RST | TH_ACK]);
  });
});
