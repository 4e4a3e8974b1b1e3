/**
 * Issue 10's SYN flood against a whole built-in guest (RTL8139 model, driver, kernel, httpd) in
 * virtual time: spoofed SYNs arrive on the guest's wire as frames from random off-link sources,
 * and a host on the same wire fetches a page during the flood and right after it.
 */
import { describe, expect, it } from 'vitest';
import type { Ipv4Addr } from '../../net/addr.js';
import { ETH_HEADER_LEN, ETHERTYPE_IPV4, emitEthernetHeader } from '../../net/wire/ethernet.js';
import { emitIpv4Header, IPV4_HEADER_LEN } from '../../net/wire/ipv4.js';
import { emitTcp, IPPROTO_TCP, TH_SYN, tcpEncodingLength, type TcpRepr } from '../../net/wire/tcp.js';
import { mulberry32 } from '../../net/random.js';
import { rtl8139Driver } from '../../src/guest/drivers/rtl8139.js';
import { httpGet } from '../net/tcp-io.js';
import { hostOn, ip, testGuest } from './guest-vm.js';

const GUEST_MAC = new Uint8Array([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const HOST_MAC = new Uint8Array([2, 0, 0, 0, 0, 1]);

function synFrame(src: Ipv4Addr, dst: Ipv4Addr, tcp: TcpRepr, id: number): Uint8Array {
  const tcpLen = tcpEncodingLength(tcp);
  const frame = new Uint8Array(ETH_HEADER_LEN + IPV4_HEADER_LEN + tcpLen);
  emitEthernetHeader(frame, GUEST_MAC, HOST_MAC, ETHERTYPE_IPV4);
  emitIpv4Header(frame, ETH_HEADER_LEN, { id, ttl: 64, protocol: IPPROTO_TCP, src, dst, payloadLength: tcpLen });
  emitTcp(tcp, frame, ETH_HEADER_LEN + IPV4_HEADER_LEN, src, dst);
  return frame;
}

describe('built-in guest under a SYN flood', () => {
  it('its httpd answers at once during a 3000-SYN flood from random sources and right after it', () => {
    const g = testGuest({ drivers: [rtl8139Driver] });
    const host = hostOn(g.clock, g.wire);
    const guest = ip('10.0.0.2');
    expect(httpGet(g.clock, host, guest, '/')).toMatch(/^HTTP\/1\.1 200/); // ARP settled, service up
    const rnd = mulberry32(42);
    const perSecond = 500;
    const total = 3000;
    let sent = 0;
    const one = (): void => {
      const src = (0xc6120000 + Math.floor(rnd() * 0x20000)) >>> 0; // 198.18.0.0/15, off-link
      g.wire.send(
        synFrame(src, guest, {
          srcPort: 1024 + Math.floor(rnd() * 64000), dstPort: 80, seq: Math.floor(rnd() * 2 ** 32) >>> 0, ack: 0, flags: TH_SYN, window: 64240, urgent: 0,
          options: { mss: 1460, sackPermitted: true, windowScale: 7, timestamp: { tsVal: Math.floor(rnd() * 2 ** 32) >>> 0, tsEcr: 0 } }, payload: new Uint8Array(0),
        }, sent & 0xffff),
      );
      if (++sent < total) g.clock.setTimer(1000 / perSecond, one);
    };
    one();
    g.clock.runUntil(() => false, 2000);
    const during = g.clock.now();
    expect(httpGet(g.clock, host, guest, '/')).toMatch(/^HTTP\/1\.1 200/);
    expect(g.clock.now() - during).toBeLessThan(500); // no SYN retransmission (1 s) was needed
    expect(sent).toBeLessThan(total); // it was served while the flood went on
    g.clock.runUntil(() => sent === total, 10_000);
    const after = g.clock.now();
    expect(httpGet(g.clock, host, guest, '/')).toMatch(/^HTTP\/1\.1 200/);
    expect(g.clock.now() - after).toBeLessThan(500);
    const tcp = g.net.stack.tcp.stats;
    expect(tcp.passiveOpens + tcp.synCookiesSent).toBeGreaterThanOrEqual(total); // every SYN reached the stack
    expect(tcp.synCookiesValidated).toBe(2); // both fetches came in through a cookie
  }, 60_000);
});
