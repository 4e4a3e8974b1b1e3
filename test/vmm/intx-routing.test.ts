import { describe, expect, it } from 'vitest';
import { PCI_INTERRUPT_LINE } from '../../src/vmm/pci.js';
import { cfgAddr, initPic, irr, vmFromXml } from './machine.js';

/**
 * INTx belongs to the chipset's PIRQ routing; Interrupt Line (config 0x3C) is software's scratch
 * byte. Driven at register level through the I/O bus against the real RTL8139 model.
 */
const RTL = `<device class="RTL8139" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>`;
const IO = 0xc000;
const TSD0 = 0x10;
const TSAD0 = 0x20;
const CR = 0x37;
const IMR = 0x3c;
const ISR = 0x3e;
const ISR_TOK = 0x04;

function rtlWithTokPending() {
  const m = vmFromXml(RTL);
  const { vm } = m;
  initPic(vm);
  const slot = vm.pci!.list().find((f) => f.owner === 'net0')!.address.slot;
  vm.io.outl(0xcf8, cfgAddr(slot, 0x04));
  vm.io.outw(0xcfc, 0x7); // I/O, memory, bus master
  vm.io.outb(IO + CR, 0x04); // TE
  vm.io.outw(IO + IMR, ISR_TOK);
  vm.io.outl(IO + TSAD0, 0x10000);
  vm.io.outl(IO + TSD0, 60); // send 60 bytes: TOK
  return { ...m, slot };
}

describe('PCI INTx routing', () => {
  it('rewriting Interrupt Line while INTx is asserted neither moves nor strands the interrupt (the stranded-IRQ sequence)', () => {
    const { vm, slot } = rtlWithTokPending();
    vm.io.outl(0xcf8, cfgAddr(slot, PCI_INTERRUPT_LINE));
    const line = vm.io.inb(0xcfc);
    expect(line).toBe(10); // what firmware told the OS
    expect(irr(vm) & (1 << 10)).not.toBe(0);
    vm.io.outb(0xcfc, 5); // software scribbles on the scratch register
    expect(vm.io.inb(0xcfc)).toBe(5); // plain read/write storage
    vm.io.outw(IO + ISR, 0xffff); // acknowledge everything: INTx deasserts
    expect(irr(vm) & (1 << 10)).toBe(0); // not stranded high
    expect(irr(vm) & (1 << 5)).toBe(0); // and never moved to IRQ 5
    // Asserted again, it still arrives on the chipset's line whatever the register says.
    vm.io.outl(IO + TSAD0 + 4, 0x10000);
    vm.io.outl(IO + TSD0 + 4, 60);
    expect(irr(vm) & (1 << 10)).not.toBe(0);
    expect(irr(vm) & (1 << 5)).toBe(0);
    expect(vm.failures.size).toBe(0);
  });

  it('Interrupt Disable (command bit 10) gates the line; Interrupt Status (status bit 3) shows the device asserting regardless', () => {
    const { vm, slot } = rtlWithTokPending();
    const status = (): number => {
      vm.io.outl(0xcf8, cfgAddr(slot, 0x04));
      return vm.io.inw(0xcfe);
    };
    expect(status() & 0x8).toBe(0x8);
    vm.io.outl(0xcf8, cfgAddr(slot, 0x04));
    vm.io.outw(0xcfc, 0x407);
    expect(irr(vm) & (1 << 10)).toBe(0);
    expect(status() & 0x8).toBe(0x8);
    vm.io.outl(0xcf8, cfgAddr(slot, 0x04));
    vm.io.outw(0xcfc, 0x007);
    expect(irr(vm) & (1 << 10)).not.toBe(0);
    vm.io.outw(IO + ISR, 0xffff);
    expect(status() & 0x8).toBe(0);
    expect(irr(vm) & (1 << 10)).toBe(0);
  });

  it('the device tree reports the routed IRQ, not the scratch register', () => {
    const { vm, slot } = rtlWithTokPending();
    vm.io.outl(0xcf8, cfgAddr(slot, PCI_INTERRUPT_LINE));
    vm.io.outb(0xcfc, 0xff);
    expect(vm.describe().find((d) => d.id === 'net0')!.irq).toBe(10);
  });
});
