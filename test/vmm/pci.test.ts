import { describe, expect, it } from 'vitest';
import { IoBus } from '../../src/vmm/io-bus.js';
import { PicPair } from '../../src/vmm/pic.js';
import { PciBus, PciFunction, PCI_COMMAND } from '../../src/vmm/pci.js';
import { firmwarePciInit } from '../../src/vmm/firmware.js';
import { Telemetry } from '../../src/vmm/telemetry.js';

function cfg(bus: IoBus, slot: number, reg: number): number {
  bus.outl(0xcf8, (0x80000000 | (slot << 11) | reg) >>> 0);
  return bus.inl(0xcfc);
}
function cfgWrite(bus: IoBus, slot: number, reg: number, v: number): void {
  bus.outl(0xcf8, (0x80000000 | (slot << 11) | reg) >>> 0);
  bus.outl(0xcfc, v);
}

function machine() {
  const t = new Telemetry();
  const io = new IoBus(t);
  const pic = new PicPair();
  pic.register(io);
  const pci = new PciBus(io, pic);
  expect(pci.register()).toEqual([]);
  const regs = new Uint8Array(256);
  const handler = { read: (o: number) => regs[o]!, write: (o: number, _s: number, v: number) => void (regs[o] = v) };
  const fn = new PciFunction('nic0', { vendorId: 0x10ec, deviceId: 0x8139, classCode: 0x020000, revision: 0x20 }, [
    { kind: 'io', size: 256, handler },
    { kind: 'mem', size: 256, handler },
  ]);
  pci.add(fn, 3);
  return { io, pic, pci, fn, regs, t };
}

describe('PCI configuration mechanism #1', () => {
  it('answers vendor/device/class for a present slot and all ones for an empty one', () => {
    const { io } = machine();
    expect(cfg(io, 3, 0x00)).toBe(0x813910ec);
    expect(cfg(io, 3, 0x08) >>> 8).toBe(0x020000);
    expect(cfg(io, 0, 0x00)).toBe(0x12378086); // host bridge
    expect(cfg(io, 7, 0x00)).toBe(0xffffffff);
  });

  it('honours the BAR sizing write of 0xFFFFFFFF', () => {
    const { io } = machine();
    cfgWrite(io, 3, 0x10, 0xffffffff);
    expect(cfg(io, 3, 0x10)).toBe(0x0000ff01); // 256-byte I/O BAR, upper 16 bits not decoded
    cfgWrite(io, 3, 0x14, 0xffffffff);
    expect(cfg(io, 3, 0x14)).toBe(0xffffff00);
    cfgWrite(io, 3, 0x18, 0xffffffff);
    expect(cfg(io, 3, 0x18)).toBe(0); // unimplemented BAR
  });

  it('decodes a BAR only after the command register enables it', () => {
    const { io, fn, regs } = machine();
    cfgWrite(io, 3, 0x10, 0xc100);
    regs[0x37] = 0x5a;
    expect(io.inb(0xc137)).toBe(0xff);
    cfgWrite(io, 3, PCI_COMMAND, 0x1);
    expect(fn.barAddress(0)).toBe(0xc100);
    expect(io.inb(0xc137)).toBe(0x5a);
    cfgWrite(io, 3, PCI_COMMAND, 0x0);
    expect(io.inb(0xc137)).toBe(0xff);
  });

  it('keeps IDs read-only', () => {
    const { io } = machine();
    cfgWrite(io, 3, 0x00, 0x12345678);
    expect(cfg(io, 3, 0x00)).toBe(0x813910ec);
  });

  it('firmware sizes and assigns BARs and routes INTA# to a level-triggered PIC IRQ', () => {
    const { io, pic, fn } = machine();
    const a = firmwarePciInit(io, pic);
    const nic = a.find((x) => x.slot === 3)!;
    expect(nic.bars).toEqual([
      { index: 0, kind: 'io', base: 0xc000, size: 256 },
      { index: 1, kind: 'mem', base: 0xe0000000, size: 256 },
    ]);
    expect(nic.irq).not.toBeNull();
    expect(fn.interruptLine).toBe(nic.irq);
    expect(cfg(io, 3, 0x10)).toBe(0xc001);
    // INTx reaches the PIC on that line, and deasserting it withdraws the request.
    for (const [p, v] of [[0x20, 0x11], [0xa0, 0x11], [0x21, 0x20], [0xa1, 0x28], [0x21, 4], [0xa1, 2], [0x21, 1], [0xa1, 1], [0x21, 0], [0xa1, 0]] as const) io.outb(p, v);
    fn.setIntx(true);
    expect(pic.intr()).toBe(true);
    expect(cfg(io, 3, 0x04) >>> 16 & 0x8).toBe(0x8); // status.INTERRUPT
    fn.setIntx(false);
    expect(pic.intr()).toBe(false);
  });

  it('honours INTx disable in the command register', () => {
    const { io, pic, fn } = machine();
    firmwarePciInit(io, pic);
    for (const [p, v] of [[0x20, 0x11], [0xa0, 0x11], [0x21, 0x20], [0xa1, 0x28], [0x21, 4], [0xa1, 2], [0x21, 1], [0xa1, 1], [0x21, 0], [0xa1, 0]] as const) io.outb(p, v);
    cfgWrite(io, 3, PCI_COMMAND, 0x400);
    fn.setIntx(true);
    expect(pic.intr()).toBe(false);
    cfgWrite(io, 3, PCI_COMMAND, 0x000);
    expect(pic.intr()).toBe(true);
  });
});
