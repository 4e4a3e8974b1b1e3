/**
 * The TCP layer: a TransportProtocol (protocol 6) on an IpLayer. It demultiplexes segments to
 * connections, runs listeners with bounded SYN queues, answers segments nobody wants with RST
 * (RFC 9293 §3.10.7.1), chooses ISNs (RFC 6528) and ephemeral ports, and keeps the counters.
 *
 * Accept-any: `acceptAny` sees every SYN no listener claims, to any address and port (in router
 * mode the IP layer delivers datagrams for foreign destinations with `info.foreignDestination`),
 * and may accept it as if listening there; the new connection's local address is the SYN's
 * destination. A user-mode NAT is built on this.
 */
import { NO_DEBUG, type DebugLog } from '../debug.js';
import { formatIpv4, type Ipv4Addr } from '../addr.js';
import type { Clock } from '../clock.js';
import { IP_HEADROOM, IPPROTO_TCP, type IpDatagramInfo, type IpLayer, type TransportProtocol } from '../ip-layer.js';
import { emitTcp, parseTcp, tcpEncodingLength, TCP_MAX_WINSHIFT, TH_ACK, TH_FIN, TH_RST, TH_SYN, type TcpOptions, type TcpRepr } from '../wire/tcp.js';
import { IPV4_HEADER_LEN } from '../wire/ipv4.js';
import { DEFAULT_TCP_CONFIG, type TcpConfig, type TcpConnectionOptions } from './config.js';
import { IsnGenerator } from './isn.js';
import { TCP_DEFAULT_MSS, TCP_IP_HEADERS, TcpConnection, type ConnectionHost, type PayloadFill } from './connection.js';
import { seqAdd } from './seq.js';
import { emptyTcpStats, type TcpStats } from './stats.js';
import { SYN_COOKIE_KEY_BYTES, SynCookieJar, synCookieMssIndex, synCookieTsOptions, synCookieTsVal, type SynCookieTuple } from './syn-cookie.js';
import { allocBytes } from '../byte-slab.js';

/** The 4-tuple of a SYN offered to the accept-any hook. */
export interface AcceptInfo {
  localAddr: Ipv4Addr;
  localPort: number;
  remoteAddr: Ipv4Addr;
  remotePort: number;
  /** Interface the SYN arrived on. */
  netif: string;
  /** The destination is not one of the stack's own addresses. */
  foreignDestination: boolean;
}

/** An accept-any verdict that carries its own accept callback and per-connection options. */
export interface AcceptDecision {
  onAccept: (conn: TcpConnection) => void;
  options?: TcpConnectionOptions;
}

/** `true` accepts (the connection goes to `onAcceptAny`), `false`/null refuses with RST. */
export type AcceptAnyHook = (info: AcceptInfo) => boolean | AcceptDecision | null | undefined;

export interface ListenOptions extends TcpConnectionOptions {
  /** Local address to listen on; 0 (default) is every address. */
  addr?: Ipv4Addr;
  /** Half-open connections allowed at once (default: the layer's synQueueLimit). */
  synQueueLimit?: number;
}

export interface ConnectOptions extends TcpConnectionOptions {
  localAddr?: Ipv4Addr;
  localPort?: number;
}

/**
 * A bounded SYN queue: the half-open passive connections of a listener (or of the accept-any
 * hook), oldest first. "Young" entries have not yet retransmitted their SYN-ACK (Linux's
 * reqsk_queue_len_young): under pressure the old ones get fewer retries (see `TcpLayer.transmit`).
 */
class SynQueue {
  readonly entries = new Set<TcpConnection>();
  young = 0;
  /** When the last cookie went out: ACKs are checked as cookies only for a while after. */
  lastCookieAt = -Infinity;
  constructor(public limit: number) {}

  get halfOpen(): number {
    return this.entries.size;
  }
}

/** `TcpConnection.owner` of a passive connection until it is established. */
interface HalfOpen {
  /** null for a connection made from a cookie: it never took a queue slot. */
  queue: SynQueue | null;
  onAccept: (conn: TcpConnection) => void;
  /** SYN-ACKs sent so far (1 + retransmissions). */
  synAcks: number;
}

export class TcpListener {
  closed = false;
  /** @internal */
  readonly queue: SynQueue;
  constructor(
    private readonly layer: TcpLayer,
    readonly addr: Ipv4Addr,
    readonly port: number,
    public onAccept: (conn: TcpConnection) => void,
    limit: number,
    readonly options: TcpConnectionOptions,
  ) {
    this.queue = new SynQueue(limit);
  }

  get halfOpen(): number {
    return this.queue.halfOpen;
  }

  get limit(): number {
    return this.queue.limit;
  }

  /** Stop listening; established connections are not affected. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.layer.unlisten(this);
  }
}

/** Error thrown by API calls that cannot proceed (never by segment processing). */
export class TcpApiError extends Error {
  constructor(
    readonly code: 'EADDRINUSE' | 'ENETUNREACH' | 'EADDRNOTAVAIL' | 'EINVAL',
    message: string,
  ) {
    super(message);
    this.name = 'TcpApiError';
  }
}

function connKey(localAddr: number, localPort: number, remoteAddr: number, remotePort: number): string {
  return `${localAddr}:${localPort}:${remoteAddr}:${remotePort}`;
}

export class TcpLayer implements TransportProtocol, ConnectionHost {
  readonly protocol = IPPROTO_TCP;
  readonly clock: Clock;
  readonly config: Readonly<TcpConfig>;
  readonly stats: TcpStats = emptyTcpStats();
  /** See the module comment. Consulted for SYNs no listener claims. */
  acceptAny: AcceptAnyHook | null = null;
  /** Receives connections the accept-any hook accepted with a plain `true`. */
  onAcceptAny: ((conn: TcpConnection) => void) | null = null;
  /**
   * Every connection as it is created, before its first state change (passive ones included,
   * which the application otherwise sees only once established): for tracing and tests.
   */
  onNewConnection: ((conn: TcpConnection) => void) | null = null;

  private readonly conns = new Map<string, TcpConnection>();
  /**
   * The connection the last segment went to: a bulk stream's segments find it by comparing four
   * numbers instead of building the map's string key per segment. Cleared whenever `conns` changes.
   */
  private lastConn: TcpConnection | null = null;
  private readonly listeners = new Map<number, TcpListener[]>();
  /** One bounded queue for every half-open connection the accept-any hook accepted. */
  private readonly acceptAnyQueue: SynQueue;
  private readonly cookies: SynCookieJar;
  private nextEphemeral: number;
  private readonly isnGenerator: IsnGenerator;
  private challengeWindowStart = -Infinity;
  private challengeCount = 0;
  private challengeBudget = 0;

  constructor(
    readonly ip: IpLayer,
    options: Partial<TcpConfig> = {},
    /** `--debug tcp`: state transitions, resets, timeouts, drops with their reason. */
    readonly debug: DebugLog = NO_DEBUG,
  ) {
    this.clock = ip.clock;
    this.config = { ...DEFAULT_TCP_CONFIG, ...options };
    const c = this.config;
    this.nextEphemeral = c.ephemeralPortMin + Math.floor(c.random() * (c.ephemeralPortMax - c.ephemeralPortMin + 1));
    this.isnGenerator = new IsnGenerator(this.clock, c.random);
    this.acceptAnyQueue = new SynQueue(c.synQueueLimit);
    // Math.random is no secret: the default key comes from node:crypto. A seeded `random` (a
    // deterministic lab) keys the cookies too, so a run reproduces from its seed.
    const secretBytes = c.secretBytes ?? (c.random === Math.random ? undefined : (n: number) => bytesFrom(c.random, n));
    this.cookies = new SynCookieJar(secretBytes?.(SYN_COOKIE_KEY_BYTES));
  }

  // ===================================================================== API

  /** Listen on `port` (RFC 9293 §3.10.1 passive OPEN); `onAccept` gets each established connection. */
  listen(port: number, onAccept: (conn: TcpConnection) => void, options: ListenOptions = {}): TcpListener {
    if (!(port > 0 && port <= 0xffff)) throw new TcpApiError('EINVAL', `bad port ${port}`);
    const addr = options.addr ?? 0;
    const list = this.listeners.get(port) ?? [];
    if (list.some((l) => l.addr === addr)) throw new TcpApiError('EADDRINUSE', `port ${port} is already listening`);
    const { addr: _a, synQueueLimit, ...connOptions } = options;
    const l = new TcpListener(this, addr, port, onAccept, synQueueLimit ?? this.config.synQueueLimit, connOptions);
    list.push(l);
    this.listeners.set(port, list);
    return l;
  }

  /** @internal used by TcpListener.close */
  unlisten(l: TcpListener): void {
    const list = this.listeners.get(l.port);
    if (!list) return;
    const rest = list.filter((x) => x !== l);
    if (rest.length) this.listeners.set(l.port, rest);
    else this.listeners.delete(l.port);
    // Its half-open connections have nobody left to accept them: reset them now (as closing a
    // listening socket does) rather than hand them to a callback whose owner has gone away.
    for (const conn of [...this.conns.values()]) if ((conn.owner as HalfOpen | null)?.queue === l.queue) conn.abort();
  }

  /** Active open (RFC 9293 §3.10.1): returns the connection in SYN-SENT; watch onConnected/onError. */
  connect(remoteAddr: Ipv4Addr, remotePort: number, options: ConnectOptions = {}): TcpConnection {
    if (!(remotePort > 0 && remotePort <= 0xffff)) throw new TcpApiError('EINVAL', `bad port ${remotePort}`);
    const localAddr = options.localAddr ?? this.ip.sourceFor(remoteAddr);
    if (localAddr === null || localAddr === undefined) throw new TcpApiError('ENETUNREACH', 'no route to host');
    let localPort = options.localPort;
    if (localPort === undefined) localPort = this.ephemeralPort(localAddr, remoteAddr, remotePort);
    else if (this.conns.has(connKey(localAddr, localPort, remoteAddr, remotePort))) throw new TcpApiError('EADDRINUSE', 'connection exists');
    const conn = this.createConnection(localAddr, localPort, remoteAddr, remotePort, false, options);
    this.stats.activeOpens++;
    conn.openActive();
    return conn;
  }

  /** Every connection the layer holds (netstat). */
  connections(): TcpConnection[] {
    return [...this.conns.values()];
  }

  listening(): { addr: Ipv4Addr; port: number; halfOpen: number }[] {
    const out: { addr: Ipv4Addr; port: number; halfOpen: number }[] = [];
    for (const list of this.listeners.values()) for (const l of list) out.push({ addr: l.addr, port: l.port, halfOpen: l.halfOpen });
    return out;
  }

  // ===================================================================== ConnectionHost

  transmit(conn: TcpConnection, repr: TcpRepr, fill?: PayloadFill): void {
    const h = conn.owner as HalfOpen | null;
    if (h?.queue && repr.flags & TH_SYN) {
      // A half-open entry's SYN-ACK. From the second on it is a retransmission (its timer fired):
      // the point where Linux's reqsk_timer_handler decides whether the entry lives on.
      if (h.synAcks >= 1) {
        if (h.synAcks - 1 >= this.synAckRetries(h.queue)) {
          this.stats.synQueuePruned++;
          // Not from inside the connection's own timer: it goes on to re-arm it after sending.
          this.clock.setTimer(0, () => {
            if (conn.owner === h && conn.state === 'SYN_RECEIVED') conn.finish(null);
          });
          return;
        }
        if (h.synAcks === 1) h.queue.young--;
      }
      h.synAcks++;
    }
    this.sendSegment(conn.localAddr, conn.remoteAddr, repr, fill);
  }

  accepted(conn: TcpConnection): void {
    const h = conn.owner as HalfOpen | null;
    conn.owner = null;
    if (h) {
      leaveQueue(conn, h);
      h.onAccept(conn);
    }
  }

  detach(conn: TcpConnection): void {
    const key = connKey(conn.localAddr, conn.localPort, conn.remoteAddr, conn.remotePort);
    if (this.conns.get(key) === conn) this.conns.delete(key);
    this.lastConn = null;
    const h = conn.owner as HalfOpen | null;
    if (h) {
      leaveQueue(conn, h);
      conn.owner = null;
    }
  }

  allowChallengeAck(): boolean {
    const now = this.clock.now();
    if (now - this.challengeWindowStart >= 1000) {
      this.challengeWindowStart = now;
      this.challengeCount = 0;
      // CVE-2016-5696: a fixed per-second budget shared by all connections is a side channel (an
      // off-path attacker counts the challenge ACKs it gets back to learn whether its guess hit
      // some connection). A budget drawn anew each interval in [limit/2, 3·limit/2), as Linux
      // does since, hides that count.
      const limit = this.config.challengeAckLimit;
      this.challengeBudget = Math.floor(limit / 2) + Math.floor(this.config.random() * limit);
    }
    return this.challengeCount++ < this.challengeBudget;
  }

  gsoPayloadFor(remote: Ipv4Addr): number {
    const max = this.ip.gsoFor?.(remote) ?? 0;
    // Room for the IPv4 and TCP headers with the most options a data segment carries.
    return max > 0 ? max - TCP_IP_HEADERS - 40 : 0;
  }

  mssFor(remote: Ipv4Addr): number {
    return Math.max(536, Math.min(0xffff, this.ip.mtuFor(remote) - TCP_IP_HEADERS));
  }

  // ===================================================================== input

  input(info: IpDatagramInfo, payload: Uint8Array, _raw: Uint8Array): void {
    this.stats.segmentsIn++;
    // A checksum the NIC has vouched for is not summed again (Linux's CHECKSUM_UNNECESSARY).
    const parsed = parseTcp(payload, info.checksumValid ? undefined : { src: info.src, dst: info.dst });
    if (!parsed.ok) {
      if (parsed.error === 'bad-checksum') this.stats.badChecksums++;
      else this.stats.malformed++;
      if (this.debug.on) this.debug.debug(`drop (${parsed.error}) from ${formatIpv4(info.src)}`);
      return;
    }
    const seg = parsed.value;
    // RFC 1122 §4.2.3.10 / RFC 9293: TCP is unicast only.
    if (info.broadcast || seg.srcPort === 0 || seg.dstPort === 0) {
      this.stats.dropped++;
      if (this.debug.on) this.debug.debug(`drop (${info.broadcast ? 'broadcast' : 'port 0'}) ${formatIpv4(info.src)}:${seg.srcPort} → ${formatIpv4(info.dst)}:${seg.dstPort}`);
      return;
    }
    const last = this.lastConn;
    let conn = last !== null && last.remotePort === seg.srcPort && last.localPort === seg.dstPort && last.remoteAddr === info.src && last.localAddr === info.dst ? last : this.conns.get(connKey(info.dst, seg.dstPort, info.src, seg.srcPort));
    this.lastConn = conn ?? null;
    if (conn && conn.state === 'TIME_WAIT' && (seg.flags & (TH_SYN | TH_ACK | TH_RST)) === TH_SYN && conn.acceptsNewSyn(seg)) {
      // A new incarnation may reuse a TIME-WAIT 4-tuple (RFC 9293 §3.10.7.4 note, RFC 6191).
      conn.finish(null);
      conn = undefined;
    }
    if (conn) {
      conn.input(seg);
      return;
    }
    this.inputNoConnection(info, seg);
  }

  private inputNoConnection(info: IpDatagramInfo, seg: TcpRepr): void {
    const f = seg.flags;
    if (f & TH_RST) {
      // RFC 9293 §3.10.7.1: an incoming RST is discarded
      if (this.debug.on) this.debug.debug(`drop (RST for no connection) ${formatIpv4(info.src)}:${seg.srcPort} → ${formatIpv4(info.dst)}:${seg.dstPort}`);
      return;
    }
    const syn = (f & (TH_SYN | TH_ACK)) === TH_SYN;
    // A bare ACK may complete a handshake whose SYN was answered with a cookie.
    const ack = (f & (TH_SYN | TH_ACK)) === TH_ACK;
    if (syn || ack) {
      // LISTEN (RFC 9293 §3.10.7.2).
      const listener = info.foreignDestination ? undefined : this.findListener(info.dst, seg.dstPort);
      if (listener) {
        if (syn) {
          this.acceptSyn(info, seg, listener.queue, (c) => listener.onAccept(c), listener.options);
          return;
        }
        const r = this.acceptCookie(info, seg, listener.queue, (c) => listener.onAccept(c), listener.options);
        if (r === 'accepted') return;
        if (r === 'failed') {
          // Linux answers a failed cookie as LISTEN answers any ACK: with a reset.
          this.sendResetFor(info.dst, info.src, seg);
          return;
        }
      } else if (this.acceptAny && (syn || this.cookiesRecent(this.acceptAnyQueue))) {
        // The hook is consulted again for a cookie's ACK: the cookie kept no record of its verdict.
        const verdict = this.acceptAny({
          localAddr: info.dst,
          localPort: seg.dstPort,
          remoteAddr: info.src,
          remotePort: seg.srcPort,
          netif: info.netif,
          foreignDestination: info.foreignDestination,
        });
        if (verdict) {
          const onAccept = verdict === true ? (c: TcpConnection) => this.onAcceptAny?.(c) : verdict.onAccept;
          const options = verdict === true ? {} : (verdict.options ?? {});
          if (syn) {
            this.stats.acceptAnyAccepted++;
            this.acceptSyn(info, seg, this.acceptAnyQueue, onAccept, options);
            return;
          }
          const r = this.acceptCookie(info, seg, this.acceptAnyQueue, onAccept, options);
          if (r === 'accepted') return;
          if (r === 'failed') {
            this.sendResetFor(info.dst, info.src, seg);
            return;
          }
        } else if (syn) {
          this.stats.acceptAnyRefused++;
          if (this.debug.on) this.debug.debug(`SYN to ${formatIpv4(info.dst)}:${seg.dstPort} refused by the accept-any hook`);
        }
      } else if (info.foreignDestination && (syn || !this.acceptAny)) {
        this.stats.dropped++;
        if (this.debug.on) this.debug.debug(`drop (foreign destination ${formatIpv4(info.dst)}:${seg.dstPort}, no accept-any)`);
        return; // not ours to answer
      }
    } else if (info.foreignDestination && !this.acceptAny) {
      this.stats.dropped++;
      if (this.debug.on) this.debug.debug(`drop (foreign destination ${formatIpv4(info.dst)}:${seg.dstPort})`);
      return;
    }
    this.stats.noListener++;
    if (this.debug.on) this.debug.debug(`no listener on ${formatIpv4(info.dst)}:${seg.dstPort}: RST to ${formatIpv4(info.src)}:${seg.srcPort}`);
    this.sendResetFor(info.dst, info.src, seg);
  }

  private findListener(addr: Ipv4Addr, port: number): TcpListener | undefined {
    const list = this.listeners.get(port);
    if (!list) return undefined;
    return list.find((l) => l.addr === addr) ?? list.find((l) => l.addr === 0);
  }

  private acceptSyn(info: IpDatagramInfo, seg: TcpRepr, q: SynQueue, onAccept: (conn: TcpConnection) => void, options: TcpConnectionOptions): void {
    if (q.halfOpen >= q.limit) {
      if (this.config.synCookies) {
        this.sendCookie(info, seg, q, options);
        return;
      }
      if (!this.evictOldest(q)) {
        this.stats.synQueueDrops++; // the peer retransmits its SYN; maybe there is room then
        if (this.debug.on) this.debug.debug(`drop (SYN queue full, ${q.halfOpen}/${q.limit}) SYN from ${formatIpv4(info.src)}:${seg.srcPort}`);
        return;
      }
    }
    const conn = this.createConnection(info.dst, seg.dstPort, info.src, seg.srcPort, true, options);
    const h: HalfOpen = { queue: q, onAccept, synAcks: 0 };
    conn.owner = h;
    q.entries.add(conn);
    q.young++;
    this.stats.passiveOpens++;
    conn.openPassive(seg);
  }

  /**
   * SYN-ACK retransmissions a half-open entry of `q` may make now. Linux's young/old rule
   * (reqsk_timer_handler): once the queue is more than half full, half of it is kept for young
   * entries (no SYN-ACK retransmitted yet), and the fewer young ones there are, the fewer
   * retries the old ones get — down to 2, so a flood's leftovers clear out within seconds
   * (1 + 2 + 4 s at a 1 s RTO) instead of lasting through every retry.
   */
  private synAckRetries(q: SynQueue): number {
    let retries = this.config.synRetries;
    const len = q.halfOpen;
    if (2 * len > Math.max(8, q.limit)) {
      let young = 2 * q.young;
      while (retries > 2 && len >= young) {
        retries--;
        young *= 2;
      }
    }
    return retries;
  }

  /**
   * Without cookies, a SYN that finds the queue full takes the place of the oldest entry whose
   * SYN-ACK has already gone unanswered once (BSD's syncache drops its oldest entry likewise): a
   * flood's entries then cannot keep every later client out. Young entries are not evicted.
   */
  private evictOldest(q: SynQueue): boolean {
    for (const conn of q.entries) {
      if ((conn.owner as HalfOpen).synAcks > 1) {
        this.stats.synQueuePruned++;
        conn.finish(null);
        return true;
      }
    }
    return false;
  }

  private cookieCounter(): number {
    return Math.floor(this.clock.now() / this.config.synCookieTickMs);
  }

  /** Whether `q` sent a cookie recently enough that an ACK may carry one (Linux checks only then). */
  private cookiesRecent(q: SynQueue): boolean {
    return this.config.synCookies && this.clock.now() - q.lastCookieAt <= this.config.synCookieTickMs * this.config.synCookieValidTicks;
  }

  /**
   * The stateless answer to a SYN that found the queue full (RFC 4987 §3.6): a SYN-ACK whose ISN
   * is the cookie. Window scale and SACK-permitted are offered only with timestamps, whose TSval
   * carries them (syn-cookie.ts); the window offered is what `openFromCookie` assumes.
   */
  private sendCookie(info: IpDatagramInfo, seg: TcpRepr, q: SynQueue, options: TcpConnectionOptions): void {
    const config = { ...this.config, ...options };
    const tuple: SynCookieTuple = { localAddr: info.dst, localPort: seg.dstPort, remoteAddr: info.src, remotePort: seg.srcPort };
    const ourMss = this.mssFor(info.src);
    const peerMss = seg.options.mss !== undefined && seg.options.mss > 0 ? seg.options.mss : TCP_DEFAULT_MSS;
    const iss = this.cookies.encode(tuple, seg.seq, this.cookieCounter(), synCookieMssIndex(peerMss));
    const opts: TcpOptions = { mss: ourMss };
    const ts = seg.options.timestamp;
    if (config.timestamps && ts) {
      const windowScale = config.windowScaling && seg.options.windowScale !== undefined ? Math.min(seg.options.windowScale, TCP_MAX_WINSHIFT) : undefined;
      const sackPermitted = config.sack && seg.options.sackPermitted === true;
      if (windowScale !== undefined) opts.windowScale = receiveWindowShift(config.recvBufferSize);
      if (sackPermitted) opts.sackPermitted = true;
      // The timestamp clock the connection will run (TcpConnection: ms + an offset equal to the ISS).
      const tsClock = (Math.floor(this.clock.now()) + iss) >>> 0;
      opts.timestamp = { tsVal: synCookieTsVal(tsClock, { windowScale, sackPermitted }), tsEcr: ts.tsVal };
    }
    this.stats.synCookiesSent++;
    q.lastCookieAt = this.clock.now();
    this.sendSegment(info.dst, info.src, {
      srcPort: seg.dstPort,
      dstPort: seg.srcPort,
      seq: iss,
      ack: seqAdd(seg.seq, 1),
      flags: TH_SYN | TH_ACK,
      window: Math.min(0xffff, config.recvBufferSize),
      urgent: 0,
      options: opts,
      payload: new Uint8Array(0),
    });
  }

  /**
   * A bare ACK for no connection, to a listener (or the accept-any hook) that sent cookies lately:
   * if ack − 1 is a valid cookie, the connection it describes is made and the ACK completes it.
   */
  private acceptCookie(
    info: IpDatagramInfo,
    seg: TcpRepr,
    q: SynQueue,
    onAccept: (conn: TcpConnection) => void,
    options: TcpConnectionOptions,
  ): 'accepted' | 'failed' | 'not-checked' {
    if (!this.cookiesRecent(q)) return 'not-checked';
    const config = { ...this.config, ...options };
    const tuple: SynCookieTuple = { localAddr: info.dst, localPort: seg.dstPort, remoteAddr: info.src, remotePort: seg.srcPort };
    const peerIsn = seqAdd(seg.seq, -1);
    const iss = seqAdd(seg.ack, -1);
    const check = this.cookies.check(tuple, peerIsn, iss, this.cookieCounter(), config.synCookieValidTicks);
    const synOptions: TcpOptions = {};
    let ok = check.ok;
    if (check.ok) {
      synOptions.mss = check.mss;
      const ts = seg.options.timestamp;
      // An ACK without timestamps (or echoing none) negotiates none of what TSval carried.
      if (ts && ts.tsEcr !== 0) {
        const o = synCookieTsOptions(ts.tsEcr);
        // Options we would not have offered mean the echo is not of a TSval of ours.
        if (!config.timestamps || !o || (o.windowScale !== undefined && !config.windowScaling) || (o.sackPermitted && !config.sack)) ok = false;
        else {
          synOptions.timestamp = { tsVal: ts.tsVal, tsEcr: 0 };
          if (o.windowScale !== undefined) synOptions.windowScale = o.windowScale;
          if (o.sackPermitted) synOptions.sackPermitted = true;
        }
      }
    }
    if (!ok) {
      this.stats.synCookiesFailed++;
      if (this.debug.on) this.debug.debug(`SYN cookie from ${formatIpv4(info.src)}:${seg.srcPort} failed validation`);
      return 'failed';
    }
    const conn = this.createConnection(info.dst, seg.dstPort, info.src, seg.srcPort, true, options, iss);
    conn.owner = { queue: null, onAccept, synAcks: 1 } satisfies HalfOpen;
    this.stats.synCookiesValidated++;
    if (this.debug.on) this.debug.debug(`SYN cookie from ${formatIpv4(info.src)}:${seg.srcPort} validated`);
    this.stats.passiveOpens++;
    conn.openFromCookie({ srcPort: seg.srcPort, dstPort: seg.dstPort, seq: peerIsn, ack: 0, flags: TH_SYN, window: seg.window, urgent: 0, options: synOptions, payload: new Uint8Array(0) });
    conn.input(seg);
    // The ACK matches the rebuilt state by construction; should it ever not complete the
    // handshake, no half-open connection without a retransmission timer may stay behind.
    if (conn.state === 'SYN_RECEIVED') conn.abort();
    return 'accepted';
  }

  private createConnection(
    localAddr: Ipv4Addr,
    localPort: number,
    remoteAddr: Ipv4Addr,
    remotePort: number,
    passive: boolean,
    options: TcpConnectionOptions,
    iss = this.isn(localAddr, localPort, remoteAddr, remotePort),
  ): TcpConnection {
    const config = { ...this.config, ...options };
    const conn = new TcpConnection(this, config, localAddr, localPort, remoteAddr, remotePort, passive, iss);
    this.conns.set(connKey(localAddr, localPort, remoteAddr, remotePort), conn);
    this.lastConn = null;
    this.onNewConnection?.(conn);
    return conn;
  }

  /** RFC 6528 §3 (isn.ts). */
  private isn(la: number, lp: number, ra: number, rp: number): number {
    return this.isnGenerator.isn(la, lp, ra, rp);
  }

  private ephemeralPort(localAddr: Ipv4Addr, remoteAddr: Ipv4Addr, remotePort: number): number {
    const { ephemeralPortMin: lo, ephemeralPortMax: hi } = this.config;
    const span = hi - lo + 1;
    for (let i = 0; i < span; i++) {
      const p = this.nextEphemeral;
      this.nextEphemeral = p >= hi ? lo : p + 1;
      if (!this.conns.has(connKey(localAddr, p, remoteAddr, remotePort)) && !this.listeners.has(p)) return p;
    }
    throw new TcpApiError('EADDRNOTAVAIL', 'no free ephemeral port');
  }

  /** RFC 9293 §3.10.7.1: the reset for a segment that belongs to no connection. */
  private sendResetFor(localAddr: Ipv4Addr, remoteAddr: Ipv4Addr, seg: TcpRepr): void {
    const segLen = seg.payload.length + (seg.flags & TH_SYN ? 1 : 0) + (seg.flags & TH_FIN ? 1 : 0);
    const repr: TcpRepr =
      seg.flags & TH_ACK
        ? { srcPort: seg.dstPort, dstPort: seg.srcPort, seq: seg.ack, ack: 0, flags: TH_RST, window: 0, urgent: 0, options: {}, payload: new Uint8Array(0) }
        : {
            srcPort: seg.dstPort,
            dstPort: seg.srcPort,
            seq: 0,
            ack: seqAdd(seg.seq, segLen),
            flags: TH_RST | TH_ACK,
            window: 0,
            urgent: 0,
            options: {},
            payload: new Uint8Array(0),
          };
    this.stats.resetsOut++;
    if (this.debug.on) this.debug.debug(`RST out ${formatIpv4(localAddr)}:${repr.srcPort} → ${formatIpv4(remoteAddr)}:${repr.dstPort}`);
    this.sendSegment(localAddr, remoteAddr, repr);
  }

  /** Room for a segment and the IPv4 and Ethernet headers: lent by the driver where it can (IpLayer.datagramBuffer). */
  private datagramBuffer(dst: Ipv4Addr, length: number): Uint8Array {
    return this.ip.datagramBuffer?.(dst, IPPROTO_TCP, length) ?? allocBytes(IP_HEADROOM + length);
  }

  private sendSegment(src: Ipv4Addr, dst: Ipv4Addr, repr: TcpRepr, fill?: PayloadFill): void {
    // Headroom for the IPv4 and Ethernet headers (IP_HEADROOM): the IP layer fills them in place,
    // so the segment is not copied again on its way to the wire.
    let len = tcpEncodingLength(repr);
    let buf: Uint8Array;
    if (fill) {
      // The payload goes from the send buffer straight to its place in the frame; emitTcp sees it
      // already there and only writes the header and checksum around it.
      const at = IP_HEADROOM + len;
      len += fill.length;
      buf = this.datagramBuffer(dst, len);
      fill.copyTo(buf, at);
      repr = { ...repr, payload: buf.subarray(at) };
    } else {
      buf = this.datagramBuffer(dst, len);
    }
    // A segment beyond the MTU (GSO) to a port that finishes its checksum is left partial: the
    // pass over up to 64 KiB would be overwritten unread, as Linux leaves it for a TSO device.
    const partial = this.ip.gsoChecksumPartialFor?.(dst, IPV4_HEADER_LEN + len) === true;
    emitTcp(repr, buf, IP_HEADROOM, src, dst, partial);
    this.stats.segmentsOut++;
    const r = this.ip.output({ src, dst, protocol: IPPROTO_TCP, payload: buf.subarray(IP_HEADROOM), dontFragment: true, framed: buf, checksumPartial: partial });
    if (r !== 'sent' && r !== 'queued') {
      this.stats.outputErrors++;
      if (this.debug.on) this.debug.debug(`segment to ${formatIpv4(dst)}:${repr.dstPort} not sent: ${r}`);
    }
  }

  // ===================================================================== ICMP

  icmpError(type: number, code: number, quoted: { src: Ipv4Addr; dst: Ipv4Addr; transportHeader: Uint8Array; nextHopMtu?: number }): void {
    const h = quoted.transportHeader;
    if (h.length < 4) return;
    const srcPort = (h[0]! << 8) | h[1]!;
    const dstPort = (h[2]! << 8) | h[3]!;
    const conn = this.conns.get(connKey(quoted.src, srcPort, quoted.dst, dstPort));
    if (!conn) return;
    // RFC 1122 §4.2.3.9 / RFC 5461: protocol and port unreachable are hard errors while opening;
    // the rest (net/host unreachable, source quench) are soft and only recorded.
    if (type === 3 && (code === 2 || code === 3)) conn.icmpUnreachable(true);
    // RFC 1191 path MTU discovery; the connection checks the quoted sequence number (RFC 5927).
    if (type === 3 && code === 4 && h.length >= 8) conn.icmpFragNeeded(quoted.nextHopMtu ?? 0, ((h[4]! << 24) | (h[5]! << 16) | (h[6]! << 8) | h[7]!) >>> 0);
  }
}

function leaveQueue(conn: TcpConnection, h: HalfOpen): void {
  if (h.queue?.entries.delete(conn) && h.synAcks <= 1) h.queue.young--;
}

/** RFC 7323 §2.3: the smallest shift that lets a receive buffer be advertised (as TcpConnection picks it). */
function receiveWindowShift(bufferSize: number): number {
  let shift = 0;
  while (shift < TCP_MAX_WINSHIFT && bufferSize >> shift > 0xffff) shift++;
  return shift;
}

function bytesFrom(random: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}
