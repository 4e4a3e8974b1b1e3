import { describe, expect, it } from 'vitest';
import { cabledVm } from './cabled-vm.js';
import { ethernetFcs, multicastHashBit, tableFcs } from '../../src/devices/ether-crc.js';
import type { Serial16550 } from '../../src/devices/serial.js';

const XML = `<vm class="PC" name="t"><memory>16</memory><devices>
<device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
<device class="SERIAL" id="com1"><port>0x3F8</port><irq>4</irq></device>
<device class="RTL8139" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>
</devices></vm>`;

function machine(link: { flowControl?: boolean } = {}) {
  const { vm, clock, wire, got } = cabledVm(XML, link);
  return { vm, clock, wire, got, io: 0xc000 };
}

describe('ether CRC', () => {
  it('computes the IEEE 802.3 FCS (check value of "123456789")', () => {
    expect(ethernetFcs(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });
  it('hashes a MAC for the multicast filter as the big-endian CRC\'s top six bits', () => {
    // The broadcast address lands in the top bit of MAR7, as drivers that set it for ALLMULTI expect.
    expect(multicastHashBit(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))).toBe(0x3f);
  });
});

describe('16550 serial model', () => {
  it('passes the scratch-register probe, sends THR bytes to the host and interrupts on input', () => {
    const { vm, clock } = machine();
    const uart = vm.device('com1') as unknown as Serial16550;
    const out: number[] = [];
    uart.onOutput = (b) => out.push(...b);
    vm.io.outb(0x3ff, 0x5a);
    expect(vm.io.inb(0x3ff)).toBe(0x5a);
    vm.io.outb(0x3f8, 0x41);
    vm.io.outb(0x3f8, 0x42);
    clock.runUntil(() => out.length === 2, 10);
    expect(String.fromCharCode(...out)).toBe('AB');
    expect(vm.io.inb(0x3fd) & 0x60).toBe(0x60); // THRE | TEMT
    vm.io.outb(0x3fc, 0x08); // OUT2
    vm.io.outb(0x3f9, 0x01); // receive-data interrupts
    uart.input(new Uint8Array([0x68]));
    expect(vm.io.inb(0x3fa) & 0x0f).toBe(0x04); // IIR: received data available
    expect(vm.io.inb(0x3fd) & 1).toBe(1);
    expect(vm.io.inb(0x3f8)).toBe(0x68);
    expect(vm.io.inb(0x3fa) & 0x0f).toBe(0x01); // no interrupt pending
  });
});

describe('ether CRC against the bitwise definition', () => {
  it('matches a plain bit-at-a-time CRC-32 for every length 0..100 and a full frame', () => {
    const bitwise = (d: Uint8Array): number => {
      let c = 0xffffffff;
      for (const b of d) {
        c ^= b;
        for (let k = 0; k < 8; k++) c = c & 1 ? (0xedb88320 ^ (c >>> 1)) >>> 0 : c >>> 1;
      }
      return (c ^ 0xffffffff) >>> 0;
    };
    const data = new Uint8Array(1514).map((_, i) => (i * 97 + 13) & 0xff);
    // Both implementations: the native one used where Node has it, and the tables otherwise.
    for (const fcs of [ethernetFcs, tableFcs]) {
      for (let n = 0; n <= 100; n++) expect(fcs(data.subarray(0, n))).toBe(bitwise(data.subarray(0, n)));
      expect(fcs(data)).toBe(bitwise(data));
      expect(fcs(data.subarray(3, 1001))).toBe(bitwise(data.subarray(3, 1001)));
    }
  });
});
