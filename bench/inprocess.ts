import { createHash } from 'node:crypto';
import { VirtualClock } from '../net/clock.js';
import { createLink } from '../net/link.js';
import { Stack } from '../net/stack.js';
import type { TcpConnection } from '../net/tcp/connection.js';
import { guestDrivers } from '../src/guest/drivers.js';
import { ip, seeded, simGuest, simHost } from '../lab/sim.js';
import { median, type BenchResult } from './stats.js';

/**
 * In-process benchmarks: everything runs on a virtual clock, so the figures are the CPU cost of
 * the stack and the device models (wall time for a fixed amount of work), not of any wire.
 */

/** Send `size` bytes over `c` and wait (stepping `clock`) until the peer saw them all. */
/** Write `size` bytes into `c` as fast as its send buffer takes them (on connect and as it drains). */
export function pumpWrites(c: TcpConnection, size: number): void {
  const chunk = new Uint8Array(65536).map((_, i) => i & 0xff);
  let off = 0;
  const pump = (): void => {
    while (off < size) {
      const n = c.write(chunk.subarray(0, Math.min(chunk.length, size - off)));
      if (n === 0) return;
      off += n;
    }
  };
  c.onConnected = pump;
  c.onSent = pump;
}

function transfer(clock: VirtualClock, c: TcpConnection, size: number, received: () => number): void {
  pumpWrites(c, size);
  clock.runUntil(() => received() >= size, 3_600_000, 500_000_000);
  if (received() < size) throw new Error(`transfer stalled at ${received()} of ${size}`);
}

export function benchTcpStack(runs = 5, size = 64 * 1024 * 1024): BenchResult[] {
  const mbps: number[] = [];
  const segps: number[] = [];
  const usPerSeg: number[] = [];
  for (let r = 0; r < runs; r++) {
    const clock = new VirtualClock();
    const [pa, pb] = createLink(clock, ['a', 'b']);
    const a = new Stack({ clock, random: seeded(1 + r) });
    const b = new Stack({ clock, random: seeded(100 + r) });
    a.configure(a.addNetif('eth0', pa, Uint8Array.of(2, 0, 0, 0, 0, 1)), ip('10.0.0.1'), 24);
    b.configure(b.addNetif('eth0', pb, Uint8Array.of(2, 0, 0, 0, 0, 2)), ip('10.0.0.2'), 24);
    let got = 0;
    b.tcp.listen(5001, (c) => {
      c.onData = (d) => {
        got += d.length;
        c.recved(d.length);
      };
    });
    const c = a.tcp.connect(ip('10.0.0.2'), 5001);
    const t0 = performance.now();
    transfer(clock, c, size, () => got);
    const ms = performance.now() - t0;
    const segs = a.tcp.stats.segmentsOut + b.tcp.stats.segmentsOut;
    mbps.push(size / 1e6 / (ms / 1000));
    segps.push(segs / (ms / 1000));
    usPerSeg.push((ms * 1000) / segs);
  }
  return [
    { name: 'tcp stack→stack throughput', value: median(mbps), unit: 'MB/s (median of ' + runs + ')' },
    { name: 'tcp segments (data+ack) per second', value: median(segps), unit: 'seg/s' },
    { name: 'cost per segment', value: median(usPerSeg), unit: 'µs' },
  ];
}

const MODELS = [
  ['RTL8139', 'rtl8139'],
  ['NE2000', 'ne2k'],
  ['LNX_VIRTIO_NIC', 'virtio'],
] as const;

/**
 * Per NIC model: exits per received and per sent frame (UDP datagrams one way, so nothing else
 * crosses), frames per second through model + driver, and a TCP transfer each way.
 */
export function benchNicModels(frames = 20000): BenchResult[] {
  const out: BenchResult[] = [];
  for (const [cls, model] of MODELS) {
    const g = simGuest({ nicClass: cls, drivers: guestDrivers(), telemetry: true });
    const host = simHost(g.clock, g.wire);
    const sink = g.net.stack.udp.socket().bind(9999);
    let rx = 0;
    sink.onMessage = () => void rx++;
    // Warm ARP both ways first.
    void host.ping(ip('10.0.0.2'), 1);
    g.clock.runUntil(() => false, 100);
    const payload = new Uint8Array(1000);
    const hostSock = host.udp.socket().bind(5000);
    let hostRx = 0;
    hostSock.onMessage = () => void hostRx++;
    // Receive: host → guest.
    const exits0 = g.vm.telemetry.total();
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) {
      hostSock.send(payload, ip('10.0.0.2'), 9999);
      if (i % 8 === 7) g.clock.runUntil(() => false, 1);
    }
    g.clock.runUntil(() => rx >= frames, 10_000);
    const rxMs = performance.now() - t0;
    const rxExits = (g.vm.telemetry.total() - exits0) / Math.max(1, rx);
    // Send: guest → host.
    const exits1 = g.vm.telemetry.total();
    const t1 = performance.now();
    const gs = g.net.stack.udp.socket().bind(6000);
    for (let i = 0; i < frames; i++) {
      gs.send(payload, ip('10.0.0.1'), 5000);
      if (i % 8 === 7) g.clock.runUntil(() => false, 1);
    }
    g.clock.runUntil(() => hostRx >= frames, 10_000);
    const txMs = performance.now() - t1;
    const txExits = (g.vm.telemetry.total() - exits1) / Math.max(1, hostRx);
    out.push({ name: `${model} exits per received frame`, value: rxExits, unit: `exits (${rx}/${frames} frames arrived)` });
    out.push({ name: `${model} exits per sent frame`, value: txExits, unit: `exits (${hostRx}/${frames} arrived)` });
    out.push({ name: `${model} receive frames/s`, value: rx / (rxMs / 1000), unit: 'frames/s (1042-byte frames)' });
    out.push({ name: `${model} send frames/s`, value: hostRx / (txMs / 1000), unit: 'frames/s' });
    // TCP host → guest discard, 20 MB.
    const c = host.tcp.connect(ip('10.0.0.2'), 9);
    const size = 20 * 1024 * 1024;
    const t2 = performance.now();
    transfer(g.clock, c, size, () => g.net.counters.discard.bytes);
    const ms = performance.now() - t2;
    out.push({ name: `${model} tcp host→guest in process`, value: size / 1e6 / (ms / 1000), unit: 'MB/s' });
    // TCP guest → host, 20 MB: the guest's transmit path (segments built in the driver's buffers).
    let atHost = 0;
    host.tcp.listen(5002, (hc) => {
      hc.onData = (d) => {
        atHost += d.length;
        hc.recved(d.length);
      };
    });
    const t3 = performance.now();
    transfer(g.clock, g.net.stack.tcp.connect(ip('10.0.0.1'), 5002), size, () => atHost);
    const upMs = performance.now() - t3;
    out.push({ name: `${model} tcp guest→host in process`, value: size / 1e6 / (upMs / 1000), unit: `MB/s (${g.net.stack.tcp.stats.retransmits} segments resent)` });
  }
  return out;
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
