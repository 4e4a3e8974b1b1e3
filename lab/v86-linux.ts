import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { formatIpv4, formatMac } from '../net/addr.js';
import type { Clock } from '../net/clock.js';
import { NIC_CLASSES, type DeviceConfig, type KernelConfig, type NicModel } from '../src/config/types.js';
import { V86Guest } from '../src/cpu/v86/adapter.js';
import type { Logger } from '../src/log.js';
import type { DeviceRegistry, NicDevice } from '../src/vmm/device.js';
import { Telemetry } from '../src/vmm/telemetry.js';
import { buildImage, defaultCacheDir } from './image/build.js';
import { parseReadyLine, READY_MARKER } from './image/guest-files.js';

/**
 * A Linux guest (the `lab image build` image) whose CPU is the v86 emulator and whose NIC is one of
 * netlab's own models (src/cpu/v86/adapter.ts): the host side of `--guest linux` and of
 * `<machine>v86</machine>`. Linux's own driver (8139too, ne2k-pci, virtio_net) drives the model; the
 * lab only sees the model's FramePort, as with the built-in guest.
 */

export interface LinuxImage {
  dir: string;
  kernel: string;
  initrd: string;
}

const MODEL_CLASS: Record<NicModel, string> = Object.fromEntries(Object.entries(NIC_CLASSES).map(([cls, m]) => [m, cls])) as Record<NicModel, string>;

/** Where `--guest linux` keeps the image it builds when none is given: the cache the tests share. */
export function defaultLinuxImageDir(): string {
  const base = process.env['NETLAB_IMAGE_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'netlab');
  return join(base, 'linux-image');
}

function imageIn(dir: string): LinuxImage | null {
  if (!existsSync(dir)) return null;
  const kernel = readdirSync(dir).find((f) => f.startsWith('vmlinuz'));
  const initrd = join(dir, 'initrd.img');
  return kernel && existsSync(initrd) ? { dir, kernel: join(dir, kernel), initrd } : null;
}

/**
 * The image to boot: the one in `dir` (`--image`, or an XML's `<files>`), else the default cache,
 * built there from Debian packages the first time (with its progress on `say`).
 */
export function findLinuxImage(dir: string | undefined, say: (line: string) => void): { ok: true; value: LinuxImage } | { ok: false; error: string } {
  if (dir !== undefined) {
    const img = imageIn(dir);
    return img ? { ok: true, value: img } : { ok: false, error: `no Linux image in ${dir} (it needs vmlinuz-* and initrd.img): build one with "lab image build --out ${dir}"` };
  }
  const out = defaultLinuxImageDir();
  const cached = imageIn(out);
  if (cached) return { ok: true, value: cached };
  say(`no Linux image in ${out} yet: building one from Debian packages (once; later runs reuse it)\n`);
  const r = buildImage({ outDir: out, cacheDir: defaultCacheDir(), log: (l) => say(`  ${l}\n`) });
  if (!r.ok) return { ok: false, error: `lab image build: ${r.error}` };
  return { ok: true, value: { dir: out, kernel: r.value.kernelPath, initrd: r.value.initrdPath } };
}

/** The image's kernel line for a NIC model and the lab's addressing (the init reads Kitten-style words). */
export function linuxKernelLine(nic: NicModel, k: Pick<KernelConfig, 'dhcp' | 'ip' | 'prefixLength' | 'gateway' | 'dns'>): string {
  const words = ['console=ttyS0', 'quiet', `net=${nic}`];
  if (k.dhcp || k.ip === undefined) words.push('ip=dhcp');
  else {
    const p = k.prefixLength ?? 24;
    const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
    words.push(`ip=${formatIpv4(k.ip)}`, `netmask=${formatIpv4(mask)}`);
    if (k.gateway) words.push(`gw=${formatIpv4(k.gateway)}`);
    if (k.dns) words.push(`dns=${formatIpv4(k.dns)}`);
  }
  return words.join(' ');
}

export interface LinuxGuestOptions {
  name: string;
  nic: NicModel;
  mac: Uint8Array;
  cmdline: string;
  image: LinuxImage;
  memoryMB: number;
  clock: Clock;
  logger: Logger;
  registry: DeviceRegistry;
  /** The guest's serial console output, as text (the terminal, a test's buffer). */
  consoleOut: (text: string) => void;
}

export interface LinuxReady {
  /** The init's ready line: `netlab-linux: ready net=… driver=… mac=… ip=… kernel=…`. */
  line: string;
  fields: Record<string, string>;
  seconds: number;
}

export type LinuxReadyResult = { ok: true; value: LinuxReady } | { ok: false; error: string };

/**
 * A running Linux guest as the lab's commands see it, the same whether its CPU runs in the lab's
 * thread or in its own (lab/vmthread): its console, its NIC's counters, its fail-stop state.
 */
export interface LinuxGuest {
  name: string;
  /** Resolves at the ready line, or with an error when a device fails first. */
  ready: Promise<LinuxReadyResult>;
  /** Seconds since the CPU started. */
  uptime(): number;
  /** Type into the serial console. */
  type(text: string): void;
  /** The NIC model's counters (as last reported, for a guest in its own thread). */
  nicCounters(): Record<string, number>;
  /** True once a device of the guest has fail-stopped. */
  failed(): boolean;
  /** Bring counters and telemetry up to date (a guest in its own thread is asked for them). */
  refresh(): Promise<void>;
  /** Telemetry and NIC counters, as the end of a run prints them. */
  report(): string;
  stop(): Promise<void>;
}

/**
 * Create the emulator with the NIC model seated on its PCI bus. The NIC is returned unattached and
 * the CPU not started: attach the NIC's port first, then call `start`.
 */
export async function createLinuxGuest(o: LinuxGuestOptions): Promise<{ ok: true; guest: LinuxGuest; nic: NicDevice; start: () => void } | { ok: false; error: string }> {
  const device: DeviceConfig = { id: 'net0', className: MODEL_CLASS[o.nic], line: 0, bus: 'pci0', mac: o.mac, params: {} };
  const telemetry = new Telemetry(false);
  let tail = '';
  let onLine: ((line: string) => void) | null = null;
  const decoder = new TextDecoder('latin1');
  let t0 = 0;
  const made = await V86Guest.create({
    name: o.name,
    kernel: readFileSync(o.image.kernel),
    initrd: readFileSync(o.image.initrd),
    cmdline: o.cmdline,
    memoryMB: o.memoryMB,
    devices: [device],
    registry: o.registry,
    clock: o.clock,
    logger: o.logger,
    telemetry,
    onSerialByte: (b) => {
      const text = decoder.decode(Uint8Array.of(b));
      if (b !== 13) o.consoleOut(text);
      if (b === 10) {
        onLine?.(tail);
        tail = '';
      } else if (b !== 13 && tail.length < 4096) tail += text;
    },
  });
  if (!made.ok) return { ok: false, error: made.errors.join('\n  ') };
  const v86 = made.guest;
  const nic = v86.nics()[0];
  if (!nic) {
    await v86.destroy();
    return { ok: false, error: `${o.name}: the ${MODEL_CLASS[o.nic]} model did not come up as a NIC` };
  }
  const ready = new Promise<LinuxReadyResult>((resolve) => {
    // From the marker on, lines are gathered until the ready line is whole: a kernel log record
    // printed into its middle splits it over two console lines.
    let gathered = '';
    onLine = (line) => {
      if (!gathered && !line.includes(READY_MARKER)) return;
      gathered += `${line}\n`;
      const r = parseReadyLine(gathered);
      if (r) {
        onLine = null;
        resolve({ ok: true, value: { ...r, seconds: (performance.now() - t0) / 1000 } });
      } else if (gathered.length > 16_384) gathered = '';
    };
    const watch = setInterval(() => {
      if (v86.failures.size === 0) return;
      clearInterval(watch);
      resolve({ ok: false, error: `device failed: ${[...v86.failures.values()].join('; ')}` });
    }, 250);
    watch.unref();
  });
  const guest: LinuxGuest = {
    name: o.name,
    ready,
    uptime: () => (t0 ? (performance.now() - t0) / 1000 : 0),
    type: (text) => v86.sendSerial(text),
    nicCounters: () => nic.counters(),
    failed: () => v86.failures.size > 0,
    refresh: () => Promise.resolve(),
    report: () => {
      const lines = [telemetry.report(`telemetry ${o.name} (Linux ${o.nic} driver on netlab's ${MODEL_CLASS[o.nic]}, v86)`)];
      lines.push(`  ${nic.id} ${formatMac(nic.mac)} ${Object.entries(nic.counters()).map(([k, v]) => `${k}=${v}`).join(' ')}`);
      lines.push(`  ${v86.irqReport()}`);
      for (const [id, why] of v86.failures) lines.push(`  device ${id} stopped: ${why}`);
      return lines.join('\n');
    },
    stop: () => v86.destroy(),
  };
  const start = (): void => {
    t0 = performance.now();
    void v86.run();
  };
  return { ok: true, guest, nic, start };
}
