import type { Vm } from '../../src/vmm/vm.js';
import type { VmStatus } from './protocol.js';

/** A VM's state and counters, the same whether the VM runs in the lab's thread or its own. */
export function vmStatus(vm: Vm, captureLost = 0): VmStatus {
  const name = vm.config.name;
  return {
    name,
    state: vm.state,
    nics: vm.nics().map((d) => ({ id: d.id, counters: d.counters() })),
    telemetry: vm.telemetry.report(`telemetry ${name}`),
    captureLost,
  };
}
