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

describe('IoBus bounds: guest-chosen ports, addresses and widths', () => {
  /** A handler that records every access and throws if one reaches past its registered length. */
  function strict(length: number) {
    const seen: [string, number, number][] = [];
    const check = (off: number, size: number): void => {
      if (off < 0 || off + size > length) throw new RangeError(`access at ${off}+${size} past ${length}`);
    };
    return {
      seen,
      read: (off: number, size: 1 | 2 | 4) => (check(off, size), seen.push(['r', off, size]), 0x44332211 & (size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff)),
      write: (off: number, size: 1 | 2 | 4, v: number) => void (check(off, size), seen.push(['w', off, size]), v),
    };
  }

  it('an access crossing a region\'s end reaches each byte\'s own decoder, never the handler past its length', () => {
    const bus = new IoBus(new Telemetry());
    const faults: string[] = [];
    bus.onFault = (o, e) => faults.push(`${o} ${String(e)}`);
    const a = strict(4);
    const b = strict(2);
    bus.registerPorts('a', 0x300, 4, a);
    bus.registerPorts('b', 0x304, 2, b);
    // inl 0x302: bytes 0x302, 0x303 from a, 0x304, 0x305 from b.
    expect(bus.inl(0x302)).toBe(0x11111111);
    expect(a.seen).toEqual([['r', 3, 1], ['r', 2, 1]]);
    expect(b.seen).toEqual([['r', 1, 1], ['r', 0, 1]]);
    bus.outl(0x305, 0x01020304); // 0x305 → b, 0x306..0x308 → nothing
    expect(b.seen.at(-1)).toEqual(['w', 1, 1]);
    expect(bus.inw(0x2ff)).toBe(0x11ff); // 0x2FF floats high, 0x300 is a's
    expect(faults).toEqual([]);
  });

  it('port numbers wrap at 16 bits and an access past 0xFFFF floats high there', () => {
    const bus = new IoBus(new Telemetry());
    const h = strict(2);
    bus.registerPorts('top', 0xfffe, 2, h);
    expect(bus.inl(0xfffe)).toBe(0xffff1111); // two bytes from 'top', two past the end of port space
    expect(bus.inb(0x1fffe)).toBe(0x11); // DX holds 16 bits
    bus.outl(0xffff, 0xdeadbeef);
    expect(h.seen.at(-1)).toEqual(['w', 1, 1]);
  });

  it('an MMIO access crossing a region\'s end is split the same way, and addresses are 32-bit', () => {
    const bus = new IoBus(new Telemetry());
    const faults: string[] = [];
    bus.onFault = (o, e) => faults.push(`${o} ${String(e)}`);
    const m = strict(0x100);
    bus.registerMmio('m', 0xe0000000, 0x100, m);
    expect(bus.mmioRead(0xe00000fe, 4)).toBe(0xffff1111);
    bus.mmioWrite(0xe00000ff, 2, 0xabcd);
    expect(m.seen.at(-1)).toEqual(['w', 0xff, 1]);
    const top = strict(0x10);
    bus.registerMmio('top', 0xfffffff0, 0x10, top);
    expect(bus.mmioRead(0xfffffffe, 4)).toBe(0xffff1111); // nothing above 4 GiB
    expect(faults).toEqual([]);
  });

  it('an access width a CPU cannot issue is the caller\'s fault, not the device\'s', () => {
    const bus = new IoBus(new Telemetry());
    const faults: string[] = [];
    bus.onFault = (o) => faults.push(o);
    bus.registerPorts('a', 0x300, 4, strict(4));
    expect(() => bus.in(0x300, 3 as 1)).toThrow(RangeError);
    expect(() => bus.mmioWrite(0x300, 8 as 4, 0)).toThrow(RangeError);
    expect(faults).toEqual([]);
  });
});
