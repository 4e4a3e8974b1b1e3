import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { defaultCacheDir, imageComplete } from '../lab/image/build.js';
import { READY_MARKER } from '../lab/image/guest-files.js';
import { findQemu, qemuArgs } from '../lab/vmsocket/qemu.js';
import { warmUp } from './warm-up.js';
import { median, percentile, type BenchResult } from './stats.js';

/**
 * Host-side benchmarks, each beside its reference measured in the same run:
 * - `lab redirect` (RTL8139, virtio) vs slirp4netns port forwarding to a server in a namespace;
 * - `lab up` over a real TAP (each NIC) vs a kernel veth pair between two namespaces.
 * Every namespace is created here and deleted afterwards; every child is bounded by --for.
 */
const NODE = process.execPath;
const CLI = 'dist/lab/cli.js';
const CLIENT = 'dist/bench/client.js';
const REF = 'dist/bench/ref-server.js';
const children: ChildProcess[] = [];
const namespaces: string[] = [];

function sh(cmd: string[], check = true): string {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', timeout: 120_000 });
  if (check && r.status !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

function netns(name: string): string {
  const full = `nlbench-${process.pid}-${name}`;
  sh(['ip', 'netns', 'add', full]);
  namespaces.push(full);
  sh(['ip', 'netns', 'exec', full, 'ip', 'link', 'set', 'lo', 'up']);
  return full;
}

function start(cmd: string[], ready: string, timeoutMs = 20_000): Promise<ChildProcess> {
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${cmd.join(' ')} not ready: ${out}`)), timeoutMs);
    child.stdout!.on('data', (b) => {
      out += b;
      if (out.includes(ready)) {
        clearTimeout(t);
        resolve(child);
      }
    });
    child.stderr!.on('data', (b) => (out += b));
    child.on('exit', (code) => {
      clearTimeout(t);
      if (!out.includes(ready)) reject(new Error(`${cmd.join(' ')} exited ${code}: ${out}`));
    });
  });
}

function client(where: string | null, args: string[]): Promise<Record<string, number>> {
  const cmd = where ? ['ip', 'netns', 'exec', where, NODE, CLIENT, ...args] : [NODE, CLIENT, ...args];
  return new Promise((resolve, reject) => {
    const c = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (b) => (out += b));
    c.stderr.on('data', (b) => (err += b));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, number>) : reject(new Error(`client ${args.join(' ')}: ${err}`))));
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function measure(where: string | null, host: string, ports: { up: number; down: number; http: number }, size: number, runs: number): Promise<{ up: number; down: number; cps: number }> {
  const up: number[] = [];
  const down: number[] = [];
  const cps: number[] = [];
  for (let i = 0; i < runs; i++) {
    up.push((await client(where, ['upload', host, String(ports.up), String(size)])).mbps!);
    down.push((await client(where, ['download', host, String(ports.down), String(size)])).mbps!);
    cps.push((await client(where, ['cps', host, String(ports.http), '300', '8'])).cps!);
  }
  return { up: median(up), down: median(down), cps: median(cps) };
}

function kill(c: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (c.exitCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGINT');
    setTimeout(() => c.kill('SIGKILL'), 5000).unref();
  });
}

export async function benchRedirect(size: number, runs: number): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const results: Record<string, { up: number; down: number; cps: number }> = {};
  for (const nic of ['rtl8139', 'virtio-net-pci']) {
    const [p9, p80] = [await freePort(), await freePort()];
    const lab = await start([NODE, CLI, '--no-capture', '-q', 'run', '-net', 'user', '-net', `nic,model=${nic}`, '-redir', `tcp:${p9}:10.10.10.33:9`, '-redir', `tcp:${p80}:10.10.10.33:80`, '--for', '600'], '', 100).catch(() => null);
    void lab;
    // -q prints nothing; wait until the redirect answers instead.
    await waitPort(p80);
    results[nic] = await measure(null, '127.0.0.1', { up: p9, down: p80, http: p80 }, size, runs);
    for (const c of children.splice(0)) await kill(c);
  }
  // Reference: slirp4netns forwarding to the same services in a namespace.
  let ref: { up: number; down: number; cps: number } | null = null;
  if (sh(['sh', '-c', 'command -v slirp4netns'], false).trim()) {
    const ns = netns('slirp');
    await start(['ip', 'netns', 'exec', ns, NODE, REF, '600'], 'ref-server ready');
    const sock = `/tmp/nlbench-${process.pid}.sock`;
    if (existsSync(sock)) rmSync(sock);
    const slirp = spawn('slirp4netns', ['--configure', '--mtu=1500', '--disable-host-loopback', '--api-socket', sock, '--netns-type=path', `/run/netns/${ns}`, 'tap0'], { stdio: 'ignore' });
    children.push(slirp);
    await waitFor(() => existsSync(sock), 10_000);
    const [p9, p80] = [await freePort(), await freePort()];
    for (const [hp, gp] of [[p9, 9], [p80, 80]] as const) {
      const req = JSON.stringify({ execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: hp, guest_port: gp } });
      sh(['sh', '-c', `printf '%s' '${req}' | socat -t 2 - UNIX-CONNECT:${sock}`]);
    }
    await waitPort(p80);
    ref = await measure(null, '127.0.0.1', { up: p9, down: p80, http: p80 }, size, runs);
    for (const c of children.splice(0)) await kill(c);
  }
  for (const [nic, r] of Object.entries(results)) {
    const name = nic.startsWith('virtio') ? 'virtio' : nic;
    out.push({ name: `redirect ${name} host→guest`, value: r.up, unit: `MB/s${ref ? `  (slirp4netns ${ref.up.toFixed(1)}; ratio ${(r.up / ref.up).toFixed(2)})` : ''}` });
    out.push({ name: `redirect ${name} guest→host`, value: r.down, unit: `MB/s${ref ? `  (slirp4netns ${ref.down.toFixed(1)}; ratio ${(r.down / ref.down).toFixed(2)})` : ''}` });
    out.push({ name: `redirect ${name} connections`, value: r.cps, unit: `conn/s${ref ? `  (slirp4netns ${ref.cps.toFixed(0)}; ratio ${(r.cps / ref.cps).toFixed(2)})` : ''}` });
  }
  if (!ref) out.push({ name: 'slirp4netns reference', value: NaN, unit: 'not installed: apt-get install -y slirp4netns' });
  return out;
}

/**
 * Host-side C tools, so the client is never the limit: curl for downloads (its own timing), socat
 * for uploads (timed around the process; the last socket buffer's worth may still be in flight
 * when socat exits, a few MB in a transfer of BENCH_MB). MB/s = 2^20 bytes per second.
 */
/** A command in namespace `where`, or on the host when `where` is ''. */
function inNs(where: string, cmd: string[]): string[] {
  return where ? ['ip', 'netns', 'exec', where, ...cmd] : cmd;
}

export function curlDownload(where: string, url: string, size: number): number {
  const out = sh([...inNs(where, ['curl', '-sS', '-m', '300', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', url])]);
  const [bytes, secs] = out.trim().split(' ').map(Number) as [number, number];
  if (bytes !== size) throw new Error(`curl ${url}: ${bytes} bytes, wanted ${size}`);
  return bytes / secs / 1048576;
}

export function socatUpload(where: string, host: string, port: number, size: number): number {
  const t0 = process.hrtime.bigint();
  sh(inNs(where, ['sh', '-c', `head -c ${size} /dev/zero | socat -b 262144 -u - TCP:${host}:${port}`]));
  return size / (Number(process.hrtime.bigint() - t0) / 1e9) / 1048576;
}

/** socat downloads for the veth reference (a C server: `head -c N /dev/zero` behind socat). */
export function socatDownload(where: string, host: string, port: number, size: number): number {
  const t0 = process.hrtime.bigint();
  const out = sh(inNs(where, ['sh', '-c', `socat -b 262144 -u TCP:${host}:${port} - | wc -c`]));
  if (Number(out.trim()) !== size) throw new Error(`socat download: ${out.trim()} bytes, wanted ${size}`);
  return size / (Number(process.hrtime.bigint() - t0) / 1e9) / 1048576;
}

function pingStats(where: string, addr: string, count: number): { median: number; p99: number } {
  const text = sh(['ip', 'netns', 'exec', where, 'ping', '-c', String(count), '-i', '0.01', '-W', '2', addr], false);
  const times = [...text.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  return { median: median(times), p99: percentile(times, 99) };
}

/**
 * QEMU's own TAP path for the ping reference: the Linux guest of `lab image build` with virtio-net
 * on a kernel TAP (`-netdev tap`) in a namespace of its own, under TCG (no KVM here). What a C VMM's
 * round trip through a TAP costs on this machine, beside veth's; skipped, with the reason, when
 * QEMU or a built image is missing.
 */
async function qemuTapGuest(): Promise<{ ok: true; ping: () => { median: number; p99: number } } | { ok: false; why: string }> {
  const qemu = findQemu();
  if (!qemu.ok) return { ok: false, why: qemu.error };
  const dir = join(defaultCacheDir(), '..', 'linux-image');
  if (!imageComplete(dir)) return { ok: false, why: `no Linux image in ${dir} (npm run bench -- linux, or lab image build, makes it)` };
  const kernel = join(dir, readdirSync(dir).find((f) => f.startsWith('vmlinuz-'))!);
  const ns = netns('qemu-tap');
  sh(['ip', 'netns', 'exec', ns, 'ip', 'tuntap', 'add', 'tap2', 'mode', 'tap']);
  sh(['ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', '172.22.0.1/16', 'dev', 'tap2']);
  sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'tap2', 'up']);
  const args = qemuArgs({ kernel, initrd: join(dir, 'initrd.img'), append: 'net=virtio ip=172.22.0.2 netmask=255.255.0.0 gw=172.22.0.1', nic: 'virtio', netdev: 'tap,ifname=tap2,script=no,downscript=no' });
  await start(['ip', 'netns', 'exec', ns, qemu.path, ...args], READY_MARKER, 180_000);
  return { ok: true, ping: () => pingStats(ns, '172.22.0.2', 200) };
}

/**
 * The floor of any userspace round trip through a TAP here (bench/tap-echo.ts: the lab's way of
 * reading and writing the TAP, and nothing else — no VM, switch or stack), in a namespace of its own.
 */
async function tapEchoFloor(): Promise<() => { median: number; p99: number }> {
  const ns = netns('tap-echo');
  await start(['ip', 'netns', 'exec', ns, NODE, 'dist/bench/tap-echo.js'], 'ready:');
  sh(['ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', '172.22.0.1/16', 'dev', 'tap2']);
  sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'tap2', 'up']);
  return () => pingStats(ns, '172.22.0.2', 200);
}

/**
 * `lab up` over a real TAP, each NIC, against a kernel veth pair between two namespaces. The C-tool
 * rows (socat uploads to a sink, curl or socat downloads of N bytes) and the pings go round the
 * setups in turn, run by run, with every lab and the veth pair up at once (idle while another is
 * measured): on this shared machine the same veth pair ran at 621 MB/s in one run and 997 in
 * another, so a reference measured minutes apart from the lab moves the ratio more than the lab
 * does. The Node-client rows (the bench's own client; it limits the fast paths) follow, per setup.
 */
export async function benchTap(size: number, runs: number): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  if (process.getuid?.() !== 0) return [{ name: 'tap', value: NaN, unit: 'needs root (network namespaces): sudo npm run bench' }];
  const a = netns('veth-a');
  const b = netns('veth-b');
  const va = `nlva${process.pid % 10000}`;
  const vb = `nlvb${process.pid % 10000}`;
  sh(['ip', 'link', 'add', va, 'netns', a, 'type', 'veth', 'peer', 'name', vb, 'netns', b]);
  sh(['ip', 'netns', 'exec', a, 'ip', 'addr', 'add', '172.30.0.1/24', 'dev', va]);
  sh(['ip', 'netns', 'exec', b, 'ip', 'addr', 'add', '172.30.0.2/24', 'dev', vb]);
  sh(['ip', 'netns', 'exec', a, 'ip', 'link', 'set', va, 'up']);
  sh(['ip', 'netns', 'exec', b, 'ip', 'link', 'set', vb, 'up']);
  // The veth pair's far end: the Node reference server, and C servers (a sink, N bytes from /dev/zero).
  await start(['ip', 'netns', 'exec', b, NODE, REF, '900'], 'ref-server ready');
  children.push(spawn('ip', ['netns', 'exec', b, 'socat', '-b', '262144', '-u', 'TCP-LISTEN:5002,reuseaddr,fork', 'OPEN:/dev/null'], { stdio: 'ignore' }));
  children.push(spawn('ip', ['netns', 'exec', b, 'socat', '-b', '262144', '-U', 'TCP-LISTEN:5001,reuseaddr,fork', `SYSTEM:head -c ${size} /dev/zero`], { stdio: 'ignore' }));
  const nics = ['rtl8139', 'virtio', 'ne2k'];
  interface Setup {
    name: string;
    up: () => number;
    down: () => number;
    ping: () => { median: number; p99: number };
  }
  const setups: Setup[] = [
    {
      name: 'veth',
      up: () => socatUpload(a, '172.30.0.2', 5002, size),
      down: () => socatDownload(a, '172.30.0.2', 5001, size),
      ping: () => pingStats(a, '172.30.0.2', 200),
    },
  ];
  const labNs = new Map<string, string>();
  for (const nic of nics) {
    const ns = netns(`tap-${nic}`);
    labNs.set(nic, ns);
    await start(['ip', 'netns', 'exec', ns, NODE, CLI, '--no-capture', 'up', 'tap2', '--nic', nic, '--for', '1800'], 'ready:');
    setups.push({
      name: nic,
      up: () => socatUpload(ns, '172.22.0.2', 9, size),
      down: () => curlDownload(ns, `http://172.22.0.2/bytes/${size}`, size),
      ping: () => pingStats(ns, '172.22.0.2', 200),
    });
  }
  const qemuRef = await qemuTapGuest();
  const qemuPings: number[] = [];
  const floorPing = await tapEchoFloor();
  const floorPings: number[] = [];
  await new Promise((r) => setTimeout(r, 300));
  const ups = new Map<string, number[]>(setups.map((x) => [x.name, []]));
  const downs = new Map<string, number[]>(setups.map((x) => [x.name, []]));
  const pings = new Map<string, number[]>(setups.map((x) => [x.name, []]));
  const p99s = new Map<string, number[]>(setups.map((x) => [x.name, []]));
  const cold = new Map(setups.map((x) => [x.name, warmUp(x.up, x.down, size)]));
  for (let i = 0; i < runs; i++) {
    for (const x of setups) {
      ups.get(x.name)!.push(x.up());
      downs.get(x.name)!.push(x.down());
      const p = x.ping();
      pings.get(x.name)!.push(p.median);
      p99s.get(x.name)!.push(p.p99);
    }
    if (qemuRef.ok) qemuPings.push(qemuRef.ping().median);
    floorPings.push(floorPing().median);
  }
  const m = (v: Map<string, number[]>, k: string): number => median(v.get(k)!);
  const ref = { up: m(ups, 'veth'), down: m(downs, 'veth'), ping: m(pings, 'veth'), p99: m(p99s, 'veth') };
  out.push({ name: 'veth host→guest (C tools)', value: ref.up, unit: 'MB/s  (socat)' });
  out.push({ name: 'veth guest→host (C tools)', value: ref.down, unit: 'MB/s  (socat)' });
  out.push({ name: 'veth ping rtt median', value: ref.ping, unit: 'ms' });
  if (qemuRef.ok) out.push({ name: 'QEMU (TCG) virtio-net TAP ping median', value: median(qemuPings), unit: `ms  (Linux guest, -netdev tap; veth ${ref.ping.toFixed(3)}; ratio ${(median(qemuPings) / ref.ping).toFixed(1)})` });
  else out.push({ name: 'QEMU TAP ping reference', value: NaN, unit: `skipped: ${qemuRef.why}` });
  out.push({ name: 'minimal TAP responder ping median', value: median(floorPings), unit: `ms  (Node, the lab's TAP read and write, no VM; veth ${ref.ping.toFixed(3)}; ratio ${(median(floorPings) / ref.ping).toFixed(1)})` });
  for (const nic of nics) {
    const up = m(ups, nic);
    const down = m(downs, nic);
    const ping = m(pings, nic);
    out.push({ name: `tap ${nic} host→guest (C tools)`, value: up, unit: `MB/s  (veth ${ref.up.toFixed(0)}; ratio ${(up / ref.up).toFixed(3)})` });
    out.push({ name: `tap ${nic} guest→host (C tools)`, value: down, unit: `MB/s  (veth ${ref.down.toFixed(0)}; ratio ${(down / ref.down).toFixed(3)})` });
    const c = cold.get(nic)!;
    out.push({ name: `tap ${nic} first transfer, fresh lab`, value: c.up, unit: `MB/s host→guest, ${c.down.toFixed(0)} guest→host (before warm-up)` });
    out.push({ name: `tap ${nic} ping rtt median`, value: ping, unit: `ms  (veth ${ref.ping.toFixed(3)}; ratio ${(ping / ref.ping).toFixed(1)})` });
    out.push({ name: `tap ${nic} ping rtt p99`, value: m(p99s, nic), unit: `ms  (veth ${ref.p99.toFixed(3)})` });
  }
  // The bench's Node client on both ends of each path (it, not the path, is the limit on the fast ones).
  const nodeRef = await measure(a, '172.30.0.2', { up: 9, down: 80, http: 80 }, size, runs);
  for (const nic of nics) {
    const r = await measure(labNs.get(nic)!, '172.22.0.2', { up: 9, down: 80, http: 80 }, size, runs);
    out.push({ name: `tap ${nic} host→guest (Node client)`, value: r.up, unit: `MB/s  (veth ${nodeRef.up.toFixed(0)}; ratio ${(r.up / nodeRef.up).toFixed(3)})` });
    out.push({ name: `tap ${nic} guest→host (Node client)`, value: r.down, unit: `MB/s  (veth ${nodeRef.down.toFixed(0)}; ratio ${(r.down / nodeRef.down).toFixed(3)})` });
    out.push({ name: `tap ${nic} connections`, value: r.cps, unit: `conn/s  (veth ${nodeRef.cps.toFixed(0)}; ratio ${(r.cps / nodeRef.cps).toFixed(2)})` });
  }
  for (const c of children.splice(0)) await kill(c);
  return out;
}

/**
 * A VM per thread against every VM in the lab's thread (`lab up --vm-threads` or not), virtio-net
 * over a real TAP: both labs run at once in their own namespaces and are measured in turn, run by
 * run, with C tools (socat uploads to the guest's discard port, curl downloads of /bytes/N); then
 * two VMs on one switch downloading at once (aggregate), and the resident memory of 10 idle VMs.
 */
export async function benchThreads(size: number, runs: number): Promise<BenchResult[]> {
  if (process.getuid?.() !== 0) return [{ name: 'threads', value: NaN, unit: 'needs root (network namespaces): sudo npm run bench -- threads' }];
  const modes = [
    { label: 'one thread', flags: [] as string[] },
    { label: 'VM threads', flags: ['--vm-threads'] },
  ];
  const where = new Map<string, string>();
  for (const m of modes) {
    const ns = netns(`thr-${m.flags.length}`);
    where.set(m.label, ns);
    await start(['ip', 'netns', 'exec', ns, NODE, CLI, '--no-capture', 'up', 'tap2', '--nic', 'virtio', ...m.flags, '--for', '900'], 'ready:');
  }
  const up = new Map<string, number[]>(modes.map((m) => [m.label, []]));
  const down = new Map<string, number[]>(modes.map((m) => [m.label, []]));
  const ping = new Map<string, number[]>(modes.map((m) => [m.label, []]));
  for (const m of modes) {
    const ns = where.get(m.label)!;
    warmUp(() => socatUpload(ns, '172.22.0.2', 9, size), () => curlDownload(ns, `http://172.22.0.2/bytes/${size}`, size), size);
  }
  for (let i = 0; i < runs; i++) {
    for (const m of modes) {
      const ns = where.get(m.label)!;
      up.get(m.label)!.push(socatUpload(ns, '172.22.0.2', 9, size));
      down.get(m.label)!.push(curlDownload(ns, `http://172.22.0.2/bytes/${size}`, size));
      ping.get(m.label)!.push(pingStats(ns, '172.22.0.2', 100).median);
    }
  }
  for (const c of children.splice(0)) await kill(c);
  const out: BenchResult[] = [];
  const base = modes[0]!.label;
  for (const m of modes) {
    const ratio = (v: Map<string, number[]>): string => (m.label === base ? '' : `; ratio ${(median(v.get(m.label)!) / median(v.get(base)!)).toFixed(2)} of one thread`);
    out.push({ name: `tap virtio, ${m.label}, host→guest (socat)`, value: median(up.get(m.label)!), unit: `MB/s${ratio(up)}` });
    out.push({ name: `tap virtio, ${m.label}, guest→host (curl)`, value: median(down.get(m.label)!), unit: `MB/s${ratio(down)}` });
    out.push({ name: `tap virtio, ${m.label}, ping rtt median`, value: median(ping.get(m.label)!), unit: `ms${ratio(ping)}` });
  }
  // Two VMs on the switch, both downloading at once: where a thread per VM could use two cores.
  for (const m of modes) {
    const ns = netns(`thr2-${m.flags.length}`);
    await start(['ip', 'netns', 'exec', ns, NODE, CLI, '--no-capture', 'up', 'tap2', '--nic', 'virtio', '--vms', '2', ...m.flags, '--for', '900'], 'ready:');
    const agg: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = process.hrtime.bigint();
      const curls = ['172.22.0.2', '172.22.0.3'].map((a) => spawn('ip', ['netns', 'exec', ns, 'curl', '-sS', '-m', '300', '-o', '/dev/null', `http://${a}/bytes/${size}`], { stdio: 'ignore' }));
      await Promise.all(curls.map((c) => new Promise((r) => c.once('exit', r))));
      agg.push((2 * size) / (Number(process.hrtime.bigint() - t0) / 1e9) / 1048576);
    }
    for (const c of children.splice(0)) await kill(c);
    out.push({ name: `2 VMs downloading at once, ${m.label}`, value: median(agg), unit: 'MB/s aggregate (curl)' });
  }
  const rss = await idleRss(10, ['--vm-threads']);
  out.push({ name: 'lab up --vm-threads, 10 idle VMs, resident', value: rss, unit: `MB (${(rss / 10).toFixed(1)} per VM; goal < 40)` });
  return out;
}

/** Resident memory of `lab up tap2 --vms N` 5 s after it is ready. */
async function idleRss(n: number, flags: string[] = []): Promise<number> {
  const ns = netns(`idle-${n}${flags.join('')}`);
  await start(['ip', 'netns', 'exec', ns, NODE, CLI, '--no-capture', 'up', 'tap2', '--vms', String(n), ...flags, '--for', '120'], 'ready:', 60_000);
  await new Promise((r) => setTimeout(r, 5000));
  // The lab is the node process inside the namespace (ip netns exec execs it, keeping the pid).
  const pid = children[children.length - 1]!.pid!;
  const status = sh(['cat', `/proc/${pid}/status`]);
  const mb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
  for (const c of children.splice(0)) await kill(c);
  return mb;
}

/**
 * Idle VMs: `lab up tap2 --vms N` in a namespace, resident memory once booted and settled, for 1
 * and for `count` VMs; per VM both as the whole process divided by N and as the increment per VM
 * beyond the first (what one more VM costs).
 */
export async function benchIdle(count: number): Promise<BenchResult[]> {
  if (process.getuid?.() !== 0) return [{ name: 'idle', value: NaN, unit: 'needs root (network namespaces): sudo npm run bench -- idle' }];
  const rss: Record<number, number> = {};
  for (const n of [1, count]) rss[n] = await idleRss(n);
  return [
    { name: 'lab up, 1 VM, resident', value: rss[1]!, unit: 'MB' },
    { name: `lab up, ${count} VMs, resident`, value: rss[count]!, unit: 'MB' },
    { name: `per VM (${count} VMs, whole process / ${count})`, value: rss[count]! / count, unit: 'MB  (goal < 40)' },
    { name: 'per additional VM', value: (rss[count]! - rss[1]!) / (count - 1), unit: 'MB' },
  ];
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function waitPort(port: number): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = spawn(NODE, ['-e', `require('net').connect(${port},'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))`]);
      s.on('exit', (c) => resolve(c === 0));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Remove every namespace and child this run made (also on errors). */
export async function cleanupHost(): Promise<void> {
  for (const c of children.splice(0)) await kill(c);
  for (const ns of namespaces.splice(0)) spawnSync('ip', ['netns', 'del', ns]);
}
