/**
 * Which kernel modules each Kitten `net=` model needs. Only the drivers are named; their
 * dependencies (mii, 8390, virtio, virtio_ring, virtio_pci_*_dev, failover, net_failover) are
 * resolved from the modules' own `depends=` (kmod.ts).
 */
export type NicModelKey = 'rtl8139' | 'ne2k' | 'virtio';

export const NIC_DRIVER_MODULES: Record<NicModelKey, string[]> = {
  // Both RTL8139 drivers: 8139too takes the original chip (PCI revision < 0x20: netlab's model, a
  // real RTL8139), 8139cp the 8139C+ that QEMU's rtl8139 (revision 0x20) is. Each refuses the other's.
  rtl8139: ['8139too', '8139cp'],
  ne2k: ['ne2k-pci'],
  virtio: ['virtio_pci', 'virtio_net'],
};

/** QEMU's `-device` names for the lab's models. */
export const QEMU_NIC_DEVICE: Record<NicModelKey, string> = {
  rtl8139: 'rtl8139',
  ne2k: 'ne2k_pci',
  virtio: 'virtio-net-pci',
};
