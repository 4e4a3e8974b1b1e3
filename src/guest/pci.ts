import type { GuestHardware } from './hardware.js';

/**
 * PCI enumeration through configuration mechanism #1, as an OS does it: probe every slot's
 * vendor ID, read the header, and find the BARs and interrupt line the firmware assigned.
 */
export interface PciDeviceInfo {
  bus: number;
  slot: number;
  fn: number;
  vendorId: number;
  deviceId: number;
  classCode: number;
  revision: number;
  subsystemId: number;
  irq: number | null;
  bars: ({ kind: 'io' | 'mem'; base: number } | null)[];
}

function address(bus: number, slot: number, fn: number, reg: number): number {
  return (0x80000000 | (bus << 16) | (slot << 11) | (fn << 8) | (reg & 0xfc)) >>> 0;
}

export class GuestPciAccess {
  constructor(private readonly hw: GuestHardware) {}

  read32(d: { bus: number; slot: number; fn: number }, reg: number): number {
    this.hw.outl(0xcf8, address(d.bus, d.slot, d.fn, reg));
    return this.hw.inl(0xcfc) >>> 0;
  }

  read16(d: { bus: number; slot: number; fn: number }, reg: number): number {
    this.hw.outl(0xcf8, address(d.bus, d.slot, d.fn, reg));
    return this.hw.inw(0xcfc + (reg & 2));
  }

  write16(d: { bus: number; slot: number; fn: number }, reg: number, v: number): void {
    this.hw.outl(0xcf8, address(d.bus, d.slot, d.fn, reg));
    this.hw.outw(0xcfc + (reg & 2), v);
  }

  write32(d: { bus: number; slot: number; fn: number }, reg: number, v: number): void {
    this.hw.outl(0xcf8, address(d.bus, d.slot, d.fn, reg));
    this.hw.outl(0xcfc, v);
  }

  /** Turn on I/O and memory decode and bus mastering (Linux: pci_enable_device + pci_set_master). */
  enable(d: PciDeviceInfo): void {
    const cmd = this.read16(d, 0x04);
    this.write16(d, 0x04, cmd | 0x1 | 0x2 | 0x4);
  }

  enumerate(): PciDeviceInfo[] {
    const found: PciDeviceInfo[] = [];
    for (let slot = 0; slot < 32; slot++) {
      const loc = { bus: 0, slot, fn: 0 };
      const id = this.read32(loc, 0x00);
      if ((id & 0xffff) === 0xffff) continue;
      const classReg = this.read32(loc, 0x08);
      const header = (this.read32(loc, 0x0c) >>> 16) & 0x7f;
      const bars: PciDeviceInfo['bars'] = [];
      if (header === 0) {
        for (let i = 0; i < 6; i++) {
          const v = this.read32(loc, 0x10 + 4 * i);
          if (v === 0) bars.push(null);
          else if (v & 1) bars.push({ kind: 'io', base: v & 0xfffc });
          else bars.push({ kind: 'mem', base: (v & 0xfffffff0) >>> 0 });
        }
      }
      const intr = this.read32(loc, 0x3c);
      const line = intr & 0xff;
      const pin = (intr >>> 8) & 0xff;
      found.push({
        ...loc,
        vendorId: id & 0xffff,
        deviceId: id >>> 16,
        classCode: classReg >>> 8,
        revision: classReg & 0xff,
        subsystemId: this.read32(loc, 0x2c) >>> 16,
        irq: pin !== 0 && line <= 15 ? line : null,
        bars,
      });
    }
    return found;
  }
}
