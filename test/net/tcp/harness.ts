/**
 * A two-host test network for the TCP layer: hosts A (10.0.0.1) and B (10.0.0.2), each an
 * IpLayer with a real TcpLayer on top, joined by an impaired in-memory path that runs in virtual
 * time. Everything random (loss, duplication, reordering, the TCP layers' ISNs and ports) comes
 * from one seeded PRNG, so a failing run reproduces from its seed.
 *
 * The path carries real IPv4 datagrams (header built and checksummed with net/wire/ipv4, parsed and
 * verified on arrival) because that is what the IpLayer seam promises a transport: src/dst/protocol
 * and a payload whose TCP checksum TCP already filled in. No routing, ARP or fragmentation: the two
 * hosts share one link and TCP sets DF.
 */
import { createHash } from 'node:crypto';
import { parseIpv4 as parseAddr, type Ipv4Addr } from '../../../net/addr.js';
import { VirtualClock } from '../../../net/clock.js';
import { IPPROTO_TCP, type IpDatagramInfo, type IpLayer, type IpOutput, type IpSendResult } from '../../../net/ip-layer.js';
import type { TcpConfig } from '../../../net/tcp/config.js';
import type { TcpConnection, TcpState } from '../../../net/tcp/connection.js';
import { TcpLayer } from '../../../net/tcp/layer.js';
import { mulberry32 } from '../../../net/random.js';
import { emitIpv4Header, IPV4_HEADER_LEN, parseIpv4 } from '../../../net/wire/ipv4.js';
import { emitTcp, parseTcp, tcpEncodingLength, type TcpRepr } from '../../../net/wire/tcp.js';

export const ADDR_A = parseAddr('10.0.0.1')!;
export const ADDR_B = parseAddr('10.0.0.2')!;


export interface Impairments {
  /** One-way propagation delay. */
  delayMs: number;
  /** Uniform extra delay in [0, jitterMs): packets overtake each other when it exceeds their spacing. */
  jitterMs: number;
  /** Probability a datagram is lost. */
  loss: number;
  /** Probability a datagram is delivered twice. */
  duplicate: number;
  /** Probability a datagram is held back by `reorderDelayMs` (later ones overtake it). */
  reorder: number;
  reorderDelayMs: number;
  /** Serialization rate; null is an infinitely fast link. Makes a queue form, as on a real path. */
  bytesPerMs: number | null;
  /** Drop-tail bound of that queue. */
  queueLimitBytes: number;
  /**
   * MTU of a router in the middle of the path: a larger datagram with DF set is dropped there
   * and, unless `icmpFiltered`, answered with ICMP "fragmentation needed" (RFC 1191 §4) quoting
   * its IP header and first 8 bytes, which reaches the sender after the one-way delay.
   */
  pathMtu: number;
  /** The router's ICMP is filtered on the way back: a PMTU black hole. */
  icmpFiltered: boolean;
}

export const CLEAN_PATH: Impairments = {
  delayMs: 5,
  jitterMs: 0,
  loss: 0,
  duplicate: 0,
  reorder: 0,
  reorderDelayMs: 0,
  bytesPerMs: null,
  queueLimitBytes: Infinity,
  pathMtu: Infinity,
  icmpFiltered: false,
};

export type Side = 'a' | 'b';

export interface TraceEntry {
  t: number;
  from: Side;
  seg: TcpRepr;
  /** Dropped by the filter or by loss. */
  dropped: boolean;
}

export interface TestNetOptions {
  seed?: number;
  path?: Partial<Impairments>;
  /** TCP configuration for both layers (random is replaced by the seeded PRNG unless given). */
  tcp?: Partial<TcpConfig>;
  tcpA?: Partial<TcpConfig>;
  tcpB?: Partial<TcpConfig>;
  /** Record every segment (parsed) in `trace`. Off for bulk runs: it holds every payload. */
  trace?: boolean;
  mtu?: number;
}

/** One host's IP layer: output goes onto the path; input comes from it. */
export class TestIp implements IpLayer {
  readonly icmpReports: { info: IpDatagramInfo; code: number }[] = [];
  constructor(
    readonly net: TestNet,
    readonly side: Side,
    readonly addr: Ipv4Addr,
    readonly clock: VirtualClock,
    private readonly mtu: number,
  ) {}

  output(d: IpOutput): IpSendResult {
    if (d.protocol !== IPPROTO_TCP) return 'dropped';
    // The IP layer is allowed any source (IpLayer doc); the path only reaches the other host.
    const peer = this.side === 'a' ? ADDR_B : ADDR_A;
    if (d.dst !== peer) return 'no-route';
    if (IPV4_HEADER_LEN + d.payload.length > this.mtu && d.dontFragment) return 'dropped';
    const packet = new Uint8Array(IPV4_HEADER_LEN + d.payload.length);
    emitIpv4Header(packet, 0, { id: this.net.nextIpId(), flagsOffset: d.dontFragment ? 0x4000 : 0, ttl: d.ttl ?? 64, protocol: d.protocol, src: d.src, dst: d.dst, payloadLength: d.payload.length, tos: d.tos ?? 0 });
    packet.set(d.payload, IPV4_HEADER_LEN);
    return this.net.carry(this.side, packet);
  }

  sourceFor(dst: Ipv4Addr): Ipv4Addr | null {
    return dst === (this.side === 'a' ? ADDR_B : ADDR_A) ? this.addr : null;
  }

  mtuFor(_dst: Ipv4Addr): number {
    return this.mtu;
  }

  isLocal(addr: Ipv4Addr): boolean {
    return addr === this.addr;
  }

  icmpUnreachable(info: IpDatagramInfo, code: number): void {
    this.icmpReports.push({ info, code });
  }
}

export class TestNet {
  readonly clock = new VirtualClock();
  readonly random: () => number;
  readonly path: Impairments;
  readonly ipA: TestIp;
  readonly ipB: TestIp;
  readonly a: TcpLayer;
  readonly b: TcpLayer;
  readonly trace: TraceEntry[] = [];
  tracing: boolean;
  /** Return false to drop a segment (after tracing it); for targeted loss in tests. */
  filter: ((from: Side, seg: TcpRepr) => boolean) | null = null;
  readonly counters = { sent: 0, delivered: 0, lost: 0, duplicated: 0, reordered: 0, queueDrops: 0, badIp: 0, tooBig: 0, fragNeededSent: 0 };
  private ipId = 0;
  private readonly linkFreeAt = { a: 0, b: 0 };

  constructor(opts: TestNetOptions = {}) {
    this.random = mulberry32(opts.seed ?? 1);
    this.path = { ...CLEAN_PATH, ...opts.path };
    this.tracing = opts.trace ?? true;
    const mtu = opts.mtu ?? 1500;
    this.ipA = new TestIp(this, 'a', ADDR_A, this.clock, mtu);
    this.ipB = new TestIp(this, 'b', ADDR_B, this.clock, mtu);
    // Separate PRNG streams for the TCP layers so that changing an impairment does not change ISNs.
    const tcpRandom = mulberry32((opts.seed ?? 1) ^ 0x9e3779b9);
    this.a = new TcpLayer(this.ipA, { random: tcpRandom, ...opts.tcp, ...opts.tcpA });
    this.b = new TcpLayer(this.ipB, { random: tcpRandom, ...opts.tcp, ...opts.tcpB });
  }

  nextIpId(): number {
    this.ipId = (this.ipId + 1) & 0xffff;
    return this.ipId;
  }

  layer(side: Side): TcpLayer {
    return side === 'a' ? this.a : this.b;
  }

  /** Put a datagram from `from` onto the path toward the other host. */
  carry(from: Side, packet: Uint8Array): IpSendResult {
    this.counters.sent++;
    const p = this.path;
    const rnd = this.random;
    const seg = this.tracing || this.filter ? parseTcp(packet.subarray(IPV4_HEADER_LEN)) : null;
    let dropped = false;
    if (seg && seg.ok && this.filter && !this.filter(from, seg.value)) dropped = true;
    if (!dropped && packet.length > p.pathMtu && (packet[6]! & 0x40) !== 0) {
      dropped = true;
      this.counters.tooBig++;
      if (!p.icmpFiltered) this.fragNeeded(from, packet);
    }
    if (!dropped && p.loss > 0 && rnd() < p.loss) {
      dropped = true;
      this.counters.lost++;
    }
    const now = this.clock.now();
    let departAt = now;
    if (!dropped && p.bytesPerMs !== null) {
      const start = Math.max(now, this.linkFreeAt[from]);
      if ((start - now) * p.bytesPerMs > p.queueLimitBytes) {
        dropped = true;
        this.counters.queueDrops++;
      } else {
        departAt = start + packet.length / p.bytesPerMs;
        this.linkFreeAt[from] = departAt;
      }
    }
    if (this.tracing && seg && seg.ok) this.trace.push({ t: now, from, seg: seg.value, dropped });
    if (dropped) return 'sent'; // a lossy link still accepted it
    const copies = p.duplicate > 0 && rnd() < p.duplicate ? 2 : 1;
    if (copies === 2) this.counters.duplicated++;
    for (let i = 0; i < copies; i++) {
      let at = departAt - now + p.delayMs;
      if (p.jitterMs > 0) at += rnd() * p.jitterMs;
      if (p.reorder > 0 && rnd() < p.reorder) {
        at += p.reorderDelayMs;
        this.counters.reordered++;
      }
      this.clock.setTimer(at, () => this.deliver(from === 'a' ? 'b' : 'a', packet));
    }
    return 'sent';
  }

  /** The path's router answers a too-big DF datagram: ICMP type 3 code 4 back to the sender. */
  private fragNeeded(from: Side, packet: Uint8Array): void {
    this.counters.fragNeededSent++;
    const quoted = packet.slice(IPV4_HEADER_LEN, IPV4_HEADER_LEN + 8); // RFC 792: 64 bits of data
    const src = from === 'a' ? ADDR_A : ADDR_B;
    const dst = from === 'a' ? ADDR_B : ADDR_A;
    const mtu = this.path.pathMtu;
    this.clock.setTimer(this.path.delayMs, () => this.layer(from).icmpError(3, 4, { src, dst, transportHeader: quoted, nextHopMtu: mtu }));
  }

  /** Craft a segment as if `from` had sent it (real checksum), bypassing impairments and filter. */
  inject(from: Side, repr: TcpRepr, delayMs = 0): void {
    const src = from === 'a' ? ADDR_A : ADDR_B;
    const dst = from === 'a' ? ADDR_B : ADDR_A;
    const packet = new Uint8Array(IPV4_HEADER_LEN + tcpEncodingLength(repr));
    emitTcp(repr, packet, IPV4_HEADER_LEN, src, dst);
    emitIpv4Header(packet, 0, { id: this.nextIpId(), ttl: 64, protocol: IPPROTO_TCP, src, dst, payloadLength: packet.length - IPV4_HEADER_LEN });
    const parsed = parseTcp(packet.subarray(IPV4_HEADER_LEN));
    if (this.tracing && parsed.ok) this.trace.push({ t: this.clock.now(), from, seg: parsed.value, dropped: false });
    this.clock.setTimer(delayMs, () => this.deliver(from === 'a' ? 'b' : 'a', packet));
  }

  private deliver(to: Side, packet: Uint8Array): void {
    const ip = parseIpv4(packet);
    const me = to === 'a' ? ADDR_A : ADDR_B;
    if (!ip.ok || ip.value.protocol !== IPPROTO_TCP || ip.value.dst !== me) {
      this.counters.badIp++;
      return;
    }
    this.counters.delivered++;
    const info: IpDatagramInfo = {
      src: ip.value.src,
      dst: ip.value.dst,
      protocol: ip.value.protocol,
      ttl: ip.value.ttl,
      netif: 'eth0',
      foreignDestination: false,
      broadcast: false,
    };
    this.layer(to).input(info, ip.value.payload, ip.value.packet);
  }

  /** Run until `done` holds; fail loudly (with the virtual time) if the limit passes first. */
  run(done: () => boolean, limitMs: number, what = 'condition'): void {
    if (!this.clock.runUntil(done, limitMs)) throw new Error(`timed out after ${limitMs} ms of virtual time waiting for ${what} (t=${this.clock.now()})`);
  }

  /** Segments recorded so far that `from` sent (not counting dropped ones unless asked). */
  sent(from: Side, includeDropped = true): TraceEntry[] {
    return this.trace.filter((e) => e.from === from && (includeDropped || !e.dropped));
  }
}

/** Records every state a connection passes through. */
export function recordStates(conn: TcpConnection): TcpState[] {
  const states: TcpState[] = [conn.state];
  conn.onStateChange = (_from, to) => states.push(to);
  return states;
}

/**
 * Connect A → B on `port`, returning both ends once established, with every state change of each
 * recorded from the very first (B's connection is caught as the layer creates it).
 */
export function establish(
  net: TestNet,
  port = 80,
  limitMs = 10_000,
): { client: TcpConnection; server: TcpConnection; clientStates: TcpState[]; serverStates: TcpState[] } {
  let server: TcpConnection | null = null;
  let serverStates: TcpState[] = [];
  net.b.onNewConnection = (c) => {
    serverStates = recordStates(c);
  };
  const listener = net.b.listen(port, (c) => {
    server = c;
  });
  const client = net.a.connect(ADDR_B, port);
  const clientStates = recordStates(client);
  clientStates.splice(0, 1, 'CLOSED'); // connect() already moved it to SYN-SENT
  clientStates.push('SYN_SENT');
  net.run(() => server !== null && client.state === 'ESTABLISHED', limitMs, 'handshake');
  listener.close();
  net.b.onNewConnection = null;
  return { client, server: server!, clientStates, serverStates };
}

/** A sink that hashes what arrives and hands the window straight back (an always-reading app). */
export class Sink {
  readonly hash = createHash('sha256');
  received = 0;
  ended = false;
  closed = false;
  error: string | null = null;
  /** When false the sink stops consuming (no `recved`), like an application that does not read. */
  reading = true;
  private held = 0;

  constructor(readonly conn: TcpConnection) {
    conn.onData = (d) => {
      this.hash.update(d);
      this.received += d.length;
      if (this.reading) conn.recved(d.length);
      else this.held += d.length;
    };
    conn.onEnd = () => {
      this.ended = true;
    };
    conn.onError = (code) => {
      this.error = code;
    };
    conn.onClose = () => {
      this.closed = true;
    };
  }

  /** Start reading again, releasing everything held. */
  resume(): void {
    this.reading = true;
    const n = this.held;
    this.held = 0;
    this.conn.recved(n);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * Writes `data` into a connection as fast as its send buffer takes it (refilling from onSent),
 * then optionally half-closes. This is how an application using the raw API streams a file.
 */
export class Source {
  offset = 0;
  private shut = false;
  constructor(
    readonly conn: TcpConnection,
    readonly data: Uint8Array,
    readonly shutdownWhenDone = true,
  ) {
    const prev = conn.onSent;
    conn.onSent = (n) => {
      prev?.(n);
      this.pump();
    };
    this.pump();
  }

  get done(): boolean {
    return this.offset === this.data.length;
  }

  pump(): void {
    while (this.offset < this.data.length) {
      const n = this.conn.write(this.data.subarray(this.offset));
      if (n === 0) break;
      this.offset += n;
    }
    if (this.done && this.shutdownWhenDone && !this.shut) {
      this.shut = true;
      this.conn.shutdown();
    }
  }
}

/** Deterministic pseudo-random bytes (fast: 32 bits per PRNG step). */
export function randomBytes(n: number, seed: number): Uint8Array {
  const r = mulberry32(seed);
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >> 2);
  for (let i = 0; i < words.length; i++) words[i] = (r() * 4294967296) >>> 0;
  for (let i = words.length * 4; i < n; i++) out[i] = (r() * 256) | 0;
  return out;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
