import { guard, type FailStopScope } from '../../src/vmm/fail-stop.js';
import { netDebug, type NetDebug } from '../../net/debug.js';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { createSocket, type Socket as UdpHostSocket } from 'node:dgram';
import { formatIpv4, type Ipv4Addr } from '../../net/addr.js';
import type { Clock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import { Stack } from '../../net/stack.js';
import type { Netif } from '../../net/netif.js';
import type { TcpConnection } from '../../net/tcp/connection.js';
import type { UdpMeta, UdpSocket } from '../../net/udp/layer.js';
import type { ComponentLog } from '../../src/log.js';
import type { UserNetAddressing } from './addressing.js';
import { formatRedirect, type Redirect } from './redirect-spec.js';
import { bridgeTcp } from './tcp-bridge.js';
import { lookup } from 'node:dns';
import { DhcpServer } from '../../net/dhcp/server.js';
import { DNS_CLASS_IN, DnsRcode, DnsType, encodeDns, parseDns, type DnsRecord } from '../../net/wire/dns.js';

/**
 * The user-mode network (QEMU's slirp, rebuilt on our own stack): a virtual router at the
 * gateway address that answers ARP and ping, terminates the guest's TCP and UDP and re-originates
 * them from host sockets (NAT), and accepts host connections on redirected ports, turning each into
 * a TCP connection from the gateway to the guest. No root: only ordinary sockets on the host.
 *
 * Host sockets go only to 127.0.0.1 when the guest talks to the gateway address (as in slirp, the
 * gateway is the host's loopback). Other destinations need `restrict: false`; restricted (the
 * default in tests) they are refused with a reset / ICMP port unreachable.
 */
/**
 * The user-mode network's socket buffers toward the guest (each way, per connection), as large as
 * the guest's own (src/guest/network.ts GUEST_TCP_BUFFER) so neither side's window caps a
 * 64 KiB-segment transfer.
 */
export const USERNET_TCP_BUFFER = 1 << 20;

export interface UserNetOptions {
  clock: Clock;
  addressing: UserNetAddressing;
  restrict: boolean;
  log: ComponentLog;
  /** Where redirect listeners bind when a spec gives no host address. */
  listenAddress?: string;
  random?: () => number;
  /** Per-guest caps on host resources (defaults: USERNET_LIMITS). */
  limits?: Partial<UserNetLimits>;
}

/**
 * What one guest may hold on the host. libslirp keeps a UDP socket per flow until it has been
 * idle for SO_EXPIRE (240 s; SO_EXPIREFAST, 10 s, for DNS) but caps nothing, so a guest can
 * exhaust the host's file descriptors; these caps keep a guest within a budget. Every refusal is
 * answered (TCP RST, ICMP port unreachable) and counted in UserNetStats.
 */
export interface UserNetLimits {
  /** Guest UDP flows with a host socket at once. */
  udpFlows: number;
  /** Idle time after which a UDP flow's host socket is closed (libslirp SO_EXPIRE). */
  udpIdleMs: number;
  /** The same for flows to port 53 (libslirp SO_EXPIREFAST): one query, one answer. */
  dnsIdleMs: number;
  /** Host TCP sockets (NAT and redirected connections together). */
  tcpSockets: number;
  /** NAT connects to the host still in progress. */
  pendingConnects: number;
}

export const USERNET_LIMITS: Readonly<UserNetLimits> = { udpFlows: 256, udpIdleMs: 240_000, dnsIdleMs: 10_000, tcpSockets: 512, pendingConnects: 64 };

export interface UserNetStats {
  natTcp: number;
  natTcpRefused: number;
  natUdp: number;
  dhcpReplies: number;
  dnsQueries: number;
  dnsFailures: number;
  redirectedConnections: number;
  redirectRefused: number;
  bytesToGuest: number;
  bytesToHost: number;
  /** Host sockets and flows open now. */
  udpFlowsOpen: number;
  tcpSocketsOpen: number;
  pendingConnects: number;
  /** UDP flows closed after their idle time. */
  udpFlowsExpired: number;
  /** Refusals because a per-guest limit was reached (each answered with RST or ICMP). */
  udpFlowLimitRefused: number;
  tcpSocketLimitRefused: number;
  pendingConnectLimitRefused: number;
  redirectLimitRefused: number;
  /** Host-socket callbacks that threw (caught, logged; the flow is closed, the lab goes on). */
  callbackErrors: number;
}

/** The gateway's MAC: 52:55 followed by its IPv4 address, as libslirp does. */
export function gatewayMac(gateway: Ipv4Addr): Uint8Array {
  return Uint8Array.of(0x52, 0x55, gateway >>> 24, (gateway >>> 16) & 0xff, (gateway >>> 8) & 0xff, gateway & 0xff);
}

interface UdpFlow {
  host: UdpHostSocket;
  idle: { cancel(): void } | null;
  idleMs: number;
}


export class UserNet {
  readonly stack: Stack;
  readonly netif: Netif;
  readonly stats: UserNetStats = {
    natTcp: 0, natTcpRefused: 0, natUdp: 0, dhcpReplies: 0, dnsQueries: 0, dnsFailures: 0, redirectedConnections: 0, redirectRefused: 0, bytesToGuest: 0, bytesToHost: 0,
    udpFlowsOpen: 0, tcpSocketsOpen: 0, pendingConnects: 0, udpFlowsExpired: 0, udpFlowLimitRefused: 0, tcpSocketLimitRefused: 0, pendingConnectLimitRefused: 0, redirectLimitRefused: 0, callbackErrors: 0,
  };
  readonly limits: Readonly<UserNetLimits>;
  private readonly servers: Server[] = [];
  private readonly udpServers: UdpHostSocket[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly udpFlows = new Map<string, UdpFlow>();
  private closed = false;
  /** Extra UDP handlers by gateway-side port (DHCP server on 67, DNS on the DNS address's 53). */
  readonly udpServices = new Map<string, (data: Uint8Array, meta: UdpMeta, reply: (payload: Uint8Array, dst?: Ipv4Addr, dstPort?: number) => void) => void>();

  constructor(
    /** The guest-facing end: give the other end of this link to the NIC model. */
    port: FramePort,
    private readonly o: UserNetOptions,
  ) {
    const a = o.addressing;
    this.limits = { ...USERNET_LIMITS, ...o.limits };
    // The gateway's own protocols log as `user.tcp`, `user.dhcp` …: `--debug tcp` shows them beside
    // the guests', while `--debug usernet` stays the NAT and redirect lines.
    this.netDebug = netDebug((c) => o.log.root.child(`user.${c}`));
    this.stack = new Stack({ clock: o.clock, name: 'usernet', routerMode: true, random: o.random, tcp: { minRtoMs: 200, sendBufferSize: USERNET_TCP_BUFFER, recvBufferSize: USERNET_TCP_BUFFER }, debug: this.netDebug });
    this.netif = this.stack.addNetif('user', port, gatewayMac(a.gateway));
    // Our stack takes TCP segments of any size up to 64 KiB: a guest NIC with TSO may hand them over
    // whole instead of cutting them to the MTU (QEMU's vnet_hdr backends do the same), and with the
    // guest's checksum left partial: the stack trusts it (its data ends in a host socket, where no
    // checksum goes), as the kernel trusts a CHECKSUM_PARTIAL packet from a TAP.
    port.offerGso?.(true, true);
    this.stack.configure(this.netif, a.gateway, a.prefixLength);
    this.netif.aliases.add(a.dns);
    this.stack.tcp.acceptAny = (info) => this.acceptGuestTcp(info.localAddr, info.localPort);
    this.stack.udp.acceptAny = (data, meta) => this.guestUdp(data, meta);
    const mask = a.prefixLength === 0 ? 0 : (~(0xffffffff >>> a.prefixLength)) >>> 0;
    this.dhcp = new DhcpServer({ serverAddress: a.gateway, poolStart: a.dhcpStart, poolSize: a.dhcpCount, subnetMask: mask, router: a.gateway, dnsServers: [a.dns], clock: o.clock, debug: this.netDebug.dhcp });
    // A redirect that names the guest's address: the DHCP guest gets exactly that address.
    if (a.guestStatic) this.dhcp.reserve('any', a.guest);
    this.udpServices.set('*:67', (data, meta) => this.dhcpInput(data, meta));
    this.udpServices.set(`${formatIpv4(a.dns)}:53`, (data, meta, reply) => this.dnsInput(data, meta, reply));
  }

  readonly dhcp: DhcpServer;
  private readonly netDebug: NetDebug;

  private dhcpInput(data: Uint8Array, meta: UdpMeta): void {
    for (const r of this.dhcp.input(data, meta.src)) {
      // A reply to the offered address goes to the client's MAC: it cannot answer ARP yet.
      if (r.dstMac && r.dst !== 0xffffffff) this.stack.arp.update(this.netif.name, r.dst, r.dstMac, true);
      this.stats.dhcpReplies++;
      this.stack.udp.sendFrom(this.o.addressing.gateway, 67, r.dst, 68, r.payload);
    }
  }

  /**
   * The DNS address answers from the host's resolver (getaddrinfo: /etc/hosts, then DNS), as
   * slirp relays to the host's resolver. A and AAAA are answered; other types get NOTIMP.
   */
  private dnsInput(data: Uint8Array, _meta: UdpMeta, reply: (payload: Uint8Array) => void): void {
    const q = parseDns(data);
    const dbg = this.netDebug.dns;
    if (!q.ok || q.value.flags.qr || q.value.questions.length !== 1) {
      this.stats.dnsFailures++;
      if (dbg.on) dbg.debug(`drop (${!q.ok ? `malformed: ${q.error}` : q.value.flags.qr ? 'a response, not a query' : `${q.value.questions.length} questions`}) from ${formatIpv4(_meta.src)}:${_meta.srcPort}`);
      return;
    }
    this.stats.dnsQueries++;
    const msg = q.value;
    const question = msg.questions[0]!;
    if (dbg.on) dbg.debug(`query id ${msg.id} ${question.name} type ${question.type} from ${formatIpv4(_meta.src)}:${_meta.srcPort}`);
    const answer = (rcode: number, answers: DnsRecord[]): void => {
      if (dbg.on) dbg.debug(`answer id ${msg.id} ${question.name}: rcode ${rcode}, ${answers.length} record${answers.length === 1 ? '' : 's'}`);
      reply(encodeDns({ id: msg.id, flags: { ...msg.flags, qr: true, ra: true, aa: false, tc: false, rcode }, questions: msg.questions, answers, authorities: [], additionals: [] }));
    };
    if (question.class !== DNS_CLASS_IN || (question.type !== DnsType.A && question.type !== DnsType.AAAA)) {
      answer(DnsRcode.NOTIMP, []);
      return;
    }
    const family = question.type === DnsType.A ? 4 : 6;
    lookup(question.name, { family, all: true }, (err, addrs) => {
      if (err) {
        if (err.code !== 'ENOTFOUND' && err.code !== 'ENODATA') {
          this.stats.dnsFailures++;
          answer(DnsRcode.SERVFAIL, []);
          return;
        }
        // getaddrinfo says only "nothing of this family". A name that exists with no record of
        // the asked type is NOERROR with an empty answer (RFC 2308 §2.2, NODATA), not NXDOMAIN:
        // busybox's nslookup otherwise reports "can't find localhost" when the host has no ::1.
        lookup(question.name, { family: family === 4 ? 6 : 4 }, (otherErr) => {
          if (otherErr) this.stats.dnsFailures++;
          answer(otherErr ? DnsRcode.NXDOMAIN : DnsRcode.NOERROR, []);
        });
        return;
      }
      const records: DnsRecord[] = [];
      for (const a of addrs) {
        if (family === 4) {
          const parts = a.address.split('.').map(Number);
          const v = (((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0);
          records.push({ name: question.name, type: DnsType.A, class: DNS_CLASS_IN, ttl: 60, data: { kind: 'a', address: v } });
        } else {
          const bytes = ipv6Bytes(a.address);
          if (bytes) records.push({ name: question.name, type: DnsType.AAAA, class: DNS_CLASS_IN, ttl: 60, data: { kind: 'aaaa', address: bytes } });
        }
      }
      answer(DnsRcode.NOERROR, records);
    });
  }

  get addressing(): UserNetAddressing {
    return this.o.addressing;
  }

  /**
   * The one boundary where host-socket callbacks enter the lab (every `on(...)` of a host socket
   * or server goes through here), built on the lab's one fail-stop mechanism (src/vmm/fail-stop.ts)
   * with the flow as the scope: a throw is counted and logged, `teardown` closes the flow it
   * belongs to, and that callback is not entered again — one bad flow never ends the lab process.
   */
  guard<A extends unknown[]>(what: string, fn: (...args: A) => void, teardown?: () => void): (...args: A) => void {
    let failed = false;
    const scope: FailStopScope = {
      name: `usernet ${what}`,
      get stopped() {
        return failed;
      },
      fail: (message) => {
        failed = true;
        this.stats.callbackErrors++;
        this.o.log.error(`${message} (host-socket callback): flow closed`);
        try {
          teardown?.();
        } catch {
          // tearing down a broken flow is best effort; the count and the log line above stand
        }
      },
      log: this.o.log,
    };
    return guard(scope, what, fn, undefined);
  }

  // ------------------------------------------------------------------ guest → host (NAT)

  /** Where a guest connection to `dst:port` goes on the host, or null when it is not allowed. */
  private hostTarget(dst: Ipv4Addr): string | null {
    const a = this.o.addressing;
    if (dst === a.gateway) return '127.0.0.1';
    if (dst === a.dns) return null; // DNS over TCP is not relayed
    if (this.o.restrict) return null;
    if ((dst & 0xff000000) >>> 0 === 0x7f000000) return null;
    return formatIpv4(dst);
  }

  /** Which per-guest TCP limit a new NAT connection would break, counted; null when it fits. */
  private tcpLimitReached(): string | null {
    if (this.sockets.size >= this.limits.tcpSockets) {
      this.stats.tcpSocketLimitRefused++;
      return `${this.limits.tcpSockets} host TCP sockets in use`;
    }
    if (this.stats.pendingConnects >= this.limits.pendingConnects) {
      this.stats.pendingConnectLimitRefused++;
      return `${this.limits.pendingConnects} host connects pending`;
    }
    return null;
  }

  private acceptGuestTcp(dst: Ipv4Addr, dstPort: number): { onAccept: (c: TcpConnection) => void } | null {
    const target = this.hostTarget(dst);
    if (target === null) {
      this.stats.natTcpRefused++;
      if (this.o.log.on) this.o.log.debug(`nat: refused guest TCP to ${formatIpv4(dst)}:${dstPort} (${this.o.restrict ? 'restricted' : 'not relayed'})`);
      return null;
    }
    // Over a limit already: the SYN is answered with a reset (ECONNREFUSED in the guest).
    const full = this.tcpLimitReached();
    if (full !== null) {
      if (this.o.log.on) this.o.log.debug(`nat: refused guest TCP to ${formatIpv4(dst)}:${dstPort} (${full})`);
      return null;
    }
    return {
      onAccept: (conn) => {
        // Handshakes complete in batches: the limit is checked again when the host socket is made.
        const over = this.tcpLimitReached();
        if (over !== null) {
          if (this.o.log.on) this.o.log.debug(`nat: reset guest TCP to ${formatIpv4(dst)}:${dstPort} (${over})`);
          conn.abort();
          return;
        }
        this.stats.natTcp++;
        if (this.o.log.on) this.o.log.debug(`nat: guest ${formatIpv4(conn.remoteAddr)}:${conn.remotePort} → host ${target}:${dstPort}`);
        // slirp connects first and answers the SYN after; our stack accepts first, so a host
        // refusal reaches the guest as a reset right after the handshake.
        const sock = createConnection({ host: target, port: dstPort, allowHalfOpen: true });
        this.track(sock);
        this.stats.pendingConnects++;
        let pending = true;
        const settled = (): void => {
          if (pending) this.stats.pendingConnects--;
          pending = false;
        };
        sock.once('connect', this.guard('nat connect', settled));
        sock.once('close', settled);
        sock.once('error', this.guard('nat connect', () => conn.abort()));
        bridgeTcp(sock, conn, () => {}, (what, fn) => this.guard(what, fn, () => {
          sock.destroy();
          conn.abort();
        }));
      },
    };
  }

  private guestUdp(data: Uint8Array, meta: UdpMeta): boolean {
    const service = this.udpServices.get(`${meta.dst === 0xffffffff ? 'bcast' : formatIpv4(meta.dst)}:${meta.dstPort}`) ?? this.udpServices.get(`*:${meta.dstPort}`);
    if (service) {
      service(data, meta, (payload, dst = meta.src, dstPort = meta.srcPort) => {
        const from = meta.dst === 0xffffffff || meta.broadcast ? this.o.addressing.gateway : meta.dst;
        this.stack.udp.sendFrom(from, meta.dstPort, dst, dstPort, payload);
      });
      return true;
    }
    if (meta.broadcast) return false;
    const target = this.hostTarget(meta.dst);
    if (target === null) return false; // port unreachable to the guest
    const key = `${meta.src}:${meta.srcPort}:${meta.dst}:${meta.dstPort}`;
    let flow = this.udpFlows.get(key);
    if (!flow) {
      if (this.udpFlows.size >= this.limits.udpFlows) {
        // No host socket for a new flow: ICMP port unreachable tells the guest at once.
        this.stats.udpFlowLimitRefused++;
        if (this.o.log.on) this.o.log.debug(`nat: refused guest UDP to ${formatIpv4(meta.dst)}:${meta.dstPort} (${this.limits.udpFlows} flows open)`);
        return false;
      }
      const host = createSocket('udp4');
      const f: UdpFlow = { host, idle: null, idleMs: meta.dstPort === 53 ? this.limits.dnsIdleMs : this.limits.udpIdleMs };
      flow = f;
      this.udpFlows.set(key, f);
      this.stats.udpFlowsOpen = this.udpFlows.size;
      host.on('message', this.guard('nat udp', (msg: Buffer) => {
        this.touch(key, f);
        this.stack.udp.sendFrom(meta.dst, meta.dstPort, meta.src, meta.srcPort, new Uint8Array(msg));
      }, () => this.dropFlow(key)));
      host.on('error', this.guard('nat udp', () => this.dropFlow(key)));
    }
    this.stats.natUdp++;
    this.touch(key, flow);
    flow.host.send(data, meta.dstPort, target);
    return true;
  }

  private touch(key: string, f: UdpFlow): void {
    f.idle?.cancel();
    f.idle = this.o.clock.setTimer(f.idleMs, () => {
      this.stats.udpFlowsExpired++;
      this.dropFlow(key);
    });
  }

  private dropFlow(key: string): void {
    const f = this.udpFlows.get(key);
    if (!f) return;
    f.idle?.cancel();
    this.udpFlows.delete(key);
    this.stats.udpFlowsOpen = this.udpFlows.size;
    try {
      f.host.close();
    } catch {
      // already closed
    }
  }

  // ------------------------------------------------------------------ host → guest (redirects)

  /** Open every redirect's host listener. Resolves with errors (port in use…) instead of throwing. */
  async listen(redirects: Redirect[]): Promise<string[]> {
    const errors: string[] = [];
    for (const r of redirects) {
      const err = r.proto === 'tcp' ? await this.listenTcp(r) : await this.listenUdp(r);
      if (err) errors.push(err);
    }
    return errors;
  }

  private guestOf(r: Redirect): Ipv4Addr {
    return r.guestAddr ?? this.o.addressing.guest;
  }

  private listenTcp(r: Redirect): Promise<string | null> {
    const host = r.hostAddr ?? this.o.listenAddress ?? '127.0.0.1';
    const guest = this.guestOf(r);
    return new Promise((resolve) => {
      const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, this.guard('redirect accept', (sock: Socket) => {
        if (this.sockets.size >= this.limits.tcpSockets) {
          // The guest's budget of host sockets is spent: the host client sees a reset.
          this.stats.redirectLimitRefused++;
          if (this.o.log.on) this.o.log.debug(`redirect: refused ${sock.remoteAddress}:${sock.remotePort} (${this.limits.tcpSockets} host TCP sockets in use)`);
          sock.on('error', () => {});
          sock.resetAndDestroy();
          return;
        }
        this.track(sock);
        this.stats.redirectedConnections++;
        const conn = this.stack.tcp.connect(guest, r.guestPort, { localAddr: this.o.addressing.gateway });
        if (this.o.log.on) this.o.log.debug(`redirect: ${sock.remoteAddress}:${sock.remotePort} → ${formatIpv4(guest)}:${r.guestPort}`);
        const stats = bridgeTcp(sock, conn, (why) => {
          if (why.includes('ECONNREFUSED')) this.stats.redirectRefused++;
          this.stats.bytesToGuest += stats.toGuest;
          this.stats.bytesToHost += stats.toHost;
        }, (what, fn) => this.guard(what, fn, () => {
          sock.destroy();
          conn.abort();
        }));
        conn.onConnected = () => sock.resume();
      }));
      server.once('error', (e: NodeJS.ErrnoException) => {
        resolve(e.code === 'EADDRINUSE'
          ? `redirect ${r.spec}: ${host}:${r.hostPort} is already in use on this host; pick another host port (e.g. tcp:${r.hostPort + 1}:…) or stop what is listening there (ss -ltnp 'sport = :${r.hostPort}')`
          : e.code === 'EACCES'
            ? `redirect ${r.spec}: no permission to listen on ${host}:${r.hostPort} (ports below 1024 need root); use a port above 1023`
            : `redirect ${r.spec}: cannot listen on ${host}:${r.hostPort}: ${e.message}`);
      });
      server.listen(r.hostPort, host, () => {
        this.servers.push(server);
        resolve(null);
      });
    });
  }

  private listenUdp(r: Redirect): Promise<string | null> {
    const host = r.hostAddr ?? this.o.listenAddress ?? '127.0.0.1';
    const guest = this.guestOf(r);
    return new Promise((resolve) => {
      const s = createSocket('udp4');
      // One gateway-side socket per host peer, so replies find their way back.
      const peers = new Map<string, UdpSocket>();
      s.on('message', this.guard('redirect udp', (msg: Buffer, rinfo: { address: string; port: number }) => {
        const key = `${rinfo.address}:${rinfo.port}`;
        let g = peers.get(key);
        if (!g) {
          g = this.stack.udp.socket().bind(0, this.o.addressing.gateway);
          g.connect(guest, r.guestPort);
          g.onMessage = (d) => s.send(d, rinfo.port, rinfo.address);
          peers.set(key, g);
        }
        g.send(new Uint8Array(msg));
      }));
      s.once('error', (e: NodeJS.ErrnoException) => {
        resolve(e.code === 'EADDRINUSE' ? `redirect ${r.spec}: UDP ${host}:${r.hostPort} is already in use on this host; pick another host port` : `redirect ${r.spec}: cannot bind UDP ${host}:${r.hostPort}: ${e.message}`);
      });
      s.bind(r.hostPort, host, () => {
        this.udpServers.push(s);
        resolve(null);
      });
    });
  }

  describeRedirects(redirects: Redirect[]): string[] {
    return redirects.map((r) => formatRedirect({ ...r, guestAddr: this.guestOf(r) }, this.o.listenAddress ?? '127.0.0.1'));
  }

  private track(sock: Socket): void {
    this.sockets.add(sock);
    this.stats.tcpSocketsOpen = this.sockets.size;
    sock.once('close', () => {
      this.sockets.delete(sock);
      this.stats.tcpSocketsOpen = this.sockets.size;
    });
  }

  /** Stop listening and drop every host socket (they see a reset). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.servers) s.close();
    for (const s of this.udpServers) s.close();
    for (const s of this.sockets) s.destroy();
    for (const k of [...this.udpFlows.keys()]) this.dropFlow(k);
  }
}

/** An IPv6 text address as 16 bytes (for AAAA answers), or null. */
function ipv6Bytes(text: string): Uint8Array | null {
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  if (tail === undefined && h.length !== 8) return null;
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g || '0', 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}
