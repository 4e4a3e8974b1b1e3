import { describe, expect, it } from 'vitest';
import { IoBus } from '../../src/vmm/io-bus.js';
import { PicPair } from '../../src/vmm/pic.js';
import { Telemetry } from '../../src/vmm/telemetry.js';

function initialised(): { pic: PicPair; bus: IoBus } {
  const bus = new IoBus(new Telemetry());
  const pic = new PicPair();
  expect(pic.register(bus)).toEqual([]);
  // Linux's i8259 init sequence: vectors 0x20/0x28, cascade on IR2, 8086 mode.
  bus.outb(0x20, 0x11);
  bus.outb(0xa0, 0x11);
  bus.outb(0x21, 0x20);
  bus.outb(0xa1, 0x28);
  bus.outb(0x21, 0x04);
  bus.outb(0xa1, 0x02);
  bus.outb(0x21, 0x01);
  bus.outb(0xa1, 0x01);
  bus.outb(0x21, 0xfb); // all masked but the cascade
  bus.outb(0xa1, 0xff);
  return { pic, bus };
}

describe('8259A pair', () => {
  it('keeps a masked request pending and delivers it when unmasked', () => {
    const { pic, bus } = initialised();
    pic.setIrq(4, true);
    expect(pic.intr()).toBe(false);
    bus.outb(0x21, 0xfb & ~(1 << 4));
    expect(pic.intr()).toBe(true);
    expect(pic.acknowledge()).toBe(0x24);
  });

  it('delivers slave IRQs through the cascade with the slave vector base', () => {
    const { pic, bus } = initialised();
    bus.outb(0xa1, 0xff & ~(1 << 3)); // IRQ 11
    pic.setIrq(11, true);
    expect(pic.intr()).toBe(true);
    expect(pic.acknowledge()).toBe(0x2b);
    // ISR readable through OCW3
    bus.outb(0xa0, 0x0b);
    expect(bus.inb(0xa0)).toBe(1 << 3);
    bus.outb(0xa0, 0x20);
    bus.outb(0x20, 0x20);
    bus.outb(0xa0, 0x0b);
    expect(bus.inb(0xa0)).toBe(0);
  });

  it('blocks lower-priority IRQs while a higher one is in service, until EOI', () => {
    const { pic, bus } = initialised();
    bus.outb(0x21, 0x00);
    pic.setIrq(3, true);
    expect(pic.acknowledge()).toBe(0x23);
    pic.setIrq(5, true);
    expect(pic.intr()).toBe(false);
    bus.outb(0x20, 0x20); // non-specific EOI
    expect(pic.intr()).toBe(true);
    expect(pic.acknowledge()).toBe(0x25);
  });

  it('re-requests a level-triggered line that is still asserted after EOI (shared PCI INTx)', () => {
    const { pic, bus } = initialised();
    pic.setLevelTriggered(10);
    bus.outb(0xa1, 0xff & ~(1 << 2));
    pic.setIrq(10, true);
    expect(pic.acknowledge()).toBe(0x2a);
    bus.outb(0xa0, 0x20);
    bus.outb(0x20, 0x20);
    expect(pic.intr()).toBe(true);
    pic.setIrq(10, false);
    expect(pic.intr()).toBe(false);
  });

  it('latches an edge only once: a line held high does not re-request in edge mode', () => {
    const { pic, bus } = initialised();
    bus.outb(0x21, 0x00);
    pic.setIrq(4, true);
    expect(pic.acknowledge()).toBe(0x24);
    bus.outb(0x20, 0x20);
    expect(pic.intr()).toBe(false);
  });
});

describe('8259A and ELCR as 8-bit devices', () => {
  it('a word access is one byte per port: outw 0x4D0 sets both ELCRs, inw 0x20 reads IRR then IMR', () => {
    const { bus } = initialised();
    bus.outw(0x4d0, 0x0e20);
    expect(bus.inb(0x4d0)).toBe(0x20);
    expect(bus.inb(0x4d1)).toBe(0x0e);
    expect(bus.inw(0x4d0)).toBe(0x0e20);
    expect(bus.inw(0x20) >> 8).toBe(0xfb); // IMR as initialised
  });

  it('an IRQ number outside 0-15 is refused, not folded into another register', () => {
    const { pic } = initialised();
    expect(() => pic.setIrq(16, true)).toThrow(/IRQ 16 does not exist/);
    expect(() => pic.setIrq(-1, true)).toThrow(RangeError);
    expect(() => pic.line(99).raise()).toThrow(RangeError);
    expect(pic.intr()).toBe(false);
  });
});
