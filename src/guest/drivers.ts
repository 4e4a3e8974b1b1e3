import type { GuestDriver } from './kernel.js';
import { rtl8139Driver } from './drivers/rtl8139.js';
import { virtioNetDriver } from './drivers/virtio-net.js';
import { ne2kDriver } from './drivers/ne2k.js';

/** The NIC drivers the guest kernel binds by PCI vendor/device ID. */
export function guestDrivers(): GuestDriver[] {
  return [rtl8139Driver, virtioNetDriver, ne2kDriver];
}
