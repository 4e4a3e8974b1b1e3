import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { Logger, memorySink } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { Vm } from '../../src/vmm/vm.js';
import { isNic } from '../../src/vmm/device.js';
import { ethernetFcs, multicastHashBit } from '../../src/devices/ether-crc.js';
import type { Serial16550 } from '../../src/devices/serial.js';

const XML = `<vm class="PC" name="t"><memory>16</memory><devices>
<device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
<device class="SERIAL" id="com1"><port>0x3F8</port><irq>4</irq></device>
<device class="RTL8139" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>
</devices></vm>`;

function machine(link: { flowControl?: boolean } = {}) {
  const registry = createDeviceRegistry();
  const parsed = parseVmConfig(XML, { knownClasses: registry.names() });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const clock = new VirtualClock();
  const made = Vm.create(parsed.value, { clock, logger: new Logger([], memorySink([])), registry });
  if (!made.ok) throw new Error(made.errors.join('\n'));
  const vm = made.vm;
  const nic = vm.nics()[0]!;
  const [wire, nicEnd] = createLink(clock, ['wire', 'nic'], link);
  nic.attach(nicEnd);
  const got: Uint8Array[] = [];
  wire.setReceiver((f) => void got.push(f));
  // Enable I/O and bus mastering as a driver does.
  vm.io.outl(0xcf8, 0x80000800 | 0x04);
  vm.io.outw(0xcfc, 0x7);
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

describe('RTL8139 model', () => {
  it('resets as the datasheet says: CR 0x01 (BUFE), CAPR 0xFFF0, IDR = MAC, RTL8139 version bits', () => {
    const { vm, io } = machine();
    vm.io.outb(io + 0x37, 0x10);
    expect(vm.io.inb(io + 0x37)).toBe(0x01);
    expect(vm.io.inw(io + 0x38)).toBe(0xfff0);
    expect([0, 1, 2, 3, 4, 5].map((i) => vm.io.inb(io + i))).toEqual([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    expect(vm.io.inl(io + 0x40) & 0x7cc00000).toBe(0x60000000);
    expect(vm.io.inw(io + 0x64) & 0x04).toBe(0x04); // BMSR link up
  });

  it('transmits from TSAD0 and sets OWN|TOK (TSD0 reads 0xA03C after 60 bytes) and ISR.TOK', () => {
    const { vm, clock, got, io } = machine();
    const frame = new Uint8Array(60).map((_, i) => i);
    vm.memory.write(0x10000, frame);
    vm.io.outb(io + 0x37, 0x0c);
    vm.io.outw(io + 0x3c, 0xffff);
    vm.io.outl(io + 0x20, 0x10000);
    vm.io.outl(io + 0x10, 60);
    expect(vm.io.inl(io + 0x10)).toBe(0xa03c);
    expect(vm.io.inw(io + 0x3e) & 0x04).toBe(0x04);
    vm.io.outw(io + 0x3e, 0x04);
    expect(vm.io.inw(io + 0x3e)).toBe(0);
    clock.runUntil(() => got.length === 1, 10);
    expect([...got[0]!]).toEqual([...frame]);
  });

  it('receives into the ring with header, padded frame and FCS; CAPR advances; drops when full', () => {
    const { vm, clock, wire, io } = machine({ flowControl: false });
    vm.io.outl(io + 0x30, 0x20000); // RBSTART
    vm.io.outl(io + 0x44, 0x0000000a | 0x80); // APM | AB | WRAP, 8 KiB ring
    vm.io.outb(io + 0x37, 0x0c);
    vm.io.outw(io + 0x3c, 0x0001);
    const f = new Uint8Array(42);
    f.set([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    f[12] = 0x08;
    wire.send(f);
    const other = new Uint8Array(42);
    other.set([0x52, 0x54, 0x00, 0x99, 0x99, 0x99]);
    wire.send(other); // not ours: filtered silently
    clock.runUntil(() => false, 1);
    expect(vm.io.inb(io + 0x37) & 1).toBe(0);
    const m = vm.memory.bytes;
    expect(m[0x20000]! | (m[0x20001]! << 8)).toBe(0x1001); // ROK | PAM
    expect(m[0x20002]! | (m[0x20003]! << 8)).toBe(64); // 60 padded + FCS
    expect([...m.subarray(0x20004, 0x20004 + 42)]).toEqual([...f]);
    expect(vm.io.inw(io + 0x3a)).toBe(68);
    expect(vm.io.inw(io + 0x3e) & 1).toBe(1);
    vm.io.outw(io + 0x38, 68 - 16);
    expect(vm.io.inb(io + 0x37) & 1).toBe(1);
    // Fill the ring without reading: it must refuse and count, never overwrite unread data.
    for (let i = 0; i < 200; i++) wire.send(f.slice());
    clock.runUntil(() => false, 1);
    expect(vm.nics()[0]!.counters().rxDropRingFull).toBeGreaterThan(0);
    expect(vm.io.inw(io + 0x3e) & 0x10).toBe(0x10);
  });

  it('a DMA address outside guest memory fail-stops the NIC, not the VM', () => {
    const { vm, io } = machine();
    vm.io.outb(io + 0x37, 0x0c);
    vm.io.outl(io + 0x20, 0x7fff0000);
    vm.io.outl(io + 0x10, 60);
    expect(vm.failures.get('net0')).toMatch(/DMA outside guest memory/);
    expect(vm.state).toBe('running');
    expect(isNic(vm.device('net0')!)).toBe(true);
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
    for (let n = 0; n <= 100; n++) expect(ethernetFcs(data.subarray(0, n))).toBe(bitwise(data.subarray(0, n)));
    expect(ethernetFcs(data)).toBe(bitwise(data));
  });
});
