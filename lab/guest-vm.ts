import type { Clock } from '../net/clock.js';
import type { Logger } from '../src/log.js';
import type { VmConfig } from '../src/config/types.js';
import type { Device, DeviceRegistry } from '../src/vmm/device.js';
import { Vm } from '../src/vmm/vm.js';
import { guestHardwareOf } from '../src/vmm/guest-hardware.js';
import { GuestKernel, type GuestDriver } from '../src/guest/kernel.js';
import { failStop, guard } from '../src/vmm/fail-stop.js';

/** A serial device model's host side, as the 16550 model exposes it. */
interface ConsoleDevice {
  onOutput: ((bytes: Uint8Array) => void) | null;
  input(bytes: Uint8Array): void;
}

function isConsole(d: Device): d is Device & ConsoleDevice {
  return 'onOutput' in d && typeof (d as Partial<ConsoleDevice>).input === 'function';
}

export interface GuestVm {
  vm: Vm;
  kernel: GuestKernel;
  console: ConsoleDevice | null;
}

export interface GuestVmOptions {
  clock: Clock;
  logger: Logger;
  registry: DeviceRegistry;
  drivers: GuestDriver[];
  /** Where the guest's serial console output goes (the lab's terminal, a test's buffer). */
  consoleOut?: (text: string) => void;
}

/** Create a VM from its config and boot its guest kernel on it. */
export function startGuestVm(config: VmConfig, options: GuestVmOptions): { ok: true; value: GuestVm } | { ok: false; errors: string[] } {
  const made = Vm.create(config, { clock: options.clock, logger: options.logger, registry: options.registry });
  if (!made.ok) return made;
  const vm = made.vm;
  const uart = vm.devices.find(isConsole) ?? null;
  // Console input is a way into the device from the host: entered through its fail-stop scope.
  const consoleDev: ConsoleDevice | null = uart && {
    get onOutput() {
      return uart.onOutput;
    },
    set onOutput(fn) {
      uart.onOutput = fn;
    },
    input: guard(vm.deviceScope(uart.id), 'console input', (bytes: Uint8Array) => uart.input(bytes), undefined),
  };
  if (consoleDev && options.consoleOut) {
    const decoder = new TextDecoder();
    const out = options.consoleOut;
    consoleDev.onOutput = (bytes) => out(decoder.decode(bytes, { stream: true }).replace(/\r/g, ''));
  }
  const kernel = new GuestKernel(guestHardwareOf(vm), config.kernel, config.apps, options.drivers);
  try {
    kernel.boot();
  } catch (e) {
    failStop(vm.guestScope, 'boot', e);
  }
  return { ok: true, value: { vm, kernel, console: consoleDev } };
}
