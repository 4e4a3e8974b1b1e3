/**
 * The Duplex wrapper and TcpServer over the real TCP layer. Node's stream machinery runs on
 * process.nextTick and promises, the network on the VirtualClock: `drive` interleaves the two,
 * letting Node's queues drain at every point of virtual time before time moves on.
 */
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import type { ListenOptions } from '../../../net/tcp/layer.js';
import { TcpServer, TcpStream } from '../../../net/tcp/stream.js';
import { TH_RST } from '../../../net/wire/tcp.js';
import { ADDR_B, randomBytes, sha256, TestNet, type Impairments } from './harness.js';

const yieldToNode = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Run virtual time and Node's event loop together until `done`, within `limitMs` of virtual time. */
async function drive(net: TestNet, done: () => boolean, limitMs: number, what: string): Promise<void> {
  const clock = net.clock;
  const end = clock.now() + limitMs;
  let idle = 0;
  while (!done()) {
    await yieldToNode();
    await yieldToNode();
    if (done()) return;
    clock.runUntilTime(clock.now()); // everything due now, including what Node just scheduled
    if (done()) return;
    // Nothing more can happen at this instant: move to the next timer (or give Node another turn).
    if (!clock.step()) {
      if (++idle > 200) throw new Error(`stalled (no timers) waiting for ${what} at t=${clock.now()}`);
    } else idle = 0;
    if (clock.now() > end) throw new Error(`timed out waiting for ${what} at t=${clock.now()}`);
  }
}

function setup(path: Partial<Impairments> = {}, seed = 1, listen: ListenOptions = {}): { net: TestNet; server: TcpServer; accepted: TcpStream[] } {
  const net = new TestNet({ seed, path: { delayMs: 5, ...path }, trace: false });
  const server = new TcpServer(net.b);
  const accepted: TcpStream[] = [];
  server.on('connection', (s: TcpStream) => accepted.push(s));
  server.listen(80, listen);
  return { net, server, accepted };
}

describe('TcpStream', () => {
  it('pipes 1 MB through to the peer, read by async iteration, with backpressure', async () => {
    const { net, accepted } = setup({ bytesPerMs: 2000, queueLimitBytes: 64 * 1024, loss: 0.01 }, 5);
    const data = randomBytes(1024 * 1024, 11);
    const client = TcpStream.connect(net.a, ADDR_B, 80);
    let connected = false;
    client.on('connect', () => (connected = true));
    let drains = 0;
    client.on('drain', () => drains++);
    // A Readable that hands out 16 KiB chunks on demand.
    let off = 0;
    const source = new Readable({
      read() {
        if (off >= data.length) this.push(null);
        else {
          this.push(Buffer.from(data.subarray(off, off + 16384)));
          off += 16384;
        }
      },
    });
    const sent = pipeline(source, client);
    let received: Buffer | null = null;
    const reader = (async () => {
      await drive(net, () => accepted.length > 0, 10_000, 'accept').catch(() => undefined);
    })();
    await reader;
    expect(connected).toBe(true);
    const serverSide = accepted[0]!;
    const hash = createHash('sha256');
    let total = 0;
    const consume = (async () => {
      for await (const chunk of serverSide as AsyncIterable<Buffer>) {
        hash.update(chunk);
        total += chunk.length;
      }
      received = Buffer.alloc(0);
    })();
    let sentDone = false;
    void sent.then(() => (sentDone = true));
    await drive(net, () => received !== null && sentDone, 600_000, 'transfer');
    await consume;
    await sent;
    expect(total).toBe(data.length);
    expect(hash.digest('hex')).toBe(sha256(data));
    // pipe saw write() return false and waited for 'drain': backpressure reached the source.
    expect(drains).toBeGreaterThan(0);
    expect(client.writableFinished).toBe(true);
  });

  it('write() returns false when the send buffer and the writable buffer are full, and the peer not reading stalls it', async () => {
    const { net, accepted } = setup({}, 1, { recvBufferSize: 32 * 1024 });
    const client = TcpStream.connect(net.a, ADDR_B, 80, { sendBufferSize: 32 * 1024, writableHighWaterMark: 16 * 1024 });
    await drive(net, () => accepted.length > 0, 10_000, 'accept');
    const serverSide = accepted[0]!;
    serverSide.pause(); // the peer does not read: its window closes
    const chunk = Buffer.alloc(8192, 1);
    let writes = 0;
    // Write well past what the peer's window, our send buffer and the writable buffer hold.
    let falses = 0;
    for (; writes < 16; writes++) if (!client.write(chunk)) falses++;
    expect(falses).toBeGreaterThan(0);
    // Let the network run a long time: the peer's receive buffer (32 KiB) and our send buffer
    // fill; after that nothing moves but persist probes, however long we wait.
    await drive(net, () => false, 30_000, 'stall').catch((e: Error) => expect(e.message).toMatch(/timed out/));
    const queuedAtServer = serverSide.readableLength;
    expect(queuedAtServer).toBe(32 * 1024);
    expect(net.a.stats.zeroWindowProbes).toBeGreaterThan(0);
    expect(client.writableNeedDrain).toBe(true);
    const connInfo = serverSide.connection.info();
    expect(connInfo.rcvWnd).toBeLessThan(2048); // (nearly) closed
    // The peer reads everything: the writer drains and finishes.
    let total = 0;
    serverSide.on('data', (b: Buffer) => (total += b.length));
    serverSide.resume();
    client.end();
    let ended = false;
    serverSide.on('end', () => (ended = true));
    await drive(net, () => ended, 600_000, 'drain and end');
    expect(total).toBe(writes * chunk.length);
  });

  it('a slow reader (pipe into a Writable that takes virtual time per chunk) paces a lossy transfer', async () => {
    const { net, accepted } = setup({ loss: 0.02, bytesPerMs: 5000 }, 7, { recvBufferSize: 64 * 1024 });
    const data = randomBytes(512 * 1024, 12);
    const client = TcpStream.connect(net.a, ADDR_B, 80);
    await drive(net, () => accepted.length > 0, 10_000, 'accept');
    const hash = createHash('sha256');
    let total = 0;
    // 10 ms of virtual time per KiB: ~100 KB/s, far slower than the 5 MB/s path.
    const slow = new Writable({
      highWaterMark: 4096,
      write(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        total += chunk.length;
        net.clock.setTimer((10 * chunk.length) / 1024, () => cb());
      },
    });
    let done = false;
    const serverSide = accepted[0]!;
    let peakBuffered = 0;
    void pipeline(serverSide, slow).then(() => (done = true));
    const t0 = net.clock.now();
    client.end(Buffer.from(data));
    // Sample the readable buffer at every step of the simulation.
    await drive(net, () => ((peakBuffered = Math.max(peakBuffered, serverSide.readableLength)), done), 600_000, 'slow transfer');
    expect(peakBuffered).toBeGreaterThan(16 * 1024); // it did back up
    expect(total).toBe(data.length);
    expect(hash.digest('hex')).toBe(sha256(data));
    // The reader, not the network, set the pace…
    expect(net.clock.now() - t0).toBeGreaterThanOrEqual((10 * data.length) / 1024);
    // …and what waited for it stayed within the receive buffer: the window, not memory, absorbed it.
    expect(peakBuffered).toBeLessThanOrEqual(64 * 1024);
    expect(serverSide.connection.info().bytesReceived).toBe(data.length);
  });

  it('half-close: end() sends FIN, the other side can still answer', async () => {
    const { net, accepted } = setup();
    const client = TcpStream.connect(net.a, ADDR_B, 80);
    await drive(net, () => accepted.length > 0, 10_000, 'accept');
    const serverSide = accepted[0]!;
    const serverGot: Buffer[] = [];
    let serverEnded = false;
    serverSide.on('data', (b: Buffer) => serverGot.push(b));
    serverSide.on('end', () => {
      serverEnded = true;
      // Reply after the request's end, then close our side too.
      serverSide.end(`echo:${Buffer.concat(serverGot).toString()}`);
    });
    const clientGot: Buffer[] = [];
    let clientEnded = false;
    client.on('data', (b: Buffer) => clientGot.push(b));
    client.on('end', () => (clientEnded = true));
    client.end('request');
    await drive(net, () => serverEnded, 10_000, 'server end');
    expect(client.connection.state === 'FIN_WAIT_2' || client.connection.state === 'FIN_WAIT_1').toBe(true);
    expect(serverSide.connection.state === 'CLOSE_WAIT' || serverSide.connection.state === 'LAST_ACK').toBe(true);
    await drive(net, () => clientEnded && serverSide.connection.state === 'CLOSED', 10_000, 'client end');
    expect(Buffer.concat(clientGot).toString()).toBe('echo:request');
    expect(client.connection.state).toBe('TIME_WAIT');
    // Both sides auto-destroyed after end + finish, without resetting anything.
    await drive(net, () => client.destroyed && serverSide.destroyed, 10_000, 'auto-destroy');
    expect(net.a.stats.resetsOut + net.b.stats.resetsOut).toBe(0);
  });

  it('a RST from the peer destroys the stream with ECONNRESET', async () => {
    const { net, accepted } = setup();
    const client = TcpStream.connect(net.a, ADDR_B, 80);
    await drive(net, () => accepted.length > 0, 10_000, 'accept');
    let error: (Error & { code?: string }) | null = null;
    client.on('error', (e) => (error = e));
    client.on('data', () => undefined);
    let closed = false;
    client.on('close', () => (closed = true));
    accepted[0]!.destroy(); // mid-stream destroy: the server aborts with RST
    await drive(net, () => closed, 10_000, 'client close');
    expect(error).not.toBeNull();
    expect(error!.code).toBe('ECONNRESET');
    expect((error as unknown as { syscall: string }).syscall).toBe('read');
    expect(client.destroyed).toBe(true);
    expect(client.connection.state).toBe('CLOSED');
    expect(net.b.stats.resetsOut).toBe(1);
    // Writing now fails instead of hanging.
    const writeErr = await new Promise<Error | null | undefined>((resolve) => {
      client.write('x', (e) => resolve(e));
    });
    expect(writeErr).toBeTruthy();
    void TH_RST;
  });

  it('connect to a port nobody listens on fails with ECONNREFUSED', async () => {
    const { net } = setup();
    const client = TcpStream.connect(net.a, ADDR_B, 81);
    let error: (Error & { code?: string }) | null = null;
    client.on('error', (e) => (error = e));
    await drive(net, () => error !== null, 10_000, 'refusal');
    expect(error!.code).toBe('ECONNREFUSED');
    expect((error as unknown as { syscall: string }).syscall).toBe('connect');
  });

  it('TcpServer.close stops accepting new connections', async () => {
    const { net, server } = setup();
    expect(server.address()).toEqual({ address: 0, port: 80 });
    server.close();
    const client = TcpStream.connect(net.a, ADDR_B, 80);
    let error: (Error & { code?: string }) | null = null;
    client.on('error', (e) => (error = e));
    await drive(net, () => error !== null, 10_000, 'refusal');
    expect(error!.code).toBe('ECONNREFUSED');
  });
});
