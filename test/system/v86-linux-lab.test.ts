import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesPattern, SHA256_PORT } from '../../lab/image/guest-files.js';
import { CLI, ConsoleChild, linuxImage, networkDriverProblems, sha256, tsharkProblems } from './linux-guest.js';
import { Netns, requireRoot, requireTool } from './netns.js';

/**
 * Linux's own drivers (8139too, ne2k-pci, virtio_net) on netlab's RTL8139, NE2000 and virtio-net
 * models, the CPU the v86 emulator, as a user runs them: `lab up tap2 --config linux-v86.xml`
 * (`<machine>v86</machine>`, the MAC from the XML) and `lab redirect … --guest linux --nic M`. The
 * serial console is the lab's terminal; the test types into it. Each rig boots once and runs all
 * its checks; host-side transfers use curl and socat so the client is never the limit.
 */
const MB = 1_000_000;
const XML_MAC = '52:54:00:8a:13:9f';
const DEFAULT_MAC = '52:54:00:12:34:56';
const BOOT_MS = 240_000;
const work = mkdtempSync(join(tmpdir(), 'netlab-v86lab-'));
const timings: string[] = [];

beforeAll(() => {
  requireRoot();
  for (const [t, p] of [['ip', 'iproute2'], ['curl', 'curl'], ['socat', 'socat'], ['tshark', 'tshark'], ['ping', 'iputils-ping']] as const) requireTool(t, p);
  linuxImage();
}, 300_000);
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  if (timings.length) process.stdout.write(`v86 Linux lab timings:\n  ${timings.join('\n  ')}\n`);
});

// `threads`: that model's `lab up` rig runs the guest in its own thread (--vm-threads); its
// redirect rig, and the other models, keep the lab's one thread. `bare`: that model's redirect rig
// runs with no capture point in the way (--no-capture), so Linux's driver meets the paths a
// capture turns off: TCP checksums left partial both ways (NEEDS_CSUM) and frames in lent buffers.
const MODELS = [
  { nic: 'rtl8139', cls: 'RTL8139', driver: '8139too', bulk: 20 * MB, threads: false, bare: false },
  // ne2k-pci moves every byte through the data port, one emulated port access per word.
  { nic: 'ne2k', cls: 'NE2000', driver: 'ne2k-pci', bulk: 5 * MB, threads: false, bare: false },
  { nic: 'virtio', cls: 'LNX_VIRTIO_NIC', driver: 'virtio_net', bulk: 20 * MB, threads: true, bare: true },
] as const;

interface Rig {
  ns: Netns;
  lab: ConsoleChild;
  /** Where its captures go; null for a run with --no-capture. */
  captures: string | null;
  /** Where the guest's services are reached from the namespace: http, and the SHA-256 sink. */
  http: string;
  sink: string;
}

/** Start a lab command in a fresh namespace with its console on pipes; wait for its ready line. */
async function startRig(args: string[], name: string, http: string, sink: string, capture = true): Promise<Rig> {
  const ns = new Netns();
  const captures = capture ? join(work, name) : null;
  const child = spawn('ip', ['netns', 'exec', ns.name, ...CLI, ...(captures ? ['--captures', captures] : ['--no-capture']), ...args, '--for', '1200'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lab = new ConsoleChild(child);
  try {
    const m = await lab.waitFor(/Linux ready in ([\d.]+) s/, BOOT_MS);
    await lab.waitFor(/^ready: /m, 10_000);
    timings.push(`${name}: boot to ready ${m[1]} s (wall clock from CPU start)`);
  } catch (e) {
    lab.kill();
    ns.cleanup();
    throw e;
  }
  return { ns, lab, captures, http, sink };
}

/** SIGINT the lab, as Ctrl-C; its exit code and output; the namespace goes. */
async function stopRig(rig: Rig): Promise<{ code: number; out: string }> {
  rig.lab.child.kill('SIGINT');
  const code = await Promise.race([rig.lab.exit, new Promise<number>((r) => setTimeout(() => r(-1), 20_000))]);
  rig.lab.kill();
  rig.ns.cleanup();
  return { code, out: rig.lab.console };
}

function transfers(rig: Rig, n: number, label: string): void {
  const t0 = Date.now();
  const d = rig.ns.sh(`curl -sS --max-time 300 ${rig.http}/bytes/${n} | sha256sum`, 310_000);
  const down = (Date.now() - t0) / 1000;
  expect(d.stderr).toBe('');
  expect(d.stdout.split(' ')[0]).toBe(sha256(bytesPattern(n)));
  const data = randomBytes(n);
  const file = join(work, `up-${label.replace(/\W+/g, "-")}`);
  writeFileSync(file, data);
  const t1 = Date.now();
  const u = rig.ns.sh(`socat -t 120 -T 300 STDIO TCP:${rig.sink} < ${file}`, 310_000);
  const up = (Date.now() - t1) / 1000;
  rmSync(file);
  expect(u.stdout.split(' ')[0]!.trim(), `socat exited ${u.status}: ${u.stderr}`).toBe(sha256(data));
  const mbit = (s: number): string => `${((n * 8) / s / 1e6).toFixed(0)} Mbit/s`;
  timings.push(`${label} ${n / MB} MB: host→guest ${up.toFixed(1)} s (${mbit(up)}), guest→host ${down.toFixed(1)} s (${mbit(down)})`);
}

async function driverChecks(rig: Rig, driver: string, mac: string): Promise<void> {
  const out = await rig.lab.shell('dmesg | grep -i eth0; cat /sys/class/net/eth0/address; readlink /sys/class/net/eth0/device/driver');
  expect(out.split(/\r?\n/)).toContain(mac);
  expect(out).toMatch(new RegExp(`/drivers/${driver.replace('-', '[-_]')}\\b`));
  if (driver === '8139too') expect(out).toMatch(new RegExp(`eth0: RealTek RTL8139 at 0x[0-9a-f]+, ${mac}, IRQ \\d+`));
  if (driver === 'ne2k-pci') expect(out).toMatch(new RegExp(`eth0: RealTek RTL-8029\\S* found at 0x[0-9a-f]+, IRQ \\d+, ${mac}`));
}

async function endChecks(rig: Rig): Promise<void> {
  const problems = networkDriverProblems(await rig.lab.dmesg());
  expect(problems, problems.join('\n')).toEqual([]);
  const { code, out } = await stopRig(rig);
  expect(code).toBe(0);
  // The end of the run reports the real driver's exits per register on the model.
  expect(out).toMatch(/telemetry linux0 \(Linux \w+ driver on netlab's/);
  expect(out).toMatch(/top registers: 0x[0-9a-f]+/);
  // No interrupt was lost long enough for the adapter's fallback re-pulse (v86's 8259 cascade is
  // mended instead: before that, ne2k-pci's transmit watchdog fired and the NIC never recovered).
  expect(out).toMatch(/level re-pulses 0\b/);
  if (rig.captures === null) {
    // No capture in the way: the user-mode TCP's segments went to Linux as NEEDS_CSUM, and
    // Linux's own TSO packets came out partial and were taken so (the transfers were byte-exact).
    expect(out).toMatch(/rxPartialChecksums=[1-9]\d*/);
    expect(out).toMatch(/txGsoPartial=[1-9]\d*/);
    return;
  }
  // The NIC's hop was recorded (in the guest's own thread with --vm-threads, mirrored to the run).
  expect(out).toMatch(/\blinux0\.eth0 [1-9]\d*[, ]/);
  const runs = readdirSync(rig.captures);
  expect(runs.length).toBe(1);
  expect(tsharkProblems(join(rig.captures, runs[0]!))).toEqual([]);
}

for (const m of MODELS) {
  describe(`Linux's ${m.driver} on netlab's ${m.cls} (v86)`, () => {
    it(`lab up tap2 with <machine>v86</machine>${m.threads ? ' --vm-threads' : ''}: the driver binds with the XML's MAC; 20 pings, curl 200, ${m.bulk / MB} MB each way; clean dmesg and pcaps`, async () => {
      const img = linuxImage();
      const xml = join(work, `linux-v86-${m.nic}.xml`);
      writeFileSync(xml, `<vm class="PC" name="linux0"><memory>128</memory><machine>v86</machine>
  <files><file id="kernel" filename="${img.kernelPath}"/><file id="initrd" filename="${img.initrdPath}"/></files>
  <devices><device class="PCI" id="pci0"/><device class="${m.cls}" id="net0"><bus>pci0</bus><mac>${XML_MAC}</mac></device></devices>
</vm>`);
      const rig = await startRig(['up', 'tap2', '--config', xml, ...(m.threads ? ['--vm-threads'] : [])], `${m.nic}-tap`, 'http://172.22.0.2', `172.22.0.2:${SHA256_PORT}`);
      try {
        expect(rig.lab.console).toContain(`driver ${m.driver}, ${XML_MAC}, 172.22.0.2/16`);
        if (m.threads) expect(rig.lab.console).toContain('(CPU and NIC model in their own thread)');
        await driverChecks(rig, m.driver, XML_MAC);
        const ping = rig.ns.sh('ping -c 20 -i 0.2 -W 2 172.22.0.2', 60_000).stdout;
        expect(ping).toMatch(/20 packets transmitted, 20 received/);
        const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping)?.[1];
        const head = rig.ns.sh('curl -sS -i --max-time 20 http://172.22.0.2/').stdout;
        expect(head).toMatch(/^HTTP\/1\.1 200 OK/);
        expect(head).toContain('netlab Linux guest');
        timings.push(`${m.nic} tap: ping avg ${rtt} ms`);
        transfers(rig, m.bulk, `${m.nic} tap`);
        await endChecks(rig);
      } finally {
        rig.lab.kill();
        rig.ns.cleanup();
      }
    }, BOOT_MS + 600_000);

    it(`lab redirect --guest linux --nic ${m.nic}${m.bare ? ' --no-capture' : ''}: DHCP from the lab, curl localhost:9555, ${m.bulk / MB} MB each way; clean dmesg${m.bare ? ', partial checksums both ways' : ' and pcaps'}`, async () => {
      const rig = await startRig(['redirect', 'tcp:9555:10.10.10.33:80', `tcp:9556:10.10.10.33:${SHA256_PORT}`, '--guest', 'linux', '--nic', m.nic], `${m.nic}-redirect`, 'http://127.0.0.1:9555', '127.0.0.1:9556', !m.bare);
      try {
        expect(rig.lab.console).toContain('netlab-linux: DHCP lease 10.10.10.33/24 router 10.10.10.2');
        expect(rig.lab.console).toContain(`driver ${m.driver}, ${DEFAULT_MAC}, 10.10.10.33/24`);
        await driverChecks(rig, m.driver, DEFAULT_MAC);
        const r = rig.ns.sh('curl -sS -i --max-time 20 http://127.0.0.1:9555/').stdout;
        expect(r).toMatch(/^HTTP\/1\.1 200 OK/);
        expect(r).toContain('inet 10.10.10.33/24');
        transfers(rig, m.bulk, `${m.nic} redirect`);
        await endChecks(rig);
      } finally {
        rig.lab.kill();
        rig.ns.cleanup();
      }
    }, BOOT_MS + 600_000);
  });
}

describe('lab run linux-v86.xml (what lab image build writes beside linux.xml)', () => {
  it('boots the XML\'s guest on netlab\'s RTL8139 behind its USER_NET redirect: curl localhost:9555 gives the guest\'s page; Ctrl-C ends it cleanly', async () => {
    const img = linuxImage();
    const rig = await startRig(['run', img.v86XmlPath], 'run-v86-xml', 'http://127.0.0.1:9555', '');
    try {
      expect(rig.lab.console).toContain(`driver 8139too, ${DEFAULT_MAC}, 10.10.10.33/24`);
      const r = rig.ns.sh('curl -sS -i --max-time 20 http://127.0.0.1:9555/').stdout;
      expect(r).toMatch(/^HTTP\/1\.1 200 OK/);
      expect(r).toContain('netlab Linux guest');
      const { code, out } = await stopRig(rig);
      expect(code).toBe(0);
      expect(out).toMatch(/level re-pulses 0\b/);
    } finally {
      rig.lab.kill();
      rig.ns.cleanup();
    }
  }, BOOT_MS + 60_000);
});
