import { RealClock } from '../net/clock.js';
import { createLink } from '../net/link.js';
import { Logger } from '../src/log.js';
import { createDeviceRegistry } from '../src/registry.js';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { NIC_CLASSES, type NicModel, type VmConfig } from '../src/config/types.js';
import type { CaptureRun } from './capture/run.js';
import type { Impairment } from './impair.js';
import { captureRun, fail, liveStats, stopRun, untilStopped, type GlobalOptions } from './run-control.js';
import { startUp, hasNetAdmin, upHostAddressing } from './up.js';
import { guestKernelFor, upGuestAddressing } from './up-addressing.js';
import { openUserNet, planRedirects } from './usernet/redirect-lab.js';
import { createLinuxGuest, findLinuxImage, linuxKernelLine, type LinuxGuest, type LinuxImage } from './v86-linux.js';
import { linuxGuestInThread } from './vmthread/linux-thread.js';
import type { FramePort } from '../net/frame-port.js';
import type { Clock } from '../net/clock.js';

/**
 * `lab up tapN --guest linux` and `lab redirect … --guest linux` (and `lab run` of an XML whose
 * `<machine>` is v86): a Linux image on netlab's NIC models in the v86 CPU emulator, in place of the
 * built-in guest. The serial console is this terminal (lines typed here go to the guest's shell);
 * the end of the run prints the telemetry of Linux's driver on the model.
 */
export interface LinuxRunOptions {
  nic: NicModel;
  /** `--image DIR`; default: the cache, built on first use. */
  image?: string;
  /** The files an XML's `<files>` names (instead of a directory). */
  imageFiles?: LinuxImage;
  mac?: Uint8Array;
  memoryMB?: number;
  name?: string;
  for?: number;
  /** `--vm-threads`: the guest's CPU and NIC model in their own worker thread. */
  vmThreads?: boolean;
}

/**
 * What an XML says of its Linux guest: the NIC model (its class, unless `nicOverride`), MAC, memory,
 * name, and the kernel and initrd its `<files>` name (relative to the XML), unless `imageGiven`.
 */
export function linuxFromXml(configPath: string, config: VmConfig, nicOverride?: NicModel, imageGiven = false): { ok: true; value: LinuxRunOptions } | { ok: false; error: string } {
  const nicDev = config.devices.find((d) => d.className in NIC_CLASSES);
  const nic: NicModel = nicOverride ?? (nicDev ? NIC_CLASSES[nicDev.className]! : 'rtl8139');
  const value: LinuxRunOptions = { nic, mac: nicDev?.mac, memoryMB: config.memoryMB, name: config.name };
  if (imageGiven || config.files.length === 0) return { ok: true, value };
  const base = dirname(resolve(configPath));
  const file = (id: string): string | null => {
    const f = config.files.find((x) => x.id.toLowerCase() === id);
    return f ? resolve(base, f.filename) : null;
  };
  const kernel = file('kernel');
  const initrd = file('initrd');
  if (!kernel || !initrd) return { ok: false, error: `${configPath}: a Linux guest needs <files><file id="kernel" filename=…/><file id="initrd" filename=…/></files> (lab image build writes them), or --image DIR` };
  for (const p of [kernel, initrd]) if (!existsSync(p)) return { ok: false, error: `${p} (named in ${configPath}) is missing: run "lab image build --out ${base}"` };
  return { ok: true, value: { ...value, imageFiles: { dir: base, kernel, initrd } } };
}

const DEFAULT_MAC = Uint8Array.from([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const DEFAULT_MEMORY_MB = 128;

function sayer(g: GlobalOptions): (t: string) => void {
  return (t) => {
    if (!g.quiet) process.stdout.write(t);
  };
}

function image(o: LinuxRunOptions, say: (t: string) => void): LinuxImage {
  if (o.imageFiles) return o.imageFiles;
  const img = findLinuxImage(o.image, say);
  if (!img.ok) fail(img.error, 4);
  return img.value;
}

/** The run's end: --for, Ctrl-C, SIGTERM, or `stop()` (a guest that failed to boot). */
function stopper(seconds: number | undefined): { stopped: Promise<void>; stop: () => void } {
  let stop = (): void => {};
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
    void untilStopped(seconds).then(resolve);
  });
  return { stopped, stop };
}

/**
 * The guest, in the lab's thread or in its own (`--vm-threads`), and its NIC's wire for the lab's
 * side to attach (the far end of its link, or the ring port to its thread). Either way the
 * `name.eth0` hop records what crossed the NIC.
 */
async function startLinux(o: LinuxRunOptions, name: string, cmdline: string, img: LinuxImage, far: string, run: CaptureRun, clock: Clock, logger: Logger, g: GlobalOptions): Promise<{ guest: LinuxGuest; wire: FramePort; start: () => void }> {
  const hop = `${name}.eth0`;
  const about = `${name} NIC (device side; Linux's driver behind it)`;
  const mac = o.mac ?? DEFAULT_MAC;
  const memoryMB = o.memoryMB ?? DEFAULT_MEMORY_MB;
  if (o.vmThreads) {
    const made = await linuxGuestInThread({ name, nic: o.nic, mac: [...mac], cmdline, image: img, memoryMB }, { clock, debug: g.debug, quiet: g.quiet, sink: run.enabled ? run.hop(hop, about) : null, consoleOut: sayer(g) });
    if (!made.ok) {
      run.closeSync();
      fail(made.error, 1);
    }
    return made;
  }
  const made = await createLinuxGuest({ name, nic: o.nic, mac, cmdline, image: img, memoryMB, clock, logger, registry: createDeviceRegistry(), consoleOut: sayer(g) });
  if (!made.ok) {
    run.closeSync();
    fail(made.error, 1);
  }
  const [nicSide, farSide] = createLink(clock, [hop, far]);
  made.nic.attach(run.tap(nicSide, hop, about));
  return { guest: made.guest, wire: farSide, start: made.start };
}

/** Lines typed on this terminal (or piped in) go to the guest's serial console. */
function consoleInput(guest: LinuxGuest): () => void {
  if (process.stdin.destroyed) return () => {};
  const onData = (b: Buffer): void => guest.type(b.toString('latin1'));
  process.stdin.on('data', onData);
  process.stdin.on('error', () => {});
  return () => {
    process.stdin.off('data', onData);
    process.stdin.pause();
  };
}

/**
 * Boot to the init's ready line, with a progress line every 10 s, or stop early at Ctrl-C/--for or
 * a device failure. Returns false when the run should end now.
 */
async function boot(guest: LinuxGuest, start: () => void, stopped: Promise<void>, say: (t: string) => void, nic: NicModel): Promise<boolean> {
  say(`booting Linux (${nic} model, v86 CPU emulator; the serial console follows)\n`);
  start();
  const progress = setInterval(() => {
    const c = guest.nicCounters();
    say(`[boot ${guest.uptime().toFixed(0)} s: NIC rx ${c['rxFrames'] ?? 0} tx ${c['txFrames'] ?? 0} frames]\n`);
  }, 10_000);
  const r = await Promise.race([guest.ready, stopped.then(() => null)]);
  clearInterval(progress);
  if (r === null) return false;
  if (!r.ok) {
    process.stderr.write(`lab: ${guest.name}: ${r.error}\n`);
    return false;
  }
  say(`${guest.name}: Linux ready in ${r.value.seconds.toFixed(1)} s: driver ${r.value.fields['driver'] ?? '?'}, ${r.value.fields['mac'] ?? ''}, ${r.value.fields['ip'] ?? ''}\n`);
  return true;
}

/** The common end: report, stop the CPU, close the captures; exit 1 when a device failed. */
async function finish(guest: LinuxGuest, run: CaptureRun, stopped: Promise<void>, g: GlobalOptions, close: () => void | Promise<void>, stopInput: () => void, extra: () => string = () => ''): Promise<never> {
  const report = (): string => `${guest.report()}${extra()}`;
  const stopStats = liveStats(g, () => {
    const c = guest.nicCounters();
    return `${guest.name}.eth0 rx ${c['rxFrames'] ?? 0} tx ${c['txFrames'] ?? 0}`;
  });
  process.on('SIGUSR1', () => void guest.refresh().then(() => process.stdout.write(`${report()}\n`)));
  return stopRun(stopped, {
    stopStats,
    close: async () => {
      stopInput();
      await close();
      await guest.stop();
    },
    report: () => process.stdout.write(`\n${report()}\n`),
    run,
    say: sayer(g),
    exitCode: () => (guest.failed() ? 1 : 0),
  });
}

export async function upLinuxCommand(
  tap: string,
  o: LinuxRunOptions & { vms: number; guestIp?: string; gateway?: string; bridge?: string; script?: string; persist?: boolean; impair?: Impairment },
  g: GlobalOptions,
): Promise<never> {
  const say = sayer(g);
  if (o.vms !== 1) fail(`--guest linux runs one Linux guest (--vms ${o.vms}); put more VMs on the switch with --vm-socket (QEMU guests)`, 2);
  if (!hasNetAdmin()) fail(`creating TAP device ${tap} needs root or CAP_NET_ADMIN: run "sudo npx lab up ${tap} --guest linux", or use "npx lab redirect tcp:9555:10.10.10.33:80 --guest linux", which needs neither`, 4);
  const addressing = upGuestAddressing({ guestIp: o.guestIp, gateway: o.gateway, rule: upHostAddressing(tap) });
  if (!addressing.ok) fail(addressing.error, 2);
  const img = image(o, say);
  const name = o.name ?? 'linux0';
  const logger = Logger.fromSpec(g.debug, undefined, g.quiet ?? false);
  const clock = new RealClock();
  const registry = createDeviceRegistry();
  const kernel = guestKernelFor(addressing.value, 0, { cmdline: '', dhcp: false });
  const run = captureRun('up', clock, g);
  const { guest, wire, start } = await startLinux(o, name, linuxKernelLine(o.nic, kernel), img, `sw.${name}`, run, clock, logger, g);
  // No built-in guests: the TAP and the switch, with the Linux guest's NIC on a switch port.
  const r = await startUp({ wrapPort: (hop, port) => run.tap(port, hop), tap, nic: o.nic, vms: 0, bridge: o.bridge, script: o.script, persist: o.persist, clock, logger, registry, config: { name, memoryMB: 0, telemetry: false, devices: [], backends: [], files: [], kernel, apps: [] }, guestIp: o.guestIp, gateway: o.gateway, impair: o.impair });
  if (!r.ok) {
    run.closeSync();
    await guest.stop();
    fail(r.error, r.exitCode);
  }
  const lab = r.lab;
  lab.sw.attach(run.tap(wire, `sw.${name}`, 'switch port'), `${name}.eth0`);
  run.link(tap, `sw.${name}`, 'learning switch');
  run.link(`sw.${name}`, `${name}.eth0`, 'link');
  for (const line of lab.summary) say(`${line}\n`);
  const shown = kernel.ip !== undefined ? linuxKernelLine(o.nic, kernel).match(/ip=(\S+)/)![1]! : null;
  say(`${name}: Linux on netlab's ${o.nic} model at ${shown ?? 'a DHCP address'}${o.vmThreads ? ' (CPU and NIC model in their own thread)' : ''}\n`);
  const { stopped, stop } = stopper(o.for);
  const stopInput = consoleInput(guest);
  if (await boot(guest, start, stopped, say, o.nic)) {
    say(`ready: try  ping ${shown ?? '(the guest\'s DHCP address)'}   curl http://${shown ?? '…'}/   (Ctrl-C stops; lines typed here go to the guest's shell)\n`);
  } else stop();
  return finish(guest, run, stopped, g, () => lab.close(), stopInput);
}

export async function redirectLinuxCommand(
  specs: string[],
  o: LinuxRunOptions & { restrict?: boolean; listen?: string; command?: string },
  g: GlobalOptions,
): Promise<never> {
  const say = sayer(g);
  const plan = planRedirects(specs);
  if (!plan.ok) fail(plan.error, 2);
  const img = image(o, say);
  const name = o.name ?? 'linux0';
  const logger = Logger.fromSpec(g.debug, undefined, g.quiet ?? false);
  const clock = new RealClock();
  const run = captureRun(o.command ?? 'redirect', clock, g);
  // DHCP: the lab's server hands the guest the redirects' address, as QEMU's -netdev user does.
  const { guest, wire, start } = await startLinux(o, name, linuxKernelLine(o.nic, { dhcp: true }), img, 'user', run, clock, logger, g);
  run.link(`${name}.eth0`, 'user', 'link');
  const un = await openUserNet(run.tap(wire, 'user', 'user-mode network'), plan.value, { clock, logger, restrict: o.restrict, listenAddress: o.listen, guest: name });
  if (!un.ok) {
    run.closeSync();
    await guest.stop();
    fail(un.error, 1);
  }
  const userNet = un.value.userNet;
  for (const line of un.value.summary) say(`${line}\n`);
  const { stopped, stop } = stopper(o.for);
  const stopInput = consoleInput(guest);
  if (await boot(guest, start, stopped, say, o.nic)) {
    const first = plan.value.redirects.find((r) => r.proto === 'tcp');
    say(`ready: ${first ? `try  curl http://${first.hostAddr ?? o.listen ?? '127.0.0.1'}:${first.hostPort}/   ` : ''}(Ctrl-C stops; lines typed here go to the guest's shell)\n`);
  } else stop();
  return finish(guest, run, stopped, g, () => userNet.close(), stopInput, () => `\n  usernet ${Object.entries(userNet.stats).map(([k, v]) => `${k}=${v}`).join(' ')}`);
}
