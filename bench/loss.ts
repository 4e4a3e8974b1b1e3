import { pumpWrites } from './inprocess.js';
import { VirtualClock } from '../net/clock.js';
import { createLink } from '../net/link.js';
import { Stack } from '../net/stack.js';
import { ImpairedPort } from '../lab/impair.js';
import { ip, seeded } from '../lab/sim.js';

/**
 * `npm run bench -- loss`: TCP under random loss in a deterministic simulation (smoltcp's netsim
 * in spirit). Two stacks on a 1 Gbit/s link with a 256-frame bottleneck queue, the loss and half
 * the RTT applied in each direction (seeded), one bulk transfer each run. The figure is bytes
 * delivered per second of virtual time: what the protocol achieves, not what the CPU does.
 */
export interface LossCell {
  cc: 'newreno' | 'cubic';
  lossPct: number;
  rttMs: number;
  bufferBytes: number;
  bytesPerSecond: number;
  rtoTimeouts: number;
  retransmits: number;
}

const LOSSES = [0, 1, 2, 5, 10];
const RTTS = [1, 10, 100];
const BUFFERS = [64 * 1024, 1024 * 1024];

function run(cc: 'newreno' | 'cubic', lossPct: number, rttMs: number, bufferBytes: number, size: number): LossCell {
  const clock = new VirtualClock();
  const [pa, pb] = createLink(clock, ['a', 'b']);
  const impaired = new ImpairedPort(clock, pa, { lossPct, delayMs: rttMs / 2, rateMbps: 1000, queueLimit: 256, seed: 7 + lossPct * 31 + rttMs });
  const tcp = { congestionControl: cc, sendBufferSize: bufferBytes, recvBufferSize: bufferBytes };
  const a = new Stack({ clock, random: seeded(1), tcp });
  const b = new Stack({ clock, random: seeded(2), tcp });
  a.configure(a.addNetif('eth0', impaired, Uint8Array.of(2, 0, 0, 0, 0, 1)), ip('10.0.0.1'), 24);
  b.configure(b.addNetif('eth0', pb, Uint8Array.of(2, 0, 0, 0, 0, 2)), ip('10.0.0.2'), 24);
  let got = 0;
  let firstByteAt = -1;
  b.tcp.listen(5001, (c) => {
    c.onData = (d) => {
      if (firstByteAt < 0) firstByteAt = clock.now();
      got += d.length;
      c.recved(d.length);
    };
  });
  const c = a.tcp.connect(ip('10.0.0.2'), 5001);
  pumpWrites(c, size);
  const t0 = clock.now();
  clock.runUntil(() => got >= size, 36_000_000, 2_000_000_000);
  if (got < size) throw new Error(`loss bench stalled at ${got} of ${size} (${cc}, ${lossPct} %, ${rttMs} ms, ${bufferBytes} B)`);
  const info = c.info();
  return { cc, lossPct, rttMs, bufferBytes, bytesPerSecond: size / ((clock.now() - t0) / 1000), rtoTimeouts: info.rtoTimeouts, retransmits: info.retransmits };
}

export function benchLoss(size = 4 * 1024 * 1024): LossCell[] {
  const out: LossCell[] = [];
  for (const cc of ['newreno', 'cubic'] as const)
    for (const bufferBytes of BUFFERS) for (const rttMs of RTTS) for (const lossPct of LOSSES) out.push(run(cc, lossPct, rttMs, bufferBytes, size));
  return out;
}

function human(bps: number): string {
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} MB/s`;
  return `${(bps / 1e3).toFixed(0)} kB/s`;
}

/** One table per controller and buffer: rows RTT, columns loss. */
export function formatLoss(cells: LossCell[], size: number): string {
  const lines = [`TCP under random loss, ${size / 1048576} MB one way per cell, bytes per virtual second (1 Gbit/s link, loss each way; rto = RTO timeouts)`];
  for (const cc of ['newreno', 'cubic'] as const)
    for (const buf of BUFFERS) {
      lines.push('', `${cc}, buffer ${buf / 1024} KiB`, ['RTT'.padEnd(8), ...LOSSES.map((l) => `${l} %`.padStart(20))].join(''));
      for (const rtt of RTTS) {
        const row = LOSSES.map((l) => {
          const c = cells.find((x) => x.cc === cc && x.bufferBytes === buf && x.rttMs === rtt && x.lossPct === l)!;
          return `${human(c.bytesPerSecond)} (rto ${c.rtoTimeouts})`.padStart(20);
        });
        lines.push([`${rtt} ms`.padEnd(8), ...row].join(''));
      }
    }
  return lines.join('\n');
}
