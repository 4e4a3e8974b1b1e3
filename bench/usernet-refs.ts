import { existsSync, rmSync } from 'node:fs';
import { curlDownload, socatDownload, socatUpload } from './host.js';
import { launch, netns, sh, stopAll, waitText } from './linux.js';
import { median, type BenchResult } from './stats.js';

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
const PORT_BASE = 21000 + (process.pid % 500) * 4;

interface Rates {
  up: number;
  down: number;
}

// Host side: loopback, so '' (no namespace) for the C-tool clients of bench/host.ts.
const upload = (port: number, size: number): number => socatUpload('', '127.0.0.1', port, size);
const socatDown = (port: number, size: number): number => socatDownload('', '127.0.0.1', port, size);

/** Medians of `runs` transfers each way, after one untimed transfer each way (see WARM_UP). */
function measure(runs: number, up: () => number, down: () => number): Rates {
  const u: number[] = [];
  const d: number[] = [];
  up();
  down();
  for (let i = 0; i < runs; i++) {
    u.push(up());
    d.push(down());
  }
  return { up: median(u), down: median(d) };
}

/** A namespace with socat servers: 5002 a sink, 5001 `size` bytes of zeros per connection. */
function serverNs(name: string, size: number): string {
  const ns = netns(name, false);
  launch(ns, ['socat', '-b', '262144', '-u', 'TCP-LISTEN:5002,reuseaddr,fork', 'OPEN:/dev/null']);
  launch(ns, ['socat', '-b', '262144', '-U', 'TCP-LISTEN:5001,reuseaddr,fork', `SYSTEM:head -c ${size} /dev/zero`]);
  return ns;
}

async function slirp(mtu: number, size: number, runs: number, ports: [number, number]): Promise<Rates> {
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
  const r = measure(runs, () => upload(ports[1], size), () => socatDown(ports[0], size));
  await stopAll();
  rmSync(sock, { force: true });
  return r;
}

async function pasta(size: number, runs: number, ports: [number, number]): Promise<Rates> {
  const ns = serverNs('pasta', size);
  launch('', ['pasta', '--runas', '0', '--config-net', '-f', '-t', `127.0.0.1/${ports[0]}:5001`, '-t', `127.0.0.1/${ports[1]}:5002`, '--netns', `/run/netns/${ns}`]);
  await new Promise((r) => setTimeout(r, 1000));
  const r = measure(runs, () => upload(ports[1], size), () => socatDown(ports[0], size));
  await stopAll();
  return r;
}

async function lab(size: number, runs: number, ports: [number, number]): Promise<Rates> {
  const p = launch('', [NODE, CLI, '--no-capture', 'redirect', `tcp:${ports[0]}:10.10.10.33:80`, `tcp:${ports[1]}:10.10.10.33:9`, '--nic', 'virtio', '--for', '900']);
  await waitText(p, 'ready:', 30_000);
  const r = measure(runs, () => upload(ports[1], size), () => curlDownload('', `http://127.0.0.1:${ports[0]}/bytes/${size}`, size));
  await stopAll();
  return r;
}

export async function benchUserNetRefs(size: number, runs: number): Promise<BenchResult[]> {
  if (process.getuid?.() !== 0) return [{ name: 'usernet references', value: NaN, unit: 'need root (namespaces): sudo npm run bench -- usernet' }];
  const have = (t: string): boolean => sh('', `command -v ${t}`).status === 0;
  const ours = await lab(size, runs, [PORT_BASE, PORT_BASE + 1]);
  const refs: [string, Rates | null][] = [
    ['slirp4netns MTU 1500', have('slirp4netns') ? await slirp(1500, size, runs, [PORT_BASE + 2, PORT_BASE + 3]) : null],
    ['slirp4netns MTU 65520', have('slirp4netns') ? await slirp(65520, size, runs, [PORT_BASE + 2, PORT_BASE + 3]) : null],
    ['pasta', have('pasta') ? await pasta(size, runs, [PORT_BASE + 2, PORT_BASE + 3]) : null],
  ];
  const out: BenchResult[] = [];
  for (const dir of ['up', 'down'] as const) {
    const label = dir === 'up' ? 'host→guest' : 'guest→host';
    const vs = refs.map(([n, r]) => (r ? `${n} ${r[dir].toFixed(0)} (${(ours[dir] / r[dir]).toFixed(2)})` : `${n}: not installed`)).join('; ');
    out.push({ name: `lab redirect virtio ${label}`, value: ours[dir], unit: `MB/s  vs ${vs}` });
  }
  return out;
}
