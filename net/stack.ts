import { formatIpv4, formatMac, isBroadcastMac, MAC_BROADCAST, type Ipv4Addr } from './addr.js';
import { netDebug, type NetDebug } from './debug.js';
import type { Clock } from './clock.js';
import { CHECKSUM_PARTIAL, GSO_MAX_IP, type FramePort, type TxInfo } from './frame-port.js';
import { IP_HEADROOM, IPPROTO_ICMP, IPPROTO_TCP, type IpDatagramInfo, type IpLayer, type IpOutput, type IpSendResult, type TransportProtocol } from './ip-layer.js';
import { Netif } from './netif.js';
import { ArpCache, DEFAULT_ARP_OPTIONS, type ArpOptions } from './ip/arp-cache.js';
import { DEFAULT_REASSEMBLY, Reassembler } from './ip/reassembly.js';
import { TcpLayer } from './tcp/layer.js';
import type { TcpConfig } from './tcp/config.js';
import { UdpLayer } from './udp/layer.js';
import { ARP_REPLY, ARP_REQUEST, emitArp, parseArp } from './wire/arp.js';
import { emitEthernetHeader, ETH_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, parseEthernet } from './wire/ethernet.js';
import { emitIcmp, ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PARAM_PROBLEM, ICMP_TIME_EXCEEDED, ICMP_UNREACH_HOST, ICMP_UNREACH_NEEDFRAG, parseIcmp } from './wire/icmp.js';
import { emitIpv4Header, IP_DF, IP_MF, IP_OFFMASK, IPV4_HEADER_LEN, parseIpv4 } from './wire/ipv4.js';
import { allocBytes, copyBytes } from './byte-slab.js';

/**
 * The IPv4 stack: interfaces, ARP, IPv4 input/output with fragmentation and reassembly, ICMP, and
 * the UDP and TCP layers on top. Pure: frames come in through each interface's FramePort receiver
 * and go out through its `send`; time only through the Clock.
 *
 * Router mode (the user-mode network's gateway): datagrams for addresses that are not the stack's
 * own are delivered to the transports marked `foreignDestination`, so a NAT can terminate them.
 */
export interface StackOptions {
  clock: Clock;
  name?: string;
  random?: () => number;
  routerMode?: boolean;
  tcp?: Partial<TcpConfig>;
  arp?: Partial<ArpOptions>;
  defaultTtl?: number;
  /** Per-protocol debug sinks (`--debug arp,tcp`); all off when absent. */
  debug?: NetDebug;
}

export interface IpStats {
  rxPackets: number;
  rxDelivered: number;
  rxBadHeader: number;
  rxBadChecksum: number;
  rxNotForUs: number;
  rxUnknownProtocol: number;
  txPackets: number;
  txNoRoute: number;
  txTooBig: number;
  fragmentsCreated: number;
  icmpIn: number;
  icmpOut: number;
  icmpEchoRepliesSent: number;
  icmpBad: number;
}

export interface PingResult {
  seq: number;
  rttMs: number;
  ttl: number;
  bytes: number;
}

export class Stack implements IpLayer {
  readonly clock: Clock;
  readonly name: string;
  readonly netifs: Netif[] = [];
  readonly arp: ArpCache;
  readonly tcp: TcpLayer;
  readonly udp: UdpLayer;
  readonly reassembler: Reassembler;
  readonly routerMode: boolean;
  readonly stats: IpStats = {
    rxPackets: 0, rxDelivered: 0, rxBadHeader: 0, rxBadChecksum: 0, rxNotForUs: 0, rxUnknownProtocol: 0,
    txPackets: 0, txNoRoute: 0, txTooBig: 0, fragmentsCreated: 0, icmpIn: 0, icmpOut: 0, icmpEchoRepliesSent: 0, icmpBad: 0,
  };
  private readonly transports = new Map<number, TransportProtocol>();
  private nextId: number;
  private readonly ttl: number;
  private readonly pings = new Map<number, { sent: number; resolve: (r: PingResult | null) => void; timer: { cancel(): void } }>();
  private pingId: number;
  /** ICMP echo requests to foreign addresses in router mode (a NAT may answer them). */
  onForeignEcho: ((src: Ipv4Addr, dst: Ipv4Addr, id: number, seq: number, data: Uint8Array, netif: Netif) => void) | null = null;

  /** Per-protocol debug sinks; the transports and the DHCP/DNS clients on this stack read theirs here. */
  readonly debug: NetDebug;

  constructor(options: StackOptions) {
    this.clock = options.clock;
    this.debug = options.debug ?? netDebug();
    this.name = options.name ?? 'stack';
    this.routerMode = options.routerMode ?? false;
    this.ttl = options.defaultTtl ?? 64;
    const random = options.random ?? Math.random;
    this.nextId = Math.floor(random() * 0x10000);
    this.pingId = Math.floor(random() * 0x10000);
    this.arp = new ArpCache(
      this.clock,
      { ...DEFAULT_ARP_OPTIONS, ...options.arp },
      (netif, addr) => this.sendArpRequest(this.netif(netif)!, addr),
      (netif, mac, packets) => {
        const a = this.debug.arp;
        if (a.on) a.debug(`${netif}: resolved → ${formatMac(mac)}, sending ${packets.length} queued packet${packets.length === 1 ? '' : 's'}`);
        const n = this.netif(netif);
        if (n) for (const p of packets) this.transmitIp(n, mac, p);
      },
      (addr, packets) => {
        const a = this.debug.arp;
        if (a.on) a.debug(`${formatIpv4(addr)} unresolved: gave up, ${packets.length} queued packet${packets.length === 1 ? '' : 's'} dropped (host unreachable)`);
        // RFC 1122 §2.3.2.2: the sender learns the host is unreachable. Local transports only.
        for (const p of packets) this.deliverUnreachable(p);
      },
    );
    this.reassembler = new Reassembler(this.clock, DEFAULT_REASSEMBLY, (first) => {
      if (first) this.sendIcmpError(first, ICMP_TIME_EXCEEDED, 1);
    });
    this.tcp = new TcpLayer(this, { random, ...options.tcp }, this.debug.tcp);
    this.udp = new UdpLayer(this, this.debug.udp);
    this.register(this.tcp);
    this.register(this.udp);
  }

  register(t: TransportProtocol): void {
    this.transports.set(t.protocol, t);
  }

  // ------------------------------------------------------------------ interfaces

  addNetif(name: string, port: FramePort, mac: Uint8Array, mtu = 1500): Netif {
    const n = new Netif(name, port, mac.slice(0, 6), mtu);
    this.netifs.push(n);
    // A partial checksum came from a sender in this host that trusted its own data: as valid. The
    // stack keeps nothing of a frame past the call (what it keeps, it copies): 'copied'.
    port.setReceiver((frame, rx) => {
      this.input(n, frame, rx !== undefined && (rx.checksumValid === true || rx.checksumPartial === true));
      return 'copied';
    });
    return n;
  }

  netif(name: string): Netif | undefined {
    return this.netifs.find((n) => n.name === name);
  }

  /** Give an interface its address (0 clears it) and bring it up; announces it with a gratuitous ARP. */
  configure(n: Netif, addr: Ipv4Addr, prefixLength: number, gateway: Ipv4Addr = 0): void {
    n.addr = addr;
    n.prefixLength = prefixLength;
    n.gateway = gateway;
    n.up = true;
    if (addr !== 0) this.gratuitousArp(n, addr);
  }

  gratuitousArp(n: Netif, addr: Ipv4Addr): void {
    this.arp.stats.gratuitousSent++;
    this.sendFrame(n, MAC_BROADCAST, ETHERTYPE_ARP, emitArp({ op: ARP_REQUEST, senderMac: n.mac, senderIp: addr, targetMac: new Uint8Array(6), targetIp: addr }));
  }

  // ------------------------------------------------------------------ IpLayer

  isLocal(addr: Ipv4Addr): boolean {
    return this.netifs.some((n) => n.owns(addr));
  }

  /** The route to `dst`: connected first, then the first interface with a default gateway. */
  route(dst: Ipv4Addr): { netif: Netif; nextHop: Ipv4Addr } | null {
    const n = this.netifFor(dst);
    return n ? { netif: n, nextHop: nextHopVia(n, dst) } : null;
  }

  /** The interface `route` picks, without building the route (asked per segment by TCP). */
  private netifFor(dst: Ipv4Addr): Netif | null {
    if (dst === 0xffffffff) return this.netifs.find((x) => x.up) ?? null;
    for (const n of this.netifs) if (n.up && (n.onLink(dst) || dst === n.broadcast)) return n;
    for (const n of this.netifs) if (n.up && n.gateway !== 0) return n;
    return null;
  }

  datagramBuffer(dst: Ipv4Addr, protocol: number, payloadLength: number): Uint8Array {
    const size = IP_HEADROOM + payloadLength;
    const n = this.netifFor(dst);
    // Lent only when output will hand the frame to the port at once, whole (not fragmented): a
    // packet kept in the ARP queue or looped back would be overwritten by the next loan.
    if (n?.port.lendTx && goesWhole(n, protocol, IPV4_HEADER_LEN + payloadLength) && this.leavesAtOnce(n, dst)) {
      const lent = n.port.lendTx(size);
      if (lent) return lent;
    }
    return allocBytes(size);
  }

  sourceFor(dst: Ipv4Addr): Ipv4Addr | null {
    const r = this.route(dst);
    return r ? r.netif.addr : null;
  }

  mtuFor(dst: Ipv4Addr): number {
    return this.netifFor(dst)?.mtu ?? 576;
  }

  gsoFor(dst: Ipv4Addr): number {
    const n = this.netifFor(dst);
    return n && n.port.gso === true ? GSO_MAX_IP : 0;
  }

  gsoChecksumPartialFor(dst: Ipv4Addr, datagramLength: number): boolean {
    const n = this.netifFor(dst);
    return n !== null && datagramLength > n.mtu && n.port.gsoChecksumPartial === true && this.leavesAtOnce(n, dst);
  }

  /**
   * Whether `output` hands a datagram to `dst` to the port in the same call: not to ourselves or a
   * broadcast, and to a neighbour already in the ARP cache (anything else is kept for later).
   */
  private leavesAtOnce(n: Netif, dst: Ipv4Addr): boolean {
    return !n.owns(dst) && dst !== 0xffffffff && dst !== n.broadcast && this.arp.lookup(nextHopVia(n, dst)) !== null;
  }

  output(d: IpOutput): IpSendResult {
    const r = this.route(d.dst);
    if (!r) {
      this.stats.txNoRoute++;
      if (this.debug.ip.on) this.debug.ip.debug(`drop (no route) ${formatIpv4(d.src)} → ${formatIpv4(d.dst)} proto ${d.protocol}`);
      return 'no-route';
    }
    const n = r.netif;
    const id = this.nextId;
    this.nextId = (this.nextId + 1) & 0xffff;
    const ttl = d.ttl ?? this.ttl;
    const total = IPV4_HEADER_LEN + d.payload.length;
    if (goesWhole(n, d.protocol, total)) {
      // Built with headroom for the Ethernet header, so the frame goes out without another copy;
      // a transport that left IP_HEADROOM in front of its payload is not copied at all.
      const inPlace = d.framed !== undefined && d.framed.length === IP_HEADROOM + d.payload.length;
      const frame = inPlace ? d.framed! : allocBytes(ETH_HEADER_LEN + total);
      emitIpv4Header(frame, ETH_HEADER_LEN, { id, ttl, tos: d.tos ?? 0, flagsOffset: d.dontFragment ? IP_DF : 0, protocol: d.protocol, src: d.src, dst: d.dst, payloadLength: d.payload.length });
      if (!inPlace) frame.set(d.payload, ETH_HEADER_LEN + IPV4_HEADER_LEN);
      return this.sendIp(n, r.nextHop, frame.subarray(ETH_HEADER_LEN), frame, d.checksumPartial === true ? CHECKSUM_PARTIAL : undefined);
    }
    if (d.dontFragment) {
      this.stats.txTooBig++;
      if (this.debug.ip.on) this.debug.ip.debug(`drop (too big, DF) ${formatIpv4(d.src)} → ${formatIpv4(d.dst)} ${total} bytes > MTU ${n.mtu}`);
      return 'dropped';
    }
    // Fragment (RFC 791 §3.2): 8-byte aligned pieces, MF on all but the last.
    const chunk = (n.mtu - IPV4_HEADER_LEN) & ~7;
    if (this.debug.ip.on) this.debug.ip.debug(`fragment id ${id} ${formatIpv4(d.src)} → ${formatIpv4(d.dst)}: ${total} bytes in ${Math.ceil(d.payload.length / chunk)} pieces (MTU ${n.mtu})`);
    let result: IpSendResult = 'sent';
    for (let off = 0; off < d.payload.length; off += chunk) {
      const piece = d.payload.subarray(off, Math.min(d.payload.length, off + chunk));
      const more = off + chunk < d.payload.length;
      const pkt = allocBytes(IPV4_HEADER_LEN + piece.length);
      emitIpv4Header(pkt, 0, { id, ttl, tos: d.tos ?? 0, flagsOffset: (more ? IP_MF : 0) | (off >> 3), protocol: d.protocol, src: d.src, dst: d.dst, payloadLength: piece.length });
      pkt.set(piece, IPV4_HEADER_LEN);
      this.stats.fragmentsCreated++;
      const s = this.sendIp(n, r.nextHop, pkt);
      if (s === 'dropped' || s === 'unreachable') result = s;
    }
    return result;
  }

  /** `framed`, when given, is `pkt` with room for the Ethernet header in front of it; `info` goes to the port with it. */
  private sendIp(n: Netif, nextHop: Ipv4Addr, pkt: Uint8Array, framed?: Uint8Array, info?: TxInfo): IpSendResult {
    this.stats.txPackets++;
    const dst = (pkt[16]! << 24 | pkt[17]! << 16 | pkt[18]! << 8 | pkt[19]!) >>> 0;
    if (dst === 0xffffffff || dst === n.broadcast) return this.transmitIp(n, MAC_BROADCAST, pkt, framed) ? 'sent' : 'dropped';
    if (n.owns(dst)) {
      // To ourselves: loop back through the input path on the next clock turn, as lo would.
      const own = framed ? copyBytes(pkt) : pkt;
      this.clock.setTimer(0, () => this.inputIp(n, own, false));
      return 'sent';
    }
    const mac = this.arp.lookup(nextHop);
    if (mac) return this.transmitIp(n, mac, pkt, framed, info) ? 'sent' : 'dropped';
    // A packet built in place may sit in memory a driver lent (datagramBuffer): what waits for ARP is a copy.
    const q = this.arp.enqueue(n.name, nextHop, framed ? copyBytes(pkt) : pkt);
    if (this.debug.arp.on) this.debug.arp.debug(`${n.name}: ${formatIpv4(nextHop)} not in cache: packet ${q === 'queued' ? 'queued' : 'dropped (queue full or entry failed)'}`);
    return q === 'queued' ? 'queued' : 'dropped';
  }

  private transmitIp(n: Netif, mac: Uint8Array, pkt: Uint8Array, framed?: Uint8Array, info?: TxInfo): boolean {
    if (framed !== undefined && framed.length === ETH_HEADER_LEN + pkt.length) {
      // The packet was built with headroom: fill in the Ethernet header in place.
      emitEthernetHeader(framed, mac, n.mac, ETHERTYPE_IPV4);
      return this.sendRaw(n, framed, info);
    }
    return this.sendFrame(n, mac, ETHERTYPE_IPV4, pkt, info);
  }

  private sendFrame(n: Netif, dstMac: Uint8Array, type: number, payload: Uint8Array, info?: TxInfo): boolean {
    const frame = allocBytes(ETH_HEADER_LEN + payload.length);
    emitEthernetHeader(frame, dstMac, n.mac, type);
    frame.set(payload, ETH_HEADER_LEN);
    return this.sendRaw(n, frame, info);
  }

  private sendRaw(n: Netif, frame: Uint8Array, info?: TxInfo): boolean {
    const ok = n.port.send(frame, info);
    if (ok) {
      n.counters.txFrames++;
      n.counters.txBytes += frame.length;
    } else {
      n.counters.txDrops++;
      if (this.debug.ip.on) this.debug.ip.debug(`${n.name}: drop (link refused frame, ${frame.length} bytes)`);
    }
    return ok;
  }

  // ------------------------------------------------------------------ input

  /**
   * A frame from an interface. Malformed frames are counted and dropped, never thrown.
   * `checksumValid`: the NIC vouched for its TCP/UDP checksum (RxInfo). Nothing of the frame is
   * kept past the call except copies (TCP's out-of-order queue, UDP datagrams, IP fragments), so
   * its memory may be reused at once (RxInfo.lent, FrameReceiver's 'copied').
   */
  input(n: Netif, frame: Uint8Array, checksumValid = false): boolean {
    n.counters.rxFrames++;
    n.counters.rxBytes += frame.length;
    if (!n.up) return true;
    const eth = parseEthernet(frame);
    if (!eth.ok) {
      n.counters.rxDropsMalformed++;
      if (this.debug.ip.on) this.debug.ip.debug(`${n.name}: drop (malformed Ethernet: ${eth.error}, ${frame.length} bytes)`);
      return true;
    }
    const e = eth.value;
    const toUs = e.dst.every((b, i) => b === n.mac[i]);
    if (!toUs && !isBroadcastMac(e.dst) && !(e.dst[0]! & 1)) {
      n.counters.rxDropsNotForUs++;
      if (this.debug.ip.on) this.debug.ip.debug(`${n.name}: drop (not for us: to ${formatMac(e.dst)})`);
      return true;
    }
    if (e.etherType === ETHERTYPE_ARP) this.inputArp(n, e.payload);
    else if (e.etherType === ETHERTYPE_IPV4) this.inputIp(n, e.payload, !toUs, checksumValid);
    else {
      n.counters.rxDropsUnknownType++;
      if (this.debug.ip.on) this.debug.ip.debug(`${n.name}: drop (unknown EtherType 0x${e.etherType.toString(16).padStart(4, '0')})`);
    }
    return true;
  }

  private inputArp(n: Netif, b: Uint8Array): void {
    const r = parseArp(b);
    if (!r.ok) {
      n.counters.rxDropsMalformed++;
      if (this.debug.arp.on) this.debug.arp.debug(`${n.name}: drop (malformed ARP: ${r.error})`);
      return;
    }
    const a = r.value;
    const forUs = n.owns(a.targetIp);
    if (this.debug.arp.on) {
      this.debug.arp.debug(`${n.name}: ${a.op === ARP_REQUEST ? `who-has ${formatIpv4(a.targetIp)} tell ${formatIpv4(a.senderIp)}` : `reply ${formatIpv4(a.senderIp)} is-at ${formatMac(a.senderMac)}`} from ${formatMac(a.senderMac)}${forUs ? ' (for us)' : ''}`);
    }
    if (a.op === ARP_REQUEST) this.arp.stats.requestsReceived++;
    else this.arp.stats.repliesReceived++;
    // RFC 826: merge the sender into an existing entry; create one only if the packet is for us.
    if (a.senderIp !== 0) this.arp.update(n.name, a.senderIp, a.senderMac, forUs);
    if (a.op === ARP_REQUEST && forUs && a.senderIp !== a.targetIp) {
      this.arp.stats.repliesSent++;
      if (this.debug.arp.on) this.debug.arp.debug(`${n.name}: reply ${formatIpv4(a.targetIp)} is-at ${formatMac(n.mac)} to ${formatIpv4(a.senderIp)}`);
      this.sendFrame(n, a.senderMac, ETHERTYPE_ARP, emitArp({ op: ARP_REPLY, senderMac: n.mac, senderIp: a.targetIp, targetMac: a.senderMac, targetIp: a.senderIp }));
    }
  }

  private inputIp(n: Netif, b: Uint8Array, linkBroadcast: boolean, checksumValid = false): void {
    this.stats.rxPackets++;
    const r = parseIpv4(b);
    if (!r.ok) {
      if (r.error === 'bad-checksum') this.stats.rxBadChecksum++;
      else this.stats.rxBadHeader++;
      if (this.debug.ip.on) this.debug.ip.debug(`${n.name}: drop (${r.error}, ${b.length} bytes)`);
      return;
    }
    const h = r.value;
    const broadcast = linkBroadcast || h.dst === 0xffffffff || (n.configured && h.dst === n.broadcast);
    const local = n.owns(h.dst) || this.isLocal(h.dst);
    // An interface without an address still takes broadcasts (a DHCP client's OFFER) and, as
    // Linux does for DHCP, unicasts to it before it is configured.
    const foreign = !local && !broadcast && !(n.addr === 0);
    if (foreign && !this.routerMode) {
      this.stats.rxNotForUs++;
      if (this.debug.ip.on) this.debug.ip.debug(`${n.name}: drop (not for us) ${formatIpv4(h.src)} → ${formatIpv4(h.dst)}`);
      return;
    }
    if (this.debug.ip.on) this.debug.ip.debug(`${n.name}: in ${formatIpv4(h.src)} → ${formatIpv4(h.dst)} proto ${h.protocol} ttl ${h.ttl} id ${h.id} ${h.payload.length} bytes${h.flagsOffset & (IP_MF | IP_OFFMASK) ? ` fragment offset ${(h.flagsOffset & IP_OFFMASK) * 8}${h.flagsOffset & IP_MF ? ' MF' : ''}` : ''}`);
    if (foreign && h.ttl <= 1) {
      if (this.debug.ip.on) this.debug.ip.debug(`${n.name}: drop (TTL expired) ${formatIpv4(h.src)} → ${formatIpv4(h.dst)}`);
      // A forwarding node (the user-mode gateway) decrements TTL: at 1 the datagram expires here.
      this.sendIcmpError(h.packet, ICMP_TIME_EXCEEDED, 0);
      return;
    }
    let payload = h.payload;
    let raw = h.packet;
    // What the NIC vouched for was one frame: a datagram put together from fragments is checked.
    let vouched = checksumValid;
    if (h.flagsOffset & (IP_MF | IP_OFFMASK)) {
      // The reassembler keeps copies of the fragments; the datagram it puts together is its own.
      const whole = this.reassembler.input(h);
      if (!whole) return;
      payload = whole.payload;
      raw = whole.headerBytes;
      vouched = false;
    }
    const info: IpDatagramInfo = { src: h.src, dst: h.dst, protocol: h.protocol, ttl: h.ttl, netif: n.name, foreignDestination: foreign, broadcast, checksumValid: vouched };
    if (h.protocol === IPPROTO_ICMP) {
      this.inputIcmp(n, info, payload, raw);
      return;
    }
    const t = this.transports.get(h.protocol);
    if (!t) {
      this.stats.rxUnknownProtocol++;
      if (this.debug.ip.on) this.debug.ip.debug(`${n.name}: drop (unknown protocol ${h.protocol}) from ${formatIpv4(h.src)}`);
      if (!broadcast) this.icmpUnreachable(info, 2, raw);
      return;
    }
    this.stats.rxDelivered++;
    t.input(info, payload, raw);
  }

  private inputIcmp(n: Netif, info: IpDatagramInfo, b: Uint8Array, _raw: Uint8Array): void {
    this.stats.icmpIn++;
    const r = parseIcmp(b);
    if (!r.ok) {
      this.stats.icmpBad++;
      if (this.debug.icmp.on) this.debug.icmp.debug(`drop (${r.error}) from ${formatIpv4(info.src)}`);
      return;
    }
    const m = r.value;
    if (this.debug.icmp.on) this.debug.icmp.debug(`in type ${m.type} code ${m.code} ${formatIpv4(info.src)} → ${formatIpv4(info.dst)}${m.type === ICMP_ECHO_REQUEST || m.type === ICMP_ECHO_REPLY ? ` id ${m.rest >>> 16} seq ${m.rest & 0xffff}` : ''}`);
    if (m.type === ICMP_ECHO_REQUEST) {
      if (info.foreignDestination) {
        this.onForeignEcho?.(info.src, info.dst, m.rest >>> 16, m.rest & 0xffff, m.body, n);
        return;
      }
      if (info.broadcast) {
        // no smurf amplifier (RFC 1122 §3.2.2.6 allows silence)
        if (this.debug.icmp.on) this.debug.icmp.debug(`echo request to broadcast ${formatIpv4(info.dst)} not answered`);
        return;
      }
      this.stats.icmpEchoRepliesSent++;
      this.sendIcmp(info.dst, info.src, { type: ICMP_ECHO_REPLY, code: 0, rest: m.rest, body: m.body });
      return;
    }
    if (m.type === ICMP_ECHO_REPLY) {
      const id = m.rest >>> 16;
      const seq = m.rest & 0xffff;
      const p = this.pings.get((id << 16) | seq);
      if (id === this.pingId && p) {
        this.pings.delete((id << 16) | seq);
        p.timer.cancel();
        p.resolve({ seq, rttMs: this.clock.now() - p.sent, ttl: info.ttl, bytes: b.length });
      }
      return;
    }
    if (m.type === ICMP_DEST_UNREACH || m.type === ICMP_TIME_EXCEEDED || m.type === ICMP_PARAM_PROBLEM) {
      // The quoted datagram: its header and at least 8 bytes of transport header.
      const q = parseIpv4(m.body, false);
      if (q.ok || m.body.length >= 28) {
        const qb = m.body;
        const ihl = (qb[0]! & 0x0f) * 4;
        if (qb.length < ihl + 8) return;
        const proto = qb[9]!;
        const src = ((qb[12]! << 24) | (qb[13]! << 16) | (qb[14]! << 8) | qb[15]!) >>> 0;
        const dst = ((qb[16]! << 24) | (qb[17]! << 16) | (qb[18]! << 8) | qb[19]!) >>> 0;
        const fragNeeded = m.type === ICMP_DEST_UNREACH && m.code === ICMP_UNREACH_NEEDFRAG;
        // RFC 1191 §4: the next-hop MTU is the low 16 bits of the ICMP header's second word.
        this.transports.get(proto)?.icmpError?.(m.type, m.code, { src, dst, transportHeader: qb.subarray(ihl), ...(fragNeeded ? { nextHopMtu: m.rest & 0xffff } : {}) });
      }
    }
  }

  private sendIcmp(src: Ipv4Addr, dst: Ipv4Addr, m: { type: number; code: number; rest: number; body: Uint8Array }): IpSendResult {
    this.stats.icmpOut++;
    if (this.debug.icmp.on) this.debug.icmp.debug(`out type ${m.type} code ${m.code} ${formatIpv4(src)} → ${formatIpv4(dst)}`);
    return this.output({ src, dst, protocol: IPPROTO_ICMP, payload: emitIcmp(m) });
  }

  icmpUnreachable(info: IpDatagramInfo, code: number, offending: Uint8Array | null): void {
    if (!offending || info.broadcast) return;
    this.sendIcmpError(offending, ICMP_DEST_UNREACH, code);
  }

  /** An ICMP error about `packet` (RFC 1122 §3.2.2): never about ICMP errors, broadcasts or fragments ≠ 0. */
  private sendIcmpError(packet: Uint8Array, type: number, code: number): void {
    if (packet.length < IPV4_HEADER_LEN) return;
    const ihl = (packet[0]! & 0x0f) * 4;
    const proto = packet[9]!;
    if (proto === IPPROTO_ICMP && packet.length > ihl && packet[ihl] !== ICMP_ECHO_REQUEST && packet[ihl] !== ICMP_ECHO_REPLY) return;
    if ((((packet[6]! << 8) | packet[7]!) & IP_OFFMASK) !== 0) return;
    const src = ((packet[12]! << 24) | (packet[13]! << 16) | (packet[14]! << 8) | packet[15]!) >>> 0;
    const dst = ((packet[16]! << 24) | (packet[17]! << 16) | (packet[18]! << 8) | packet[19]!) >>> 0;
    if (src === 0 || src === 0xffffffff) return;
    const body = packet.slice(0, Math.min(packet.length, ihl + 8));
    this.sendIcmp(this.isLocal(dst) || this.routerMode ? dst : (this.sourceFor(src) ?? dst), src, { type, code, rest: 0, body });
  }

  /** Packets queued for ARP that never resolved: tell local senders (TCP gives up sooner). */
  private deliverUnreachable(pkt: Uint8Array): void {
    if (pkt.length < IPV4_HEADER_LEN + 8) return;
    const ihl = (pkt[0]! & 0x0f) * 4;
    const proto = pkt[9]!;
    const src = ((pkt[12]! << 24) | (pkt[13]! << 16) | (pkt[14]! << 8) | pkt[15]!) >>> 0;
    const dst = ((pkt[16]! << 24) | (pkt[17]! << 16) | (pkt[18]! << 8) | pkt[19]!) >>> 0;
    this.transports.get(proto)?.icmpError?.(ICMP_DEST_UNREACH, ICMP_UNREACH_HOST, { src, dst, transportHeader: pkt.subarray(ihl) });
  }

  private sendArpRequest(n: Netif, addr: Ipv4Addr): void {
    if (this.debug.arp.on) this.debug.arp.debug(`${n.name}: who-has ${formatIpv4(addr)} tell ${formatIpv4(n.addr)} (request out)`);
    this.sendFrame(n, MAC_BROADCAST, ETHERTYPE_ARP, emitArp({ op: ARP_REQUEST, senderMac: n.mac, senderIp: n.addr, targetMac: new Uint8Array(6), targetIp: addr }));
  }

  // ------------------------------------------------------------------ ping

  /** One ICMP echo; resolves with the reply or null after `timeoutMs`. */
  ping(dst: Ipv4Addr, seq: number, size = 56, timeoutMs = 1000): Promise<PingResult | null> {
    return new Promise((resolve) => {
      const src = this.sourceFor(dst);
      if (src === null) {
        resolve(null);
        return;
      }
      const key = (this.pingId << 16) | (seq & 0xffff);
      const body = new Uint8Array(size);
      for (let i = 0; i < size; i++) body[i] = i & 0xff;
      const timer = this.clock.setTimer(timeoutMs, () => {
        this.pings.delete(key);
        resolve(null);
      });
      this.pings.set(key, { sent: this.clock.now(), resolve, timer });
      this.sendIcmp(src, dst, { type: ICMP_ECHO_REQUEST, code: 0, rest: ((this.pingId << 16) | (seq & 0xffff)) >>> 0, body });
    });
  }

  /** Answer an echo as if from `from` (a NAT relaying a host's ping reply). */
  sendEchoReply(from: Ipv4Addr, to: Ipv4Addr, id: number, seq: number, data: Uint8Array): void {
    this.sendIcmp(from, to, { type: ICMP_ECHO_REPLY, code: 0, rest: ((id << 16) | seq) >>> 0, body: data });
  }

  describe(): string {
    return this.netifs.map((n) => `${n.name} ${formatIpv4(n.addr)}/${n.prefixLength}`).join(', ');
  }
}

/** The next hop to `dst` through `n`: `dst` itself when on the link (or a broadcast), else the gateway. */
function nextHopVia(n: Netif, dst: Ipv4Addr): Ipv4Addr {
  return dst === 0xffffffff || n.onLink(dst) || dst === n.broadcast ? dst : n.gateway;
}

/** Whether a datagram of `total` bytes leaves `n` in one frame: within the MTU, or a TCP segment to a far end that takes GSO frames. */
function goesWhole(n: Netif, protocol: number, total: number): boolean {
  return total <= n.mtu || (protocol === IPPROTO_TCP && total <= GSO_MAX_IP && n.port.gso === true);
}
