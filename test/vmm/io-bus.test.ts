import { describe, expect, it } from 'vitest';
import { IoBus, type IoHandler } from '../../src/vmm/io-bus.js';
import { Telemetry } from '../../src/vmm/telemetry.js';

function recorder(): IoHandler & { writes: [number, number, number][] } {
  const writes: [number, number, number][] = [];
  return {
    writes,
    read: (off, size) => 0x1000 * size + off,
    write: (off, size, v) => {
      writes.push([off, size, v]);
    },
  };
}

describe('IoBus', () => {
  it('dispatches port I/O relative to the registered base and counts exits by kind and device', () => {
    const t = new Telemetry();
    const bus = new IoBus(t);
    const h = recorder();
    expect(bus.registerPorts('nic', 0xc000, 0x100, h)).toEqual({ ok: true });
    expect(bus.inw(0xc010)).toBe(0x2010);
    bus.outb(0xc037, 0x1ff);
    expect(h.writes).toEqual([[0x37, 1, 0xff]]);
    expect(t.total('io-in', 'nic')).toBe(1);
    expect(t.total('io-out', 'nic')).toBe(1);
    expect(t.total()).toBe(2);
  });

  it('reads all ones from an unclaimed port, as a floating PC bus does', () => {
    const t = new Telemetry();
    const bus = new IoBus(t);
    expect(bus.inb(0x80)).toBe(0xff);
    expect(bus.inl(0x80)).toBe(0xffffffff);
    expect(t.total(undefined, 'unclaimed')).toBe(2);
  });

  it('rejects overlapping port and MMIO registrations with a message naming both owners', () => {
    const bus = new IoBus(new Telemetry());
    bus.registerPorts('a', 0x300, 0x20, recorder());
    const r = bus.registerPorts('b', 0x310, 0x20, recorder());
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/b: .*overlap a/);
    bus.registerMmio('m1', 0xe0000000, 0x100, recorder());
    const m = bus.registerMmio('m2', 0xe00000f0, 0x100, recorder());
    expect(!m.ok && m.error).toMatch(/overlaps m1/);
    expect(bus.registerPorts('c', 0xfff0, 0x20, recorder()).ok).toBe(false);
  });

  it('frees ports on unregister so they can be claimed again', () => {
    const bus = new IoBus(new Telemetry());
    bus.registerPorts('a', 0x300, 0x20, recorder());
    expect(bus.unregisterPorts('a', 0x300)).toBe(true);
    expect(bus.registerPorts('b', 0x300, 0x20, recorder()).ok).toBe(true);
  });

  it('turns a throwing handler into a device fault, not a crash', () => {
    const bus = new IoBus(new Telemetry());
    const faults: string[] = [];
    bus.onFault = (owner) => faults.push(owner);
    bus.registerMmio('bad', 0x1000, 16, {
      read: () => {
        throw new Error('boom');
      },
      write: () => {
        throw new Error('boom');
      },
    });
    expect(bus.mmioRead(0x1004, 4)).toBe(0xffffffff);
    bus.mmioWrite(0x1004, 4, 1);
    expect(faults).toEqual(['bad', 'bad']);
  });
});

describe('exits by register', () => {
  it('counts each access against the register offset it hit', async () => {
    const { IoBus } = await import('../../src/vmm/io-bus.js');
    const { Telemetry } = await import('../../src/vmm/telemetry.js');
    const t = new Telemetry();
    const bus = new IoBus(t);
    bus.registerPorts('nic', 0xc000, 0x100, { read: () => 0, write: () => {} });
    for (let i = 0; i < 5; i++) bus.inw(0xc03e);
    bus.outw(0xc03e, 1);
    bus.outl(0xc010, 60);
    expect(t.registers('nic')).toEqual([
      { offset: 0x3e, kind: 'io-in', count: 5 },
      { offset: 0x3e, kind: 'io-out', count: 1 },
      { offset: 0x10, kind: 'io-out', count: 1 },
    ]);
    expect(t.report()).toContain('top registers: 0x3e io-in=5');
  });
});
