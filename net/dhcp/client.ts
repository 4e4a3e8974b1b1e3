/**
 * A DHCP client (RFC 2131 §4.4): INIT → SELECTING → REQUESTING → BOUND → RENEWING → REBINDING, and
 * INIT-REBOOT → REBOOTING when started with an address remembered from an earlier lease.
 *
 * Pure state machine: it sends through the injected `send` (the caller wraps the payload in UDP
 * 68 → 67), learns about replies through `input` (UDP payloads that arrived on port 68), and keeps
 * time only with the injected Clock. Randomness (xids, retransmission jitter) comes from the
 * injected `random`, so a run in virtual time reproduces exactly.
 *
 * Not done: the ARP probe of an offered address and DHCPDECLINE (RFC 2131 §4.4.1 "SHOULD"), and
 * choosing among several offers — the first acceptable OFFER wins, which the RFC allows.
 */
import { formatIpv4, IPV4_ANY, IPV4_BROADCAST, maskToPrefix, prefixMask, type Ipv4Addr } from '../addr.js';
import type { DebugLog } from '../debug.js';
import type { Clock, TimerHandle } from '../clock.js';
import {
  BOOTREPLY,
  BOOTREQUEST,
  DHCP_FLAG_BROADCAST,
  DHCP_INFINITE_LEASE,
  DhcpMessageType,
  DhcpOption,
  formatDhcpMessageType,
  HTYPE_ETHERNET,
  encodeDhcp,
  ethernetClientId,
  parseDhcp,
  type DhcpOptions,
  type DhcpRepr,
} from '../wire/dhcp.js';

export type DhcpClientState =
  | 'STOPPED'
  | 'INIT'
  | 'SELECTING'
  | 'REQUESTING'
  | 'INIT-REBOOT'
  | 'REBOOTING'
  | 'BOUND'
  | 'RENEWING'
  | 'REBINDING';

/** What the client was given, in the form an interface is configured with. */
export interface DhcpLease {
  address: Ipv4Addr;
  subnetMask: Ipv4Addr;
  prefixLength: number;
  /** The first router (the default gateway), or null when the server sent none. */
  router: Ipv4Addr | null;
  routers: Ipv4Addr[];
  dnsServers: Ipv4Addr[];
  domainName?: string;
  /** Seconds; DHCP_INFINITE_LEASE for an infinite lease. */
  leaseSeconds: number;
  renewalSeconds: number;
  rebindingSeconds: number;
  serverId: Ipv4Addr;
  /** Clock time (ms) the lease runs from: when the REQUEST that obtained it was first sent. */
  startedAt: number;
}

export interface DhcpClientOptions {
  clock: Clock;
  mac: Uint8Array;
  hostname?: string;
  /** Uniform in [0, 1), like Math.random. */
  random: () => number;
  send: (d: { src: Ipv4Addr; dst: Ipv4Addr; payload: Uint8Array }) => void;
  /** `--debug dhcp`: state transitions (RFC 2131 figure 5), messages ignored and why. */
  debug?: DebugLog;
  /** Called on every DHCPACK that (re)configures the lease: the first one and each renewal. */
  onBound: (lease: DhcpLease) => void;
  /** Called when a lease ends without renewal (expiry or DHCPNAK); the address must be dropped. */
  onLost?: () => void;
  /**
   * Set the BROADCAST flag while unconfigured (RFC 2131 §4.1: a client that cannot take unicast
   * before its address is set SHOULD). Default true, so the wiring need not accept unicast to an
   * address the interface does not have yet.
   */
  broadcastFlag?: boolean;
  /** REQUEST retransmissions in REQUESTING/REBOOTING before starting over in INIT. Default 4 (4+8+16+32 s). */
  requestRetries?: number;
}

export interface DhcpClientStats {
  sent: number;
  received: number;
  /** Payloads that did not parse. */
  malformed: number;
  /** Parsed replies not for us or not expected in the current state. */
  ignored: number;
  /** Retransmissions of DISCOVER or REQUEST. */
  retransmits: number;
}

/** RFC 2131 §4.1: first retransmission after 4 s, doubling, at most 64 s, each ±1 s uniformly. */
const RETX_BASE_MS = 4_000;
const RETX_MAX_MS = 64_000;
const RETX_JITTER_MS = 1_000;
/** RFC 2131 §4.4.5: in RENEWING/REBINDING retransmit after half the time left, but not under 60 s. */
const RENEW_RETX_MIN_MS = 60_000;
/** RFC 2131 §4.4.1: wait 1–10 s in INIT before starting over, so clients restarting together spread out. */
const INIT_WAIT_MIN_MS = 1_000;
const INIT_WAIT_MAX_MS = 10_000;
/**
 * Node's timers hold at most 2^31−1 ms (≈24.8 days) and fire at once beyond that; a lease may be
 * years long, so long delays are chained.
 */
const MAX_TIMER_MS = 0x7fffffff;

/** Options the client asks for (RFC 2131 §4.4.1 parameter request list). */
const PARAMETER_REQUEST_LIST = [
  DhcpOption.SUBNET_MASK,
  DhcpOption.ROUTER,
  DhcpOption.DOMAIN_NAME_SERVER,
  DhcpOption.HOST_NAME,
  DhcpOption.DOMAIN_NAME,
  DhcpOption.IP_ADDRESS_LEASE_TIME,
  DhcpOption.SERVER_IDENTIFIER,
  DhcpOption.RENEWAL_TIME_VALUE,
  DhcpOption.REBINDING_TIME_VALUE,
];

function setLongTimer(clock: Clock, delayMs: number, fn: () => void): TimerHandle {
  let handle: TimerHandle;
  const arm = (remaining: number): void => {
    const step = Math.min(remaining, MAX_TIMER_MS);
    handle = clock.setTimer(step, () => (remaining > step ? arm(remaining - step) : fn()));
  };
  arm(Math.max(0, delayMs));
  return { cancel: () => handle.cancel() };
}

/** RFC 1122 §3.3.1.1-era classful default, for a server that sends no subnet mask. */
function classfulPrefix(addr: Ipv4Addr): number {
  const top = addr >>> 24;
  if (top < 128) return 8;
  if (top < 192) return 16;
  return 24;
}

export class DhcpClient {
  private _state: DhcpClientState = 'STOPPED';
  private _lease: DhcpLease | null = null;
  private xid = 0;
  /** When the current acquisition began (for the `secs` field). */
  private exchangeStart = 0;
  /** When the first REQUEST of the current exchange went out: the lease is timed from there. */
  private requestStart = 0;
  private attempt = 0;
  private offer: { address: Ipv4Addr; serverId: Ipv4Addr; leaseTime?: number } | null = null;
  /** An address to ask for again (INIT-REBOOT, or option 50 in DISCOVER after a lease ended). */
  private previousAddress: Ipv4Addr | null = null;
  private retxTimer: TimerHandle | null = null;
  private leaseTimers: TimerHandle[] = [];
  private readonly clientId: Uint8Array;
  readonly stats: DhcpClientStats = { sent: 0, received: 0, malformed: 0, ignored: 0, retransmits: 0 };

  constructor(private readonly opts: DhcpClientOptions) {
    this.clientId = ethernetClientId(opts.mac);
  }

  get state(): DhcpClientState {
    return this._state;
  }

  /** The lease in force (BOUND, RENEWING, REBINDING), else null. */
  get lease(): DhcpLease | null {
    return this._lease;
  }

  /**
   * Begin acquiring an address. With `requestedAddress` (one remembered from an earlier boot) the
   * client starts in INIT-REBOOT and asks to keep it (RFC 2131 §4.4.2); otherwise it starts in INIT.
   * Starting a running client starts it over.
   */
  start(opts: { requestedAddress?: Ipv4Addr } = {}): void {
    this.cancelAll();
    this._lease = null;
    if (opts.requestedAddress !== undefined) {
      this.previousAddress = opts.requestedAddress;
      this.enterRebooting();
    } else this.enterSelecting();
  }

  /** Stop all activity; the lease (if any) is neither released nor reported lost. */
  stop(): void {
    this.cancelAll();
    this.enter('STOPPED');
    this._lease = null;
    this.offer = null;
  }

  /** Give the lease back (DHCPRELEASE, RFC 2131 §4.4.6) and stop. onLost is not called: the caller asked. */
  release(): void {
    const lease = this._lease;
    if (lease && (this._state === 'BOUND' || this._state === 'RENEWING' || this._state === 'REBINDING')) {
      // RFC 2131 table 5: RELEASE carries ciaddr and the server identifier, and is unicast to the server.
      this.xid = this.newXid();
      this.transmit(DhcpMessageType.RELEASE, { serverId: lease.serverId }, lease.address, lease.address, lease.serverId);
    }
    this.stop();
  }

  private enter(s: DhcpClientState): void {
    const d = this.opts.debug;
    if (d?.on && s !== this._state) d.debug(`client: ${this._state} → ${s}${s === 'BOUND' && this._lease ? ` (${formatIpv4(this._lease.address)}/${this._lease.prefixLength}, ${this._lease.leaseSeconds} s)` : ''}`);
    this._state = s;
  }

  /** A UDP payload that arrived on port 68 from `src`. */
  input(payload: Uint8Array, src: Ipv4Addr): void {
    this.stats.received++;
    const parsed = parseDhcp(payload);
    const d = this.opts.debug;
    if (!parsed.ok) {
      this.stats.malformed++;
      if (d?.on) d.debug(`client: drop (malformed: ${parsed.error}) from ${formatIpv4(src)}`);
      return;
    }
    const m = parsed.value;
    if (!this.isForUs(m)) {
      this.stats.ignored++;
      if (d?.on) d.debug(`client: ignored (not for us: op ${m.op}, xid 0x${m.xid.toString(16)}) from ${formatIpv4(src)}`);
      return;
    }
    const type = m.options.messageType;
    if (d?.on) d.debug(`client: ${formatDhcpMessageType(type)} from ${formatIpv4(src)} in ${this._state}${m.yiaddr !== IPV4_ANY ? `, yiaddr ${formatIpv4(m.yiaddr)}` : ''}`);
    switch (this._state) {
      case 'SELECTING':
        if (type === DhcpMessageType.OFFER && m.yiaddr !== IPV4_ANY) {
          // RFC 2131 table 3: the server identifier MUST be in an OFFER; fall back to the sender.
          const serverId = m.options.serverId ?? (src !== IPV4_ANY ? src : null);
          if (serverId !== null) {
            this.offer = { address: m.yiaddr, serverId, leaseTime: m.options.leaseTime };
            this.enterRequesting();
            return;
          }
        }
        break;
      case 'REQUESTING':
        // Only the chosen server may answer (its id is in the REQUEST the others also saw).
        if (m.options.serverId !== undefined && m.options.serverId !== this.offer?.serverId) break;
        if (type === DhcpMessageType.ACK && this.bind(m)) return;
        if (type === DhcpMessageType.NAK) return this.restartAfterNak();
        break;
      case 'REBOOTING':
      case 'RENEWING':
      case 'REBINDING':
        if (type === DhcpMessageType.ACK && this.bind(m)) return;
        if (type === DhcpMessageType.NAK) {
          if (this._state === 'REBOOTING') return this.restartAfterNak();
          return this.loseLease(false);
        }
        break;
      default:
        break;
    }
    this.stats.ignored++;
    if (d?.on) d.debug(`client: ignored (${formatDhcpMessageType(type)} unexpected in ${this._state})`);
  }

  private isForUs(m: DhcpRepr): boolean {
    if (m.op !== BOOTREPLY || m.xid !== this.xid) return false;
    const mac = this.opts.mac;
    if (m.chaddr.length !== mac.length) return false;
    for (let i = 0; i < mac.length; i++) if (m.chaddr[i] !== mac[i]) return false;
    return true;
  }

  // ---- states -------------------------------------------------------------------------------

  private enterSelecting(): void {
    this.cancelAll();
    this.enter('INIT');
    this.offer = null;
    this.xid = this.newXid();
    this.exchangeStart = this.opts.clock.now();
    this.attempt = 0;
    this.enter('SELECTING');
    this.sendDiscover();
  }

  private sendDiscover(): void {
    // RFC 2131 §4.4.1: the client MAY suggest its last address in the DISCOVER.
    const options: DhcpOptions = this.previousAddress !== null ? { requestedIp: this.previousAddress } : {};
    this.transmit(DhcpMessageType.DISCOVER, options, IPV4_ANY, IPV4_ANY, IPV4_BROADCAST);
    // DISCOVER is repeated for as long as no server answers, at the 64 s ceiling once reached.
    this.armRetransmit(() => {
      this.stats.retransmits++;
      this.sendDiscover();
    });
  }

  private enterRequesting(): void {
    this.cancelRetransmit();
    this.enter('REQUESTING');
    this.attempt = 0;
    this.requestStart = this.opts.clock.now();
    this.sendSelectingRequest();
  }

  private sendSelectingRequest(): void {
    const offer = this.offer!;
    // RFC 2131 §4.3.2 / table 5: same xid as the OFFER, ciaddr 0, server id and requested IP set.
    this.transmit(DhcpMessageType.REQUEST, { serverId: offer.serverId, requestedIp: offer.address }, IPV4_ANY, IPV4_ANY, IPV4_BROADCAST);
    this.armRequestRetransmit(() => this.sendSelectingRequest());
  }

  private enterRebooting(): void {
    this.cancelAll();
    this.enter('INIT-REBOOT');
    this.xid = this.newXid();
    this.exchangeStart = this.requestStart = this.opts.clock.now();
    this.attempt = 0;
    this.enter('REBOOTING');
    this.sendRebootRequest();
  }

  private sendRebootRequest(): void {
    // RFC 2131 §4.3.2 INIT-REBOOT: requested IP set, no server identifier, ciaddr 0, broadcast.
    this.transmit(DhcpMessageType.REQUEST, { requestedIp: this.previousAddress! }, IPV4_ANY, IPV4_ANY, IPV4_BROADCAST);
    this.armRequestRetransmit(() => this.sendRebootRequest());
  }

  /** Retransmit a REQUEST a bounded number of times, then start over from INIT (RFC 2131 §4.4.1). */
  private armRequestRetransmit(resend: () => void): void {
    const retries = this.opts.requestRetries ?? 4;
    this.armRetransmit(() => {
      if (this.attempt > retries) return this.enterSelecting();
      this.stats.retransmits++;
      resend();
    });
  }

  private armRetransmit(fn: () => void): void {
    this.cancelRetransmit();
    const base = Math.min(RETX_BASE_MS * 2 ** this.attempt, RETX_MAX_MS);
    const delay = base + (this.opts.random() * 2 - 1) * RETX_JITTER_MS;
    this.attempt++;
    this.retxTimer = this.opts.clock.setTimer(delay, () => {
      this.retxTimer = null;
      fn();
    });
  }

  /** Accept an ACK: record the lease, arm T1, T2 and expiry, report it. False when the ACK is unusable. */
  private bind(m: DhcpRepr): boolean {
    if (m.yiaddr === IPV4_ANY) return false;
    const o = m.options;
    // RFC 2131 table 3: an ACK to a REQUEST MUST carry the lease time; accept the OFFER's if it does not.
    const leaseSeconds = o.leaseTime ?? this.offer?.leaseTime;
    if (leaseSeconds === undefined) return false;
    const serverId = o.serverId ?? this.offer?.serverId ?? this._lease?.serverId;
    if (serverId === undefined) return false;
    const { t1, t2 } = renewalTimes(leaseSeconds, o.renewalTime, o.rebindingTime);
    const prefixLength = (o.subnetMask !== undefined ? maskToPrefix(o.subnetMask) : null) ?? classfulPrefix(m.yiaddr);
    const routers = o.routers ?? [];
    const lease: DhcpLease = {
      address: m.yiaddr,
      subnetMask: o.subnetMask ?? prefixMask(prefixLength),
      prefixLength,
      router: routers[0] ?? null,
      routers,
      dnsServers: o.dnsServers ?? [],
      leaseSeconds,
      renewalSeconds: t1,
      rebindingSeconds: t2,
      serverId,
      startedAt: this.requestStart,
    };
    if (o.domainName !== undefined) lease.domainName = o.domainName;
    this.cancelAll();
    this._lease = lease;
    this.previousAddress = lease.address;
    this.offer = null;
    this.enter('BOUND');
    if (leaseSeconds !== DHCP_INFINITE_LEASE) {
      const now = this.opts.clock.now();
      const at = (s: number): number => lease.startedAt + s * 1000 - now;
      this.leaseTimers = [
        setLongTimer(this.opts.clock, at(t1), () => this.enterRenewing()),
        setLongTimer(this.opts.clock, at(t2), () => this.enterRebinding()),
        setLongTimer(this.opts.clock, at(leaseSeconds), () => this.loseLease(true)),
      ];
    }
    this.opts.onBound(lease);
    return true;
  }

  private enterRenewing(): void {
    if (this._state !== 'BOUND' || !this._lease) return;
    this.enter('RENEWING');
    this.xid = this.newXid();
    this.exchangeStart = this.requestStart = this.opts.clock.now();
    this.sendRenewRequest();
  }

  private enterRebinding(): void {
    if ((this._state !== 'BOUND' && this._state !== 'RENEWING') || !this._lease) return;
    this.cancelRetransmit();
    this.enter('REBINDING');
    this.xid = this.newXid();
    this.requestStart = this.opts.clock.now();
    this.sendRenewRequest();
  }

  /**
   * RFC 2131 §4.3.2 RENEWING / REBINDING: ciaddr is our address, no requested IP and no server id;
   * unicast to the server when renewing, broadcast when rebinding. Retransmitted after half the
   * time left to T2 (renewing) or to expiry (rebinding), not sooner than 60 s (§4.4.5).
   */
  private sendRenewRequest(): void {
    const lease = this._lease!;
    const rebinding = this._state === 'REBINDING';
    this.transmit(DhcpMessageType.REQUEST, {}, lease.address, lease.address, rebinding ? IPV4_BROADCAST : lease.serverId);
    const deadline = lease.startedAt + (rebinding ? lease.leaseSeconds : lease.rebindingSeconds) * 1000;
    const wait = Math.max(RENEW_RETX_MIN_MS, (deadline - this.opts.clock.now()) / 2);
    // Beyond the deadline the T2 or expiry timer takes over; no retransmission is needed.
    if (this.opts.clock.now() + wait >= deadline) return;
    this.cancelRetransmit();
    this.retxTimer = setLongTimer(this.opts.clock, wait, () => {
      this.retxTimer = null;
      this.stats.retransmits++;
      this.sendRenewRequest();
    });
  }

  private loseLease(expired: boolean): void {
    this.cancelAll();
    this._lease = null;
    this.enter('INIT');
    // After a NAK the address is someone else's; after expiry it may still be free to ask for.
    if (!expired) this.previousAddress = null;
    this.opts.onLost?.();
    // RFC 2131 §4.4.5: on expiry start over at once; after a NAK (§3.2, §4.4.1) wait in INIT first.
    if ((this._state as DhcpClientState) !== 'INIT') return; // onLost stopped or restarted us
    if (expired) this.retxTimer = this.opts.clock.setTimer(0, () => this.enterSelecting());
    else this.scheduleInitWait();
  }

  private restartAfterNak(): void {
    this.cancelAll();
    this.enter('INIT');
    this.offer = null;
    // The server refused this address; asking for it again in the DISCOVER would be pointless.
    this.previousAddress = null;
    this.scheduleInitWait();
  }

  /** The 1–10 s INIT wait; also keeps a server that NAKs every REQUEST from driving a tight loop. */
  private scheduleInitWait(): void {
    const wait = INIT_WAIT_MIN_MS + this.opts.random() * (INIT_WAIT_MAX_MS - INIT_WAIT_MIN_MS);
    this.retxTimer = this.opts.clock.setTimer(wait, () => {
      this.retxTimer = null;
      this.enterSelecting();
    });
  }

  // ---- sending ------------------------------------------------------------------------------

  private transmit(type: number, extra: DhcpOptions, ciaddr: Ipv4Addr, src: Ipv4Addr, dst: Ipv4Addr): void {
    const options: DhcpOptions = { messageType: type, clientId: this.clientId, ...extra };
    if (type !== DhcpMessageType.RELEASE) {
      if (this.opts.hostname) options.hostname = this.opts.hostname;
      options.parameterRequestList = PARAMETER_REQUEST_LIST;
    }
    const secs = Math.min(0xffff, Math.floor((this.opts.clock.now() - this.exchangeStart) / 1000));
    const unconfigured = ciaddr === IPV4_ANY;
    const repr: DhcpRepr = {
      op: BOOTREQUEST,
      htype: HTYPE_ETHERNET,
      hops: 0,
      xid: this.xid,
      secs: type === DhcpMessageType.RELEASE ? 0 : Math.max(0, secs),
      flags: unconfigured && (this.opts.broadcastFlag ?? true) ? DHCP_FLAG_BROADCAST : 0,
      ciaddr,
      yiaddr: IPV4_ANY,
      siaddr: IPV4_ANY,
      giaddr: IPV4_ANY,
      chaddr: this.opts.mac,
      sname: '',
      file: '',
      options,
    };
    this.stats.sent++;
    this.opts.send({ src, dst, payload: encodeDhcp(repr) });
  }

  private newXid(): number {
    return Math.floor(this.opts.random() * 0x100000000) >>> 0;
  }

  private cancelRetransmit(): void {
    this.retxTimer?.cancel();
    this.retxTimer = null;
  }

  private cancelAll(): void {
    this.cancelRetransmit();
    for (const t of this.leaseTimers) t.cancel();
    this.leaseTimers = [];
  }
}

/**
 * T1 and T2 in seconds (RFC 2131 §4.4.5): the server's values when they are consistent
 * (T1 < T2 < lease), otherwise 0.5 and 0.875 of the lease.
 */
export function renewalTimes(leaseSeconds: number, t1?: number, t2?: number): { t1: number; t2: number } {
  if (leaseSeconds === DHCP_INFINITE_LEASE) return { t1: DHCP_INFINITE_LEASE, t2: DHCP_INFINITE_LEASE };
  const rebind = t2 !== undefined && t2 < leaseSeconds ? t2 : leaseSeconds * 0.875;
  const renew = t1 !== undefined && t1 < rebind ? t1 : Math.min(leaseSeconds * 0.5, rebind);
  return { t1: renew, t2: rebind };
}
