import { formatIpv4 } from '../net/addr.js';
import type { Clock } from '../net/clock.js';
import { createLink } from '../net/link.js';
import type { FramePort } from '../net/frame-port.js';
import type { Logger } from '../src/log.js';
import type { VmConfig } from '../src/config/types.js';
import type { DeviceRegistry, NicDevice } from '../src/vmm/device.js';
import { guestDrivers } from '../src/guest/drivers.js';
import { startGuestNetwork, type GuestNetwork } from '../src/guest/network.js';
import { startGuestVm, type GuestVm } from './guest-vm.js';
import { userNetAddressing } from './usernet/addressing.js';
import { parseRedirect, type Redirect } from './usernet/redirect-spec.js';
import { UserNet } from './usernet/user-net.js';

/**
 * Assemble a lab from a guest config: the VM and its guest, and for each NIC the backend its
 * config names, joined by links. The user-mode network backend takes the redirects from the XML
 * and from the command line.
 */
export interface LabOptions {
  clock: Clock;
  logger: Logger;
  registry: DeviceRegistry;
  /** Redirect specs from the command line, added to the USER_NET backend. */
  redirects?: string[];
  /** Refuse guest connections to anything but the gateway (the host's loopback). */
  restrict?: boolean;
  listenAddress?: string;
  consoleOut?: (text: string) => void;
  /** Insert something (a capture point) on the link between a NIC and its backend. */
  /** Insert something (a capture point) between the guest's driver and its stack. */
  wrapStackPort?: (vm: string, netif: string, port: FramePort) => FramePort;
  wrapLink?: (hop: { nic: NicDevice; vm: string; backend: string; ifname: string }, nicSide: FramePort, backendSide: FramePort) => { nicSide: FramePort; backendSide: FramePort };
}

export interface Lab {
  guest: GuestVm;
  network: GuestNetwork | null;
  userNet: UserNet | null;
  redirects: Redirect[];
  /** Lines that say where things are (addresses, redirects). */
  summary: string[];
  close(): void;
}

export type LabResult = { ok: true; lab: Lab } | { ok: false; errors: string[]; exitCode: number };

export async function assembleLab(config: VmConfig, o: LabOptions): Promise<LabResult> {
  const redirects: Redirect[] = [];
  const userBackend = config.backends.find((b) => b.className === 'USER_NET');
  for (const spec of [...(userBackend?.redirects ?? []), ...(o.redirects ?? [])]) {
    const r = parseRedirect(spec);
    if (!r.ok) return { ok: false, errors: [r.error], exitCode: 2 };
    redirects.push(r.value);
  }
  if (redirects.length > 0 && !userBackend) {
    return { ok: false, errors: ['redirects need a user-mode network: the config has no USER_NET backend (add <device class="USER_NET" id="net0-back"><frontend tag="net0"/></device>)'], exitCode: 2 };
  }
  let kernel = config.kernel;
  const addressing = userNetAddressing(redirects);
  if (!addressing.ok) return { ok: false, errors: [addressing.error], exitCode: 2 };
  const a = addressing.value;
  const notes: string[] = [];
  if (userBackend && !kernel.dhcp && kernel.ip !== a.guest && (a.guestStatic || kernel.ip === undefined)) {
    // A static guest whose address the redirects contradict: the redirects win (they are what the
    // user typed last), on the user-mode network's /24.
    notes.push(`guest address ${formatIpv4(a.guest)} (from the redirects) replaces ${kernel.ip !== undefined ? formatIpv4(kernel.ip) : 'none'} on the kernel line`);
    kernel = { ...kernel, ip: a.guest, prefixLength: a.prefixLength, gateway: a.gateway, dns: a.dns };
  }
  const started = startGuestVm({ ...config, kernel }, { clock: o.clock, logger: o.logger, registry: o.registry, drivers: guestDrivers(), consoleOut: o.consoleOut });
  if (!started.ok) return { ok: false, errors: started.errors, exitCode: 2 };
  const guest = started.value;
  const log = o.logger.child('usernet');
  let userNet: UserNet | null = null;
  const summary: string[] = [...notes];
  for (const [index, nic] of guest.vm.nics().entries()) {
    const backend = config.backends.find((b) => b.frontend === nic.id);
    if (!backend) continue;
    // Hops are named for the guest's interface (eth0 for the first NIC, as the guest probes them),
    // so the NIC's wire side and the guest stack pair up: vm0.eth0 and vm0.eth0.stack, as in lab up.
    const ifname = `eth${index}`;
    let [nicSide, backendSide] = createLink(o.clock, [`${config.name}.${ifname}`, backend.id]);
    if (o.wrapLink) ({ nicSide, backendSide } = o.wrapLink({ nic, vm: config.name, backend: backend.id, ifname }, nicSide, backendSide));
    nic.attach(nicSide);
    if (backend.className === 'USER_NET') {
      userNet = new UserNet(backendSide, { clock: o.clock, addressing: a, restrict: o.restrict ?? false, log, listenAddress: o.listenAddress });
      summary.push(`user-mode network ${formatIpv4(a.network)}/${a.prefixLength}: gateway ${formatIpv4(a.gateway)} (host loopback), DNS ${formatIpv4(a.dns)}, guest ${formatIpv4(a.guest)}`);
    } else {
      guest.vm.stop('unsupported backend');
      return { ok: false, errors: [`line ${backend.line}: backend ${backend.id} (${backend.className}) is not available in this command yet; use USER_NET (lab redirect) for now`], exitCode: 2 };
    }
  }
  const net = startGuestNetwork(guest.kernel, { wrapPort: o.wrapStackPort ? (name, p) => o.wrapStackPort!(config.name, name, p) : undefined });
  const network = 'error' in net ? null : net;
  if ('error' in net) summary.push(`guest network: ${net.error}`);
  if (network && userNet) {
    // Redirects are useful once the guest has its address (a DHCP guest needs a moment).
    const bound = await Promise.race([network.ready.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000).unref())]);
    if (!bound) summary.push('guest has no DHCP lease yet (10 s): redirects are open and will work once it does');
  }
  if (userNet) {
    const errors = await userNet.listen(redirects);
    if (errors.length > 0) {
      userNet.close();
      guest.vm.stop('redirect failed');
      return { ok: false, errors, exitCode: 1 };
    }
    for (const line of userNet.describeRedirects(redirects)) summary.push(`redirect ${line}`);
  }
  const un = userNet;
  return {
    ok: true,
    lab: {
      guest,
      network,
      userNet: un,
      redirects,
      summary,
      close: () => {
        un?.close();
        guest.vm.stop('lab closed');
      },
    },
  };
}
