import { describe, expect, it } from 'vitest';
import { formatIpv4 } from '../../../net/addr.js';
import { parseArp, emitArp } from '../../../net/wire/arp.js';
import { parseEthernet, buildEthernet } from '../../../net/wire/ethernet.js';
import { parseIcmp, emitIcmp } from '../../../net/wire/icmp.js';
import { parseIpv4, emitIpv4Header } from '../../../net/wire/ipv4.js';
import { parseTcp } from '../../../net/wire/tcp.js';
import { parseUdp, emitUdp } from '../../../net/wire/udp.js';

/**
 * Frames the Linux kernel sent to a netlab guest over tap2 (captured with tcpdump in a test
 * namespace): an ARP request, a 100-byte ping, curl's SYN with MSS/SACK/timestamps/window scale,
 * and a UDP datagram to echo. Each parser must read them as Linux meant them, re-emit the same
 * bytes where it emits, and turn every truncation into an error value.
 */
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
const ARP = hex('ffffffffffff0a9aea2ac54d080600010800060400010a9aea2ac54dac160001000000000000ac160002');
const PING = hex('5254001234560a9aea2ac54d0800450000803f6140004001a2ecac160001ac160002080077b611410001ea80066b00000000158e050000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263');
const SYN = hex('5254001234560a9aea2ac54d08004500003ca46a400040063e22ac160001ac1600029f780050e46da95a00000000a002faf021670000020405b40402080affe6a5fd000000000103030a');
const UDP = hex('5254001234560a9aea2ac54d08004500001ffbea40004011e6b3ac160001ac160002d2890007000b62ae68690a');

function ip(frame: Uint8Array) {
  const e = parseEthernet(frame);
  if (!e.ok) throw new Error(e.error);
  const h = parseIpv4(e.value.payload);
  if (!h.ok) throw new Error(h.error);
  return h.value;
}

describe('frames from a Linux peer', () => {
  it('ARP request: who has 172.22.0.2, tell 172.22.0.1', () => {
    const e = parseEthernet(ARP);
    expect(e.ok && e.value.etherType).toBe(0x0806);
    const a = parseArp(e.ok ? e.value.payload : new Uint8Array());
    expect(a.ok).toBe(true);
    if (!a.ok) return;
    expect(a.value.op).toBe(1);
    expect(formatIpv4(a.value.senderIp)).toBe('172.22.0.1');
    expect(formatIpv4(a.value.targetIp)).toBe('172.22.0.2');
    expect(Buffer.from(buildEthernet(ARP.subarray(0, 6), ARP.subarray(6, 12), 0x0806, emitArp(a.value))).equals(Buffer.from(ARP))).toBe(true);
  });

  it('ICMP echo request: header, checksum and payload as Linux sent them', () => {
    const h = ip(PING);
    expect([h.protocol, h.ttl, h.totalLength, h.flagsOffset]).toEqual([1, 64, 128, 0x4000]);
    const m = parseIcmp(h.payload);
    expect(m.ok).toBe(true);
    if (!m.ok) return;
    expect([m.value.type, m.value.code, m.value.rest >>> 16, m.value.rest & 0xffff]).toEqual([8, 0, 0x1141, 1]);
    expect(Buffer.from(emitIcmp(m.value)).equals(Buffer.from(h.payload))).toBe(true);
    const again = new Uint8Array(20);
    emitIpv4Header(again, 0, { id: h.id, flagsOffset: h.flagsOffset, ttl: h.ttl, protocol: 1, src: h.src, dst: h.dst, payloadLength: h.payload.length });
    expect(Buffer.from(again).equals(Buffer.from(h.packet.subarray(0, 20)))).toBe(true);
  });

  it("curl's SYN: MSS 1460, SACK permitted, timestamps, window scale 10", () => {
    const h = ip(SYN);
    const t = parseTcp(h.payload, { src: h.src, dst: h.dst });
    expect(t.ok).toBe(true);
    if (!t.ok) return;
    expect(t.value.dstPort).toBe(80);
    expect(t.value.flags).toBe(0x02);
    expect(t.value.window).toBe(64240);
    expect(t.value.options).toMatchObject({ mss: 1460, sackPermitted: true, windowScale: 10, timestamp: { tsVal: 0xffe6a5fd, tsEcr: 0 } });
  });

  it('UDP to echo: "hi\\n" with a valid checksum', () => {
    const h = ip(UDP);
    const u = parseUdp(h.payload, { src: h.src, dst: h.dst });
    expect(u.ok).toBe(true);
    if (!u.ok) return;
    expect(u.value.dstPort).toBe(7);
    expect(new TextDecoder().decode(u.value.payload)).toBe('hi\n');
    expect(Buffer.from(emitUdp(u.value, h.src, h.dst)).equals(Buffer.from(h.payload))).toBe(true);
  });

  it('every truncation of every frame is an error value at the layer it cuts, never a throw', () => {
    for (const frame of [ARP, PING, SYN, UDP]) {
      for (let n = 0; n < frame.length; n++) {
        const cut = frame.slice(0, n);
        const e = parseEthernet(cut);
        if (!e.ok) {
          expect(n).toBeLessThan(14);
          continue;
        }
        if (e.value.etherType === 0x0806) {
          expect(parseArp(e.value.payload).ok).toBe(false);
          continue;
        }
        const h = parseIpv4(e.value.payload);
        expect(h.ok).toBe(false); // the IPv4 total length no longer fits
      }
      // And the transport parsers on their own, cut at every length.
      const e = parseEthernet(frame);
      if (!e.ok || e.value.etherType !== 0x0800) continue;
      const parsed = parseIpv4(e.value.payload);
      if (!parsed.ok) throw new Error('valid frame');
      const h = parsed.value;
      for (let n = 0; n < h.payload.length; n++) {
        const p = h.payload.slice(0, n);
        const r = h.protocol === 1 ? parseIcmp(p) : h.protocol === 6 ? parseTcp(p, { src: h.src, dst: h.dst }) : parseUdp(p, { src: h.src, dst: h.dst });
        expect(r.ok).toBe(false);
      }
    }
  });

  it('corrupted fields are refused with the right error', () => {
    const bad = PING.slice();
    bad[14 + 10]! ^= 1; // header checksum
    expect(parseIpv4(bad.subarray(14))).toEqual({ ok: false, error: 'bad-checksum' });
    const v6 = PING.slice();
    v6[14] = 0x65;
    expect(parseIpv4(v6.subarray(14))).toEqual({ ok: false, error: 'bad-version' });
    const ihl = PING.slice();
    ihl[14] = 0x44;
    expect(parseIpv4(ihl.subarray(14))).toEqual({ ok: false, error: 'bad-length' });
    const h = ip(UDP);
    const udp = h.payload.slice();
    udp[8]! ^= 0xff;
    expect(parseUdp(udp, { src: h.src, dst: h.dst })).toEqual({ ok: false, error: 'bad-checksum' });
    const icmp = ip(PING).payload.slice();
    icmp[20]! ^= 0xff;
    expect(parseIcmp(icmp)).toEqual({ ok: false, error: 'bad-checksum' });
  });

  it('802.1Q: a tagged frame is parsed through the tag', () => {
    const tagged = new Uint8Array(PING.length + 4);
    tagged.set(PING.subarray(0, 12));
    tagged.set([0x81, 0x00, 0x00, 0x2a], 12);
    tagged.set(PING.subarray(12), 16);
    const e = parseEthernet(tagged);
    expect(e.ok && e.value.vlans).toEqual([42]);
    expect(e.ok && e.value.etherType).toBe(0x0800);
    expect(e.ok && parseIpv4(e.value.payload).ok).toBe(true);
  });
});
