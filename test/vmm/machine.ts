import { VirtualClock } from '../../net/clock.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { Logger, memorySink } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import type { DeviceFactory } from '../../src/vmm/device.js';
import { Vm } from '../../src/vmm/vm.js';

/** A VM built from XML the way the lab builds one (registry, firmware), for register-level tests. */
export function vmFromXml(devicesXml: string, o: { name?: string; clock?: VirtualClock; extraClasses?: Record<string, DeviceFactory>; debug?: string[] } = {}) {
  const registry = createDeviceRegistry();
  for (const [k, f] of Object.entries(o.extraClasses ?? {})) registry.register(k, f);
  const xml = `<vm class="PC" name="${o.name ?? 't'}"><memory>16</memory><devices>
<device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>${devicesXml}</devices></vm>`;
  const parsed = parseVmConfig(xml, { knownClasses: registry.names() });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const clock = o.clock ?? new VirtualClock();
  const logLines: string[] = [];
  const made = Vm.create(parsed.value, { clock, logger: new Logger(o.debug ?? [], memorySink(logLines)), registry });
  if (!made.ok) throw new Error(made.errors.join('\n'));
  return { vm: made.vm, clock, logLines };
}

export const cfgAddr = (slot: number, reg: number): number => (0x80000000 | (slot << 11) | (reg & 0xfc)) >>> 0;

/** Program both 8259As as Linux does (vectors 0x20/0x28, cascade on IR2), everything unmasked. */
export function initPic(vm: Vm): void {
  for (const [p, v] of [[0x20, 0x11], [0xa0, 0x11], [0x21, 0x20], [0xa1, 0x28], [0x21, 4], [0xa1, 2], [0x21, 1], [0xa1, 1], [0x21, 0], [0xa1, 0]] as const) vm.io.outb(p, v);
}

/** The PIC's interrupt request register for IRQ 0-15 (OCW3 read-back), as a guest reads it. */
export function irr(vm: Vm): number {
  vm.io.outb(0x20, 0x0a);
  vm.io.outb(0xa0, 0x0a);
  return vm.io.inb(0x20) | (vm.io.inb(0xa0) << 8);
}
