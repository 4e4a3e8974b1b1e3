import { VirtualClock, type Clock } from '../net/clock.js';
import { createLink } from '../net/link.js';
import { parseIpv4 } from '../net/addr.js';
import { Stack } from '../net/stack.js';
import type { FramePort } from '../net/frame-port.js';
import { parseVmConfig } from '../src/config/parse.js';
import { Logger, memorySink } from '../src/log.js';
import { createDeviceRegistry } from '../src/registry.js';
import { startGuestNetwork, type GuestNetwork } from '../src/guest/network.js';
import type { GuestDriver } from '../src/guest/kernel.js';
import type { DeviceFactory } from '../src/vmm/device.js';
import { startGuestVm } from './guest-vm.js';
import { mulberry32 } from '../net/random.js';

/**
 * A whole guest (VM, kernel, driver, stack, apps) whose NIC hangs on an in-memory link, for
 * simulations, tests and benchmarks: `wire` is the far end of the NIC's cable.
 */
export const ip = (s: string): number => parseIpv4(s)!;
export const seeded = mulberry32;

export interface SimGuestOptions {
  nicClass?: string;
  mac?: string;
  ip?: string;
  name?: string;
  extraClasses?: Record<string, DeviceFactory>;
  drivers: GuestDriver[];
  clock?: Clock;
  telemetry?: boolean;
  /** The lab's logger (`--debug` tests); by default one that keeps lines in `logLines`, no debug. */
  logger?: Logger;
}

export function simGuest(o: SimGuestOptions) {
  const clock = (o.clock ?? new VirtualClock()) as VirtualClock;
  const registry = createDeviceRegistry();
  for (const [k, f] of Object.entries(o.extraClasses ?? {})) registry.register(k, f);
  const xml = `<vm class="PC" name="${o.name ?? 'vm0'}"><memory>32</memory><telemetry>${o.telemetry === false ? 'disable' : 'enable'}</telemetry><devices>
    <device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
    <device class="SERIAL" id="com1"><port>0x3F8</port><irq>4</irq></device>
    <device class="${o.nicClass ?? 'RTL8139'}" id="net0"><bus>pci0</bus><mac>${o.mac ?? '52:54:00:12:34:56'}</mac></device>
    </devices><guest><kernel>ip=${o.ip ?? '10.0.0.2'} netmask=255.255.255.0 gw=10.0.0.1</kernel>
    <apps><app name="httpd" port="80"/><app name="echo" port="7"/><app name="discard" port="9"/><app name="chargen" port="19"/><app name="shell" port="23"/></apps></guest></vm>`;
  const parsed = parseVmConfig(xml, { knownClasses: registry.names() });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const logLines: string[] = [];
  let consoleText = '';
  const started = startGuestVm(parsed.value, { clock, logger: o.logger ?? new Logger([], memorySink(logLines)), registry, drivers: o.drivers, consoleOut: (t) => (consoleText += t) });
  if (!started.ok) throw new Error(started.errors.join('\n'));
  const { vm, kernel } = started.value;
  const [wire, nicEnd] = createLink(clock, ['wire', `${vm.config.name}.eth0`]);
  vm.nics()[0]!.attach(nicEnd);
  const net = startGuestNetwork(kernel, { random: seeded(7) });
  if ('error' in net) throw new Error(net.error + '\n' + kernel.log.join('\n'));
  return { clock, vm, kernel, net: net as GuestNetwork, wire, console: () => consoleText, logLines };
}

/** A peer host stack on the other end of the wire, at 10.0.0.1/24. */
export function simHost(clock: Clock, wire: FramePort, addr = '10.0.0.1'): Stack {
  const host = new Stack({ clock, name: 'host', random: seeded(3) });
  const n = host.addNetif('h0', wire, new Uint8Array([2, 0, 0, 0, 0, 1]));
  host.configure(n, ip(addr), 24);
  return host;
}
