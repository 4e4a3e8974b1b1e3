import { DeviceRegistry } from './vmm/device.js';
import { registerCoreDevices } from './vmm/core-devices.js';
import { registerBuiltinDevices } from './devices/index.js';

/** The registry with every device class netlab ships: core (8259A, PCI) and the device models. */
export function createDeviceRegistry(): DeviceRegistry {
  const registry = new DeviceRegistry();
  registerCoreDevices(registry);
  registerBuiltinDevices(registry);
  return registry;
}
