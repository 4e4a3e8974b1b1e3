import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage, defaultCacheDir } from '../lab/image/build.js';
import { READY_MARKER, SHA256_PORT } from '../lab/image/guest-files.js';
import type { NicModelKey } from '../lab/image/nic-modules.js';
import { findQemu, qemuArgs } from '../lab/vmsocket/qemu.js';
import { median, type BenchResult } from './stats.js';

/**
 * `npm run bench -- linux`: the same Linux guest (lab image build, in QEMU under TCG) behind three
 * user-mode networks in one run — QEMU's own `-netdev user` (libslirp), passt (QEMU over
 * `-netdev stream`), and the lab's user-mode network (QEMU over `-netdev stream`) — for virtio-net
 * and rtl8139: redirect throughput each way (curl and socat on the host side, so the client is
 * never the limit) and connections per second. Each setup runs in its own namespace.
 */
const NODE = process.execPath;
const CLI = 'dist/lab/cli.js';
type Backend = 'libslirp' | 'passt' | 'lab';
const children: ChildProcess[] = [];
const namespaces: string[] = [];

export function sh(ns: string, script: string, timeoutMs = 300_000): { status: number; stdout: string } {
  // ns '' runs on the host, as launch does.
  const cmd = ns ? ['ip', 'netns', 'exec', ns, 'sh', '-c', script] : ['sh', '-c', script];
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status ?? -1, stdout: r.stdout ?? '' };
}

/** A namespace of the bench's own (deleted by stopAll); with `veth`, a routable interface for passt. */
export function netns(name: string, veth = true): string {
  const full = `nllinux-${process.pid}-${name}`;
  spawnSync('ip', ['netns', 'add', full]);
  namespaces.push(full);
  if (!veth) {
    sh(full, 'ip link set lo up');
    return full;
  }
  // passt copies its addresses from a routable interface: a veth pair with a default route.
  sh(full, 'ip link set lo up; ip link add v0 type veth peer name v1 && ip addr add 192.0.2.1/24 dev v0 && ip link set v0 up && ip link set v1 up && ip route add default via 192.0.2.254');
  return full;
}

export function launch(ns: string, cmd: string[]): { child: ChildProcess; out: () => string } {
  // ns '' runs on the host (a loopback-only bench needs no namespace).
  const child = ns ? spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString('latin1')));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString('latin1')));
  return { child, out: () => out };
}

export async function waitText(p: { out: () => string; child: ChildProcess }, text: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!p.out().includes(text)) {
    if (p.child.exitCode !== null) throw new Error(`exited before "${text}": ${p.out().slice(-1500)}`);
    if (Date.now() > end) throw new Error(`no "${text}" after ${ms} ms: ${p.out().slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function stopAll(): Promise<void> {
  for (const c of children.splice(0)) {
    if (c.exitCode === null) {
      c.kill('SIGINT');
      await Promise.race([new Promise((r) => c.once('exit', r)), new Promise((r) => setTimeout(r, 3000))]);
      if (c.exitCode === null) c.kill('SIGKILL');
    }
  }
  for (const n of namespaces.splice(0)) spawnSync('ip', ['netns', 'del', n]);
}

interface Figures {
  down: number;
  up: number;
  cps: number;
  boot: number;
}

async function one(nic: NicModelKey, backend: Backend, img: { kernel: string; initrd: string }, size: number, runs: number, work: string): Promise<Figures> {
  const ns = netns(`${nic}-${backend}`);
  const sock = join(work, `${nic}-${backend}.sock`);
  let netdev: string;
  if (backend === 'libslirp') {
    netdev = `user,hostfwd=tcp:127.0.0.1:9555-:80,hostfwd=tcp:127.0.0.1:9556-:${SHA256_PORT}`;
  } else if (backend === 'passt') {
    const p = launch(ns, ['passt', '-f', '--runas', '0', '-s', sock, '-t', `127.0.0.1/9555:80`, '-t', `127.0.0.1/9556:${SHA256_PORT}`]);
    await waitText(p, 'UNIX domain socket bound', 10_000);
    netdev = `stream,server=off,addr.type=unix,addr.path=${sock}`;
  } else {
    const p = launch(ns, [NODE, CLI, '--no-capture', 'redirect', 'tcp:9555:10.10.10.33:80', `tcp:9556:10.10.10.33:${SHA256_PORT}`, '--vm-socket', sock, '--for', '900']);
    await waitText(p, 'ready:', 20_000);
    netdev = `stream,server=off,addr.type=unix,addr.path=${sock}`;
  }
  const qemu = findQemu();
  if (!qemu.ok) throw new Error(qemu.error);
  const t0 = Date.now();
  const vm = launch(ns, [qemu.path, ...qemuArgs({ kernel: img.kernel, initrd: img.initrd, append: `net=${nic} ip=dhcp`, nic, netdev })]);
  await waitText(vm, READY_MARKER, 120_000);
  const boot = (Date.now() - t0) / 1000;
  const file = join(work, 'up.bin');
  writeFileSync(file, randomBytes(size));
  const down: number[] = [];
  const up: number[] = [];
  const cps: number[] = [];
  for (let i = 0; i < runs; i++) {
    const d = sh(ns, `curl -sS -o /dev/null --max-time 600 -w '%{size_download} %{time_total}' http://127.0.0.1:9555/bytes/${size}`).stdout.split(' ').map(Number);
    if (d[0] !== size) throw new Error(`${nic}/${backend}: download got ${d[0]} of ${size} bytes`);
    down.push(size / d[1]! / 1e6);
    const t = Date.now();
    const u = sh(ns, `socat -t 60 -T 600 STDIO TCP:127.0.0.1:9556 < ${file}`);
    if (!/^[0-9a-f]{64}/.test(u.stdout)) throw new Error(`${nic}/${backend}: upload answered "${u.stdout}"`);
    up.push(size / ((Date.now() - t) / 1000) / 1e6);
    // Connections per second: one curl, one new connection per URL (the guest answers Connection: close).
    const n = 40;
    const tc = Date.now();
    const c = sh(ns, `curl -s -w '%{http_code}\\n' ${Array(n).fill('-o /dev/null http://127.0.0.1:9555/bytes/1').join(' ')}`).stdout.trim().split('\n');
    if (c.filter((x) => x === '200').length !== n) throw new Error(`${nic}/${backend}: connections answered ${c.join(',')}`);
    cps.push(n / ((Date.now() - tc) / 1000));
  }
  await stopAll();
  return { down: median(down), up: median(up), cps: median(cps), boot };
}

export async function benchLinux(size: number, runs: number): Promise<BenchResult[]> {
  const qemu = findQemu();
  if (!qemu.ok) return [{ name: 'Linux guest', value: NaN, unit: qemu.error }];
  const built = buildImage({ outDir: join(defaultCacheDir(), '..', 'linux-image'), cacheDir: defaultCacheDir() });
  if (!built.ok) return [{ name: 'Linux guest', value: NaN, unit: `lab image build: ${built.error}` }];
  const hasPasst = spawnSync('sh', ['-c', 'command -v passt']).status === 0;
  const work = mkdtempSync(join(tmpdir(), 'nlbench-linux-'));
  const out: BenchResult[] = [];
  try {
    for (const nic of ['virtio', 'rtl8139'] as NicModelKey[]) {
      const f: Partial<Record<Backend, Figures>> = {};
      for (const b of ['libslirp', 'passt', 'lab'] as Backend[]) {
        if (b === 'passt' && !hasPasst) continue;
        f[b] = await one(nic, b, { kernel: built.value.kernelPath, initrd: built.value.initrdPath }, size, runs, work);
      }
      const lab = f.lab!;
      const ratio = (k: keyof Figures): string => ['libslirp', 'passt'].filter((b) => f[b as Backend]).map((b) => `${b} ${f[b as Backend]![k].toFixed(k === 'cps' ? 0 : 1)}, ratio ${(lab[k] / f[b as Backend]![k]).toFixed(2)}`).join('; ');
      out.push({ name: `${nic} host→guest (upload)`, value: lab.up, unit: `MB/s  (${ratio('up')})` });
      out.push({ name: `${nic} guest→host (download)`, value: lab.down, unit: `MB/s  (${ratio('down')})` });
      out.push({ name: `${nic} connections`, value: lab.cps, unit: `conn/s  (${ratio('cps')})` });
      out.push({ name: `${nic} boot to ready`, value: lab.boot, unit: `s  (${ratio('boot')})` });
    }
    if (!hasPasst) out.push({ name: 'passt reference', value: NaN, unit: 'not installed: apt-get install -y passt' });
  } finally {
    await stopAll();
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}
