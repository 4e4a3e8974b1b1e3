import type { ChildProcess } from 'node:child_process';
import type { NicModel } from '../src/config/types.js';
import { findLinuxImage } from '../lab/v86-linux.js';
import { curlDownload } from './host.js';
import { launch, netns, sh, stopAll, waitText } from './linux.js';
import { median, type BenchResult } from './stats.js';

/**
 * `npm run bench -- v86`: Linux's own drivers on netlab's NIC models (the v86 CPU emulator) beside
 * the built-in guest's drivers on the same models, in one run: boot-to-ready, throughput each way
 * over a real TAP (`lab up tap2`, in a namespace of the bench's own) and through the redirect
 * (`lab redirect`), and register exits per frame at the NIC, read from the telemetry each run prints
 * at its end. Host side: curl downloads the guest's /bytes/N, socat uploads to its discard port 9
 * (timed until the guest has read it all).
 */
const NODE = process.execPath;
const CLI = 'dist/lab/cli.js';
type Guest = 'linux' | 'builtin';
type Path = 'tap' | 'redirect';

interface Figures {
  down: number;
  up: number;
  boot: number | null;
  exitsPerFrame: number;
}

/** The NIC's register exits (dma excluded) and frames, from the end-of-run telemetry. */
function nicExitsPerFrame(out: string): number {
  const dev = /^ {2}net0\s+((?:[\w-]+=\d+ ?)+)$/m.exec(out);
  const rx = /rxFrames=(\d+)/.exec(out);
  const tx = /txFrames=(\d+)/.exec(out);
  if (!dev || !rx || !tx) return NaN;
  const exits = [...dev[1]!.matchAll(/([\w-]+)=(\d+)/g)].filter((m) => m[1] !== 'dma').reduce((n, m) => n + Number(m[2]), 0);
  return exits / (Number(rx[1]) + Number(tx[1]));
}

/**
 * Upload `size` bytes to a discard port and time it until the guest's application has read them
 * all: socat half-closes at the end of its input and waits for the guest's close, which both
 * guests' discard services send only at end of stream. (Timing socat -u alone stops when the
 * host's socket buffers have taken the data: through the redirect, a few MB early.)
 */
function uploadUntilClosed(ns: string, host: string, port: number, size: number): number {
  const t0 = process.hrtime.bigint();
  const r = sh(ns, `head -c ${size} /dev/zero | socat -b 262144 -t 300 - TCP:${host}:${port}`, 600_000);
  if (r.status !== 0) throw new Error(`upload to ${host}:${port} failed (socat exit ${r.status})`);
  return size / (Number(process.hrtime.bigint() - t0) / 1e9) / 1048576;
}

async function stopLab(p: { child: ChildProcess; out: () => string }): Promise<string> {
  p.child.kill('SIGINT');
  await Promise.race([new Promise((r) => p.child.once('exit', r)), new Promise((r) => setTimeout(r, 20_000))]);
  return p.out();
}

async function one(nic: NicModel, guest: Guest, path: Path, imageDir: string, size: number, runs: number): Promise<Figures> {
  const ns = netns(`v86-${nic}-${guest}-${path}`, false);
  const args = path === 'tap' ? ['up', 'tap2', '--nic', nic] : ['redirect', 'tcp:9555:10.10.10.33:80', 'tcp:9556:10.10.10.33:9', '--nic', nic];
  if (guest === 'linux') args.push('--guest', 'linux', '--image', imageDir);
  const lab = launch(ns, [NODE, CLI, '--no-capture', ...args, '--for', '3600']);
  await waitText(lab, 'ready:', guest === 'linux' ? 300_000 : 30_000);
  const boot = guest === 'linux' ? Number(/Linux ready in ([\d.]+) s/.exec(lab.out())?.[1] ?? NaN) : null;
  const [url, host, port] = path === 'tap' ? ['http://172.22.0.2', '172.22.0.2', 9] : ['http://127.0.0.1:9555', '127.0.0.1', 9556];
  const down: number[] = [];
  const up: number[] = [];
  for (let i = 0; i < runs; i++) {
    down.push(curlDownload(ns, `${url}/bytes/${size}`, size));
    up.push(uploadUntilClosed(ns, host, port, size));
  }
  const out = await stopLab(lab);
  await stopAll();
  return { down: median(down), up: median(up), boot, exitsPerFrame: nicExitsPerFrame(out) };
}

export async function benchV86(size: number, runs: number): Promise<BenchResult[]> {
  if (process.getuid?.() !== 0) return [{ name: 'v86', value: NaN, unit: 'needs root (network namespaces for lab up): sudo npm run bench -- v86' }];
  const img = findLinuxImage(undefined, (t) => process.stderr.write(t));
  if (!img.ok) return [{ name: 'v86', value: NaN, unit: img.error }];
  const out: BenchResult[] = [];
  try {
    for (const nic of ['rtl8139', 'ne2k', 'virtio'] as NicModel[]) {
      // NE2000 moves every byte through its data port (one exit per word): a smaller transfer.
      const n = nic === 'ne2k' ? Math.max(1, Math.floor(size / 2)) : size;
      for (const path of ['tap', 'redirect'] as Path[]) {
        const linux = await one(nic, 'linux', path, img.value.dir, n, runs);
        const builtin = await one(nic, 'builtin', path, img.value.dir, n, runs);
        const vs = (l: number, b: number): string => `built-in ${b.toFixed(1)}; Linux/built-in ${(l / b).toFixed(2)}`;
        if (path === 'tap') out.push({ name: `${nic} Linux boot to ready`, value: linux.boot ?? NaN, unit: 's (wall, from CPU start)' });
        out.push({ name: `${nic} ${path} host→guest (Linux)`, value: linux.up, unit: `MB/s  (${vs(linux.up, builtin.up)})` });
        out.push({ name: `${nic} ${path} guest→host (Linux)`, value: linux.down, unit: `MB/s  (${vs(linux.down, builtin.down)})` });
        out.push({ name: `${nic} ${path} exits/frame (Linux driver)`, value: linux.exitsPerFrame, unit: `(built-in driver ${builtin.exitsPerFrame.toFixed(2)})` });
      }
    }
  } finally {
    await stopAll();
  }
  return out;
}
