import { describe, expect, it } from 'vitest';
import { Eeprom93c46, rtl8139EepromImage } from '../../src/devices/rtl8139/eeprom-93c46.js';

/** Drive the part's pins as a driver does: one Microwire command with CS held high. */
function command(e: Eeprom93c46, bits: number[], thenRead = 0): number {
  e.setPins(false, false, false);
  e.setPins(true, false, false);
  for (const b of bits) {
    e.setPins(true, false, b === 1);
    e.setPins(true, true, b === 1);
  }
  let v = 0;
  for (let i = 0; i < thenRead; i++) {
    e.setPins(true, false, false);
    e.setPins(true, true, false);
    v = (v << 1) | e.dataOut;
  }
  return v;
}
const addr = (a: number): number[] => Array.from({ length: 6 }, (_, i) => (a >> (5 - i)) & 1);
const word = (v: number): number[] => Array.from({ length: 16 }, (_, i) => (v >> (15 - i)) & 1);
const READ = (a: number): number[] => [1, 1, 0, ...addr(a)];
const EWEN = [1, 0, 0, 1, 1, 0, 0, 0, 0];
const EWDS = [1, 0, 0, 0, 0, 0, 0, 0, 0];

describe('93C46 EEPROM (64 x 16)', () => {
  it('holds the RTL8139 image: 0x8129, PCI IDs, the MAC in words 7-9 low byte first', () => {
    const w = rtl8139EepromImage(new Uint8Array([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]), { vendorId: 0x10ec, deviceId: 0x8139, subsystemVendorId: 0x10ec, subsystemId: 0x8139 });
    expect([...w.subarray(0, 10)]).toEqual([0x8129, 0x10ec, 0x8139, 0x10ec, 0x8139, 0, 0, 0x5452, 0x1200, 0x5634]);
    expect(w.length).toBe(64);
  });

  it('ignores leading zeros before the start bit, and a read wraps from word 63 to word 0', () => {
    const e = new Eeprom93c46(Array.from({ length: 64 }, (_, i) => 0x100 + i));
    expect(command(e, [0, 0, 0, ...READ(5)], 16)).toBe(0x105);
    expect(command(e, READ(63), 32)).toBe(((0x13f << 16) | 0x100) >>> 0);
  });

  it('drops CS mid-command: the part forgets it, and DO is not driven', () => {
    const e = new Eeprom93c46([0xffff]);
    e.setPins(true, false, false);
    for (const b of [1, 1, 0, 0]) {
      e.setPins(true, false, b === 1);
      e.setPins(true, true, b === 1);
    }
    e.setPins(false, false, false);
    expect(e.dataOut).toBe(0);
    expect(command(e, READ(0), 16)).toBe(0xffff);
  });

  it('WRITE, ERASE, ERAL and WRAL program only between EWEN and EWDS, and report ready on the next CS rise', () => {
    const e = new Eeprom93c46([1, 2, 3]);
    command(e, [1, 0, 1, ...addr(1), ...word(0xabcd)]);
    expect(command(e, READ(1), 16)).toBe(2); // write-protected at power-on
    command(e, EWEN);
    command(e, [1, 0, 1, ...addr(1), ...word(0xabcd)]);
    e.setPins(false, false, false);
    e.setPins(true, false, false);
    expect(e.dataOut).toBe(1); // ready
    expect(command(e, READ(1), 16)).toBe(0xabcd);
    command(e, [1, 1, 1, ...addr(2)]); // ERASE word 2
    expect(command(e, READ(2), 16)).toBe(0xffff);
    command(e, [1, 0, 0, 0, 1, 0, 0, 0, 0, ...word(0x1234)]); // WRAL
    expect(command(e, READ(40), 16)).toBe(0x1234);
    command(e, [1, 0, 0, 1, 0, 0, 0, 0, 0]); // ERAL
    expect(command(e, READ(0), 16)).toBe(0xffff);
    command(e, EWDS);
    command(e, [1, 0, 1, ...addr(0), ...word(0)]);
    expect(command(e, READ(0), 16)).toBe(0xffff);
    expect(e.writes).toBe(4);
  });
});
