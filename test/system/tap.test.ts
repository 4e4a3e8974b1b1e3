import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAB_CLI, Netns, bytesPattern, requireTool, sha256Hex, systemSuite } from './netns.js';

/**
 * `lab up` against the real Linux kernel: a TAP device in a test-made namespace, the kernel's own
 * ping, curl and socat as the peers.
 */
const CLI = LAB_CLI;
let ns: Netns | null = null;

systemSuite([['ip', 'iproute2'], ['ping', 'iputils-ping'], ['curl', 'curl'], ['socat', 'socat']], () => {
  ns?.cleanup();
  ns = null;
});

const sha = sha256Hex;

/**
 * Kernel-side loss on what the host sends into `dev`, as `tc qdisc add dev DEV root netem loss P%`
 * does. netem is a module some kernels lack; nftables' egress hook with a random number does the
 * same job in the kernel there. Returns how, or null when neither is available (then the lab's own
 * seeded loss stands in).
 */
type KernelLoss = 'netem' | 'nftables';
function probeKernelLoss(n: Netns): KernelLoss | null {
  const tryOn = (script: string): boolean => n.sh(`ip tuntap add tapx mode tap && (${script}); r=$?; nft delete table netdev nlprobe 2>/dev/null; ip link del tapx; exit $r`).status === 0;
  if (tryOn('tc qdisc add dev tapx root netem loss 2%')) return 'netem';
  if (tryOn(nftLossScript('tapx', 2, 'nlprobe'))) return 'nftables';
  return null;
}
function nftLossScript(dev: string, pct: number, table = 'nlloss'): string {
  return `nft add table netdev ${table} && nft add chain netdev ${table} out '{ type filter hook egress device "${dev}" priority 0; }' && nft add rule netdev ${table} out numgen random mod 100 '<' ${pct} counter drop`;
}
function applyKernelLoss(n: Netns, how: KernelLoss, dev: string, pct: number): boolean {
  if (how === 'netem') return n.run(['tc', 'qdisc', 'add', 'dev', dev, 'root', 'netem', 'loss', `${pct}%`]).status === 0;
  return n.sh(nftLossScript(dev, pct)).status === 0;
}
/** Frames the kernel dropped on `dev` (from the qdisc's or the nft rule's counters). */
function kernelDrops(n: Netns, how: KernelLoss, dev: string): number {
  if (how === 'netem') return Number(/dropped (\d+)/.exec(n.sh(`tc -s qdisc show dev ${dev}`).stdout)?.[1] ?? 0);
  return Number(/counter packets (\d+)/.exec(n.sh('nft list table netdev nlloss').stdout)?.[1] ?? 0);
}

for (const nic of ['rtl8139', 'virtio', 'ne2k']) {
  describe(`lab up tap2 --nic ${nic} (real TAP, kernel peer)`, () => {
    it('20 pings without loss, curl 200, 50 MB each way byte-exact', async () => {
      ns = new Netns();
      const lab = await ns.start([...CLI, 'up', 'tap2', '--nic', nic, '--for', '300'], 'ready:');
      const ping = ns.run(['ping', '-c', '20', '-i', '0.05', '-W', '2', '172.22.0.2']);
      expect(ping.stdout.toString()).toContain('20 packets transmitted, 20 received, 0% packet loss');
      const page = ns.run(['curl', '-sS', '-m', '10', '-o', '/dev/null', '-w', '%{http_code}', 'http://172.22.0.2/']);
      expect(page.stdout.toString()).toBe('200');
      // guest → host: /bytes/N is a known pattern
      const n = 50 * 1024 * 1024;
      const down = ns.run(['curl', '-sS', '-m', '120', `http://172.22.0.2/bytes/${n}`], { timeoutMs: 130_000 });
      expect(down.stdout.length).toBe(n);
      expect(sha(down.stdout)).toBe(sha(bytesPattern(n)));
      // host → guest and back: 50 MB through the echo service
      const data = new Uint8Array(n);
      for (let i = 0; i < n; i += 4096) data[i] = (i * 2654435761) >>> 24;
      const echo = ns.run(['socat', '-t', '30', '-T', '60', '-', 'TCP:172.22.0.2:7'], { input: Buffer.from(data), timeoutMs: 130_000 });
      expect(echo.stdout.length).toBe(n);
      expect(sha(echo.stdout)).toBe(sha(data));
      lab.child.kill('SIGTERM');
      expect(await lab.exit).toBe(0);
      expect(ns.run(['ip', 'link', 'show', 'tap2']).status).not.toBe(0); // the TAP went away with us
      // virtio's guest sends 64 KiB TSO packets; the TAP (offloads on) takes them whole.
      if (nic === 'virtio') expect(lab.out()).toMatch(/txGsoWhole=[1-9]\d*/);
    }, 300_000);

    it('with 2% loss on the host side, transfers still arrive byte-exact', async () => {
      ns = new Netns();
      // The kernel drops 2% of what the host sends into tap2 (netem, or nftables where this kernel
      // has no netem); with neither, the lab impairs its end of the same link.
      const how = probeKernelLoss(ns);
      const args = [...CLI, 'up', 'tap2', '--nic', nic, '--for', '300', ...(how ? [] : ['--loss', '2', '--seed', '7'])];
      const lab = await ns.start(args, 'ready:');
      if (how) expect(applyKernelLoss(ns, how, 'tap2', 2)).toBe(true);
      const n = 10 * 1024 * 1024;
      const down = ns.run(['curl', '-sS', '-m', '200', `http://172.22.0.2/bytes/${n}`], { timeoutMs: 210_000 });
      expect(down.stdout.length).toBe(n);
      expect(sha(down.stdout)).toBe(sha(bytesPattern(n)));
      const data = bytesPattern(n).map((b, i) => b ^ (i & 0xff));
      const echo = ns.run(['socat', '-t', '60', '-T', '120', '-', 'TCP:172.22.0.2:7'], { input: Buffer.from(data), timeoutMs: 210_000 });
      expect(echo.stdout.length).toBe(n);
      expect(sha(echo.stdout)).toBe(sha(data));
      // The loss really happened: ~2% of the host→guest frames of the echo transfer (~7,000 MTU
      // frames; with TAP offloads the kernel sends 64 KiB GSO frames, a few hundred, each a drop unit).
      if (how) expect(kernelDrops(ns, how, 'tap2')).toBeGreaterThan(2);
      lab.child.kill('SIGINT');
      const code = await lab.exit;
      expect(code).toBe(0);
      if (!how) expect(lab.out()).toMatch(/lossPct=2/);
    }, 300_000);
  });
}

describe('lab run with the manual\'s TAP line', () => {
  it('-net tap,ifname=tap2 -net nic,model=rtl8139 answers ping and curl at 172.22.0.2', async () => {
    ns = new Netns();
    const lab = await ns.start([...CLI, '--no-capture', 'run', '-net', 'tap,ifname=tap2', '-net', 'nic,model=rtl8139', '--for', '60'], 'ready:');
    expect(ns.run(['ping', '-c', '3', '-i', '0.1', '-W', '2', '172.22.0.2']).stdout.toString()).toContain('3 received');
    expect(ns.run(['curl', '-sS', '-m', '10', 'http://172.22.0.2/']).stdout.toString()).toContain('netlab guest 172.22.0.2');
    lab.child.kill('SIGINT');
    expect(await lab.exit).toBe(0);
  }, 60_000);
});

describe('lab run with a Palacios NIC_BRIDGE config', () => {
  it('examples/tap2.xml bridges the guest to tap2', async () => {
    ns = new Netns();
    const lab = await ns.start([...CLI, '--no-capture', 'run', 'examples/tap2.xml', '--for', '60'], 'ready:');
    expect(ns.run(['ping', '-c', '3', '-i', '0.1', '-W', '2', '172.22.0.2']).stdout.toString()).toContain('3 received');
    lab.child.kill('SIGINT');
    expect(await lab.exit).toBe(0);
  }, 60_000);
});

describe('lab redirect needs no root', () => {
  it('an unprivileged user runs the redirect and curl reaches the guest', async () => {
    ns = new Netns();
    const lab = await ns.start(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', ...CLI, '--no-capture', 'redirect', 'tcp:9555:10.10.10.33:80', '--for', '60'], 'ready:');
    expect(ns.run(['curl', '-sS', '-m', '10', 'http://localhost:9555/']).stdout.toString()).toContain('netlab guest 10.10.10.33');
    lab.child.kill('SIGINT');
    expect(await lab.exit).toBe(0);
  }, 60_000);
});

describe('lab up: several guests and the host on one switch', () => {
  it('the host reaches both guests and the guests reach each other', async () => {
    ns = new Netns();
    const lab = await ns.start([...CLI, 'up', 'tap2', '--vms', '2', '--for', '120'], 'ready:');
    for (const a of ['172.22.0.2', '172.22.0.3']) {
      expect(ns.run(['ping', '-c', '3', '-i', '0.1', '-W', '2', a]).stdout.toString()).toContain('3 received');
    }
    // vm0's shell pings vm1.
    const shell = ns.run(['socat', '-t', '8', '-T', '10', '-', 'TCP:172.22.0.2:23'], { input: 'ping 172.22.0.3 -c 2\r\n', timeoutMs: 20_000 });
    expect(shell.stdout.toString()).toMatch(/2 packets transmitted, 2 received/);
    lab.child.kill('SIGTERM');
    expect(await lab.exit).toBe(0);
  }, 120_000);
});

describe('lab up: bridging and ifup scripts', () => {
  it('--bridge BR enslaves the TAP to an existing bridge with no address on the TAP', async () => {
    ns = new Netns();
    expect(ns.sh('ip link add br7 type bridge && ip addr add 172.22.0.1/16 dev br7 && ip link set br7 up').status).toBe(0);
    const lab = await ns.start([...CLI, '--no-capture', 'up', 'tap2', '--bridge', 'br7', '--for', '60'], 'enslaved to bridge br7');
    await new Promise((r) => setTimeout(r, 300));
    expect(ns.sh('ip -o link show tap2').stdout).toContain('master br7');
    expect(ns.sh('ip -o -4 addr show dev tap2').stdout.trim()).toBe('');
    expect(ns.run(['ping', '-c', '3', '-i', '0.2', '-W', '2', '172.22.0.2']).stdout.toString()).toContain('3 received');
    lab.child.kill('SIGINT');
    expect(await lab.exit).toBe(0);
  }, 60_000);

  it('tap12 on a bridge takes the guest address from --guest-ip (no tapN rule overwrites it)', async () => {
    ns = new Netns();
    expect(ns.sh('ip link add br7 type bridge && ip addr add 10.77.0.1/24 dev br7 && ip link set br7 up').status).toBe(0);
    const lab = await ns.start([...CLI, '--no-capture', 'up', 'tap12', '--bridge', 'br7', '--guest-ip', '10.77.0.20/24', '--gateway', '10.77.0.1', '--for', '60'], 'ready:');
    expect(lab.out()).toContain('at 10.77.0.20');
    expect(ns.run(['ping', '-c', '3', '-i', '0.2', '-W', '2', '10.77.0.20']).stdout.toString()).toContain('3 received');
    lab.child.kill('SIGINT');
    expect(await lab.exit).toBe(0);
  }, 60_000);

  it('--script PATH runs the user\'s ifup script with the interface name as $1', async () => {
    ns = new Netns();
    const script = `/tmp/netlab-ifup-${process.pid}.sh`;
    writeFileSync(script, '#!/bin/sh\nip addr add 172.22.0.1/16 dev "$1"\nip link set "$1" up\necho "ifup ran for $1" > /tmp/netlab-ifup-' + process.pid + '.out\n', { mode: 0o755 });
    const lab = await ns.start([...CLI, '--no-capture', 'up', 'tap2', '--script', script, '--for', '60'], 'configured by');
    expect(readFileSync(`/tmp/netlab-ifup-${process.pid}.out`, 'utf8')).toBe('ifup ran for tap2\n');
    expect(ns.run(['ping', '-c', '3', '-i', '0.2', '-W', '2', '172.22.0.2']).stdout.toString()).toContain('3 received');
    lab.child.kill('SIGINT');
    expect(await lab.exit).toBe(0);
    rmSync(script);
    rmSync(`/tmp/netlab-ifup-${process.pid}.out`);
  }, 60_000);
});

describe('lab up: errors that say what to do', () => {
  it('without root it says so and points at lab redirect', () => {
    ns = new Netns();
    const r = ns.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', ...CLI, 'up', 'tap2']);
    expect(r.status).toBe(4);
    expect(r.stderr).toContain('needs root or CAP_NET_ADMIN');
    expect(r.stderr).toContain('lab redirect');
  });

  it('tapN with N >= 10 and no addressing is refused with the reason', () => {
    ns = new Netns();
    const r = ns.run([...CLI, 'up', 'tap12']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('172.2NN is not private space');
  });

  it('a name taken by a device that is not a TAP is refused', () => {
    ns = new Netns();
    expect(ns.run(['ip', 'link', 'add', 'tap3', 'type', 'bridge']).status).toBe(0);
    const r = ns.run([...CLI, 'up', 'tap3']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('tap3 already exists and is a bridge device, not a TAP');
  });
});

describe('lab up: a pcap at every hop', () => {
  it('SIGTERM leaves readable pcaps whose frame counts agree with the manifest, and no TAP', async () => {
    requireTool('tshark', 'tshark');
    ns = new Netns();
    const dir = `/tmp/netlab-sys-captures-${process.pid}`;
    const lab = await ns.start([...CLI, '--captures', dir, '--merged-capture', 'up', 'tap2', '--for', '120'], 'ready:');
    ns.run(['ping', '-c', '3', '-i', '0.1', '172.22.0.2']);
    ns.run(['curl', '-sS', '-m', '10', '-o', '/dev/null', 'http://172.22.0.2/bytes/200000']);
    lab.child.kill('SIGTERM');
    expect(await lab.exit).toBe(0);
    expect(ns.run(['ip', 'link', 'show', 'tap2']).status).not.toBe(0);
    const runDir = /captures: (\S+)\//.exec(lab.out())![1]!;
    const manifest = JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8')) as { hops: { name: string; file: string; frames: number }[] };
    const names = manifest.hops.map((h) => h.name).sort();
    expect(names).toEqual(['sw.vm0', 'tap2', 'vm0.eth0', 'vm0.eth0.stack']);
    for (const h of manifest.hops) {
      const file = join(runDir, h.file);
      const count = spawnSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8' });
      expect(count.status).toBe(0);
      expect(count.stdout.trim().split('\n').filter(Boolean).length).toBe(h.frames);
      expect(h.frames).toBeGreaterThan(10);
      const expert = spawnSync('tshark', ['-r', file, '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-Y', '_ws.malformed || _ws.expert.severity == error'], { encoding: 'utf8' });
      expect(expert.stdout.trim()).toBe('');
      // pcapng per hop: Wireshark shows the hop's name on every frame.
      const ifNames = spawnSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.interface_name'], { encoding: 'utf8' });
      expect(new Set(ifNames.stdout.trim().split('\n'))).toEqual(new Set([h.name]));
    }
    // One ping request, one packet id from the TAP to the guest's stack; --follow prints its way
    // (in the merged file's exact order: hops a frame crosses within one microsecond tie on time).
    const ids = (hop: string): string[] =>
      spawnSync('tshark', ['-r', join(runDir, manifest.hops.find((h) => h.name === hop)!.file), '-Y', 'icmp.type == 8', '-T', 'fields', '-e', 'frame.packet_id'], { encoding: 'utf8' }).stdout.trim().split('\n');
    const id = ids('tap2')[0]!;
    expect(ids('vm0.eth0.stack')).toContain(id);
    const way = spawnSync(process.execPath, [CLI[1]!, 'captures', runDir, '--follow', id], { encoding: 'utf8' }).stdout;
    expect(way.split('\n').filter((l) => /^\s+\d/.test(l)).map((l) => l.trim().split(/\s{2,}/)[2])).toEqual(['tap2', 'sw.vm0', 'vm0.eth0', 'vm0.eth0.stack']);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);
});

describe('lab up --vm-threads: each VM in its own thread', () => {
  it('two guests answer, carry 20 MB byte-exact, reach each other; every hop (the in-VM ones recorded from their threads) is a clean pcap; a ping is followed across hops', async () => {
    requireTool('tshark', 'tshark');
    ns = new Netns();
    const dir = `/tmp/netlab-sys-threads-${process.pid}`;
    // One file per hop (no ring), so the whole transfer is in it.
    const lab = await ns.start([...CLI, '--captures', dir, '--capture-ring', 'off', '--merged-capture', 'up', 'tap2', '--nic', 'virtio', '--vms', '2', '--vm-threads', '--for', '200'], 'ready:');
    expect(lab.out()).toMatch(/vm0: LNX_VIRTIO_NIC .* at 172\.22\.0\.2 \(own thread\)/);
    expect(lab.out()).toMatch(/vm1: LNX_VIRTIO_NIC .* at 172\.22\.0\.3 \(own thread\)/);
    for (const a of ['172.22.0.2', '172.22.0.3']) {
      expect(ns.run(['ping', '-c', '5', '-i', '0.1', '-W', '2', a]).stdout.toString()).toContain('5 received');
    }
    const n = 20 * 1024 * 1024;
    const down = ns.run(['curl', '-sS', '-m', '120', `http://172.22.0.2/bytes/${n}`], { timeoutMs: 130_000 });
    expect(sha(down.stdout)).toBe(sha(bytesPattern(n)));
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i += 4096) data[i] = (i * 2654435761) >>> 24;
    const echo = ns.run(['socat', '-t', '30', '-T', '60', '-', 'TCP:172.22.0.3:7'], { input: Buffer.from(data), timeoutMs: 130_000 });
    expect(sha(echo.stdout)).toBe(sha(data));
    // Thread to thread through the switch: vm0's shell pings vm1.
    const shell = ns.run(['socat', '-t', '8', '-T', '10', '-', 'TCP:172.22.0.2:23'], { input: 'ping 172.22.0.3 -c 2\r\n', timeoutMs: 20_000 });
    expect(shell.stdout.toString()).toMatch(/2 packets transmitted, 2 received/);
    lab.child.kill('SIGTERM');
    expect(await lab.exit).toBe(0);
    // Each VM's final counters came back from its thread.
    expect(lab.out()).toMatch(/telemetry vm0: \d+ exits/);
    expect(lab.out()).toMatch(/telemetry vm1: \d+ exits/);
    expect(lab.out()).not.toContain('capture records lost');
    expect(ns.run(['ip', 'link', 'show', 'tap2']).status).not.toBe(0);
    const runDir = /captures: (\S+)\//.exec(lab.out())![1]!;
    const manifest = JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8')) as { hops: { name: string; file: string; frames: number }[] };
    expect(manifest.hops.map((h) => h.name).sort()).toEqual(['sw.vm0', 'sw.vm1', 'tap2', 'vm0.eth0', 'vm0.eth0.stack', 'vm1.eth0', 'vm1.eth0.stack']);
    for (const h of manifest.hops) {
      const file = join(runDir, h.file);
      const count = spawnSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      expect(count.status).toBe(0);
      expect(count.stdout.trim().split('\n').filter(Boolean).length).toBe(h.frames);
      expect(h.frames).toBeGreaterThan(10);
      const expert = spawnSync('tshark', ['-r', file, '-o', 'tcp.desegment_tcp_streams:FALSE', '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-Y', '_ws.malformed || _ws.expert.severity == error'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      expect(expert.stdout.trim()).toBe('');
    }
    const ids = (hop: string): string[] =>
      spawnSync('tshark', ['-r', join(runDir, manifest.hops.find((h) => h.name === hop)!.file), '-Y', 'icmp.type == 8 && ip.dst == 172.22.0.2', '-T', 'fields', '-e', 'frame.packet_id'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).stdout.trim().split('\n');
    const id = ids('tap2')[0]!;
    expect(ids('vm0.eth0.stack')).toContain(id);
    const way = spawnSync(process.execPath, [CLI[1]!, 'captures', runDir, '--follow', id], { encoding: 'utf8' }).stdout;
    expect(way.split('\n').filter((l) => /^\s+\d/.test(l)).map((l) => l.trim().split(/\s{2,}/)[2])).toEqual(['tap2', 'sw.vm0', 'vm0.eth0', 'vm0.eth0.stack']);
    rmSync(dir, { recursive: true, force: true });
  }, 240_000);
});
