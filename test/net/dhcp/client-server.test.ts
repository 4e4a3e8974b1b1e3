import { describe, expect, it } from 'vitest';
import { formatIpv4, parseIpv4, type Ipv4Addr } from '../../../net/addr.js';
import { VirtualClock } from '../../../net/clock.js';
import { DhcpClient, renewalTimes, type DhcpLease } from '../../../net/dhcp/client.js';
import { DhcpServer, type DhcpServerOptions } from '../../../net/dhcp/server.js';
import {
  BOOTREQUEST,
  DHCP_FLAG_BROADCAST,
  DhcpMessageType,
  encodeDhcp,
  ethernetClientId,
  formatDhcpMessageType,
  parseDhcp,
  type DhcpOptions,
} from '../../../net/wire/dhcp.js';

const ip = (s: string): Ipv4Addr => parseIpv4(s)!;
const S = 1000;
const MAC_A = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const MAC_B = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x57);

interface Sent {
  at: number;
  type: string;
  src: string;
  dst: string;
  ciaddr: string;
  flags: number;
  xid: number;
  options: DhcpOptions;
}

/**
 * One client and one server on a segment with 1 ms of delay each way. `serverUp` switches the
 * server off the segment (its state is kept); `dropRequests` makes it hear DISCOVERs only.
 */
function segment(opts: { mac?: Uint8Array; random?: () => number; server?: DhcpServerOptions; clock?: VirtualClock; server0?: DhcpServer } = {}) {
  const clock = opts.clock ?? new VirtualClock();
  const server = opts.server0 ?? new DhcpServer({ clock, ...opts.server });
  const sent: Sent[] = [];
  const bound: Array<{ at: number; lease: DhcpLease }> = [];
  const lost: number[] = [];
  const seg = { serverUp: true, dropRequests: false, server };
  const client = new DhcpClient({
    clock,
    mac: opts.mac ?? MAC_A,
    hostname: 'guest',
    random: opts.random ?? (() => 0.5),
    send: (d) => {
      const m = parseDhcp(d.payload);
      if (!m.ok) throw new Error(`client sent a bad message: ${m.error}`);
      const type = formatDhcpMessageType(m.value.options.messageType);
      sent.push({
        at: clock.now(),
        type,
        src: formatIpv4(d.src),
        dst: formatIpv4(d.dst),
        ciaddr: formatIpv4(m.value.ciaddr),
        flags: m.value.flags,
        xid: m.value.xid,
        options: m.value.options,
      });
      if (!seg.serverUp || (seg.dropRequests && type === 'REQUEST')) return;
      clock.setTimer(1, () => {
        for (const r of seg.server.input(d.payload, d.src)) clock.setTimer(1, () => client.input(r.payload, seg.server.serverAddress));
      });
    },
    onBound: (lease) => bound.push({ at: clock.now(), lease }),
    onLost: () => lost.push(clock.now()),
  });
  return { clock, server, client, sent, bound, lost, seg };
}

describe('DHCP client and server', () => {
  it('binds with slirp defaults: DISCOVER, OFFER, REQUEST, ACK', () => {
    const { clock, client, sent, bound } = segment();
    client.start();
    expect(clock.runUntil(() => client.state === 'BOUND', 10 * S)).toBe(true);
    expect(sent.map((s) => s.type)).toEqual(['DISCOVER', 'REQUEST']);
    for (const s of sent) {
      expect([s.src, s.dst, s.ciaddr]).toEqual(['0.0.0.0', '255.255.255.255', '0.0.0.0']);
      expect(s.flags).toBe(DHCP_FLAG_BROADCAST);
      expect(s.xid).toBe(sent[0]!.xid);
    }
    expect(sent[1]!.options.serverId).toBe(ip('10.0.2.2'));
    expect(sent[1]!.options.requestedIp).toBe(ip('10.0.2.15'));
    expect(sent[1]!.options.hostname).toBe('guest');
    expect(sent[1]!.options.clientId).toEqual(ethernetClientId(MAC_A));
    expect(bound).toHaveLength(1);
    const lease = bound[0]!.lease;
    expect(formatIpv4(lease.address)).toBe('10.0.2.15');
    expect(lease.prefixLength).toBe(24);
    expect(lease.router).toBe(ip('10.0.2.2'));
    expect(lease.dnsServers).toEqual([ip('10.0.2.3')]);
    expect(lease.serverId).toBe(ip('10.0.2.2'));
    expect(lease.leaseSeconds).toBe(86400);
    expect([lease.renewalSeconds, lease.rebindingSeconds]).toEqual([43200, 75600]);
  });

  it('gives a returning client the same address and another client the next one', () => {
    const clock = new VirtualClock();
    const server = new DhcpServer({ clock });
    const a = segment({ clock, server0: server });
    a.client.start();
    clock.runUntil(() => a.client.state === 'BOUND', 10 * S);
    const b = segment({ clock, server0: server, mac: MAC_B });
    b.client.start();
    clock.runUntil(() => b.client.state === 'BOUND', 10 * S);
    a.client.stop();
    a.client.start();
    clock.runUntil(() => a.client.state === 'BOUND', 10 * S);
    expect(a.bound.map((x) => formatIpv4(x.lease.address))).toEqual(['10.0.2.15', '10.0.2.15']);
    expect(formatIpv4(b.client.lease!.address)).toBe('10.0.2.16');
  });

  it('renews at T1 by unicast to the server, which extends the lease', () => {
    const { clock, client, sent, bound, lost } = segment();
    client.start();
    clock.runUntil(() => client.state === 'BOUND', 10 * S);
    const t0 = bound[0]!.lease.startedAt;
    clock.runUntilTime(t0 + 43200 * S - 1);
    expect(sent).toHaveLength(2);
    clock.advance(10);
    expect(sent).toHaveLength(3);
    const renew = sent[2]!;
    expect(renew.type).toBe('REQUEST');
    expect(renew.at).toBe(t0 + 43200 * S);
    expect([renew.src, renew.dst, renew.ciaddr]).toEqual(['10.0.2.15', '10.0.2.2', '10.0.2.15']);
    expect(renew.options.serverId).toBeUndefined();
    expect(renew.options.requestedIp).toBeUndefined();
    expect(renew.flags).toBe(0);
    expect(client.state).toBe('BOUND');
    expect(bound).toHaveLength(2);
    expect(bound[1]!.lease.startedAt).toBe(t0 + 43200 * S);
    // The original expiry passes without loss; the next renewal comes T1 after the first one.
    clock.runUntilTime(t0 + 86400 * S + 10);
    expect(lost).toEqual([]);
    expect(sent.filter((s) => s.type === 'REQUEST').map((s) => s.at)).toEqual([2, t0 + 43200 * S, t0 + 86400 * S]);
  });

  it('rebinds at T2 and loses the lease at expiry when the server is gone', () => {
    const { clock, client, sent, bound, lost, seg } = segment();
    client.start();
    clock.runUntil(() => client.state === 'BOUND', 10 * S);
    const t0 = bound[0]!.lease.startedAt;
    seg.serverUp = false;
    clock.runUntilTime(t0 + 86400 * S - 1);
    const after = sent.slice(2).map((s) => ({ t: (s.at - t0) / S, dst: s.dst, ciaddr: s.ciaddr }));
    // RENEWING: unicast at T1, then after half the time left to T2 while that is over 60 s.
    const renewing = after.filter((s) => s.t < 75600);
    expect(renewing[0]).toEqual({ t: 43200, dst: '10.0.2.2', ciaddr: '10.0.2.15' });
    expect(renewing[1]!.t).toBe(43200 + (75600 - 43200) / 2);
    for (const s of renewing) expect(s.dst).toBe('10.0.2.2');
    // REBINDING: broadcast at T2, then after half the time left to expiry.
    const rebinding = after.filter((s) => s.t >= 75600);
    expect(rebinding[0]).toEqual({ t: 75600, dst: '255.255.255.255', ciaddr: '10.0.2.15' });
    expect(rebinding[1]!.t).toBe(75600 + (86400 - 75600) / 2);
    for (const s of rebinding) expect(s.dst).toBe('255.255.255.255');
    // Retransmissions stop when the wait would fall under 60 s.
    for (const phase of [renewing, rebinding]) {
      const gaps = phase.slice(1).map((s, i) => s.t - phase[i]!.t);
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(60);
    }
    expect(client.state).toBe('REBINDING');
    expect(lost).toEqual([]);
    clock.advance(10);
    expect(lost).toEqual([t0 + 86400 * S]);
    expect(client.lease).toBeNull();
    expect(client.state).toBe('SELECTING');
    expect(sent.at(-1)!.type).toBe('DISCOVER');
    // The DISCOVER suggests the address it had.
    expect(sent.at(-1)!.options.requestedIp).toBe(ip('10.0.2.15'));
  });

  it('rebinding reaches a server that lost unicast, and the lease continues', () => {
    const { clock, client, bound, lost, seg } = segment();
    client.start();
    clock.runUntil(() => client.state === 'BOUND', 10 * S);
    const t0 = bound[0]!.lease.startedAt;
    seg.serverUp = false;
    clock.runUntilTime(t0 + 75600 * S - 1);
    expect(client.state).toBe('RENEWING');
    seg.serverUp = true;
    clock.advance(10);
    expect(client.state).toBe('BOUND');
    expect(bound).toHaveLength(2);
    expect(lost).toEqual([]);
  });

  it('retransmits DISCOVER after 4, 8, 16, 32, 64, 64 s', () => {
    const { clock, client, sent, seg } = segment();
    seg.serverUp = false;
    client.start();
    clock.runUntilTime(200 * S);
    expect(sent.map((s) => s.at / S)).toEqual([0, 4, 12, 28, 60, 124, 188]);
    expect(sent.every((s) => s.type === 'DISCOVER' && s.xid === sent[0]!.xid)).toBe(true);
    expect(sent.map((s) => s.options.messageType)).toEqual(new Array(7).fill(DhcpMessageType.DISCOVER));
    expect(client.stats.retransmits).toBe(6);
  });

  it('randomises each retransmission by up to a second', () => {
    const late = segment({ random: () => 0.999 });
    late.seg.serverUp = false;
    late.client.start();
    late.clock.runUntilTime(31 * S);
    const early = segment({ random: () => 0 });
    early.seg.serverUp = false;
    early.client.start();
    early.clock.runUntilTime(30 * S);
    // random() → 0.999 adds 0.998 s to each wait; random() → 0 takes a second off.
    expect(late.sent.map((s) => s.at)).toEqual([0, 4998, 13996, 30994]);
    expect(early.sent.map((s) => s.at / S)).toEqual([0, 3, 10, 25]);
  });

  it('starts over from DISCOVER when REQUESTs go unanswered', () => {
    const { clock, client, sent, seg } = segment();
    seg.dropRequests = true;
    client.start();
    clock.runUntilTime(130 * S);
    expect(sent.map((s) => [s.type, s.at / S])).toEqual([
      ['DISCOVER', 0],
      ['REQUEST', 0.002],
      ['REQUEST', 4.002],
      ['REQUEST', 12.002],
      ['REQUEST', 28.002],
      ['REQUEST', 60.002],
      ['DISCOVER', 124.002],
      ['REQUEST', 124.004],
      ['REQUEST', 128.004],
    ]);
  });

  it('INIT-REBOOT keeps a remembered address; a wrong one is NAKed and DHCP starts over', () => {
    const good = segment();
    good.client.start({ requestedAddress: ip('10.0.2.15') });
    good.clock.runUntil(() => good.client.state === 'BOUND', 10 * S);
    expect(good.sent.map((s) => s.type)).toEqual(['REQUEST']);
    expect(good.sent[0]!.options.serverId).toBeUndefined();
    expect(formatIpv4(good.client.lease!.address)).toBe('10.0.2.15');

    const bad = segment({ random: () => 0.5 });
    bad.client.start({ requestedAddress: ip('192.168.1.77') });
    bad.clock.runUntil(() => bad.client.state === 'BOUND', 60 * S);
    expect(bad.sent.map((s) => s.type)).toEqual(['REQUEST', 'DISCOVER', 'REQUEST']);
    // RFC 2131 §4.4.1: 1–10 s in INIT before starting over (5.5 s with random() = 0.5).
    expect(bad.sent[1]!.at - bad.sent[0]!.at).toBe(2 + 5.5 * S);
    expect(bad.sent[1]!.options.requestedIp).toBeUndefined();
    expect(formatIpv4(bad.client.lease!.address)).toBe('10.0.2.15');
  });

  it('a NAK while renewing loses the lease at once', () => {
    const { clock, client, bound, lost, seg, sent } = segment();
    client.start();
    clock.runUntil(() => client.state === 'BOUND', 10 * S);
    const t0 = bound[0]!.lease.startedAt;
    // The server restarts, and its new configuration gives the address to someone else.
    seg.server = new DhcpServer({ clock, poolSize: 1 });
    seg.server.reserve(MAC_B, ip('10.0.2.15'));
    clock.runUntilTime(t0 + 43200 * S + 2);
    expect(lost).toEqual([t0 + 43200 * S + 2]);
    expect(client.lease).toBeNull();
    expect(client.state).toBe('INIT');
    clock.advance(10 * S);
    expect(client.state).toBe('SELECTING');
    expect(sent.at(-1)!.type).toBe('DISCOVER');
    expect(seg.server.stats.naks).toBe(1);
  });

  it('ignores replies with another xid or another MAC', () => {
    const { clock, client, server, sent, seg } = segment();
    seg.serverUp = false;
    client.start();
    const discover = sent[0]!;
    const wrongXid = server.input(discoverFrom(MAC_A, (discover.xid + 1) >>> 0), 0);
    client.input(wrongXid[0]!.payload, ip('10.0.2.2'));
    const wrongMac = server.input(discoverFrom(MAC_B, discover.xid), 0);
    client.input(wrongMac[0]!.payload, ip('10.0.2.2'));
    client.input(Uint8Array.of(1, 2, 3), ip('10.0.2.2'));
    expect(client.state).toBe('SELECTING');
    expect(client.stats).toMatchObject({ ignored: 2, malformed: 1 });
    clock.advance(1);
  });

  it('release sends DHCPRELEASE to the server, which frees the address', () => {
    const clock = new VirtualClock();
    const server = new DhcpServer({ clock, poolSize: 1 });
    const a = segment({ clock, server0: server });
    a.client.start();
    clock.runUntil(() => a.client.state === 'BOUND', 10 * S);
    const b = segment({ clock, server0: server, mac: MAC_B });
    b.client.start();
    clock.advance(3 * S);
    expect(b.client.state).toBe('SELECTING'); // pool of one is taken
    a.client.release();
    expect(a.client.state).toBe('STOPPED');
    const rel = a.sent.at(-1)!;
    expect([rel.type, rel.src, rel.dst, rel.ciaddr]).toEqual(['RELEASE', '10.0.2.15', '10.0.2.2', '10.0.2.15']);
    expect(rel.options.serverId).toBe(ip('10.0.2.2'));
    clock.runUntil(() => b.client.state === 'BOUND', 20 * S);
    expect(formatIpv4(b.client.lease!.address)).toBe('10.0.2.15');
    expect(a.lost).toEqual([]);
  });

  it('uses T1 and T2 from the server when consistent, else 0.5 and 0.875 of the lease', () => {
    expect(renewalTimes(1000, 100, 200)).toEqual({ t1: 100, t2: 200 });
    expect(renewalTimes(1000, 900, 800)).toEqual({ t1: 500, t2: 800 });
    expect(renewalTimes(1000, undefined, 2000)).toEqual({ t1: 500, t2: 875 });
  });
});

function discoverFrom(mac: Uint8Array, xid: number, options: DhcpOptions = {}, flags = 0): Uint8Array {
  return encodeDhcp({
    op: BOOTREQUEST,
    htype: 1,
    hops: 0,
    xid,
    secs: 0,
    flags,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: 0,
    chaddr: mac,
    sname: '',
    file: '',
    options: { messageType: DhcpMessageType.DISCOVER, ...options },
  });
}

/** A RENEWING-style REQUEST (ciaddr set, no server id). */
function requestFrom(mac: Uint8Array, ciaddr: Ipv4Addr, xid = 1): Uint8Array {
  const m = parseDhcp(discoverFrom(mac, xid, { messageType: DhcpMessageType.REQUEST, clientId: ethernetClientId(mac) }));
  if (!m.ok) throw new Error(m.error);
  return encodeDhcp({ ...m.value, ciaddr });
}

describe('DHCP server', () => {
  const parse = (b: Uint8Array) => {
    const r = parseDhcp(b);
    if (!r.ok) throw new Error(r.error);
    return r.value;
  };

  it('broadcasts to a client that asks for it, and otherwise unicasts to yiaddr at chaddr', () => {
    const server = new DhcpServer();
    const [bcast] = server.input(discoverFrom(MAC_A, 7, {}, DHCP_FLAG_BROADCAST), 0);
    expect(bcast!.dst).toBe(0xffffffff);
    expect(bcast!.dstMac).toBeUndefined();
    const [ucast] = server.input(discoverFrom(MAC_B, 8), 0);
    expect(formatIpv4(ucast!.dst)).toBe('10.0.2.16');
    expect(ucast!.dstMac).toEqual(MAC_B);
    const offer = parse(ucast!.payload);
    expect(offer.xid).toBe(8);
    expect(offer.options).toMatchObject({
      messageType: DhcpMessageType.OFFER,
      serverId: ip('10.0.2.2'),
      leaseTime: 86400,
      subnetMask: ip('255.255.255.0'),
      routers: [ip('10.0.2.2')],
      dnsServers: [ip('10.0.2.3')],
    });
  });

  it('hands out 16 addresses from 10.0.2.15 and then no more', () => {
    const server = new DhcpServer();
    const got: string[] = [];
    for (let i = 0; i < 17; i++) {
      const mac = Uint8Array.of(2, 0, 0, 0, 0, i);
      const r = server.input(discoverFrom(mac, i, {}, DHCP_FLAG_BROADCAST), 0);
      if (r[0]) got.push(formatIpv4(parse(r[0].payload).yiaddr));
    }
    expect(got).toHaveLength(16);
    expect(got[0]).toBe('10.0.2.15');
    expect(got[15]).toBe('10.0.2.30');
    expect(server.stats.poolExhausted).toBe(1);
  });

  it('reserve(mac) fixes an address; reserve("any") gives the first client a network of its own', () => {
    const server = new DhcpServer();
    server.reserve(MAC_B, ip('10.0.2.20'));
    server.reserve('any', ip('10.10.10.33'));
    const a = parse(server.input(discoverFrom(MAC_A, 1, {}, DHCP_FLAG_BROADCAST), 0)[0]!.payload);
    expect(formatIpv4(a.yiaddr)).toBe('10.10.10.33');
    expect(a.options.routers).toEqual([ip('10.10.10.2')]);
    expect(a.options.serverId).toBe(ip('10.10.10.2'));
    expect(a.options.dnsServers).toEqual([ip('10.10.10.3')]);
    const b = parse(server.input(discoverFrom(MAC_B, 2, {}, DHCP_FLAG_BROADCAST), 0)[0]!.payload);
    expect(formatIpv4(b.yiaddr)).toBe('10.0.2.20');
    // A third client asking for the reserved .20 is offered a pool address instead.
    const c = parse(server.input(discoverFrom(Uint8Array.of(2, 0, 0, 0, 0, 9), 3, { requestedIp: ip('10.0.2.20') }, DHCP_FLAG_BROADCAST), 0)[0]!.payload);
    expect(formatIpv4(c.yiaddr)).toBe('10.0.2.15');
    // The client with the "any" reservation completes its REQUEST to the per-network server id.
    const req = discoverFrom(MAC_A, 1, { messageType: DhcpMessageType.REQUEST, serverId: ip('10.10.10.2'), requestedIp: ip('10.10.10.33') }, DHCP_FLAG_BROADCAST);
    const ack = parse(server.input(req, 0)[0]!.payload);
    expect(ack.options.messageType).toBe(DhcpMessageType.ACK);
    expect(formatIpv4(ack.yiaddr)).toBe('10.10.10.33');
  });

  it('answers INFORM with configuration but no lease, unicast to ciaddr', () => {
    const server = new DhcpServer();
    const inform = parse(discoverFrom(MAC_A, 5, { messageType: DhcpMessageType.INFORM }));
    const replies = server.input(encodeDhcp({ ...inform, ciaddr: ip('10.0.2.99') }), ip('10.0.2.99'));
    expect(replies).toHaveLength(1);
    expect(formatIpv4(replies[0]!.dst)).toBe('10.0.2.99');
    const ack = parse(replies[0]!.payload);
    expect(ack.options.messageType).toBe(DhcpMessageType.ACK);
    expect(ack.yiaddr).toBe(0);
    expect(ack.options.leaseTime).toBeUndefined();
    expect(ack.options.dnsServers).toEqual([ip('10.0.2.3')]);
  });

  it('stays silent when the client chose another server, and NAKs an address on the wrong network', () => {
    const server = new DhcpServer();
    server.input(discoverFrom(MAC_A, 1, {}, DHCP_FLAG_BROADCAST), 0);
    const other = discoverFrom(MAC_A, 1, { messageType: DhcpMessageType.REQUEST, serverId: ip('10.0.2.9'), requestedIp: ip('10.0.2.77') });
    expect(server.input(other, 0)).toEqual([]);
    const reboot = discoverFrom(MAC_A, 2, { messageType: DhcpMessageType.REQUEST, requestedIp: ip('192.168.0.5') });
    const [nak] = server.input(reboot, 0);
    expect(parse(nak!.payload).options.messageType).toBe(DhcpMessageType.NAK);
    expect(nak!.dst).toBe(0xffffffff);
    expect(server.input(Uint8Array.of(1, 2, 3), 0)).toEqual([]);
    expect(server.stats.malformed).toBe(1);
  });

  it('ACKs a renewal from a client it has no record of when the address is free, unicast to ciaddr', () => {
    const server = new DhcpServer();
    const [ack] = server.input(requestFrom(MAC_A, ip('10.0.2.17')), ip('10.0.2.17'));
    expect(formatIpv4(ack!.dst)).toBe('10.0.2.17');
    expect(ack!.dstMac).toBeUndefined();
    expect(parse(ack!.payload)).toMatchObject({ yiaddr: ip('10.0.2.17'), ciaddr: ip('10.0.2.17'), options: { messageType: DhcpMessageType.ACK } });
    // The same address renewed by another client is refused.
    const [nak] = server.input(requestFrom(MAC_B, ip('10.0.2.17')), ip('10.0.2.17'));
    expect(parse(nak!.payload).options.messageType).toBe(DhcpMessageType.NAK);
    expect(server.leases().map((l) => [l.state, formatIpv4(l.address)])).toEqual([['bound', '10.0.2.17']]);
  });

  it('offers lapse and leases expire when a clock is given', () => {
    const clock = new VirtualClock();
    const server = new DhcpServer({ clock, poolSize: 1, leaseSeconds: 100 });
    expect(server.input(discoverFrom(MAC_A, 1, {}, DHCP_FLAG_BROADCAST), 0)).toHaveLength(1);
    expect(server.input(discoverFrom(MAC_B, 2, {}, DHCP_FLAG_BROADCAST), 0)).toHaveLength(0);
    clock.advance(61 * S);
    expect(server.input(discoverFrom(MAC_B, 3, {}, DHCP_FLAG_BROADCAST), 0)).toHaveLength(1);
  });
});
