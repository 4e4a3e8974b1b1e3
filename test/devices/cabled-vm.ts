import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { Logger, memorySink } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { Vm } from '../../src/vmm/vm.js';

/**
 * A VM from `xml` in virtual time with its first NIC cabled to a link whose far end (`wire`)
 * collects what the NIC sends (`got`), and PCI function 00:01.0 enabled for I/O, memory and bus
 * mastering as a driver enables it: the register-level tests' machine.
 */
export function cabledVm(xml: string, link: { flowControl?: boolean } = {}) {
  const registry = createDeviceRegistry();
  const parsed = parseVmConfig(xml, { knownClasses: registry.names() });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const clock = new VirtualClock();
  const made = Vm.create(parsed.value, { clock, logger: new Logger([], memorySink([])), registry });
  if (!made.ok) throw new Error(made.errors.join('\n'));
  const vm = made.vm;
  const nic = vm.nics()[0]!;
  const [wire, nicEnd] = createLink(clock, ['wire', 'nic'], link);
  nic.attach(nicEnd);
  const got: Uint8Array[] = [];
  wire.setReceiver((f) => void got.push(f));
  vm.io.outl(0xcf8, 0x80000800 | 0x04);
  vm.io.outw(0xcfc, 0x7);
  return { vm, clock, wire, got, nic };
}
