import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { pumpWrites } from './inprocess.js';
import { median } from './stats.js';
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

/**
 * The same question over a real TAP, Linux's own TCP beside ours on one link in one run: `lab up
 * tap2 --nic virtio` in a namespace made here, 2 % of frames dropped by the kernel in both
 * directions of tap2 exactly as test/system/tcp-loss.test.ts does it (nftables netdev ingress and
 * egress, `numgen random`; `gso_max_segs 1` so Linux's egress loses frames, not whole 64 KiB skbs).
 * Guest as sender: curl downloading /bytes/N (curl's own timing). Linux as sender: socat uploading
 * into the guest's discard port, timed until the guest's FIN (discard closes when it has read
 * everything), so bytes still in Linux's socket buffer are not counted as delivered.
 */
export interface TapLossResult {
  guestMBps: number[];
  linuxMBps: number[];
  /** Linux as sender timed at `socat -u`'s exit (the old measurement, for comparison). */
  linuxAtExit: number[];
  /** Both senders on the same link before the loss rules go in. */
  cleanGuest: number[];
  cleanLinux: number[];
  /** What the nftables rules dropped, egress (Linux → guest) and ingress (guest → Linux). */
  drops: string[];
  /** The guest's TCP counters (its status page) after all runs, the loss-free ones included. */
  guestTcp: string;
}

const TAP_NS = `nlloss-${process.pid}`;
const GUEST = '172.22.0.2';

function inNs(cmd: string[], timeoutMs = 300_000): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', TAP_NS, ...cmd], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? r.error?.message ?? '' };
}

function must(cmd: string[], timeoutMs?: number): string {
  const r = inNs(cmd, timeoutMs);
  if (r.status !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/**
 * The lab in the namespace; `ready` settles on its ready line. The child comes back at once, so a
 * lab that never gets ready is still stopped.
 */
function startLab(args: string[]): { child: ChildProcess; ready: Promise<void> } {
  const child = spawn('ip', ['netns', 'exec', TAP_NS, process.execPath, 'dist/lab/cli.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`lab not ready: ${out}`)), 30_000);
    child.stdout!.on('data', (b) => {
      out += b;
      if (out.includes('ready:')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.stderr!.on('data', (b) => (out += b));
    child.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`lab exited ${code}: ${out}`));
    });
  });
  return { child, ready };
}

function stopLab(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGINT');
    setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
  });
}

/** Guest → host: curl's own timing of /bytes/N. MB/s = 10^6 bytes per second, as the system test. */
function guestSends(size: number): number {
  const out = must(['curl', '-sS', '-m', '280', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', `http://${GUEST}/bytes/${size}`]);
  const [bytes, secs] = out.trim().split(' ').map(Number) as [number, number];
  if (bytes !== size) throw new Error(`curl /bytes/${size}: ${bytes} bytes`);
  return bytes / secs / 1e6;
}

/**
 * Host → guest: socat into discard, bidirectional so it waits (-t) for the guest's FIN. With
 * `untilFin` false, `socat -u` as the system test used to time it: socat exits once its last
 * write is in the socket buffer, with up to a few MB not yet delivered under loss.
 */
function linuxSends(size: number, untilFin = true): number {
  const t0 = process.hrtime.bigint();
  must(['sh', '-c', `head -c ${size} /dev/zero | socat ${untilFin ? '-t 120' : '-u'} - TCP:${GUEST}:9`]);
  return size / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e6;
}

export async function benchTapLoss(size: number, runs: number, lossPct = 2, capturesDir?: string): Promise<TapLossResult | string> {
  if (process.getuid?.() !== 0) return 'needs root (a network namespace and a TAP): sudo npm run bench -- loss';
  for (const tool of ['curl', 'socat', 'nft']) if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is missing: apt-get install -y ${tool === 'nft' ? 'nftables' : tool}`;
  let lab: ChildProcess | null = null;
  if (spawnSync('ip', ['netns', 'add', TAP_NS]).status !== 0) return `ip netns add ${TAP_NS} failed`;
  try {
    must(['ip', 'link', 'set', 'lo', 'up']);
    const started = startLab([...(capturesDir ? ['--captures', capturesDir] : ['--no-capture']), 'up', 'tap2', '--nic', 'virtio', '--for', '900']);
    lab = started.child;
    await started.ready;
    must(['ip', 'link', 'set', 'tap2', 'gso_max_segs', '1']);
    // The same link without loss first: Linux's frames reach the lab one per MSS (gso_max_segs 1)
    // while the guest's leave as TSO packets, so the two directions cost the lab's thread
    // differently; what each sender keeps of its own loss-free rate compares the TCPs alone.
    const cleanGuest: number[] = [];
    const cleanLinux: number[] = [];
    for (let i = 0; i < runs; i++) {
      cleanGuest.push(guestSends(size));
      cleanLinux.push(linuxSends(size));
    }
    // A bare counter before each drop rule counts what the hook saw: loss as a share of packets
    // and of bytes per direction, so a sender whose frames reach the hook as GSO super-packets
    // (one drop = many frames) shows up.
    const rule = `numgen random mod 100 '<' ${lossPct} counter drop`;
    must(['sh', '-c',
      `nft add table netdev nlloss && ` +
        `nft add chain netdev nlloss out '{ type filter hook egress device "tap2" priority 0; }' && nft add rule netdev nlloss out counter && nft add rule netdev nlloss out ${rule} && ` +
        `nft add chain netdev nlloss in '{ type filter hook ingress device "tap2" priority 0; }' && nft add rule netdev nlloss in counter && nft add rule netdev nlloss in ${rule}`]);
    const guestMBps: number[] = [];
    const linuxMBps: number[] = [];
    const linuxAtExit: number[] = [];
    // Interleaved, so both senders meet the same machine load.
    for (let i = 0; i < runs; i++) {
      guestMBps.push(guestSends(size));
      linuxMBps.push(linuxSends(size));
      linuxAtExit.push(linuxSends(size, false));
    }
    const status = must(['curl', '-sS', '-m', '20', `http://${GUEST}/`]);
    const tcpLine = /^tcp:(.*)$/m.exec(status)?.[1] ?? '';
    const pick = (k: string): string => `${k} ${new RegExp(`\\b${k} (\\d+)`).exec(tcpLine)?.[1] ?? '?'}`;
    const guestTcp = ['segmentsOut', 'retransmits', 'rtoTimeouts', 'fastRetransmits', 'lossProbes', 'lossProbeRecoveries', 'spuriousRetransmitsUndone'].map(pick).join(', ');
    // Per chain (out, then in): the bare counter (seen), then the drop rule's.
    const c = [...must(['nft', 'list', 'table', 'netdev', 'nlloss']).matchAll(/counter packets (\d+) bytes (\d+)/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
    const share = (seen: readonly [number, number] | undefined, dropped: readonly [number, number] | undefined): string =>
      seen && dropped ? `${dropped[0]} of ${seen[0]} packets (${((100 * dropped[0]) / seen[0]).toFixed(1)} %), ${((100 * dropped[1]) / seen[1]).toFixed(1)} % of bytes` : '?';
    return { guestMBps, linuxMBps, linuxAtExit, cleanGuest, cleanLinux, drops: [share(c[0], c[1]), share(c[2], c[3])], guestTcp };
  } finally {
    if (lab) await stopLab(lab);
    spawnSync('ip', ['netns', 'del', TAP_NS]);
  }
}

export function formatTapLoss(r: TapLossResult | string, size: number, runs: number): string {
  const title = `TCP under 2 % loss both ways over a real TAP (lab up tap2 --nic virtio, nftables drops in the kernel), ${size / 1e6} MB, median of ${runs}`;
  if (typeof r === 'string') return `${title}\n  skipped: ${r}`;
  const g = median(r.guestMBps);
  const l = median(r.linuxMBps);
  const le = median(r.linuxAtExit);
  const cg = median(r.cleanGuest);
  const cl = median(r.cleanLinux);
  const list = (v: number[]): string => v.map((x) => x.toFixed(1)).join(' ');
  return [
    title,
    `  without loss: guest sends       ${cg.toFixed(2)} MB/s  (runs ${list(r.cleanGuest)})`,
    `  without loss: Linux sends       ${cl.toFixed(2)} MB/s  (runs ${list(r.cleanLinux)})`,
    `  guest sends (curl /bytes/N)     ${g.toFixed(2)} MB/s  (runs ${list(r.guestMBps)})`,
    `  Linux sends (socat → discard)   ${l.toFixed(2)} MB/s  (runs ${list(r.linuxMBps)}; timed to the guest's FIN)`,
    `  Linux sends, timed at exit      ${le.toFixed(2)} MB/s  (runs ${list(r.linuxAtExit)}; socat -u, the old test's timing)`,
    `  ratio guest/Linux               ${(g / l).toFixed(2)}  (${(g / le).toFixed(2)} with the old timing)`,
    `  share of loss-free rate kept    guest ${(g / cg).toFixed(2)}, Linux ${(l / cl).toFixed(2)}`,
    `  dropped Linux → guest (egress)  ${r.drops[0]}`,
    `  dropped guest → Linux (ingress) ${r.drops[1]}`,
    `  guest TCP                       ${r.guestTcp}`,
  ].join('\n');
}
