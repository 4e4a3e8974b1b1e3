import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { formatIpv4, parseIpv4 } from '../net/addr.js';
import type { Clock } from '../net/clock.js';
import { createLink } from '../net/link.js';
import type { FramePort } from '../net/frame-port.js';
import type { Logger } from '../src/log.js';
import type { VmConfig, NicModel } from '../src/config/types.js';
import type { DeviceRegistry, NicDevice } from '../src/vmm/device.js';
import { guestDrivers } from '../src/guest/drivers.js';
import { startGuestNetwork, type GuestNetwork } from '../src/guest/network.js';
import { startGuestVm, type GuestVm } from './guest-vm.js';
import { LearningSwitch } from './switch.js';
import { TapPort } from './tap/tap-port.js';
import { ImpairedPort, type Impairment } from './impair.js';
import { guestKernelFor, upGuestAddressing } from './up-addressing.js';
import type { CaptureSink } from './capture/sink.js';
import { VmThread } from './vmthread/vm-thread.js';
import type { VmStatus } from './vmthread/protocol.js';
import { vmStatus } from './vmthread/vm-status.js';

/**
 * `lab up tapN`: a host TAP device, a userspace learning switch, and one or more guests on it.
 * Host side 172.2N.0.1/16 (the manual's qemu-ifup rule), guests from 172.2N.0.2 up.
 */
export interface UpOptions {
  tap: string;
  nic: NicModel;
  vms: number;
  bridge?: string;
  script?: string;
  persist?: boolean;
  clock: Clock;
  logger: Logger;
  registry: DeviceRegistry;
  config: VmConfig;
  /** True when `config` is the user's own XML (its kernel line's addressing is kept). */
  userConfig?: boolean;
  /** `--guest-ip A.B.C.D[/P]` and `--gateway`: the guests' addresses, whatever else says. */
  guestIp?: string;
  gateway?: string;
  consoleOut?: (vm: string, text: string) => void;
  /** Impair the link between the TAP and the switch (both directions, seeded). */
  impair?: Impairment;
  /** Insert a capture point in front of a port: the TAP, each switch port, each NIC, each guest stack. */
  wrapPort?: (hop: string, port: FramePort) => FramePort;
  /**
   * Run each VM in its own worker thread, as a VMM runs a vCPU thread; otherwise (the default)
   * every VM runs in the lab's thread, which measured faster on a 2-core machine, where the kernel's
   * side of the TAP already takes one core (docs/benchmarks.md). The VM's own capture hops (its NIC, its stack) then record from its
   * thread into `hopSink(hop)`; its logger is made there from `debug` and `quiet`.
   */
  vmThreads?: boolean;
  hopSink?: (hop: string) => CaptureSink | null;
  debug?: string;
  quiet?: boolean;
}

/** A guest of the lab: in the lab's thread (`local`) or in its own (`thread`). */
export interface UpGuest {
  name: string;
  addr: string;
  local: { guest: GuestVm; network: GuestNetwork | null } | null;
  thread: VmThread | null;
  /** State and counters: the VM's own now (local), or as its thread last reported them. */
  status(): VmStatus;
  /** Ask a threaded VM for fresh counters (a local one is always fresh). */
  refresh(): Promise<void>;
  stop(reason: string): Promise<void>;
}

export interface UpLab {
  tap: TapPort;
  sw: LearningSwitch;
  guests: UpGuest[];
  hostAddr: string | null;
  summary: string[];
  /** Stop every VM (threaded ones report their final counters first), then the TAP. */
  close(): Promise<void>;
}

export type UpResult = { ok: true; lab: UpLab } | { ok: false; error: string; exitCode: number };

const NIC_CLASS: Record<NicModel, string> = { rtl8139: 'RTL8139', ne2k: 'NE2000', virtio: 'LNX_VIRTIO_NIC' };

/** Whether this process may create TAP devices: root, or CAP_NET_ADMIN in its effective set. */
export function hasNetAdmin(): boolean {
  if (process.getuid?.() === 0) return true;
  try {
    const m = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? (BigInt('0x' + m[1]) & (1n << 12n)) !== 0n : false;
  } catch {
    return false;
  }
}

/** What kind of link `name` is now: absent, a TAP, or something else. */
function linkKind(name: string): 'absent' | 'tap' | string {
  const r = spawnSync('ip', ['-d', '-j', 'link', 'show', 'dev', name], { encoding: 'utf8' });
  if (r.error) return 'absent';
  if (r.status !== 0) return 'absent';
  try {
    const info = (JSON.parse(r.stdout) as { linkinfo?: { info_kind?: string; info_data?: { type?: string } } }[])[0];
    if (info?.linkinfo?.info_kind === 'tun' && info.linkinfo.info_data?.type === 'tap') return 'tap';
    return info?.linkinfo?.info_kind ?? 'device';
  } catch {
    return 'device';
  }
}

function ip(args: string[]): string | null {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    return null;
  } catch (e) {
    return `ip ${args.join(' ')}: ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`;
  }
}

export function upHostAddressing(tap: string): { host: string; guestBase: number; prefix: number } | null {
  const m = /^tap(\d)$/.exec(tap);
  if (!m) return null;
  const n = Number(m[1]);
  return { host: `172.2${n}.0.1`, guestBase: parseIpv4(`172.2${n}.0.2`)!, prefix: 16 };
}

export async function startUp(o: UpOptions): Promise<UpResult> {
  if (!hasNetAdmin()) {
    return { ok: false, exitCode: 4, error: `creating TAP device ${o.tap} needs root or CAP_NET_ADMIN: run "sudo npx lab up ${o.tap}", or use "npx lab redirect tcp:9555:10.10.10.33:80", which needs neither` };
  }
  if (!existsSync('/dev/net/tun')) {
    return { ok: false, exitCode: 4, error: '/dev/net/tun is missing: load the TUN/TAP driver with "modprobe tun" (in a container, pass --device /dev/net/tun)' };
  }
  const kind = linkKind(o.tap);
  if (kind !== 'absent' && kind !== 'tap') {
    return { ok: false, exitCode: 2, error: `${o.tap} already exists and is a ${kind} device, not a TAP: pick another name (e.g. tap3) or remove it with "ip link del ${o.tap}"` };
  }
  const addressing = upHostAddressing(o.tap);
  if (!addressing && !o.bridge && !o.script) {
    return { ok: false, exitCode: 2, error: `${o.tap}: automatic addresses exist only for tap0..tap9 (172.2N.0.1/16; 172.2NN is not private space); use --bridge BR or --script PATH to address it yourself` };
  }
  if (o.vms < 0 || o.vms > 200) return { ok: false, exitCode: 2, error: `--vms ${o.vms}: between 1 and 200 (0: only the TAP and the switch, for --vm-socket VMs)` };
  const guestAddr = upGuestAddressing({ guestIp: o.guestIp, gateway: o.gateway, userKernel: o.userConfig ? o.config.kernel : undefined, rule: addressing });
  if (!guestAddr.ok) return { ok: false, exitCode: 2, error: guestAddr.error };
  const opened = TapPort.open(o.tap, { persist: o.persist, debug: o.logger.child('tap') });
  if (!opened.ok) {
    const hint = opened.code === 'EBUSY' ? ` (another process has ${o.tap} open)` : opened.code === 'EPERM' ? ' (needs root or CAP_NET_ADMIN)' : '';
    return { ok: false, exitCode: 1, error: `cannot open TAP ${o.tap}: ${opened.message}${hint}` };
  }
  const tap = opened.port;
  const summary: string[] = [];
  const fail = (error: string): UpResult => {
    tap.close();
    return { ok: false, exitCode: 1, error };
  };
  let hostAddr: string | null = null;
  if (o.bridge) {
    const e = ip(['link', 'set', 'dev', o.tap, 'master', o.bridge]) ?? ip(['link', 'set', 'dev', o.tap, 'up']);
    if (e) return fail(`cannot enslave ${o.tap} to bridge ${o.bridge}: ${e}`);
    summary.push(`${o.tap} enslaved to bridge ${o.bridge} (no address on ${o.tap})`);
  } else if (o.script) {
    const r = spawnSync(o.script, [o.tap], { stdio: 'inherit' });
    if (r.error || r.status !== 0) return fail(`ifup script ${o.script} ${o.tap} failed (${r.error?.message ?? `exit ${r.status}`})`);
    summary.push(`${o.tap} configured by ${o.script}`);
  } else if (addressing) {
    const e = ip(['link', 'set', 'dev', o.tap, 'up']) ?? (ip(['addr', 'replace', `${addressing.host}/${addressing.prefix}`, 'dev', o.tap]));
    if (e) return fail(`cannot address ${o.tap}: ${e}`);
    hostAddr = addressing.host;
    summary.push(`${o.tap}: host side ${addressing.host}/${addressing.prefix}`);
  }
  const sw = new LearningSwitch(o.clock, undefined, o.logger.child('switch'));
  const tapSide: FramePort = o.impair ? new ImpairedPort(o.clock, tap, o.impair) : tap;
  if (o.impair) summary.push(`${o.tap} link impaired: ${Object.entries(o.impair).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  sw.attach(o.wrapPort ? o.wrapPort(o.tap, tapSide) : tapSide, o.tap);
  const guests: UpGuest[] = [];
  const stopAll = async (why: string): Promise<void> => {
    await Promise.all(guests.map((g) => g.stop(why)));
  };
  if (guestAddr.value.kind === 'dhcp' || guestAddr.value.source !== 'the tapN rule') summary.push(`guest addresses: ${guestAddr.value.kind === 'dhcp' ? 'DHCP' : 'static'}, from ${guestAddr.value.source}`);
  for (let i = 0; i < o.vms; i++) {
    const name = o.vms === 1 ? o.config.name : `vm${i}`;
    const devices = o.config.devices.map((d) => {
      if (d.className in NIC_CLASS_BY_NAME) {
        const mac = d.mac ? d.mac.slice() : new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        mac[5] = (mac[5]! + i) & 0xff;
        return { ...d, className: NIC_CLASS[o.nic], mac };
      }
      return d;
    });
    const kernel = guestKernelFor(guestAddr.value, i, { ...o.config.kernel, net: o.nic });
    const shownAddr = kernel.ip !== undefined ? formatIpv4(kernel.ip) : 'dhcp';
    const config: VmConfig = { ...o.config, name, devices, backends: [], kernel };
    const consoleOut = o.consoleOut ? (t: string) => o.consoleOut!(name, t) : undefined;
    const made = o.vmThreads === true ? await startThreadGuest(config, shownAddr, o, consoleOut) : startLocalGuest(config, shownAddr, o, consoleOut);
    if (!made.ok) {
      await stopAll('lab up failed');
      return fail(`cannot build ${name}:\n  ${made.errors.join('\n  ')}`);
    }
    guests.push(made.guest);
    sw.attach(o.wrapPort ? o.wrapPort(`sw.${name}`, made.wire) : made.wire, `${name}.eth0`);
    summary.push(`${name}: ${NIC_CLASS[o.nic]} ${formatMacShort(made.mac)} at ${shownAddr}${made.guest.thread ? ' (own thread)' : ''}`);
  }
  return {
    ok: true,
    lab: {
      tap,
      sw,
      guests,
      hostAddr,
      summary,
      close: async () => {
        await stopAll('lab up closed');
        tap.close();
      },
    },
  };
}

type GuestStart = { ok: true; guest: UpGuest; wire: FramePort; mac: Uint8Array } | { ok: false; errors: string[] };

/** A guest in the lab's thread: its NIC on an in-memory link whose other end goes to the switch. */
function startLocalGuest(config: VmConfig, addr: string, o: UpOptions, consoleOut?: (t: string) => void): GuestStart {
  const name = config.name;
  const started = startGuestVm(config, { clock: o.clock, logger: o.logger, registry: o.registry, drivers: guestDrivers(), consoleOut });
  if (!started.ok) return started;
  const nic: NicDevice | undefined = started.value.vm.nics()[0];
  if (!nic) {
    started.value.vm.stop('no NIC');
    return { ok: false, errors: [`${name} has no NIC`] };
  }
  const [nicSide, swSide] = createLink(o.clock, [`${name}.eth0`, `sw.${name}`]);
  nic.attach(o.wrapPort ? o.wrapPort(`${name}.eth0`, nicSide) : nicSide);
  const net = startGuestNetwork(started.value.kernel, { wrapPort: o.wrapPort ? (netif, p) => o.wrapPort!(`${name}.${netif}.stack`, p) : undefined });
  const vm = started.value.vm;
  return {
    ok: true,
    wire: swSide,
    mac: nic.mac,
    guest: {
      name,
      addr,
      local: { guest: started.value, network: 'error' in net ? null : net },
      thread: null,
      status: () => vmStatus(vm),
      refresh: () => Promise.resolve(),
      stop: (why) => {
        vm.stop(why);
        return Promise.resolve();
      },
    },
  };
}

/** A guest in its own thread: the ring port in the lab's thread is its NIC's wire. */
async function startThreadGuest(config: VmConfig, addr: string, o: UpOptions, consoleOut?: (t: string) => void): Promise<GuestStart> {
  const name = config.name;
  const nicId = config.devices.find((d) => d.className in NIC_CLASS_BY_NAME)?.id;
  if (!nicId) return { ok: false, errors: [`${name} has no NIC`] };
  const captures: { hop: string; sink: CaptureSink }[] = [];
  for (const hop of [`${name}.eth0`, `${name}.eth0.stack`]) {
    const sink = o.hopSink?.(hop);
    if (sink) captures.push({ hop, sink });
  }
  const started = await VmThread.start({ kind: 'builtin', config }, { clock: o.clock, debug: o.debug, quiet: o.quiet, nics: [{ id: nicId, hop: `${name}.eth0` }], captures, consoleOut });
  if (!started.ok) return started;
  const t = started.vm;
  const wire = t.ports.get(nicId);
  const nic = t.nics.find((n) => n.id === nicId);
  if (!wire || !nic) {
    await t.stop('no NIC');
    return { ok: false, errors: [`${name}: device ${nicId} is not a NIC the VM built`] };
  }
  return {
    ok: true,
    wire,
    mac: nic.mac,
    guest: {
      name,
      addr,
      local: null,
      thread: t,
      status: () => t.status,
      refresh: async () => {
        await t.refresh();
      },
      stop: async (why) => {
        await t.stop(why);
      },
    },
  };
}

const NIC_CLASS_BY_NAME: Record<string, true> = { RTL8139: true, NE2000: true, LNX_VIRTIO_NIC: true };

function formatMacShort(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
