/**
 * The connection state machine (RFC 9293 §3.3.2, Figure 5) driven end to end over the test path:
 * every transition each side makes is recorded and compared with the RFC's diagram.
 */
import { describe, expect, it } from 'vitest';
import type { TcpConnection, TcpState } from '../../../net/tcp/connection.js';
import { TH_ACK, TH_FIN, TH_SYN } from '../../../net/wire/tcp.js';
import { ADDR_A, ADDR_B, establish, recordStates, TestNet } from './harness.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const untext = (chunks: Uint8Array[]): string => new TextDecoder().decode(Buffer.concat(chunks));

function collect(conn: TcpConnection): { chunks: Uint8Array[]; ended: () => boolean } {
  const chunks: Uint8Array[] = [];
  let ended = false;
  conn.onData = (d) => {
    chunks.push(d.slice());
    conn.recved(d.length);
  };
  conn.onEnd = () => {
    ended = true;
  };
  return { chunks, ended: () => ended };
}

describe('TCP handshake and data', () => {
  it('three-way handshake: SYN, SYN-ACK, ACK with negotiated options', () => {
    const net = new TestNet();
    const { client, server, clientStates, serverStates } = establish(net);
    expect(clientStates).toEqual(['CLOSED', 'SYN_SENT', 'ESTABLISHED']);
    expect(serverStates).toEqual(['CLOSED', 'SYN_RECEIVED', 'ESTABLISHED']);
    const segs = net.trace.map((e) => `${e.from}:${e.seg.flags & (TH_SYN | TH_ACK | TH_FIN)}`);
    expect(segs.slice(0, 3)).toEqual([`a:${TH_SYN}`, `b:${TH_SYN | TH_ACK}`, `a:${TH_ACK}`]);
    const syn = net.trace[0]!.seg;
    expect(syn.options.mss).toBe(1460);
    expect(syn.options.sackPermitted).toBe(true);
    expect(syn.options.timestamp).toBeDefined();
    expect(syn.options.windowScale).toBeGreaterThan(0);
    const synAck = net.trace[1]!.seg;
    expect(synAck.ack).toBe((syn.seq + 1) >>> 0);
    expect(net.trace[2]!.seg.ack).toBe((synAck.seq + 1) >>> 0);
    for (const c of [client.info(), server.info()]) {
      expect(c.sack).toBe(true);
      expect(c.timestamps).toBe(true);
      expect(c.sendMss).toBe(1460 - 12); // timestamps take 12 bytes of every segment
    }
  });

  it('carries data both ways, in order, and acknowledges it', () => {
    const net = new TestNet();
    const { client, server } = establish(net);
    const atServer = collect(server);
    const atClient = collect(client);
    expect(client.write(text('hello from A'))).toBe(12);
    expect(server.write(text('hello from B'))).toBe(12);
    net.run(() => atServer.chunks.length > 0 && atClient.chunks.length > 0, 2000, 'data');
    expect(untext(atServer.chunks)).toBe('hello from A');
    expect(untext(atClient.chunks)).toBe('hello from B');
    net.run(() => client.sendQueued === 0 && server.sendQueued === 0, 2000, 'acks');
    expect(client.info().unacked).toBe(0);
  });

  it('rejects a connection to a port nobody listens on with ECONNREFUSED', () => {
    const net = new TestNet();
    const c = net.a.connect(ADDR_B, 81);
    const states = recordStates(c);
    let err: string | null = null;
    c.onError = (e) => (err = e);
    net.run(() => c.state === 'CLOSED', 2000, 'refusal');
    expect(err).toBe('ECONNREFUSED');
    expect(states).toEqual(['SYN_SENT', 'CLOSED']);
    expect(net.a.connections()).toHaveLength(0);
  });
});

describe('TCP close', () => {
  it('active close from the client: FIN-WAIT-1/2, TIME-WAIT; server CLOSE-WAIT, LAST-ACK', () => {
    const net = new TestNet();
    const { client, server, clientStates, serverStates } = establish(net);
    const atServer = collect(server);
    const atClient = collect(client);
    const clientEvents: string[] = [];
    const onEnd = client.onEnd!;
    client.onEnd = () => {
      clientEvents.push('end');
      onEnd();
    };
    client.onClose = () => clientEvents.push('close');
    client.write(text('last words'));
    client.shutdown();
    expect(client.state).toBe('FIN_WAIT_1');
    net.run(() => atServer.ended(), 2000, 'FIN at server');
    expect(untext(atServer.chunks)).toBe('last words');
    expect(server.state).toBe('CLOSE_WAIT');
    net.run(() => client.state === 'FIN_WAIT_2', 2000, 'FIN-WAIT-2');
    // Half-closed: the server can still send.
    server.write(text('reply after half-close'));
    server.shutdown();
    net.run(() => client.state === 'TIME_WAIT' && server.state === 'CLOSED', 2000, 'close');
    expect(untext(atClient.chunks)).toBe('reply after half-close');
    expect(atClient.ended()).toBe(true);
    expect(clientStates).toEqual(['CLOSED', 'SYN_SENT', 'ESTABLISHED', 'FIN_WAIT_1', 'FIN_WAIT_2', 'TIME_WAIT']);
    expect(serverStates).toEqual(['CLOSED', 'SYN_RECEIVED', 'ESTABLISHED', 'CLOSE_WAIT', 'LAST_ACK', 'CLOSED']);
    expect(net.b.connections()).toHaveLength(0);
    expect(clientEvents).toEqual(['end', 'close']); // EOF first, then closed, exactly once each
  });

  it('active close from the server', () => {
    const net = new TestNet();
    const { client, server, clientStates, serverStates } = establish(net);
    const atClient = collect(client);
    collect(server);
    server.write(text('bye'));
    server.close();
    net.run(() => atClient.ended(), 2000, 'FIN at client');
    expect(untext(atClient.chunks)).toBe('bye');
    client.close();
    net.run(() => server.state === 'TIME_WAIT' && client.state === 'CLOSED', 2000, 'close');
    expect(serverStates).toEqual(['CLOSED', 'SYN_RECEIVED', 'ESTABLISHED', 'FIN_WAIT_1', 'FIN_WAIT_2', 'TIME_WAIT']);
    expect(clientStates).toEqual(['CLOSED', 'SYN_SENT', 'ESTABLISHED', 'CLOSE_WAIT', 'LAST_ACK', 'CLOSED']);
  });

  it('TIME-WAIT lasts exactly 2·MSL, then the connection is gone', () => {
    const msl = 30_000;
    const net = new TestNet({ tcp: { mslMs: msl } });
    const { client, server } = establish(net);
    collect(server);
    collect(client);
    let closedAt = -1;
    client.onClose = () => (closedAt = net.clock.now());
    const states = recordStates(client);
    let timeWaitAt = -1;
    client.onStateChange = (_f, to) => {
      states.push(to);
      if (to === 'TIME_WAIT') timeWaitAt = net.clock.now();
    };
    client.shutdown();
    net.run(() => server.state === 'CLOSE_WAIT', 2000, 'CLOSE-WAIT');
    server.shutdown();
    net.run(() => client.state === 'TIME_WAIT', 2000, 'TIME-WAIT');
    expect(closedAt).toBe(timeWaitAt); // the application hears "closed" on entering TIME-WAIT
    net.clock.runUntilTime(timeWaitAt + 2 * msl - 1);
    expect(client.state).toBe('TIME_WAIT');
    expect(net.a.connections()).toContain(client);
    net.clock.runUntilTime(timeWaitAt + 2 * msl);
    expect(client.state).toBe('CLOSED');
    expect(net.a.connections()).toHaveLength(0);
    expect(states).toEqual(['ESTABLISHED', 'FIN_WAIT_1', 'FIN_WAIT_2', 'TIME_WAIT', 'CLOSED']);
  });

  it('TIME-WAIT answers a retransmitted FIN with an ACK and restarts its 2·MSL', () => {
    const msl = 1000;
    const net = new TestNet({ tcp: { mslMs: msl } });
    const { client, server } = establish(net);
    collect(server);
    collect(client);
    client.shutdown();
    net.run(() => server.state === 'CLOSE_WAIT', 2000, 'CLOSE-WAIT');
    // Lose the client's final ACK: the server retransmits its FIN after an RTO.
    let dropFinalAck = true;
    net.filter = (from, seg) => {
      // The client's first pure ACK after the server's FIN is the one that acknowledges it.
      if (from === 'a' && dropFinalAck && seg.flags === TH_ACK) {
        dropFinalAck = false;
        return false;
      }
      return true;
    };
    server.shutdown();
    net.run(() => client.state === 'TIME_WAIT', 2000, 'TIME-WAIT');
    const enteredAt = net.clock.now();
    net.run(() => server.state === 'CLOSED', 5000, 'LAST-ACK resolved by the re-ACK');
    const refinAt = net.trace.filter((e) => e.from === 'b' && e.seg.flags & TH_FIN).at(-1)!.t;
    expect(refinAt).toBeGreaterThan(enteredAt);
    // 2·MSL counts again from the retransmitted FIN's arrival (5 ms path delay).
    net.clock.runUntilTime(refinAt + 5 + 2 * msl - 1);
    expect(client.state).toBe('TIME_WAIT');
    net.clock.runUntilTime(refinAt + 5 + 2 * msl);
    expect(client.state).toBe('CLOSED');
  });

  it('FIN-WAIT-2 after a full close() ends after finWait2TimeoutMs if the peer never closes', () => {
    const net = new TestNet({ tcp: { finWait2TimeoutMs: 5000 } });
    const { client, server } = establish(net);
    collect(server);
    const states = recordStates(client);
    client.close();
    net.run(() => client.state === 'FIN_WAIT_2', 2000, 'FIN-WAIT-2');
    const t = net.clock.now();
    net.clock.runUntilTime(t + 4999);
    expect(client.state).toBe('FIN_WAIT_2');
    net.clock.runUntilTime(t + 5000);
    expect(client.state).toBe('CLOSED');
    expect(states).toEqual(['ESTABLISHED', 'FIN_WAIT_1', 'FIN_WAIT_2', 'CLOSED']);
    expect(server.state).toBe('CLOSE_WAIT'); // the peer is none the wiser until it sends
  });

  it('simultaneous close: both FIN-WAIT-1 → CLOSING → TIME-WAIT', () => {
    const net = new TestNet();
    const { client, server } = establish(net);
    collect(server);
    collect(client);
    const cs = recordStates(client);
    const ss = recordStates(server);
    client.shutdown();
    server.shutdown(); // both FINs are on the wire before either arrives
    net.run(() => client.state === 'TIME_WAIT' && server.state === 'TIME_WAIT', 2000, 'both TIME-WAIT');
    expect(cs).toEqual(['ESTABLISHED', 'FIN_WAIT_1', 'CLOSING', 'TIME_WAIT']);
    expect(ss).toEqual(['ESTABLISHED', 'FIN_WAIT_1', 'CLOSING', 'TIME_WAIT']);
    net.run(() => net.a.connections().length === 0 && net.b.connections().length === 0, 200_000, 'both gone');
  });
});

describe('TCP simultaneous open', () => {
  it('two active opens whose SYNs cross: SYN-SENT → SYN-RECEIVED → ESTABLISHED on both', () => {
    const net = new TestNet();
    const a = net.a.connect(ADDR_B, 7000, { localPort: 6000 });
    const b = net.b.connect(ADDR_A, 6000, { localPort: 7000 });
    const as: TcpState[] = ['SYN_SENT', ...[]];
    const bs: TcpState[] = ['SYN_SENT'];
    a.onStateChange = (_f, to) => as.push(to);
    b.onStateChange = (_f, to) => bs.push(to);
    let connectedA = false;
    let connectedB = false;
    a.onConnected = () => (connectedA = true);
    b.onConnected = () => (connectedB = true);
    net.run(() => a.state === 'ESTABLISHED' && b.state === 'ESTABLISHED', 2000, 'simultaneous open');
    expect(as).toEqual(['SYN_SENT', 'SYN_RECEIVED', 'ESTABLISHED']);
    expect(bs).toEqual(['SYN_SENT', 'SYN_RECEIVED', 'ESTABLISHED']);
    expect(connectedA && connectedB).toBe(true);
    // And the connection works.
    const atB = collect(b);
    a.write(text('crossed'));
    net.run(() => atB.chunks.length > 0, 2000, 'data');
    expect(untext(atB.chunks)).toBe('crossed');
    expect(net.a.stats.resetsOut + net.b.stats.resetsOut).toBe(0);
    expect(ADDR_A).not.toBe(ADDR_B);
  });
});
