import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { Logger, memorySink } from '../../src/log.js';
import { createRtl8139 } from '../../src/devices/rtl8139/device.js';
import type { DeviceContext, IoSpace, IrqController } from '../../src/vmm/device.js';
import { guardedClock, type FailStopScope } from '../../src/vmm/fail-stop.js';
import { IoBus } from '../../src/vmm/io-bus.js';
import { GuestRam, type Dma, type GuestMemory } from '../../src/vmm/memory.js';
import { pirqRoute, type BarSpec, type PciAddress, type PciBus, type PciFunction } from '../../src/vmm/pci.js';
import { Telemetry } from '../../src/vmm/telemetry.js';

/**
 * The shape of an adapter onto another emulator (issue 12's v86): it keeps its own configuration
 * space and never calls the device on a config write, owns its own interrupt lines, and must hear
 * of every DMA write. The unchanged RTL8139 model runs on it through DeviceContext's interfaces.
 */
class WatchedMemory implements GuestMemory {
  readonly writes: [number, number][] = [];
  constructor(private readonly ram: GuestRam) {}
  get size(): number {
    return this.ram.size;
  }
  inRange(a: number, n: number): boolean {
    return this.ram.inRange(a, n);
  }
  view(a: number, n: number): Dma<Uint8Array> {
    return this.ram.view(a, n);
  }
  read(a: number, n: number): Dma<Uint8Array> {
    return this.ram.read(a, n);
  }
  private noted<T>(a: number, n: number, r: Dma<T>): Dma<T> {
    if (r === true) this.writes.push([a, n]);
    return r;
  }
  write(a: number, d: Uint8Array): Dma<true> {
    return this.noted(a, d.length, this.ram.write(a, d));
  }
  writeWith(a: number, n: number, fill: (dst: Uint8Array) => void): Dma<true> {
    return this.noted(a, n, this.ram.writeWith(a, n, fill));
  }
  readU8(a: number): Dma<number> { return this.ram.readU8(a); }
  readU16(a: number): Dma<number> { return this.ram.readU16(a); }
  readU32(a: number): Dma<number> { return this.ram.readU32(a); }
  readU64(a: number): Dma<bigint> { return this.ram.readU64(a); }
  writeU8(a: number, v: number): Dma<true> { return this.noted(a, 1, this.ram.writeU8(a, v)); }
  writeU16(a: number, v: number): Dma<true> { return this.noted(a, 2, this.ram.writeU16(a, v)); }
  writeU32(a: number, v: number): Dma<true> { return this.noted(a, 4, this.ram.writeU32(a, v)); }
  writeU64(a: number, v: bigint): Dma<true> { return this.noted(a, 8, this.ram.writeU64(a, v)); }
}

/** A foreign PCI bus: its own slots and config images, single-bit IRQ lines, its own port space. */
class ForeignPci implements PciBus {
  readonly fns = new Map<number, PciFunction>();
  /** The emulator's own copy of each function's config space (v86: device_spaces). */
  readonly images = new Map<number, Uint8Array>();
  readonly lines = new Map<number, boolean>();
  constructor(readonly io: IoBus) {}
  freeSlot(): number | null {
    return this.fns.has(5) ? null : 5;
  }
  add(fn: PciFunction, slot: number): PciAddress {
    this.fns.set(slot, fn);
    this.images.set(slot, fn.config.slice());
    const address = { bus: 0, slot, fn: 0 };
    fn.attach(this, address);
    return address;
  }
  mapBar(fn: PciFunction, bar: BarSpec, base: number) {
    return bar.kind === 'io' ? this.io.registerPorts(fn.owner, base, bar.size, bar.handler) : this.io.registerMmio(fn.owner, base, bar.size, bar.handler);
  }
  unmapBar(fn: PciFunction, bar: BarSpec, base: number): void {
    if (bar.kind === 'io') this.io.unregisterPorts(fn.owner, base);
    else this.io.unregisterMmio(fn.owner, base);
  }
  reportConflict(): void {}
  intxRoute(fn: PciFunction): number | null {
    return pirqRoute(fn.address.slot, fn.interruptPin);
  }
  intxChanged(fn: PciFunction, asserted: boolean): void {
    this.lines.set(this.intxRoute(fn)!, asserted);
  }
  /** The guest wrote the emulator's config space; the adapter feeds it to the function. */
  guestConfigWrite(slot: number, at: number, bytes: number[]): void {
    const image = this.images.get(slot)!;
    image.set(bytes, at);
    this.images.set(slot, this.fns.get(slot)!.feedConfigImage(image));
  }
}

describe('a device model on a foreign machine, through the VMM core\'s interfaces only', () => {
  it('the RTL8139 decodes where the foreign config space says, DMAs through the memory\'s write path and raises its foreign INTx line', () => {
    const clock = new VirtualClock();
    const telemetry = new Telemetry();
    const io = new IoBus(telemetry);
    const memory = new WatchedMemory(new GuestRam(1 << 20));
    const pci = new ForeignPci(io);
    const failures: string[] = [];
    const scope: FailStopScope = { name: 'net0', get stopped() { return failures.length > 0; }, fail: (m) => void failures.push(m) };
    const isa: IoSpace = io;
    const irqs: IrqController = { setIrq: () => { throw new Error('a PCI NIC raises no ISA IRQ'); } };
    const ctx: DeviceContext = {
      vmName: 'foreign', memory, io: isa, pic: irqs, pci, clock: guardedClock(clock, scope), telemetry,
      log: new Logger([], memorySink([])).child('net0'), fail: (_id, m) => scope.fail(m), scope,
    };
    const nic = createRtl8139(ctx, { id: 'net0', className: 'RTL8139', line: 1, mac: new Uint8Array([0x52, 0x54, 0, 1, 2, 3]), params: {} });
    if ('error' in nic) throw new Error(nic.error);
    const [wire, end] = createLink(clock, ['wire', 'net0']);
    nic.attach(end);
    // The guest (through the emulator) places BAR0 at 0xD000 and turns on I/O and bus mastering.
    pci.guestConfigWrite(5, 0x10, [0x01, 0xd0, 0, 0]);
    pci.guestConfigWrite(5, 0x04, [0x05, 0x00]);
    const port = (p: number): number => 0xd000 + p;
    expect(io.inb(port(0))).toBe(0x52); // IDR0 decoded at the new base
    // Receive: ring at 0x10000, RE, ROK interrupts.
    io.outl(port(0x30), 0x10000);
    io.outl(port(0x44), 0x0f); // accept all
    io.outb(port(0x37), 0x08);
    io.outw(port(0x3c), 0x01);
    const frame = new Uint8Array(64);
    frame.set([0x52, 0x54, 0, 1, 2, 3], 0);
    frame[12] = 0x08;
    wire.send(frame);
    clock.runUntil(() => false, 5);
    expect(io.inw(port(0x3e)) & 1).toBe(1); // ROK
    expect(pci.lines.get(pirqRoute(5, 1)!)).toBe(true);
    // Interrupt Disable set in the emulator's image reaches the function: the line drops.
    pci.guestConfigWrite(5, 0x05, [0x04]);
    expect(pci.lines.get(pirqRoute(5, 1)!)).toBe(false);
    expect(failures).toEqual([]);
    // The packet header (status ROK) is in guest memory. (The RTL8139 model stores it through a
    // live view today, which an emulator with a JIT would not see: it should use writeWith.)
    const ring = memory.read(0x10000, 8);
    expect(ring instanceof Uint8Array && ring[0]! & 1).toBe(1);
  });
});
