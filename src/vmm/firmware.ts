import type { IoBus } from './io-bus.js';
import type { PicPair } from './pic.js';
import { PCI_BAR0, PCI_BAR_IO, PCI_HEADER_TYPE, PCI_INTERRUPT_LINE, pirqRoute } from './pci.js';

/**
 * The firmware's part of boot (what SeaBIOS does before an OS runs): walk PCI configuration space
 * through 0xCF8/0xCFC like any guest, size every BAR, assign I/O ports from 0xC000 up and memory
 * from 0xE0000000 up (naturally aligned), and tell the OS which PIC IRQ each INTx pin reaches
 * (the chipset's PIRQ routing, `pirqRoute`) by writing it to the Interrupt Line register, marking
 * those IRQs level-triggered. It leaves decode and bus mastering off: enabling them is the OS
 * driver's job (pci_enable_device).
 */
export const FIRMWARE_IO_BASE = 0xc000;
export const FIRMWARE_MMIO_BASE = 0xe0000000;

export interface FirmwareAssignment {
  slot: number;
  bars: { index: number; kind: 'io' | 'mem'; base: number; size: number }[];
  irq: number | null;
}

function cfgAddr(bus: number, slot: number, fn: number, reg: number): number {
  return (0x80000000 | (bus << 16) | (slot << 11) | (fn << 8) | (reg & 0xfc)) >>> 0;
}

export function firmwarePciInit(io: IoBus, pic: PicPair): FirmwareAssignment[] {
  const read32 = (slot: number, reg: number): number => {
    io.outl(0xcf8, cfgAddr(0, slot, 0, reg));
    return io.inl(0xcfc);
  };
  const write32 = (slot: number, reg: number, v: number): void => {
    io.outl(0xcf8, cfgAddr(0, slot, 0, reg));
    io.outl(0xcfc, v);
  };
  let nextIo = FIRMWARE_IO_BASE;
  let nextMem = FIRMWARE_MMIO_BASE;
  const out: FirmwareAssignment[] = [];
  for (let slot = 0; slot < 32; slot++) {
    const id = read32(slot, 0);
    if ((id & 0xffff) === 0xffff) continue;
    const headerType = (read32(slot, PCI_HEADER_TYPE & 0xfc) >>> 16) & 0x7f;
    if (headerType !== 0) continue;
    const a: FirmwareAssignment = { slot, bars: [], irq: null };
    for (let i = 0; i < 6; i++) {
      const reg = PCI_BAR0 + 4 * i;
      const orig = read32(slot, reg);
      write32(slot, reg, 0xffffffff);
      const probe = read32(slot, reg);
      write32(slot, reg, orig);
      if (probe === 0 || probe === 0xffffffff && orig === 0xffffffff) continue;
      const isIo = (probe & PCI_BAR_IO) !== 0;
      const maskBits = isIo ? probe & 0xfffffffc : probe & 0xfffffff0;
      // I/O BARs may implement only the low 16 bits: size from the lowest set address bit.
      const size = (maskBits & -maskBits) >>> 0;
      if (size === 0) continue;
      let base: number;
      if (isIo) {
        base = Math.ceil(nextIo / size) * size;
        nextIo = base + size;
      } else {
        base = Math.ceil(nextMem / size) * size;
        nextMem = base + size;
      }
      write32(slot, reg, base);
      a.bars.push({ index: i, kind: isIo ? 'io' : 'mem', base, size });
    }
    const pinReg = read32(slot, PCI_INTERRUPT_LINE);
    const pin = (pinReg >>> 8) & 0xff;
    const irq = pirqRoute(slot, pin);
    if (irq !== null) {
      write32(slot, PCI_INTERRUPT_LINE, (pinReg & ~0xff) | irq);
      pic.setLevelTriggered(irq);
      a.irq = irq;
    }
    out.push(a);
  }
  return out;
}
