import { describe, expect, it } from 'vitest';
import { IoBus } from '../../src/vmm/io-bus.js';
import { PicPair } from '../../src/vmm/pic.js';
import { PciHostBridge, PciFunction, PCI_COMMAND } from '../../src/vmm/pci.js';
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
  const pci = new PciHostBridge(io, pic);
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
    // 256-byte I/O BAR: all 32 bits read/write, as on the RTL8139 and in QEMU. SeaBIOS sizes it as
    // ~(value & ~3) + 1, so 0x0000FF01 (upper bits hardwired 0) read as a ~4 GiB BAR and SeaBIOS
    // never booted the guest (seen in v86).
    expect(cfg(io, 3, 0x10)).toBe(0xffffff01);
    expect((~(cfg(io, 3, 0x10) & 0xfffffffc) + 1) >>> 0).toBe(256);
    cfgWrite(io, 3, 0x14, 0xffffffff);
    expect(cfg(io, 3, 0x14)).toBe(0xffffff00);
    cfgWrite(io, 3, 0x18, 0xffffffff);
    expect(cfg(io, 3, 0x18)).toBe(0); // unimplemented BAR
  });

  it('an I/O BAR above 0xFFFF decodes nothing (x86 I/O space is 64 KiB)', () => {
    const { io, fn } = machine();
    cfgWrite(io, 3, PCI_COMMAND, 0x1);
    cfgWrite(io, 3, 0x10, 0xffffffff);
    expect(fn.barAddress(0)).toBeNull();
    cfgWrite(io, 3, 0x10, 0x1c100);
    expect(cfg(io, 3, 0x10)).toBe(0x1c101);
    expect(fn.barAddress(0)).toBeNull();
    cfgWrite(io, 3, 0x10, 0xc100);
    expect(fn.barAddress(0)).toBe(0xc100);
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

describe('PCI configuration space bounds', () => {
  it('the guest-chosen offset 0xFF read as a dword (outl 0xcf8, 0x800008fc; inl 0xcff) reads 0xFF for what lies beyond, and faults nothing', async () => {
    const { vmFromXml } = await import('./machine.js');
    const { vm, logLines } = vmFromXml(`<device class="RTL8139" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>`);
    vm.io.outl(0xcf8, 0x800008fc);
    // Byte 0xFF of the header (0), then three bytes past port 0xCFF that nothing decodes.
    expect(vm.io.inl(0xcff)).toBe(0xffffff00);
    expect(vm.failures.size).toBe(0);
    expect(logLines.join('\n')).not.toMatch(/RangeError|stopped/);
  });

  it('every width at every data-port offset, for every register, reads what the bytes read one at a time give and never faults', () => {
    const { io, fn } = machine();
    const faults: string[] = [];
    io.onFault = (owner, e) => faults.push(`${owner}: ${String(e)}`);
    fn.config[0xff] = 0xab; // reserved bytes are plain storage in our model; give it a value to see
    for (let reg = 0; reg < 256; reg += 4) {
      io.outl(0xcf8, (0x80000000 | (3 << 11) | reg) >>> 0);
      const bytes = [0, 1, 2, 3].map((i) => io.inb(0xcfc + i));
      for (const size of [1, 2, 4] as const) {
        for (let off = 0; off < 4; off++) {
          let want = 0;
          for (let i = size - 1; i >= 0; i--) want = (want << 8) | (off + i < 4 ? bytes[off + i]! : 0xff);
          const got = size === 1 ? io.inb(0xcfc + off) : size === 2 ? io.inw(0xcfc + off) : io.inl(0xcfc + off);
          expect(got >>> 0, `reg 0x${reg.toString(16)} off ${off} size ${size}`).toBe(want >>> 0);
        }
      }
      for (const size of [1, 2, 4] as const) for (let off = 0; off < 4; off++) io.out(0xcfc + off, size, 0);
    }
    expect(faults).toEqual([]);
  });

  it('PciFunction.readConfig/writeConfig take any offset: beyond the header reads 0xFF and writes are ignored', () => {
    const { fn } = machine();
    expect(fn.readConfig(0xff, 4)).toBe((0xffffff00 | fn.config[0xff]!) >>> 0);
    expect(fn.readConfig(0x100, 2)).toBe(0xffff);
    expect(fn.readConfig(-1, 2)).toBe(0xff | (fn.config[0]! << 8));
    expect(fn.readConfig(0x3c, 2)).toBe(fn.config[0x3c]! | (fn.config[0x3d]! << 8)); // unaligned word reads each byte
    const before = fn.config.slice();
    fn.writeConfig(0xfe, 4, 0xffffffff);
    fn.writeConfig(0x1000, 4, 0xffffffff);
    fn.writeConfig(Number.NaN, 1, 1);
    expect([...fn.config.subarray(0, 0xfe)]).toEqual([...before.subarray(0, 0xfe)]);
  });

  it('feeds an emulator-held configuration image through the same write path (command, BARs, interrupt line)', () => {
    const { fn, io, regs } = machine();
    const image = fn.config.slice();
    image[0x04] = 0x01; // I/O decode on
    new DataView(image.buffer).setUint32(0x10, 0xc201, true);
    image[0x3c] = 9;
    image[0x06] = 0xff; // status is not fed (write-1-to-clear cannot be read from an image)
    const back = fn.feedConfigImage(image);
    expect(fn.barAddress(0)).toBe(0xc200);
    regs[0x10] = 0x77;
    expect(io.inb(0xc210)).toBe(0x77);
    expect(fn.interruptLine).toBe(9);
    expect(back[0x06]).toBe(fn.config[0x06]);
    // A BAR sizing write in the image comes back masked to the BAR's size.
    new DataView(image.buffer).setUint32(0x14, 0xffffffff, true);
    expect(new DataView(fn.feedConfigImage(image).buffer).getUint32(0x14, true)).toBe(0xffffff00);
  });
});
