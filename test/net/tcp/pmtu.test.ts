/**
 * Path MTU discovery (RFC 1191 with RFC 5927's validation) and black-hole detection (RFC 4821's
 * idea): a router at MTU 1280 in the middle of a 1500-byte path drops DF datagrams that do not fit.
 */
import { describe, expect, it } from 'vitest';
import { ADDR_A, ADDR_B, establish, randomBytes, sha256, Sink, Source, TestNet } from './harness.js';

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
