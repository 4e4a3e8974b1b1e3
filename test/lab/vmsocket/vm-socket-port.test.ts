import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeStreamFrame, StreamDeframer } from '../../../lab/vmsocket/framing.js';
import { openVmSocket, type VmSocketPort } from '../../../lab/vmsocket/vm-socket-port.js';

/**
 * The VM socket ports against real sockets, with the test playing QEMU's side: the FramePort
 * contract (send's answer and counters, receiver delivery, rx drops) and the framing rules.
 */
const dir = mkdtempSync(join(tmpdir(), 'netlab-vmsock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const frame = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);
const until = async (cond: () => boolean, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

async function serverPort(name: string): Promise<{ port: VmSocketPort; path: string }> {
  const path = join(dir, `${name}.sock`);
  const r = await openVmSocket({ kind: 'stream', role: 'server', addr: { type: 'unix', path } }, name);
  if (!r.ok) throw new Error(r.error);
  return { port: r.port, path };
}

function qemuSide(path: string): Promise<{ s: Socket; got: Uint8Array[]; closed: () => boolean }> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    const got: Uint8Array[] = [];
    const d = new StreamDeframer();
    let closed = false;
    s.on('data', (c: Buffer) => {
      const r = d.push(c);
      if (r.ok) for (const e of r.events) if (e.kind === 'frame') got.push(Uint8Array.from(e.frame));
    });
    s.on('close', () => (closed = true));
    s.on('error', () => {});
    s.on('connect', () => resolve({ s, got, closed: () => closed }));
  });
}

describe('stream VM socket (the lab listens, QEMU server=off)', () => {
  it('before a VM connects, send refuses and counts a drop, as an unplugged cable', async () => {
    const { port } = await serverPort('unplugged');
    expect(port.send(frame(60, 1))).toBe(false);
    expect(port.stats.txDrops).toBe(1);
    port.close();
  });

  it('frames both ways with the length prefix; frames split anywhere arrive whole; a refused one is an rx drop', async () => {
    const { port, path } = await serverPort('both');
    const received: number[] = [];
    port.setReceiver((f) => {
      if (f[0] === 0xee) return false;
      received.push(f.length);
      return true;
    });
    const q = await qemuSide(path);
    await port.connected;
    const wire = Buffer.concat([encodeStreamFrame(frame(60, 1)), encodeStreamFrame(frame(1514, 2)), encodeStreamFrame(frame(60, 0xee))]);
    for (let i = 0; i < wire.length; i += 7) q.s.write(wire.subarray(i, i + 7));
    await until(() => port.stats.rxFrames === 3);
    expect(received).toEqual([60, 1514]);
    expect(port.stats.rxDrops).toBe(1);
    expect(port.send(frame(60, 5))).toBe(true);
    expect(port.send(frame(9000, 6))).toBe(true);
    await until(() => q.got.length === 2);
    expect(q.got.map((f) => [f.length, f[0]])).toEqual([[60, 5], [9000, 6]]);
    expect(port.stats).toMatchObject({ txFrames: 2, txBytes: 9060, txDrops: 0 });
    q.s.destroy();
    port.close();
  });

  it('never sends a frame over 64 KiB (QEMU would drop the connection): refused and counted', async () => {
    const { port, path } = await serverPort('big');
    const q = await qemuSide(path);
    await port.connected;
    expect(port.send(frame(65536, 1))).toBe(false);
    expect(port.send(frame(13, 1))).toBe(false);
    expect(port.stats.txDrops).toBe(2);
    expect(port.send(frame(65535, 1))).toBe(true);
    await until(() => q.got.length === 1);
    q.s.destroy();
    port.close();
  });

  it('a bad length closes that connection only; the port takes the VM back when it reconnects', async () => {
    const { port, path } = await serverPort('bad');
    let n = 0;
    port.setReceiver(() => void n++);
    const q1 = await qemuSide(path);
    await port.connected;
    const bad = Buffer.alloc(4);
    bad.writeUInt32BE(3, 0);
    q1.s.write(Buffer.concat([encodeStreamFrame(frame(60, 1)), bad, Buffer.alloc(64)]));
    await until(() => q1.closed());
    expect(port.counters.badLength).toBe(1);
    expect(n).toBe(1);
    const q2 = await qemuSide(path);
    await until(() => port.counters.connections === 2);
    q2.s.write(encodeStreamFrame(frame(60, 2)));
    await until(() => n === 2);
    expect(port.send(frame(60, 3))).toBe(true);
    await until(() => q2.got.length === 1);
    q2.s.destroy();
    port.close();
  });

  it('a second VM while one is connected is refused, the first keeps its link', async () => {
    const { port, path } = await serverPort('second');
    const q1 = await qemuSide(path);
    await port.connected;
    const q2 = await qemuSide(path);
    await until(() => q2.closed());
    expect(port.counters.refused).toBe(1);
    expect(port.send(frame(60, 4))).toBe(true);
    await until(() => q1.got.length === 1);
    q1.s.destroy();
    port.close();
  });
});

describe('stream VM socket (the lab connects, QEMU server=on)', () => {
  it('keeps dialling until the VM listens, then carries frames', async () => {
    const path = join(dir, 'client.sock');
    const r = await openVmSocket({ kind: 'stream', role: 'client', addr: { type: 'unix', path } }, 'client');
    if (!r.ok) throw new Error(r.error);
    const port = r.port;
    await new Promise((res) => setTimeout(res, 300));
    const got: Uint8Array[] = [];
    const server = createServer((s) => {
      const d = new StreamDeframer();
      s.on('data', (c: Buffer) => {
        const x = d.push(c);
        if (x.ok) for (const e of x.events) if (e.kind === 'frame') got.push(Uint8Array.from(e.frame));
      });
      s.write(encodeStreamFrame(frame(60, 9)));
    });
    await new Promise<void>((res) => server.listen(path, res));
    let from = 0;
    port.setReceiver((f) => void (from = f[0]!));
    await port.connected;
    await until(() => from === 9);
    expect(port.send(frame(100, 8))).toBe(true);
    await until(() => got.length === 1);
    port.close();
    server.close();
  });
});

describe('datagram VM socket (-netdev dgram over UDP)', () => {
  it('one frame per datagram; replies go to the address the VM sent from', async () => {
    const r = await openVmSocket({ kind: 'dgram', local: { type: 'inet', host: '127.0.0.1', port: 0 } }, 'dgram');
    if (!r.ok) throw new Error(r.error);
    const port = r.port;
    expect(port.send(frame(60, 1))).toBe(false);
    const vm = createSocket('udp4');
    await new Promise<void>((res) => vm.bind(0, '127.0.0.1', res));
    const got: Buffer[] = [];
    vm.on('message', (m) => got.push(m));
    const rx: number[] = [];
    port.setReceiver((f) => void rx.push(f.length));
    const bound = port.bound as { port: number };
    vm.send(Buffer.from(frame(1514, 2)), bound.port, '127.0.0.1');
    vm.send(Buffer.from(frame(5, 2)), bound.port, '127.0.0.1');
    await until(() => port.stats.rxFrames === 2);
    expect(rx).toEqual([1514]);
    expect(port.stats.rxDrops).toBe(1);
    expect(port.send(frame(60, 3))).toBe(true);
    await until(() => got.length === 1);
    expect(got[0]!.length).toBe(60);
    vm.close();
    port.close();
  });
});
