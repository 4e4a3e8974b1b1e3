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
import type { Ipv4Addr } from '../addr.js';
import type { Clock } from '../clock.js';
import { IP_HEADROOM, IPPROTO_TCP, type IpDatagramInfo, type IpLayer, type TransportProtocol } from '../ip-layer.js';
import { emitTcp, parseTcp, tcpEncodingLength, TH_ACK, TH_FIN, TH_RST, TH_SYN, type TcpRepr } from '../wire/tcp.js';
import { DEFAULT_TCP_CONFIG, type TcpConfig, type TcpConnectionOptions } from './config.js';
import { TCP_IP_HEADERS, TcpConnection, type ConnectionHost, type PayloadFill } from './connection.js';
import { seqAdd } from './seq.js';
import { emptyTcpStats, type TcpStats } from './stats.js';

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

/** A SYN queue owner: a listener, or the accept-any hook. */
interface SynQueue {
  halfOpen: number;
  limit: number;
  onAccept: (conn: TcpConnection) => void;
  options: TcpConnectionOptions;
}

export class TcpListener implements SynQueue {
  halfOpen = 0;
  closed = false;
  constructor(
    private readonly layer: TcpLayer,
    readonly addr: Ipv4Addr,
    readonly port: number,
    public onAccept: (conn: TcpConnection) => void,
    readonly limit: number,
    readonly options: TcpConnectionOptions,
  ) {}

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
  private readonly listeners = new Map<number, TcpListener[]>();
  private readonly acceptAnyQueue: SynQueue;
  private nextEphemeral: number;
  private readonly isnSecret: number;
  private challengeWindowStart = -Infinity;
  private challengeCount = 0;

  constructor(
    readonly ip: IpLayer,
    options: Partial<TcpConfig> = {},
  ) {
    this.clock = ip.clock;
    this.config = { ...DEFAULT_TCP_CONFIG, ...options };
    const c = this.config;
    this.nextEphemeral = c.ephemeralPortMin + Math.floor(c.random() * (c.ephemeralPortMax - c.ephemeralPortMin + 1));
    this.isnSecret = Math.floor(c.random() * 0x100000000) >>> 0;
    this.acceptAnyQueue = { halfOpen: 0, limit: c.synQueueLimit, onAccept: (conn) => this.onAcceptAny?.(conn), options: {} };
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
    for (const conn of [...this.conns.values()]) if (conn.owner === l) conn.abort();
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
    this.sendSegment(conn.localAddr, conn.remoteAddr, repr, fill);
  }

  accepted(conn: TcpConnection): void {
    const q = conn.owner as SynQueue | null;
    conn.owner = null;
    if (q) {
      q.halfOpen--;
      q.onAccept(conn);
    }
  }

  detach(conn: TcpConnection): void {
    const key = connKey(conn.localAddr, conn.localPort, conn.remoteAddr, conn.remotePort);
    if (this.conns.get(key) === conn) this.conns.delete(key);
    const q = conn.owner as SynQueue | null;
    if (q) {
      q.halfOpen--;
      conn.owner = null;
    }
  }

  allowChallengeAck(): boolean {
    const now = this.clock.now();
    if (now - this.challengeWindowStart >= 1000) {
      this.challengeWindowStart = now;
      this.challengeCount = 0;
    }
    return this.challengeCount++ < this.config.challengeAckLimit;
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
    const parsed = parseTcp(payload, { src: info.src, dst: info.dst });
    if (!parsed.ok) {
      if (parsed.error === 'bad-checksum') this.stats.badChecksums++;
      else this.stats.malformed++;
      return;
    }
    const seg = parsed.value;
    // RFC 1122 §4.2.3.10 / RFC 9293: TCP is unicast only.
    if (info.broadcast || seg.srcPort === 0 || seg.dstPort === 0) {
      this.stats.dropped++;
      return;
    }
    const key = connKey(info.dst, seg.dstPort, info.src, seg.srcPort);
    let conn = this.conns.get(key);
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
    if (f & TH_RST) return; // RFC 9293 §3.10.7.1: an incoming RST is discarded
    if ((f & (TH_SYN | TH_ACK)) === TH_SYN) {
      // LISTEN (RFC 9293 §3.10.7.2).
      const listener = info.foreignDestination ? undefined : this.findListener(info.dst, seg.dstPort);
      if (listener) {
        this.acceptSyn(info, seg, listener);
        return;
      }
      if (this.acceptAny) {
        const verdict = this.acceptAny({
          localAddr: info.dst,
          localPort: seg.dstPort,
          remoteAddr: info.src,
          remotePort: seg.srcPort,
          netif: info.netif,
          foreignDestination: info.foreignDestination,
        });
        if (verdict) {
          this.stats.acceptAnyAccepted++;
          const q: SynQueue =
            verdict === true ? this.acceptAnyQueue : { halfOpen: 0, limit: this.config.synQueueLimit, onAccept: verdict.onAccept, options: verdict.options ?? {} };
          this.acceptSyn(info, seg, q);
          return;
        }
        this.stats.acceptAnyRefused++;
      } else if (info.foreignDestination) {
        this.stats.dropped++;
        return; // not ours to answer
      }
    } else if (info.foreignDestination && !this.acceptAny) {
      this.stats.dropped++;
      return;
    }
    this.stats.noListener++;
    this.sendResetFor(info.dst, info.src, seg);
  }

  private findListener(addr: Ipv4Addr, port: number): TcpListener | undefined {
    const list = this.listeners.get(port);
    if (!list) return undefined;
    return list.find((l) => l.addr === addr) ?? list.find((l) => l.addr === 0);
  }

  private acceptSyn(info: IpDatagramInfo, seg: TcpRepr, q: SynQueue): void {
    if (q.halfOpen >= q.limit) {
      this.stats.synQueueDrops++; // the peer retransmits its SYN; maybe there is room then
      return;
    }
    const conn = this.createConnection(info.dst, seg.dstPort, info.src, seg.srcPort, true, q.options);
    conn.owner = q;
    q.halfOpen++;
    this.stats.passiveOpens++;
    conn.openPassive(seg);
  }

  private createConnection(
    localAddr: Ipv4Addr,
    localPort: number,
    remoteAddr: Ipv4Addr,
    remotePort: number,
    passive: boolean,
    options: TcpConnectionOptions,
  ): TcpConnection {
    const config = { ...this.config, ...options };
    const conn = new TcpConnection(this, config, localAddr, localPort, remoteAddr, remotePort, passive, this.isn(localAddr, localPort, remoteAddr, remotePort));
    this.conns.set(connKey(localAddr, localPort, remoteAddr, remotePort), conn);
    this.onNewConnection?.(conn);
    return conn;
  }

  /**
   * RFC 6528 §3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a 4 µs timer,
   * F a keyed hash (here a 32-bit avalanche mix; the point is unpredictability across tuples).
   */
  private isn(la: number, lp: number, ra: number, rp: number): number {
    let h = this.isnSecret;
    for (const w of [la, (lp << 16) | rp, ra]) {
      h = Math.imul(h ^ (w >>> 0), 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35);
      h ^= h >>> 16;
    }
    const m = Math.floor(this.clock.now() * 250); // 4 µs ticks
    return (h + m) >>> 0;
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
    this.sendSegment(localAddr, remoteAddr, repr);
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
      buf = new Uint8Array(IP_HEADROOM + len);
      fill.copyTo(buf, at);
      repr = { ...repr, payload: buf.subarray(at) };
    } else {
      buf = new Uint8Array(IP_HEADROOM + len);
    }
    emitTcp(repr, buf, IP_HEADROOM, src, dst);
    this.stats.segmentsOut++;
    const r = this.ip.output({ src, dst, protocol: IPPROTO_TCP, payload: buf.subarray(IP_HEADROOM), dontFragment: true });
    if (r !== 'sent' && r !== 'queued') this.stats.outputErrors++;
  }

  // ===================================================================== ICMP

  icmpError(type: number, code: number, quoted: { src: Ipv4Addr; dst: Ipv4Addr; transportHeader: Uint8Array }): void {
    const h = quoted.transportHeader;
    if (h.length < 4) return;
    const srcPort = (h[0]! << 8) | h[1]!;
    const dstPort = (h[2]! << 8) | h[3]!;
    const conn = this.conns.get(connKey(quoted.src, srcPort, quoted.dst, dstPort));
    if (!conn) return;
    // RFC 1122 §4.2.3.9 / RFC 5461: protocol and port unreachable are hard errors while opening;
    // the rest (net/host unreachable, source quench) are soft and only recorded.
    if (type === 3 && (code === 2 || code === 3)) conn.icmpUnreachable(true);
  }
}
