import { formatIpv4 } from '../net/addr.js';
import type { Clock } from '../net/clock.js';
import { createLink } from '../net/link.js';
import type { FramePort } from '../net/frame-port.js';
import type { Logger } from '../src/log.js';
import type { BackendConfig, VmConfig } from '../src/config/types.js';
import type { DeviceRegistry } from '../src/vmm/device.js';
import { guestDrivers } from '../src/guest/drivers.js';
import { startGuestNetwork, type GuestNetwork } from '../src/guest/network.js';
import { startGuestVm, type GuestVm } from './guest-vm.js';
import { LearningSwitch } from './switch.js';

/**
 * VMs on lab switches, from XML (`lab run a.xml [b.xml …]`): a NIC whose backend is
 *
 *     <device class="SWITCH" id="net0-back"><frontend tag="net0"/><switch name="sw0"/><count>3</count></device>
 *
 * is a port on the learning switch named `sw0` (one per name, shared by every VM and config that
 * names it). `<count>N</count>` puts N copies of the VM on it — `vm0-0`, `vm0-1` … with the MAC's
 * last byte and a static address counting up, as `lab up --vms N` does — so several VMs on one
 * switch come from one XML; several XML files on the command line join the same switches by name.
 */

export const MAX_COPIES = 64;

export interface SwitchLabOptions {
  clock: Clock;
  logger: Logger;
  registry: DeviceRegistry;
  consoleOut?: (vm: string, text: string) => void;
  /** Insert a capture point in front of a port: each NIC (`vm0-0.eth0`), each switch port (`sw0.vm0-0`), each stack. */
  wrapPort?: (hop: string, port: FramePort) => FramePort;
}

export interface SwitchLab {
  switches: Map<string, LearningSwitch>;
  guests: { guest: GuestVm; network: GuestNetwork | null; addr: string; switchName: string }[];
  summary: string[];
  close(): void;
}

export type SwitchLabResult = { ok: true; lab: SwitchLab } | { ok: false; errors: string[]; exitCode: number };

export function hasSwitchBackend(config: VmConfig): boolean {
  return config.backends.some((b) => b.className === 'SWITCH');
}

function copies(b: BackendConfig): number | string {
  const raw = b.params['count'];
  if (raw === undefined) return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_COPIES) return `line ${b.line}: <count>${raw}</count> of backend ${b.id}: a whole number from 1 to ${MAX_COPIES}`;
  return n;
}

export function assembleSwitchLab(configs: VmConfig[], o: SwitchLabOptions): SwitchLabResult {
  const errors: string[] = [];
  const plans: { config: VmConfig; backend: BackendConfig; count: number; switchName: string }[] = [];
  for (const config of configs) {
    const nonSwitch = config.backends.find((b) => b.className !== 'SWITCH');
    if (nonSwitch) errors.push(`line ${nonSwitch.line}: ${config.name}: backend ${nonSwitch.id} (${nonSwitch.className}) with SWITCH backends in one "lab run": give each VM SWITCH backends only (a TAP on a switch: lab up tapN --vms N)`);
    const sw = config.backends.filter((b) => b.className === 'SWITCH');
    if (sw.length === 0) errors.push(`${config.name}: no SWITCH backend (add <device class="SWITCH" id="net0-back"><frontend tag="net0"/><switch name="sw0"/></device>)`);
    if (sw.length > 1) errors.push(`line ${sw[1]!.line}: ${config.name}: one SWITCH backend per VM (its first NIC)`);
    const backend = sw[0];
    if (!backend) continue;
    const count = copies(backend);
    if (typeof count === 'string') errors.push(count);
    else plans.push({ config, backend, count, switchName: backend.params['switch'] ?? 'sw0' });
  }
  const names = new Set<string>();
  for (const p of plans) {
    for (let i = 0; i < p.count; i++) {
      const name = p.count === 1 ? p.config.name : `${p.config.name}-${i}`;
      if (names.has(name)) errors.push(`two VMs are named ${name}: give each config its own <vm name="…">`);
      names.add(name);
    }
  }
  if (errors.length > 0) return { ok: false, errors, exitCode: 2 };

  const switches = new Map<string, LearningSwitch>();
  const guests: SwitchLab['guests'] = [];
  const summary: string[] = [];
  const stopAll = (why: string): void => {
    for (const g of guests) g.guest.vm.stop(why);
  };
  for (const p of plans) {
    let sw = switches.get(p.switchName);
    if (!sw) {
      sw = new LearningSwitch(o.clock, undefined, o.logger.child(`${p.switchName}.switch`));
      switches.set(p.switchName, sw);
    }
    const nicId = p.backend.frontend;
    for (let i = 0; i < p.count; i++) {
      const name = p.count === 1 ? p.config.name : `${p.config.name}-${i}`;
      const devices = p.config.devices.map((d) => {
        if (d.id !== nicId || !d.mac || i === 0) return d;
        const mac = d.mac.slice();
        mac[5] = (mac[5]! + i) & 0xff;
        return { ...d, mac };
      });
      const k = p.config.kernel;
      const kernel = !k.dhcp && k.ip !== undefined ? { ...k, ip: (k.ip + i) >>> 0 } : k;
      const config: VmConfig = { ...p.config, name, devices, backends: [], kernel };
      const started = startGuestVm(config, {
        clock: o.clock,
        logger: o.logger,
        registry: o.registry,
        drivers: guestDrivers(),
        consoleOut: o.consoleOut ? (t) => o.consoleOut!(name, t) : undefined,
      });
      if (!started.ok) {
        stopAll('switch lab failed');
        return { ok: false, errors: [`cannot build ${name}:`, ...started.errors], exitCode: 2 };
      }
      const nic = started.value.vm.nics().find((n) => n.id === nicId);
      if (!nic) {
        stopAll('switch lab failed');
        return { ok: false, errors: [`line ${p.backend.line}: backend ${p.backend.id} names frontend ${nicId}, which is not a NIC of ${name}`], exitCode: 2 };
      }
      const [nicSide, swSide] = createLink(o.clock, [`${name}.eth0`, `${p.switchName}.${name}`]);
      nic.attach(o.wrapPort ? o.wrapPort(`${name}.eth0`, nicSide) : nicSide);
      sw.attach(o.wrapPort ? o.wrapPort(`${p.switchName}.${name}`, swSide) : swSide, `${name}.eth0`);
      const net = startGuestNetwork(started.value.kernel, { wrapPort: o.wrapPort ? (netif, port) => o.wrapPort!(`${name}.${netif}.stack`, port) : undefined });
      const addr = kernel.dhcp ? 'dhcp' : kernel.ip !== undefined ? formatIpv4(kernel.ip) : 'no address';
      guests.push({ guest: started.value, network: 'error' in net ? null : net, addr, switchName: p.switchName });
      summary.push(`${name}: ${devices.find((d) => d.id === nicId)?.className ?? nic.model} on switch ${p.switchName} at ${addr}`);
    }
  }
  return { ok: true, lab: { switches, guests, summary, close: () => stopAll('lab closed') } };
}
