import { existsSync, rmSync } from 'node:fs';
import { curlDownload, socatDownload, socatUpload } from './host.js';
import { launch, netns, sh, stopAll, waitText } from './linux.js';
import { median, type BenchResult } from './stats.js';
import { warmUp, type Rates } from './warm-up.js';

/**
 * `npm run bench -- usernet`: `lab redirect --nic virtio` beside the user-mode networks rootless
 * containers use, C tools on the host side of every one (curl or socat downloading, socat
 * uploading; loopback only): slirp4netns at MTU 1500 and at 65520 (podman's setting) and pasta
 * (passt's namespace mode, which splices loopback connections). The references' servers are socat
 * in a namespace of the bench's own (a sink, and N bytes from /dev/zero; ports above 1023, as
 * pasta as root wants); the lab's are the built-in guest's discard port and /bytes/N.
 */
const NODE = process.execPath;
const CLI = 'dist/lab/cli.js';
const PORT_BASE = 21000 + (process.pid % 500) * 8;

/** A setup started and ready: one transfer each way through it, as MB/s. */
interface Setup {
  name: string;
  up: () => number;
  down: () => number;
}

// Host side: loopback, so '' (no namespace) for the C-tool clients of bench/host.ts.
const upload = (port: number, size: number): number => socatUpload('', '127.0.0.1', port, size);
const socatDown = (port: number, size: number): number => socatDownload('', '127.0.0.1', port, size);

/**
 * Every setup is started first and the runs go round them in turn (lab, slirp4netns 1500, 65520,
 * pasta, lab, …), so a slow spell on a shared machine lands on all of them, not on one; each is
 * warmed up first (warm-up.ts: V8's compiling, socket buffer autotuning), and its first transfer
 * each way is kept as `cold`. Medians of `runs`.
 */
function measureAll(setups: Setup[], runs: number, size: number): Map<string, Rates & { cold: Rates }> {
  const cold = new Map(setups.map((s) => [s.name, warmUp(s.up, s.down, size)]));
  const up = new Map<string, number[]>(setups.map((s) => [s.name, []]));
  const down = new Map<string, number[]>(setups.map((s) => [s.name, []]));
  for (let i = 0; i < runs; i++) {
    for (const s of setups) {
      up.get(s.name)!.push(s.up());
      down.get(s.name)!.push(s.down());
    }
  }
  return new Map(setups.map((s) => [s.name, { up: median(up.get(s.name)!), down: median(down.get(s.name)!), cold: cold.get(s.name)! }]));
}

/** A namespace with socat servers: 5002 a sink, 5001 `size` bytes of zeros per connection. */
function serverNs(name: string, size: number): string {
  const ns = netns(name, false);
  launch(ns, ['socat', '-b', '262144', '-u', 'TCP-LISTEN:5002,reuseaddr,fork', 'OPEN:/dev/null']);
  launch(ns, ['socat', '-b', '262144', '-U', 'TCP-LISTEN:5001,reuseaddr,fork', `SYSTEM:head -c ${size} /dev/zero`]);
  return ns;
}

async function slirp(mtu: number, size: number, ports: [number, number]): Promise<Setup> {
  const ns = serverNs(`slirp${mtu}`, size);
  const sock = `/tmp/nlbench-${process.pid}-${mtu}.sock`;
  if (existsSync(sock)) rmSync(sock);
  launch('', ['slirp4netns', '--configure', `--mtu=${mtu}`, '--disable-host-loopback', '--api-socket', sock, '--netns-type=path', `/run/netns/${ns}`, 'tap0']);
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  for (const [hp, gp] of [[ports[0], 5001], [ports[1], 5002]] as const) {
    const req = JSON.stringify({ execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: hp, guest_port: gp } });
    sh('', `printf '%s' '${req}' | socat -t 2 - UNIX-CONNECT:${sock}`);
  }
  await new Promise((r) => setTimeout(r, 300));
  return { name: `slirp4netns MTU ${mtu}`, up: () => upload(ports[1], size), down: () => socatDown(ports[0], size) };
}

async function pasta(size: number, ports: [number, number]): Promise<Setup> {
  const ns = serverNs('pasta', size);
  launch('', ['pasta', '--runas', '0', '--config-net', '-f', '-t', `127.0.0.1/${ports[0]}:5001`, '-t', `127.0.0.1/${ports[1]}:5002`, '--netns', `/run/netns/${ns}`]);
  await new Promise((r) => setTimeout(r, 1000));
  return { name: 'pasta', up: () => upload(ports[1], size), down: () => socatDown(ports[0], size) };
}

async function lab(size: number, ports: [number, number]): Promise<Setup> {
  const p = launch('', [NODE, CLI, '--no-capture', 'redirect', `tcp:${ports[0]}:10.10.10.33:80`, `tcp:${ports[1]}:10.10.10.33:9`, '--nic', 'virtio', '--for', '1800']);
  await waitText(p, 'ready:', 30_000);
  return { name: 'lab', up: () => upload(ports[1], size), down: () => curlDownload('', `http://127.0.0.1:${ports[0]}/bytes/${size}`, size) };
}

export async function benchUserNetRefs(size: number, runs: number): Promise<BenchResult[]> {
  if (process.getuid?.() !== 0) return [{ name: 'usernet references', value: NaN, unit: 'need root (namespaces): sudo npm run bench -- usernet' }];
  const have = (t: string): boolean => sh('', `command -v ${t}`).status === 0;
  const refNames = ['slirp4netns MTU 1500', 'slirp4netns MTU 65520', 'pasta'];
  try {
    const setups: Setup[] = [await lab(size, [PORT_BASE, PORT_BASE + 1])];
    if (have('slirp4netns')) {
      setups.push(await slirp(1500, size, [PORT_BASE + 2, PORT_BASE + 3]));
      setups.push(await slirp(65520, size, [PORT_BASE + 4, PORT_BASE + 5]));
    }
    if (have('pasta')) setups.push(await pasta(size, [PORT_BASE + 6, PORT_BASE + 7]));
    const rates = measureAll(setups, runs, size);
    const ours = rates.get('lab')!;
    const out: BenchResult[] = [];
    for (const dir of ['up', 'down'] as const) {
      const label = dir === 'up' ? 'host→guest' : 'guest→host';
      const vs = refNames.map((n) => {
        const r = rates.get(n);
        return r ? `${n} ${r[dir].toFixed(0)} (${(ours[dir] / r[dir]).toFixed(2)})` : `${n}: not installed`;
      }).join('; ');
      out.push({ name: `lab redirect virtio ${label}`, value: ours[dir], unit: `MB/s  vs ${vs}` });
    }
    out.push({ name: 'lab redirect first transfer, fresh lab', value: ours.cold.up, unit: `MB/s host→guest, ${ours.cold.down.toFixed(0)} guest→host (before warm-up)` });
    return out;
  } finally {
    await stopAll();
  }
}
