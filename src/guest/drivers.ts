import type { GuestDriver } from './kernel.js';

/** The NIC drivers the guest kernel binds by PCI vendor/device ID (filled in as drivers land). */
export function guestDrivers(): GuestDriver[] {
  return [];
}
