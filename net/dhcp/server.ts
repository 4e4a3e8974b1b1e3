/**
 * A DHCP server for the user-mode network, with QEMU slirp's defaults (FACTS.md): server and
 * gateway 10.0.2.2, DNS 10.0.2.3, 16 addresses from 10.0.2.15, a /24, 24-hour leases.
 *
 * Pure: `input` takes a UDP payload that arrived on port 67 and returns the replies to send from
 * port 67 to port 68, each with the IP destination RFC 2131 §4.1 prescribes (and the client's MAC
 * when the reply must be unicast to an address the client does not hold yet). Clients are known by
 * their client identifier (option 61) or, without one, their hardware address; a client that comes
 * back gets the address it had (RFC 2131 §4.3.1). Relay agents (giaddr) are not supported: replies
 * always go to the local segment.
 *
 * With a Clock, leases and offers expire and their addresses can go to other clients once the pool
 * is otherwise full; without one they last as long as the server (as in slirp).
 */
import { formatIpv4, formatMac, IPV4_ANY, IPV4_BROADCAST, maskToPrefix, parseIpv4, sameSubnet, type Ipv4Addr } from '../addr.js';
import { NO_DEBUG, type DebugLog } from '../debug.js';
import type { Clock } from '../clock.js';
import {
  BOOTREPLY,
  BOOTREQUEST,
  DHCP_FLAG_BROADCAST,
  DhcpMessageType,
  formatDhcpMessageType,
  encodeDhcp,
  parseDhcp,
  type DhcpOptions,
  type DhcpRepr,
} from '../wire/dhcp.js';

export interface DhcpServerOptions {
  /** `--debug dhcp`: each OFFER/ACK/NAK and each request ignored, with the client. */
  debug?: DebugLog;
  /** The server identifier and, unless `router` says otherwise, the gateway. Default 10.0.2.2. */
  serverAddress?: Ipv4Addr;
  /** First pool address (default 10.0.2.15) and how many (default 16). */
  poolStart?: Ipv4Addr;
  poolSize?: number;
  /** Default 255.255.255.0. */
  subnetMask?: Ipv4Addr;
  /** Default `serverAddress`; null sends no router option. */
  router?: Ipv4Addr | null;
  /** Default [10.0.2.3]. */
  dnsServers?: Ipv4Addr[];
  domainName?: string;
  /** Seconds; default 86400. */
  leaseSeconds?: number;
  /** How long an OFFER holds its address for the client (seconds; default 60). Needs `clock`. */
  offerSeconds?: number;
  clock?: Clock;
}

export interface DhcpReply {
  dst: Ipv4Addr;
  /** Set when the reply goes to `dst` = yiaddr at the client's MAC, which must not be ARPed for. */
  dstMac?: Uint8Array;
  payload: Uint8Array;
}

/** What a client on a given network is told besides its address. */
export interface DhcpNetworkParams {
  serverId: Ipv4Addr;
  subnetMask: Ipv4Addr;
  router: Ipv4Addr | null;
  dnsServers: Ipv4Addr[];
}

export interface DhcpServerLease {
  clientKey: string;
  chaddr: Uint8Array;
  address: Ipv4Addr;
  state: 'offered' | 'bound' | 'released';
  /** Clock time (ms) it ends; Infinity without a clock. */
  expiresAt: number;
}

export interface DhcpServerStats {
  received: number;
  malformed: number;
  ignored: number;
  offers: number;
  acks: number;
  naks: number;
  releases: number;
  informs: number;
  /** DISCOVERs that found no free address. */
  poolExhausted: number;
}

interface Reservation {
  address: Ipv4Addr;
  params: DhcpNetworkParams;
  /** For reservations made for "any" client: the client that took it. */
  claimedBy: string | null;
}

const ip = (s: string): Ipv4Addr => parseIpv4(s)!;

export class DhcpServer {
  readonly serverAddress: Ipv4Addr;
  readonly poolStart: Ipv4Addr;
  readonly poolSize: number;
  readonly subnetMask: Ipv4Addr;
  readonly leaseSeconds: number;
  readonly stats: DhcpServerStats = {
    received: 0,
    malformed: 0,
    ignored: 0,
    offers: 0,
    acks: 0,
    naks: 0,
    releases: 0,
    informs: 0,
    poolExhausted: 0,
  };
  private readonly defaults: DhcpNetworkParams;
  private readonly domainName: string | undefined;
  private readonly offerSeconds: number;
  private readonly clock: Clock | undefined;
  private readonly bindings = new Map<string, DhcpServerLease>();
  /** Reservations by MAC (lower-case hex). */
  private readonly byMac = new Map<string, Reservation>();
  private readonly forAny: Reservation[] = [];
  /** Addresses a client declined (RFC 2131 §4.3.3), with when they may be used again. */
  private readonly declined = new Map<Ipv4Addr, number>();

  private readonly debug: DebugLog;

  constructor(opts: DhcpServerOptions = {}) {
    this.debug = opts.debug ?? NO_DEBUG;
    this.serverAddress = opts.serverAddress ?? ip('10.0.2.2');
    this.poolStart = opts.poolStart ?? ip('10.0.2.15');
    this.poolSize = opts.poolSize ?? 16;
    this.subnetMask = opts.subnetMask ?? ip('255.255.255.0');
    if (maskToPrefix(this.subnetMask) === null) throw new RangeError('DHCP server subnet mask is not contiguous');
    this.leaseSeconds = opts.leaseSeconds ?? 86400;
    this.offerSeconds = opts.offerSeconds ?? 60;
    this.domainName = opts.domainName;
    this.clock = opts.clock;
    this.defaults = {
      serverId: this.serverAddress,
      subnetMask: this.subnetMask,
      router: opts.router === undefined ? this.serverAddress : opts.router,
      dnsServers: opts.dnsServers ?? [ip('10.0.2.3')],
    };
  }

  /**
   * Fix the address a client gets: `mac` for one client, 'any' for the first client that has no
   * reservation of its own (the lab gives a redirect's guest its address this way). An address
   * outside the server's subnet gets a network of the same mask around it, with the router, server
   * and DNS at the same host numbers as on the main network (10.10.10.33 → gateway 10.10.10.2).
   */
  reserve(who: Uint8Array | 'any', address: Ipv4Addr, params: Partial<DhcpNetworkParams> = {}): void {
    const r: Reservation = { address, params: { ...this.paramsForNetwork(address), ...params }, claimedBy: null };
    if (who === 'any') this.forAny.push(r);
    else this.byMac.set(hex(who), r);
  }

  /** Current bindings (offered, bound and remembered after release), for inspection. */
  leases(): DhcpServerLease[] {
    return [...this.bindings.values()].map((b) => ({ ...b, chaddr: b.chaddr.slice() }));
  }

  /** A UDP payload that arrived on port 67 from `from` (0.0.0.0 for an unconfigured client). */
  input(payload: Uint8Array, from: Ipv4Addr): DhcpReply[] {
    this.stats.received++;
    const parsed = parseDhcp(payload);
    if (!parsed.ok) {
      this.stats.malformed++;
      if (this.debug.on) this.debug.debug(`server: drop (malformed) from ${formatIpv4(from)}`);
      return [];
    }
    const m = parsed.value;
    if (m.op !== BOOTREQUEST || m.chaddr.length === 0) {
      this.stats.ignored++;
      if (this.debug.on) this.debug.debug(`server: ignored (not a BOOTREQUEST, op ${m.op}) from ${formatIpv4(from)}`);
      return [];
    }
    switch (m.options.messageType) {
      case DhcpMessageType.DISCOVER:
        return this.discover(m);
      case DhcpMessageType.REQUEST:
        return this.request(m);
      case DhcpMessageType.INFORM:
        return this.inform(m, from);
      case DhcpMessageType.RELEASE:
        this.release(m);
        return [];
      case DhcpMessageType.DECLINE:
        this.decline(m);
        return [];
      default:
        // Plain BOOTP (no message type) and server-side types are not answered.
        this.stats.ignored++;
        if (this.debug.on) this.debug.debug(`server: ignored (message type ${formatDhcpMessageType(m.options.messageType)} not served) ${formatMac(m.chaddr)}`);
        return [];
    }
  }

  // ---- message handling ---------------------------------------------------------------------

  private discover(m: DhcpRepr): DhcpReply[] {
    const key = clientKey(m);
    const address = this.allocate(key, m.chaddr, m.options.requestedIp);
    if (address === null) {
      this.stats.poolExhausted++;
      if (this.debug.on) this.debug.debug(`server: no OFFER: pool exhausted ${formatMac(m.chaddr)}`);
      return [];
    }
    this.bindings.set(key, {
      clientKey: key,
      chaddr: m.chaddr.slice(),
      address,
      state: 'offered',
      expiresAt: this.expiry(this.offerSeconds),
    });
    this.stats.offers++;
    if (this.debug.on) this.debug.debug(`server: OFFER ${formatMac(m.chaddr)} → ${formatIpv4(address)}`);
    return [this.reply(m, DhcpMessageType.OFFER, address, true)];
  }

  /**
   * All three REQUEST forms of RFC 2131 §4.3.2 come down to one question: may this client have the
   * address it names (option 50 when selecting or rebooting, ciaddr when renewing or rebinding)?
   */
  private request(m: DhcpRepr): DhcpReply[] {
    const key = clientKey(m);
    const o = m.options;
    if (o.serverId !== undefined && !this.isOurServerId(o.serverId)) {
      // The client chose another server's offer: our offer lapses (RFC 2131 §4.3.2, SELECTING).
      const b = this.bindings.get(key);
      if (b && b.state === 'offered') b.state = 'released';
      this.stats.ignored++;
      if (this.debug.on) this.debug.debug(`server: REQUEST for another server ignored ${formatMac(m.chaddr)}`);
      return [];
    }
    const requested = o.requestedIp ?? m.ciaddr;
    if (requested === IPV4_ANY) {
      this.stats.ignored++;
      if (this.debug.on) this.debug.debug(`server: REQUEST without an address ignored ${formatMac(m.chaddr)}`);
      return [];
    }
    if (!this.grant(key, m.chaddr, requested)) {
      this.stats.naks++;
      if (this.debug.on) this.debug.debug(`server: NAK ${formatMac(m.chaddr)}`);
      return [this.nak(m)];
    }
    this.bindings.set(key, {
      clientKey: key,
      chaddr: m.chaddr.slice(),
      address: requested,
      state: 'bound',
      expiresAt: this.expiry(this.leaseSeconds),
    });
    this.stats.acks++;
    if (this.debug.on) this.debug.debug(`server: ACK ${formatMac(m.chaddr)} → ${formatIpv4(requested)}`);
    return [this.reply(m, DhcpMessageType.ACK, requested, true)];
  }

  /** RFC 2131 §4.3.5: configuration only; no lease time, yiaddr left 0, reply unicast to ciaddr. */
  private inform(m: DhcpRepr, from: Ipv4Addr): DhcpReply[] {
    const addr = m.ciaddr !== IPV4_ANY ? m.ciaddr : from;
    this.stats.informs++;
    if (this.debug.on) this.debug.debug(`server: ACK to INFORM ${formatMac(m.chaddr)}`);
    const r = this.reply(m, DhcpMessageType.ACK, IPV4_ANY, false, addr);
    if (addr !== IPV4_ANY) r.dst = addr;
    return [r];
  }

  private release(m: DhcpRepr): void {
    const b = this.bindings.get(clientKey(m));
    // The address is kept with the binding so the client gets it back if it is still free.
    if (b && b.address === m.ciaddr && b.state !== 'released') {
      b.state = 'released';
      this.stats.releases++;
      if (this.debug.on) this.debug.debug(`server: RELEASE ${formatMac(m.chaddr)}`);
    } else {
      this.stats.ignored++;
      if (this.debug.on) this.debug.debug(`server: RELEASE ignored (no binding for ${formatIpv4(m.ciaddr)})`);
    }
  }

  private decline(m: DhcpRepr): void {
    const addr = m.options.requestedIp;
    const key = clientKey(m);
    const b = this.bindings.get(key);
    if (addr === undefined || !b || b.address !== addr) {
      this.stats.ignored++;
      if (this.debug.on) this.debug.debug(`server: DECLINE for an address not bound ignored ${formatMac(m.chaddr)}`);
      return;
    }
    // Someone else uses the address: keep it out of the pool for a lease time.
    this.declined.set(addr, this.expiry(this.leaseSeconds));
    this.bindings.delete(key);
  }

  // ---- address choice -----------------------------------------------------------------------

  /** The address a DISCOVER is offered, or null when none is free. */
  private allocate(key: string, chaddr: Uint8Array, requested: Ipv4Addr | undefined): Ipv4Addr | null {
    const fixed = this.fixedFor(key, chaddr);
    if (fixed) return fixed.address;
    const b = this.bindings.get(key);
    if (b && this.inPool(b.address) && this.isFree(b.address, key)) return b.address;
    const any = this.forAny.find((r) => r.claimedBy === null);
    if (any) {
      any.claimedBy = key;
      return any.address;
    }
    // RFC 2131 §4.3.1: the requested address if it is valid and free, else a fresh one.
    if (requested !== undefined && this.inPool(requested) && this.isFree(requested, key)) return requested;
    let reusable: { addr: Ipv4Addr; since: number } | null = null;
    for (let i = 0; i < this.poolSize; i++) {
      const addr = (this.poolStart + i) >>> 0;
      if (this.isReserved(addr) || !this.isFree(addr, key)) continue;
      const remembered = this.rememberedBy(addr);
      if (remembered === undefined) return addr;
      // Prefer the address whose last holder has been gone the longest.
      if (!reusable || remembered < reusable.since) reusable = { addr, since: remembered };
    }
    return reusable ? reusable.addr : null;
  }

  /** Whether `key` may have `requested` now (REQUEST in any state). */
  private grant(key: string, chaddr: Uint8Array, requested: Ipv4Addr): boolean {
    const fixed = this.fixedFor(key, chaddr);
    if (fixed) return fixed.address === requested;
    const unclaimed = this.forAny.find((r) => r.claimedBy === null && r.address === requested);
    if (unclaimed) {
      unclaimed.claimedBy = key;
      return true;
    }
    // A client without a record asking for a free pool address (say, after the lab restarted)
    // gets it: this server is the only one on its network, so nobody else can vouch for it.
    return this.inPool(requested) && this.isFree(requested, key);
  }

  private fixedFor(key: string, chaddr: Uint8Array): Reservation | undefined {
    return this.byMac.get(hex(chaddr)) ?? this.forAny.find((r) => r.claimedBy === key);
  }

  private inPool(addr: Ipv4Addr): boolean {
    const offset = (addr - this.poolStart) >>> 0;
    return offset < this.poolSize && !this.isReserved(addr);
  }

  private isReserved(addr: Ipv4Addr): boolean {
    for (const r of this.byMac.values()) if (r.address === addr) return true;
    return this.forAny.some((r) => r.address === addr);
  }

  /** Free for `key`: no other client holds it by an unexpired offer or lease, and nobody declined it. */
  private isFree(addr: Ipv4Addr, key: string): boolean {
    const now = this.now();
    const until = this.declined.get(addr);
    if (until !== undefined) {
      if (now < until) return false;
      this.declined.delete(addr);
    }
    for (const b of this.bindings.values()) {
      if (b.address !== addr || b.clientKey === key) continue;
      if (b.state !== 'released' && now < b.expiresAt) return false;
    }
    return true;
  }

  /** When the last (now inactive) binding of `addr` ended; undefined when it was never handed out. */
  private rememberedBy(addr: Ipv4Addr): number | undefined {
    let latest: number | undefined;
    for (const b of this.bindings.values()) {
      if (b.address !== addr) continue;
      const ended = b.state === 'released' ? -Infinity : b.expiresAt;
      latest = latest === undefined ? ended : Math.max(latest, ended);
    }
    return latest;
  }

  private isOurServerId(id: Ipv4Addr): boolean {
    if (id === this.serverAddress) return true;
    for (const r of this.byMac.values()) if (r.params.serverId === id) return true;
    return this.forAny.some((r) => r.params.serverId === id);
  }

  private paramsForNetwork(addr: Ipv4Addr): DhcpNetworkParams {
    const prefix = maskToPrefix(this.subnetMask)!;
    if (sameSubnet(addr, this.serverAddress, prefix)) return this.defaults;
    const net = (addr & this.subnetMask) >>> 0;
    const host = (a: Ipv4Addr): Ipv4Addr => (net | (a & ~this.subnetMask)) >>> 0;
    const d = this.defaults;
    return {
      serverId: host(d.serverId),
      subnetMask: this.subnetMask,
      router: d.router === null ? null : host(d.router),
      // Resolvers on the main network move with it (the user-mode network answers at .3 of any
      // network); resolvers elsewhere are reachable through the router and stay as they are.
      dnsServers: d.dnsServers.map((s) => (sameSubnet(s, this.serverAddress, prefix) ? host(s) : s)),
    };
  }

  private paramsFor(addr: Ipv4Addr): DhcpNetworkParams {
    for (const r of this.byMac.values()) if (r.address === addr) return r.params;
    for (const r of this.forAny) if (r.address === addr) return r.params;
    return this.paramsForNetwork(addr);
  }

  // ---- replies ------------------------------------------------------------------------------

  /** An OFFER or ACK for `yiaddr` (lease time included when `lease`); `about` picks the network parameters. */
  private reply(m: DhcpRepr, type: number, yiaddr: Ipv4Addr, lease: boolean, about: Ipv4Addr = yiaddr): DhcpReply {
    const p = this.paramsFor(about);
    const options: DhcpOptions = { messageType: type, serverId: p.serverId, subnetMask: p.subnetMask };
    if (lease) options.leaseTime = this.leaseSeconds;
    if (p.router !== null) options.routers = [p.router];
    if (p.dnsServers.length > 0) options.dnsServers = p.dnsServers;
    if (this.domainName) options.domainName = this.domainName;
    const repr = this.replyRepr(m, yiaddr, p.serverId, options);
    // RFC 2131 §4.1 (giaddr 0): to ciaddr when the client has one; broadcast when it asks for it;
    // else unicast to yiaddr at chaddr, since the client cannot answer ARP for it yet.
    if (m.ciaddr !== IPV4_ANY && type !== DhcpMessageType.OFFER) return { dst: m.ciaddr, payload: encodeDhcp(repr) };
    if (m.flags & DHCP_FLAG_BROADCAST || yiaddr === IPV4_ANY) return { dst: IPV4_BROADCAST, payload: encodeDhcp(repr) };
    return { dst: yiaddr, dstMac: m.chaddr.slice(), payload: encodeDhcp(repr) };
  }

  /** RFC 2131 §4.1: a NAK is broadcast when not relayed, since the client's address is in doubt. */
  private nak(m: DhcpRepr): DhcpReply {
    const p = this.paramsFor(m.options.requestedIp ?? m.ciaddr);
    const repr = this.replyRepr(m, IPV4_ANY, p.serverId, { messageType: DhcpMessageType.NAK, serverId: p.serverId });
    repr.ciaddr = IPV4_ANY;
    return { dst: IPV4_BROADCAST, payload: encodeDhcp(repr) };
  }

  private replyRepr(m: DhcpRepr, yiaddr: Ipv4Addr, serverId: Ipv4Addr, options: DhcpOptions): DhcpRepr {
    return {
      op: BOOTREPLY,
      htype: m.htype,
      hops: 0,
      xid: m.xid,
      secs: 0,
      flags: m.flags,
      ciaddr: m.ciaddr,
      yiaddr,
      siaddr: serverId,
      giaddr: m.giaddr,
      chaddr: m.chaddr,
      sname: '',
      file: '',
      options,
    };
  }

  private now(): number {
    return this.clock ? this.clock.now() : 0;
  }

  /** Clock time `seconds` from now; without a clock nothing expires. */
  private expiry(seconds: number): number {
    return this.clock ? this.clock.now() + seconds * 1000 : Infinity;
  }
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** RFC 2131 §4.2: the client identifier when given, else the hardware type and address. */
function clientKey(m: DhcpRepr): string {
  return m.options.clientId ? `id:${hex(m.options.clientId)}` : `hw:${m.htype}:${hex(m.chaddr)}`;
}
