import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RealClock, VirtualClock, type Clock } from '../../../net/clock.js';
import { createLink } from '../../../net/link.js';
import { Stack } from '../../../net/stack.js';
import { mulberry32 } from '../../../net/random.js';
import { ICMP_DEST_UNREACH, ICMP_UNREACH_PORT } from '../../../net/wire/icmp.js';
import type { TcpConnection } from '../../../net/tcp/connection.js';
import { Logger, memorySink } from '../../../src/log.js';
import { userNetAddressing } from '../../../lab/usernet/addressing.js';
import { UserNet, type UserNetLimits } from '../../../lab/usernet/user-net.js';
import { ip } from '../../../lab/sim.js';

/**
 * Per-guest limits of the user-mode network (issue 10): a guest may not exhaust the host's file
 * descriptors. Each refusal must reach the guest (RST, ICMP) and show in the counters. The guest
 * is our own stack on the other end of the link; NAT goes only to the gateway = 127.0.0.1.
 */
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup(clock: Clock, limits: Partial<UserNetLimits>) {
  const [guestSide, userSide] = createLink(clock, ['guest', 'user']);
  const a = userNetAddressing([]);
  if (!a.ok) throw new Error(a.error);
  const logLines: string[] = [];
  const userNet = new UserNet(userSide, { clock, addressing: a.value, restrict: true, log: new Logger([], memorySink(logLines)).child('usernet'), limits, random: mulberry32(3) });
  const guest = new Stack({ clock, name: 'guest', random: mulberry32(5) });
  guest.configure(guest.addNetif('eth0', guestSide, Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x56)), ip('10.0.2.15'), 24, ip('10.0.2.2'));
  cleanups.push(() => userNet.close());
  return { userNet, guest, logLines, gateway: ip('10.0.2.2') };
}

/** Let host sockets and (for a virtual clock) the lab's timers run until `done()` or a wall-clock limit. */
async function pump(clock: Clock, done: () => boolean, wallMs = 5000): Promise<void> {
  const end = Date.now() + wallMs;
  while (!done()) {
    if (Date.now() > end) throw new Error('timed out');
    if (clock instanceof VirtualClock) clock.advance(1);
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function udpEcho(): Promise<{ port: number; sock: UdpSocket }> {
  const sock = createSocket('udp4');
  sock.on('message', (m, r) => sock.send(m, r.port, r.address));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  cleanups.push(() => sock.close());
  return { port: sock.address().port, sock };
}

async function tcpHold(): Promise<{ port: number; server: Server; conns: Socket[] }> {
  const conns: Socket[] = [];
  const server = createServer((s) => {
    conns.push(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => {
    for (const c of conns) c.destroy();
    server.close();
  });
  return { port: (server.address() as { port: number }).port, server, conns };
}

describe('user-mode network: UDP flows (libslirp SO_EXPIRE / SO_EXPIREFAST), in virtual time', () => {
  it('caps flows per guest (ICMP port unreachable, counted) and expires idle ones after 240 s, DNS after 10 s', async () => {
    const clock = new VirtualClock();
    const { userNet, guest, gateway } = setup(clock, { udpFlows: 3 });
    const echo = await udpEcho();
    const socks = [0, 1, 2, 3].map(() => guest.udp.socket().bind());
    const got = socks.map(() => 0);
    const errors: [number, number][][] = socks.map(() => []);
    socks.forEach((s, i) => {
      s.onMessage = () => void got[i]!++;
      s.onError = (type, code) => void errors[i]!.push([type, code]);
    });
    for (const s of socks.slice(0, 3)) s.send(Uint8Array.of(1, 2, 3), gateway, echo.port);
    await pump(clock, () => got.slice(0, 3).every((n) => n === 1));
    expect(userNet.stats.udpFlowsOpen).toBe(3);
    socks[3]!.send(Uint8Array.of(4), gateway, echo.port);
    await pump(clock, () => errors[3]!.length > 0);
    expect(errors[3]).toEqual([[ICMP_DEST_UNREACH, ICMP_UNREACH_PORT]]);
    expect(got[3]).toBe(0);
    expect(userNet.stats).toMatchObject({ udpFlowLimitRefused: 1, udpFlowsOpen: 3, udpFlowsExpired: 0 });
    // Idle for libslirp's SO_EXPIRE (240 s): the host sockets are closed.
    clock.advance(239_000);
    expect(userNet.stats.udpFlowsExpired).toBe(0);
    clock.advance(2_000);
    expect(userNet.stats).toMatchObject({ udpFlowsExpired: 3, udpFlowsOpen: 0 });
    socks[3]!.send(Uint8Array.of(5), gateway, echo.port);
    await pump(clock, () => got[3] === 1);
    // A flow to port 53 is closed after SO_EXPIREFAST (10 s) while the other stays open.
    guest.udp.socket().bind().send(Uint8Array.of(0, 1), gateway, 53);
    await pump(clock, () => userNet.stats.udpFlowsOpen === 2);
    clock.advance(10_500);
    expect(userNet.stats).toMatchObject({ udpFlowsOpen: 1, udpFlowsExpired: 4 });
  });
});

describe('user-mode network: host TCP sockets and pending connects per guest', () => {
  it('refuses a NAT connection beyond the socket cap with a reset the guest sees, counted; a slot freed is usable again', async () => {
    const clock = new RealClock();
    const { userNet, guest, gateway } = setup(clock, { tcpSockets: 2 });
    const host = await tcpHold();
    const open = async (): Promise<{ conn: TcpConnection; result: string }> => {
      const conn = guest.tcp.connect(gateway, host.port);
      const result = await new Promise<string>((resolve) => {
        conn.onConnected = () => resolve('connected');
        conn.onError = (code) => resolve(code);
      });
      return { conn, result };
    };
    const a = await open();
    const b = await open();
    expect([a.result, b.result]).toEqual(['connected', 'connected']);
    await pump(clock, () => host.conns.length === 2);
    const c = await open();
    expect(c.result).toBe('ECONNREFUSED');
    expect(userNet.stats).toMatchObject({ tcpSocketLimitRefused: 1, tcpSocketsOpen: 2, natTcp: 2 });
    a.conn.abort();
    await pump(clock, () => userNet.stats.tcpSocketsOpen === 1);
    const d = await open();
    expect(d.result).toBe('connected');
  });

  it('caps host connects in progress: a burst of handshakes beyond it is reset and counted', async () => {
    const clock = new RealClock();
    const { userNet, guest, gateway } = setup(clock, { pendingConnects: 2 });
    const host = await tcpHold();
    const results: string[] = [];
    for (let i = 0; i < 6; i++) {
      const conn = guest.tcp.connect(gateway, host.port);
      conn.onError = (code) => void results.push(code);
    }
    await pump(clock, () => results.length === 4 && host.conns.length === 2);
    expect(results).toEqual(['ECONNRESET', 'ECONNRESET', 'ECONNRESET', 'ECONNRESET']);
    expect(userNet.stats).toMatchObject({ pendingConnectLimitRefused: 4, natTcp: 2 });
    await pump(clock, () => userNet.stats.pendingConnects === 0);
  });

  it('a redirected host connection beyond the socket cap is reset, counted', async () => {
    const clock = new RealClock();
    const { userNet } = setup(clock, { tcpSockets: 0 });
    const probe = await tcpHold();
    const port = probe.port;
    probe.server.close();
    await new Promise((r) => setTimeout(r, 10));
    expect(await userNet.listen([{ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: port, guestAddr: ip('10.0.2.15'), guestPort: 80, spec: 'test' }])).toEqual([]);
    const outcome = await new Promise<string>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      c.on('close', () => resolve('closed'));
    });
    expect(outcome).toBe('ECONNRESET');
    expect(userNet.stats).toMatchObject({ redirectLimitRefused: 1, redirectedConnections: 0, tcpSocketsOpen: 0 });
  });
});

describe('user-mode network: a throwing host-socket callback', () => {
  it('is caught at the boundary, counted and logged, closes its flow only; the lab goes on', async () => {
    const clock = new VirtualClock();
    const { userNet, guest, gateway, logLines } = setup(clock, {});
    const echo = await udpEcho();
    const s = guest.udp.socket().bind();
    let got = 0;
    s.onMessage = () => void got++;
    const real = userNet.stack.udp.sendFrom.bind(userNet.stack.udp);
    let throwOnce = true;
    userNet.stack.udp.sendFrom = (...args: Parameters<typeof real>) => {
      if (throwOnce) {
        throwOnce = false;
        throw new Error('injected fault');
      }
      return real(...args);
    };
    s.send(Uint8Array.of(1), gateway, echo.port);
    await pump(clock, () => userNet.stats.callbackErrors === 1);
    expect(userNet.stats.udpFlowsOpen).toBe(0);
    expect(logLines.join('\n')).toMatch(/nat udp: Error: injected fault \(host-socket callback\): flow closed/);
    s.send(Uint8Array.of(2), gateway, echo.port);
    await pump(clock, () => got === 1);
  });
});
