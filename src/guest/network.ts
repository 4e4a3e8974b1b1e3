import { formatIpv4, formatMac, parseIpv4, type Ipv4Addr } from '../../net/addr.js';
import { netDebug } from '../../net/debug.js';
import { Stack, type PingResult } from '../../net/stack.js';
import type { Netif } from '../../net/netif.js';
import type { TcpConnection } from '../../net/tcp/connection.js';
import type { FramePort } from '../../net/frame-port.js';
import type { AppConn, AppHandler } from './apps/app-conn.js';
import { httpService, type HttpCounters } from './apps/http.js';
import { chargenService, discardService, echoService, type DiscardCounters } from './apps/simple-services.js';
import { Shell, telnetShellService, type ShellContext } from './shell.js';
import type { GuestKernel } from './kernel.js';
import type { GuestHardware } from './hardware.js';
import { DhcpClient, type DhcpLease } from '../../net/dhcp/client.js';

/**
 * The guest's network bring-up (Kitten's netdev init + lwIP's netif_add): a Stack on the first NIC
 * the drivers registered, addressed from the kernel command line (static) or by DHCP, then the
 * apps from the config listening on their ports, and the shell on the serial console.
 */
export interface GuestNetwork {
  stack: Stack;
  netif: Netif;
  /** Resolves once the interface has an address (at once when static; on the first DHCP lease). */
  ready: Promise<void>;
  dhcp: DhcpClient | null;
  dns: Ipv4Addr[];
  counters: { http: HttpCounters; discard: DiscardCounters };
  shellContext: ShellContext;
}

/** The raw TCP connection as the apps' AppConn: the stack's pace, never unbounded buffering. */
export function appConn(c: TcpConnection, remote: string): AppConn {
  const conn: AppConn = {
    remote,
    write: (d) => c.write(d),
    end: () => c.shutdown(),
    abort: () => c.abort(),
    consumed: (n) => c.recved(n),
    onData: () => {},
    onEnd: () => {},
    onWritable: () => {},
    onClose: () => {},
  };
  c.onData = (d) => {
    // Most apps consume at once and the window reopens now; one that holds data (echo, waiting
    // for room to write it back) returns false and reopens it with consumed(n) as it goes.
    if (conn.onData(d) !== false) c.recved(d.length);
  };
  c.onSent = () => conn.onWritable();
  c.onEnd = () => conn.onEnd();
  c.onClose = () => conn.onClose();
  return conn;
}

const APPS: Record<string, number> = { httpd: 80, echo: 7, discard: 9, chargen: 19, shell: 23 };

export interface GuestNetworkOptions {
  port?: FramePort;
  random?: () => number;
  /** Put something (the lab's capture point `vm0.eth0.stack`) between the driver and the stack. */
  wrapPort?: (netifName: string, port: FramePort) => FramePort;
}

/**
 * The guest's socket buffers (each way, per connection). 256 KiB held a virtio guest with 64 KiB
 * TSO segments to four segments in flight, so a transfer was window-bound once a thread hop or the
 * kernel added a few hundred microseconds; 1 MiB measured +20-30% on the redirect and the TAP
 * (docs/benchmarks.md). Linux autotunes up to 4-6 MiB; the ring is allocated per connection.
 */
export const GUEST_TCP_BUFFER = 1 << 20;

export function startGuestNetwork(kernel: GuestKernel, options: GuestNetworkOptions = {}): GuestNetwork | { error: string } {
  const raw = options.port ?? kernel.netDevices[0];
  const dev = raw && options.wrapPort ? options.wrapPort(kernel.netDevices[0] ? nameOf(kernel, 0) : 'eth0', raw) : raw;
  if (!dev) return { error: 'no network device (no NIC driver bound)' };
  const clock = kernel.hw.clock;
  const debug = netDebug((c) => kernel.debug(c));
  const stack = new Stack({ clock, name: 'guest', random: options.random, debug, tcp: { sendBufferSize: GUEST_TCP_BUFFER, recvBufferSize: GUEST_TCP_BUFFER } });
  const mac = (kernel.netDevices[0]?.mac ?? new Uint8Array(6));
  const netif = stack.addNetif(kernel.netDevices[0] ? nameOf(kernel, 0) : 'eth0', dev, mac);
  const kc = kernel.kernelConfig;
  if (kc.ip !== undefined) {
    stack.configure(netif, kc.ip, kc.prefixLength ?? 24, kc.gateway ?? 0);
    kernel.printk(`${netif.name}: ${formatIpv4(kc.ip)}/${kc.prefixLength ?? 24}${kc.gateway ? ` gw ${formatIpv4(kc.gateway)}` : ''}`);
  }
  const dns: Ipv4Addr[] = kc.dns !== undefined ? [kc.dns] : [];
  let dhcp: DhcpClient | null = null;
  let ready: Promise<void> = Promise.resolve();
  if (kc.ip === undefined) {
    netif.up = true; // up without an address: DHCP runs over it
    const sock = stack.udp.socket().bind(68);
    const client = new DhcpClient({
      clock,
      mac: netif.mac,
      hostname: kc.hostname ?? 'netlab',
      random: options.random ?? Math.random,
      debug: debug.dhcp,
      send: (d) => void sock.send(d.payload, d.dst, 67, d.src),
      onBound: (lease: DhcpLease) => {
        const fresh = netif.addr !== lease.address;
        stack.configure(netif, lease.address, lease.prefixLength, lease.router ?? 0);
        dns.splice(0, dns.length, ...lease.dnsServers);
        if (fresh) kernel.printk(`${netif.name}: DHCP lease ${formatIpv4(lease.address)}/${lease.prefixLength}${lease.router ? ` gw ${formatIpv4(lease.router)}` : ''}${lease.dnsServers.length ? ` dns ${lease.dnsServers.map(formatIpv4).join(',')}` : ''} for ${lease.leaseSeconds} s`);
        resolveReady();
      },
      onLost: () => {
        kernel.printk(`${netif.name}: DHCP lease lost`);
        stack.configure(netif, 0, 0, 0);
      },
    });
    let resolveReady: () => void = () => {};
    ready = new Promise((r) => (resolveReady = r));
    sock.onMessage = (d, m) => client.input(d, m.src);
    client.start();
    dhcp = client;
  }
  const counters = { http: { requests: 0, bytesStreamed: 0 }, discard: { bytes: 0, connections: 0 } };
  const shellContext = makeShellContext(stack, netif, counters, kernel.hw.guard);
  const status = { statusText: () => [`netlab guest ${formatIpv4(netif.addr)}`, '', shellContext.ifconfig(), '', 'ARP:', shellContext.arp(), '', 'TCP:', shellContext.netstat(), '', shellContext.stats()].join('\n') };
  const handlers: Record<string, AppHandler> = {
    httpd: httpService(status, counters.http),
    echo: echoService,
    discard: discardService(counters.discard),
    chargen: chargenService,
    shell: telnetShellService(shellContext, `netlab guest shell on ${netif.name}\r\n`),
  };
  for (const app of kernel.apps) {
    const handler = handlers[app.name];
    const port = app.port ?? APPS[app.name];
    if (!handler || port === undefined) {
      kernel.printk(`app ${app.name}: unknown, not started`);
      continue;
    }
    stack.tcp.listen(port, (c) => handler(appConn(c, `${formatIpv4(c.remoteAddr)}:${c.remotePort}`)));
    if (app.name === 'echo') {
      // RFC 862 over UDP as well: each datagram goes back to its sender.
      const u = stack.udp.socket().bind(port);
      u.onMessage = (d, m) => void u.send(d, m.src, m.srcPort);
    }
  }
  kernel.printk(`apps: ${kernel.apps.map((a) => `${a.name}:${a.port ?? APPS[a.name]}`).join(' ')}`);
  // The serial console shell.
  const shell = new Shell(shellContext, (t) => kernel.console.write(t));
  kernel.console.onLine = (line) => shell.line(line);
  return { stack, netif, counters, shellContext, ready, dhcp, dns };
}

function nameOf(kernel: GuestKernel, i: number): string {
  return kernel.netDevices[i]!.name.startsWith('eth') ? kernel.netDevices[i]!.name : `eth${i}`;
}

function makeShellContext(stack: Stack, netif: Netif, counters: { http: HttpCounters; discard: DiscardCounters }, guestGuard: GuestHardware['guard']): ShellContext {
  return {
    ifconfig: () => {
      const c = netif.counters;
      return [
        `${netif.name}: ${netif.up ? 'UP' : 'DOWN'} mtu ${netif.mtu}`,
        `    inet ${formatIpv4(netif.addr)}/${netif.prefixLength}  broadcast ${formatIpv4(netif.broadcast)}`,
        `    ether ${formatMac(netif.mac)}`,
        `    RX packets ${c.rxFrames}  bytes ${c.rxBytes}  dropped ${c.rxDropsMalformed + c.rxDropsNotForUs + c.rxDropsUnknownType}`,
        `    TX packets ${c.txFrames}  bytes ${c.txBytes}  dropped ${c.txDrops}`,
      ].join('\n');
    },
    arp: () => {
      const rows = stack.arp.list();
      if (rows.length === 0) return '(empty)';
      return rows.map((r) => `${formatIpv4(r.addr).padEnd(16)} ${r.mac ? formatMac(r.mac) : '(incomplete)    '}  ${r.netif}  ${Math.round(r.expiresInMs / 1000)}s`).join('\n');
    },
    route: () => {
      const lines = ['Destination      Gateway          Iface'];
      if (netif.addr) lines.push(`${(formatIpv4(netif.addr & mask(netif.prefixLength)) + '/' + netif.prefixLength).padEnd(16)} 0.0.0.0          ${netif.name}`);
      if (netif.gateway) lines.push(`${'default'.padEnd(16)} ${formatIpv4(netif.gateway).padEnd(16)} ${netif.name}`);
      return lines.join('\n');
    },
    netstat: () => {
      const lines = ['Proto Local                 Remote                State'];
      for (const l of stack.tcp.listening()) lines.push(`tcp   ${(formatIpv4(l.addr) + ':' + l.port).padEnd(21)} ${'*:*'.padEnd(21)} LISTEN`);
      for (const c of stack.tcp.connections()) {
        // The sender's state as `ss -ti` shows it: what limits a transfer over a lossy link.
        const i = c.info();
        const ss = i.ssthresh >= Number.MAX_SAFE_INTEGER ? '-' : i.ssthresh;
        lines.push(`tcp   ${(formatIpv4(c.localAddr) + ':' + c.localPort).padEnd(21)} ${(formatIpv4(c.remoteAddr) + ':' + c.remotePort).padEnd(21)} ${c.state.padEnd(12)} cwnd ${i.cwnd} ssthresh ${ss} srtt ${i.srttMs?.toFixed(1) ?? '-'} rto ${i.rtoMs} unacked ${i.unacked} rtx ${i.retransmits}`);
      }
      return lines.join('\n');
    },
    stats: () => {
      const s = stack.stats;
      const t = stack.tcp.stats as unknown as Record<string, number>;
      const u = stack.udp.stats;
      const a = stack.arp.stats;
      return [
        `ip:   rx ${s.rxPackets} delivered ${s.rxDelivered} badcsum ${s.rxBadChecksum} badhdr ${s.rxBadHeader} tx ${s.txPackets} noroute ${s.txNoRoute} frags ${s.fragmentsCreated} reassembled ${stack.reassembler.stats.reassembled}`,
        `icmp: in ${s.icmpIn} out ${s.icmpOut} echo-replies ${s.icmpEchoRepliesSent}`,
        `arp:  req-out ${a.requestsSent} req-in ${a.requestsReceived} rep-out ${a.repliesSent} rep-in ${a.repliesReceived} failed ${a.failed} queue-drops ${a.queueDrops}`,
        `udp:  rx ${u.rxDatagrams} tx ${u.txDatagrams} noport ${u.noPort} badcsum ${u.rxBadChecksum}`,
        `tcp:  ${Object.entries(t).filter(([, v]) => typeof v === 'number').map(([k, v]) => `${k} ${v}`).join(' ')}`,
        `apps: http-requests ${counters.http.requests} streamed ${counters.http.bytesStreamed} discard ${counters.discard.bytes}`,
      ].join('\n');
    },
    ping: (target, count, line, done) => {
      const dst = parseIpv4(target);
      if (dst === null) {
        done(`ping: ${target}: not an IPv4 address`);
        return;
      }
      let seq = 0;
      let received = 0;
      const rtts: number[] = [];
      const next = (): void => {
        if (seq >= count) {
          const avg = rtts.length ? (rtts.reduce((x, y) => x + y, 0) / rtts.length).toFixed(3) : '-';
          done(`--- ${target} ping statistics ---\n${count} packets transmitted, ${received} received, ${Math.round(((count - received) / count) * 100)}% packet loss, avg ${avg} ms`);
          return;
        }
        const s = ++seq;
        const started = stack.clock.now();
        // A promise continuation is guest code outside any interrupt: entered through the guard.
        void stack.ping(dst as Ipv4Addr, s, 56, 1000).then(guestGuard('ping', (r: PingResult | null) => {
          if (r) {
            received++;
            rtts.push(r.rttMs);
            line(`64 bytes from ${target}: icmp_seq=${s} ttl=${r.ttl} time=${r.rttMs.toFixed(3)} ms`);
          } else line(`no reply from ${target}: icmp_seq=${s}`);
          const wait = Math.max(0, 1000 - (stack.clock.now() - started));
          stack.clock.setTimer(wait, next);
        }));
      };
      next();
    },
  };
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (~(0xffffffff >>> prefix)) >>> 0;
}
