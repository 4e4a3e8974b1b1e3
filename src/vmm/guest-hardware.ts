import type { GuestHardware } from '../guest/hardware.js';
import type { Vm } from './vm.js';
import { guard } from './fail-stop.js';

/** The guest's view of a VM: the exits a real CPU would take, and nothing more. */
export function guestHardwareOf(vm: Vm): GuestHardware {
  const io = vm.io;
  return {
    inb: (p) => io.in(p, 1),
    inw: (p) => io.in(p, 2),
    inl: (p) => io.in(p, 4),
    outb: (p, v) => io.out(p, 1, v),
    outw: (p, v) => io.out(p, 2, v),
    outl: (p, v) => io.out(p, 4, v),
    mmioRead: (a, s) => io.mmioRead(a, s),
    mmioWrite: (a, s, v) => io.mmioWrite(a, s, v),
    physical: vm.memory.bytes,
    memorySize: vm.memory.size,
    setInterruptHandler: (fn) => vm.cpu.setInterruptHandler(fn),
    sti: () => vm.cpu.sti(),
    cli: () => vm.cpu.cli(),
    clock: vm.guestClock,
    guard: (what, fn) => guard(vm.guestScope, what, fn, undefined),
    debugLog: (component) => vm.log.child(component),
  };
}
