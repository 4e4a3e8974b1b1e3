import { describe, expect, it } from 'vitest';
import { parseIpv4 } from '../../../net/addr.js';
import {
  BOOTP_MIN_LEN,
  BOOTREPLY,
  BOOTREQUEST,
  DHCP_FIXED_LEN,
  DhcpMessageType,
  DhcpOption,
  encodeDhcp,
  parseDhcp,
  type DhcpRepr,
} from '../../../net/wire/dhcp.js';

const ip = (s: string): number => parseIpv4(s)!;
const MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/**
 * A DHCPDISCOVER as ISC dhclient sends it (RFC 2131 figure 1 and §3, RFC 2132), built octet by
 * octet: no relay, no broadcast flag, asking for its last address and sending its host name,
 * padded with zeros to the 300-octet BOOTP minimum.
 */
function dhclientDiscover(): { bytes: Uint8Array; endAt: number } {
  const b = new Uint8Array(300);
  b[0] = 1; // op: BOOTREQUEST
  b[1] = 1; // htype: Ethernet
  b[2] = 6; // hlen
  b[3] = 0; // hops
  b.set([0x3c, 0x1f, 0x6d, 0x2a], 4); // xid
  b.set([0x00, 0x03], 8); // secs: 3 s into the exchange
  b.set([0x00, 0x00], 10); // flags: unicast replies are fine
  // ciaddr, yiaddr, siaddr, giaddr (12..27): all zero
  b.set(MAC, 28); // chaddr, then 10 octets of zero padding to 16
  // sname (44..107) and file (108..235): zero
  b.set([99, 130, 83, 99], 236); // magic cookie
  let o = 240;
  b.set([53, 1, 1], o); // DHCP message type: DISCOVER
  o += 3;
  b.set([50, 4, 10, 0, 2, 15], o); // requested IP address 10.0.2.15
  o += 6;
  b.set([12, 5, ...'guest'.split('').map((c) => c.charCodeAt(0))], o); // host name
  o += 7;
  // parameter request list as dhclient.conf's default "request" line orders it
  const prl = [1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42];
  b.set([55, prl.length, ...prl], o);
  o += 2 + prl.length;
  b[o] = 255; // end
  return { bytes: b, endAt: o };
}

describe('DHCP message parsing', () => {
  it('reads a DISCOVER as dhclient sends it', () => {
    const { bytes } = dhclientDiscover();
    const r = parseDhcp(bytes);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const m = r.value;
    expect(m.op).toBe(BOOTREQUEST);
    expect(m.htype).toBe(1);
    expect(m.xid).toBe(0x3c1f6d2a);
    expect(m.secs).toBe(3);
    expect(m.flags).toBe(0);
    expect([m.ciaddr, m.yiaddr, m.siaddr, m.giaddr]).toEqual([0, 0, 0, 0]);
    expect(Array.from(m.chaddr)).toEqual(MAC);
    expect(m.sname).toBe('');
    expect(m.file).toBe('');
    expect(m.options.messageType).toBe(DhcpMessageType.DISCOVER);
    expect(m.options.requestedIp).toBe(ip('10.0.2.15'));
    expect(m.options.hostname).toBe('guest');
    expect(m.options.parameterRequestList).toEqual([1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42]);
    expect(m.options.other).toBeUndefined();
  });

  it('emits the same DISCOVER octet for octet', () => {
    const { bytes } = dhclientDiscover();
    const r = parseDhcp(bytes);
    if (!r.ok) throw new Error(r.error);
    expect(encodeDhcp(r.value)).toEqual(bytes);
  });

  it('refuses every truncation before the END option with an error value, and accepts cut padding', () => {
    const { bytes, endAt } = dhclientDiscover();
    for (let n = 0; n < bytes.length; n++) {
      const r = parseDhcp(bytes.subarray(0, n));
      if (n <= endAt) {
        expect(r, `length ${n}`).toEqual({ ok: false, error: 'truncated' });
      } else {
        expect(r.ok, `length ${n}`).toBe(true);
      }
    }
  });

  it('refuses a wrong magic cookie, op or hardware length', () => {
    const cookie = dhclientDiscover().bytes;
    cookie[239] = 0x64;
    expect(parseDhcp(cookie)).toEqual({ ok: false, error: 'bad-cookie' });
    const op = dhclientDiscover().bytes;
    op[0] = 3;
    expect(parseDhcp(op)).toEqual({ ok: false, error: 'bad-op' });
    const hlen = dhclientDiscover().bytes;
    hlen[2] = 17;
    expect(parseDhcp(hlen)).toEqual({ ok: false, error: 'bad-hlen' });
  });

  it('refuses known options whose length they cannot have', () => {
    const b = new Uint8Array(300);
    b.set(dhclientDiscover().bytes.subarray(0, 240));
    b.set([53, 2, 1, 1, 255], 240); // message type is one octet
    expect(parseDhcp(b)).toEqual({ ok: false, error: 'bad-option-length' });
    b.set([53, 1, 1, 54, 3, 10, 0, 2, 255], 240); // server identifier of 3 octets
    expect(parseDhcp(b)).toEqual({ ok: false, error: 'bad-option-length' });
    b.set([53, 1, 1, 6, 6, 10, 0, 2, 3, 10, 0, 255], 240); // DNS list not a multiple of 4
    expect(parseDhcp(b)).toEqual({ ok: false, error: 'bad-option-length' });
  });

  it('refuses an option running past the end of the message', () => {
    const b = new Uint8Array(DHCP_FIXED_LEN + 5);
    b.set(dhclientDiscover().bytes.subarray(0, 240));
    b.set([53, 1, 1, 12, 9], 240); // host name of 9 octets, none present
    expect(parseDhcp(b)).toEqual({ ok: false, error: 'truncated' });
  });

  it('skips PAD, keeps unknown options raw and joins split instances (RFC 3396)', () => {
    const b = new Uint8Array(300);
    b.set(dhclientDiscover().bytes.subarray(0, 240));
    b.set([0, 0, 53, 1, 3, 12, 2, 0x61, 0x62, 0, 224, 2, 0xde, 0xad, 12, 1, 0x63, 255], 240);
    const r = parseDhcp(b);
    if (!r.ok) throw new Error(r.error);
    expect(r.value.options.messageType).toBe(DhcpMessageType.REQUEST);
    expect(r.value.options.hostname).toBe('abc');
    expect(r.value.options.other).toEqual([{ code: 224, data: Uint8Array.of(0xde, 0xad) }]);
  });

  it('reads options continued in file and sname when option 52 says so', () => {
    const b = new Uint8Array(300);
    b.set(dhclientDiscover().bytes.subarray(0, 240));
    b.set([53, 1, 2, 52, 1, 3, 255], 240); // OFFER, overload: both fields
    b.set([54, 4, 10, 0, 2, 2, 255], 108); // file: server identifier
    b.set([51, 4, 0, 1, 0x51, 0x80, 255], 44); // sname: lease 86400
    const r = parseDhcp(b);
    if (!r.ok) throw new Error(r.error);
    expect(r.value.options.overload).toBe(3);
    expect(r.value.options.serverId).toBe(ip('10.0.2.2'));
    expect(r.value.options.leaseTime).toBe(86400);
    expect(r.value.file).toBe('');
    expect(r.value.sname).toBe('');
  });

  it('does not throw on random garbage after a valid header', () => {
    let seed = 1;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
    for (let i = 0; i < 500; i++) {
      const b = new Uint8Array(240 + (i % 80));
      b.set(dhclientDiscover().bytes.subarray(0, 240));
      for (let j = 240; j < b.length; j++) b[j] = rnd();
      expect(() => parseDhcp(b)).not.toThrow();
    }
  });
});

describe('DHCP message emission', () => {
  const offer: DhcpRepr = {
    op: BOOTREPLY,
    htype: 1,
    hops: 0,
    xid: 0x3c1f6d2a,
    secs: 0,
    flags: 0x8000,
    ciaddr: 0,
    yiaddr: ip('10.0.2.15'),
    siaddr: ip('10.0.2.2'),
    giaddr: 0,
    chaddr: Uint8Array.from(MAC),
    sname: '',
    file: '',
    options: {
      messageType: DhcpMessageType.OFFER,
      serverId: ip('10.0.2.2'),
      leaseTime: 86400,
      subnetMask: ip('255.255.255.0'),
      routers: [ip('10.0.2.2')],
      dnsServers: [ip('10.0.2.3')],
    },
  };

  it('lays out an OFFER as RFC 2131 figure 1 and RFC 2132 say', () => {
    const b = encodeDhcp(offer);
    expect(b.length).toBe(BOOTP_MIN_LEN);
    expect(Array.from(b.subarray(0, 4))).toEqual([2, 1, 6, 0]);
    expect(Array.from(b.subarray(10, 12))).toEqual([0x80, 0x00]);
    expect(Array.from(b.subarray(16, 20))).toEqual([10, 0, 2, 15]);
    expect(Array.from(b.subarray(236, 240))).toEqual([99, 130, 83, 99]);
    expect(Array.from(b.subarray(240, 243))).toEqual([DhcpOption.DHCP_MESSAGE_TYPE, 1, 2]);
    expect(Array.from(b.subarray(243, 249))).toEqual([54, 4, 10, 0, 2, 2]);
    expect(Array.from(b.subarray(249, 255))).toEqual([51, 4, 0, 1, 0x51, 0x80]);
    const r = parseDhcp(b);
    if (!r.ok) throw new Error(r.error);
    expect(r.value).toEqual(offer);
  });

  it('splits an option longer than 255 octets and reads it back whole', () => {
    const long = 'h'.repeat(300);
    const b = encodeDhcp({ ...offer, options: { messageType: 2, hostname: long } });
    expect(b[243]).toBe(12);
    expect(b[244]).toBe(255);
    expect(b[243 + 257]).toBe(12);
    expect(b[243 + 258]).toBe(45);
    const r = parseDhcp(b);
    if (!r.ok) throw new Error(r.error);
    expect(r.value.options.hostname).toBe(long);
  });

  it('throws only for caller errors', () => {
    expect(() => encodeDhcp({ ...offer, sname: 's'.repeat(64) })).toThrow(RangeError);
    expect(() => encodeDhcp({ ...offer, options: { other: [{ code: 255, data: new Uint8Array(1) }] } })).toThrow(RangeError);
  });
});
