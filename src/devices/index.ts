import type { DeviceRegistry } from '../vmm/device.js';
import { createNe2000 } from './ne2000.js';
import { createRtl8139 } from './rtl8139/device.js';
import { createSerial } from './serial.js';
import { createVirtioNet } from './virtio-net.js';

/** Register every device model netlab ships under the class name the XML uses. */
export function registerBuiltinDevices(registry: DeviceRegistry): void {
  registry.register('SERIAL', createSerial);
  registry.register('RTL8139', createRtl8139);
  registry.register('NE2000', createNe2000);
  registry.register('LNX_VIRTIO_NIC', createVirtioNet);
}
