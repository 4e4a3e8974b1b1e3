import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Clock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import type { Logger } from '../../src/log.js';
import { NIC_CLASSES, type NicModel, type VmConfig } from '../../src/config/types.js';
import { findQemu, qemuArgs } from './qemu.js';
import { qemuNetdev } from './spec.js';
import { startSocketRedirect } from './socket-lab.js';

/**
 * `lab run linux.xml` where the XML says `<machine>qemu</machine>`: the lab opens a unix stream
 * socket, puts its user-mode network (with the XML's and the command line's redirects) behind it,
 * and starts QEMU on the image `<files>` names (`kernel`, `initrd`, relative to the XML), with the
 * XML's NIC model and MAC, the kernel line from `<guest><kernel>`, and the serial console on this
 * terminal. The run ends when QEMU exits or on Ctrl-C / --for.
 */
export interface QemuRunOptions {
  configPath: string;
  redirects: string[];
  nicOverride?: NicModel;
  clock: Clock;
  logger: Logger;
  say: (text: string) => void;
  wrapPort?: (hop: string, port: FramePort) => FramePort;
  until: () => Promise<void>;
  restrict?: boolean;
  listen?: string;
}

export async function runQemuGuest(config: VmConfig, o: QemuRunOptions): Promise<{ code: number; error?: string }> {
  const qemu = findQemu();
  if (!qemu.ok) return { code: 4, error: qemu.error };
  const base = dirname(resolve(o.configPath));
  const file = (id: string): string | null => {
    const f = config.files.find((x) => x.id.toLowerCase() === id);
    return f ? resolve(base, f.filename) : null;
  };
  const kernel = file('kernel');
  const initrd = file('initrd');
  if (!kernel || !initrd) return { code: 2, error: `${o.configPath}: a QEMU machine needs <files><file id="kernel" filename=…/><file id="initrd" filename=…/></files> (lab image build writes them)` };
  for (const p of [kernel, initrd]) if (!existsSync(p)) return { code: 2, error: `${p} is missing: run "lab image build --out ${base}"` };
  const nicDev = config.devices.find((d) => d.className in NIC_CLASSES);
  const nic: NicModel = o.nicOverride ?? (nicDev ? NIC_CLASSES[nicDev.className]! : 'rtl8139');
  const backend = config.backends.find((b) => b.frontend === nicDev?.id);
  if (backend && backend.className !== 'USER_NET') {
    return { code: 2, error: `line ${backend.line}: a QEMU guest in "lab run" uses a USER_NET backend; for a TAP or a switch run "lab up tap2 --vm-socket /tmp/vm.sock" and start QEMU with the -netdev it prints` };
  }
  const redirects = [...(backend?.redirects ?? []), ...o.redirects];
  const dir = mkdtempSync(join(tmpdir(), 'netlab-qemu-'));
  const sockPath = join(dir, 'net0.sock');
  const hop = `${config.name}.eth0`;
  const made = await startSocketRedirect({ spec: { kind: 'stream', role: 'server', addr: { type: 'unix', path: sockPath }, name: hop }, redirects, clock: o.clock, logger: o.logger, restrict: o.restrict, listenAddress: o.listen, wrapPort: o.wrapPort });
  if (!made.ok) {
    rmSync(dir, { recursive: true, force: true });
    return { code: made.exitCode, error: made.error };
  }
  const lab = made.lab;
  // The kernel line names the NIC the machine has (Kitten's net=), whatever the XML's line said.
  const words = config.kernel.cmdline.split(/\s+/).filter((w) => w && !w.startsWith('net='));
  const append = [`net=${nic}`, ...words].join(' ');
  const mac = nicDev?.mac ? [...nicDev.mac].map((b) => b.toString(16).padStart(2, '0')).join(':') : undefined;
  const args = qemuArgs({ kernel, initrd, append, nic, netdev: qemuNetdev(lab.socket.port.spec, 'n0', lab.socket.port.bound), mac, memoryMB: config.memoryMB });
  for (const line of lab.summary.slice(1)) o.say(`${line}\n`);
  o.say(`machine: QEMU (${qemu.path} ${args.join(' ')})\n`);
  const child = spawn(qemu.path, args, { stdio: 'inherit' });
  const exited = new Promise<number>((r) => child.on('exit', (code, sig) => r(code ?? (sig ? 0 : 1))));
  const how = await Promise.race([exited.then((c) => ({ qemu: c })), o.until().then(() => ({ qemu: -1 }))]);
  if (how.qemu === -1 && child.exitCode === null) {
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  lab.close();
  const p = lab.socket.port;
  o.say(`\n${hop}: rx ${p.stats.rxFrames} frames ${p.stats.rxBytes} bytes, tx ${p.stats.txFrames} frames ${p.stats.txBytes} bytes; usernet ${Object.entries(lab.userNet.stats).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
  rmSync(dir, { recursive: true, force: true });
  return { code: how.qemu > 0 ? 1 : 0 };
}
