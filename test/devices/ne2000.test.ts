import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { Logger, memorySink } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { Vm } from '../../src/vmm/vm.js';
import { createNe2000 } from '../../src/devices/ne2000.js';
import { ethernetFcs, multicastHashBit } from '../../src/devices/ether-crc.js';

const MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

// Register offsets as the DP8390 datasheet names them (page 0 unless noted).
const CR = 0x00;
const PSTART = 0x01;
const PSTOP = 0x02;
const BNRY = 0x03;
const TPSR = 0x04;
const TSR = 0x04;
const TBCR0 = 0x05;
const TBCR1 = 0x06;
const ISR = 0x07;
const RSAR0 = 0x08;
const RSAR1 = 0x09;
const RBCR0 = 0x0a;
const RBCR1 = 0x0b;
const RCR = 0x0c;
const RSR = 0x0c;
const TCR = 0x0d;
const DCR = 0x0e;
const IMR = 0x0f;
const CNTR2 = 0x0f;
const CURR = 0x07; // page 1
const DATA = 0x10;
const RESET = 0x1f;

function machine(opts: { pci?: boolean; params?: string; flowControl?: boolean } = {}) {
  const pci = opts.pci ?? true;
  const registry = createDeviceRegistry();
  registry.register('NE2000', createNe2000);
  const xml = `<vm class="PC" name="t"><memory>16</memory><devices>
<device class="8259A" id="PIC"/>${pci ? '<device class="PCI" id="pci0"/>' : ''}
<device class="NE2000" id="net0">${pci ? '<bus>pci0</bus>' : ''}<mac>52:54:00:12:34:56</mac>${opts.params ?? ''}</device>
</devices></vm>`;
  const parsed = parseVmConfig(xml, { knownClasses: registry.names() });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const clock = new VirtualClock();
  const made = Vm.create(parsed.value, { clock, logger: new Logger([], memorySink([])), registry });
  if (!made.ok) throw new Error(made.errors.join('\n'));
  const vm = made.vm;
  const [wire, nicEnd] = createLink(clock, ['wire', 'nic'], { flowControl: opts.flowControl });
  vm.nics()[0]!.attach(nicEnd);
  const got: Uint8Array[] = [];
  wire.setReceiver((f) => void got.push(f));
  if (pci) {
    // I/O decode on, as pci_enable_device does (slot 1; firmware put BAR0 at 0xC000).
    vm.io.outl(0xcf8, 0x80000800 | 0x04);
    vm.io.outw(0xcfc, 0x1);
  }
  const base = pci ? 0xc000 : 0xc100;
  const io = {
    inb: (r: number) => vm.io.inb(base + r),
    inw: (r: number) => vm.io.inw(base + r),
    inl: (r: number) => vm.io.inl(base + r),
    outb: (r: number, v: number) => vm.io.outb(base + r, v),
    outw: (r: number, v: number) => vm.io.outw(base + r, v),
  };
  const run = (): void => void clock.runUntil(() => false, 1);
  const failure = (): string | undefined => vm.failures.get('net0');
  const counters = (): Record<string, number> => vm.nics()[0]!.counters();
  /** INTA# as the PCI status register reports it (bit 3). */
  const intx = (): boolean => {
    vm.io.outl(0xcf8, 0x80000800 | 0x04);
    return ((vm.io.inl(0xcfc) >>> 16) & 0x08) !== 0;
  };
  return { vm, clock, wire, got, io, run, failure, counters, intx };
}

type Io = ReturnType<typeof machine>['io'];

function setRemote(io: Io, addr: number, count: number): void {
  io.outb(RBCR0, count & 0xff);
  io.outb(RBCR1, count >> 8);
  io.outb(RSAR0, addr & 0xff);
  io.outb(RSAR1, addr >> 8);
}

/** Remote read in byte mode (DCR.WTS clear). */
function readBytes(io: Io, addr: number, count: number): number[] {
  io.outb(DCR, 0x48);
  setRemote(io, addr, count);
  io.outb(CR, 0x08); // remote read; neither STA nor STP: the run state stays as it is
  return Array.from({ length: count }, () => io.inb(DATA));
}

function writeBytes(io: Io, addr: number, data: number[]): void {
  io.outb(DCR, 0x48);
  setRemote(io, addr, data.length);
  io.outb(CR, 0x10);
  for (const b of data) io.outb(DATA, b);
}

/** The Linux 8390 bring-up: TX pages 0x40–0x4B, ring 0x4C–0x7F, BNRY one behind CURR, started. */
function bringUp(io: Io, rcr = 0x04, ring: { start: number; stop: number } = { start: 0x4c, stop: 0x80 }): void {
  io.outb(CR, 0x21);
  io.outb(DCR, 0x49);
  io.outb(RBCR0, 0);
  io.outb(RBCR1, 0);
  io.outb(RCR, 0x20);
  io.outb(TCR, 0x02);
  io.outb(TPSR, 0x40);
  io.outb(PSTART, ring.start);
  io.outb(BNRY, ring.stop - 1);
  io.outb(PSTOP, ring.stop);
  io.outb(ISR, 0xff);
  io.outb(IMR, 0);
  io.outb(CR, 0x61); // page 1
  MAC.forEach((b, i) => io.outb(0x01 + i, b));
  io.outb(CURR, ring.start);
  io.outb(CR, 0x21);
  io.outb(ISR, 0xff);
  io.outb(IMR, 0x3f);
  io.outb(CR, 0x22);
  io.outb(TCR, 0x00);
  io.outb(RCR, rcr);
}

function curr(io: Io): number {
  io.outb(CR, 0x62);
  const c = io.inb(CURR);
  io.outb(CR, 0x22);
  return c;
}

function frameTo(dst: number[], len: number, fill = 0xab): Uint8Array {
  const f = new Uint8Array(len).fill(fill);
  f.set(dst);
  f.set([2, 0, 0, 0, 0, 1], 6);
  f[12] = 0x08;
  f[13] = 0x00;
  return f;
}

describe('NE2000 (RTL8029) on PCI', () => {
  it('is 10ec:8029, class 020000, with one 32-byte I/O BAR and INTA# routed by firmware', () => {
    const { vm } = machine();
    const d = vm.describe().find((x) => x.id === 'net0')!;
    expect(d.pci).toMatchObject({ vendorId: 0x10ec, deviceId: 0x8029 });
    expect(d.ports).toEqual([{ base: 0xc000, length: 32 }]);
    expect(d.irq).not.toBeNull();
    vm.io.outl(0xcf8, 0x80000808);
    expect(vm.io.inl(0xcfc) >>> 8).toBe(0x020000);
  });

  it('a read of the reset port resets the 8390: CR 0x21, ISR.RST, IMR 0; writes do not clear RST, START does', () => {
    const { io } = machine();
    io.outb(IMR, 0x3f);
    io.outb(RCR, 0x20); // monitor: the unprogrammed ring may start
    io.outb(CR, 0x22);
    expect(io.inb(ISR) & 0x80).toBe(0); // started: RST clear
    io.inb(RESET);
    expect(io.inb(CR)).toBe(0x21);
    expect(io.inb(ISR)).toBe(0x80);
    io.outb(CR, 0xa1); // page 2 reads back the configuration
    expect(io.inb(IMR)).toBe(0x80); // IMR 0 (bit 7 reads 1 on page 2)
    io.outb(CR, 0x21);
    io.outb(ISR, 0xff);
    expect(io.inb(ISR)).toBe(0x80); // RST is status, not a latched event
    io.outb(CR, 0x22);
    expect(io.inb(ISR)).toBe(0x00);
    expect(io.inb(CR)).toBe(0x22);
  });

  it('reads the RTL8029 ID bytes 0x50 0x43 at page-0 offsets 0x0A/0x0B', () => {
    const { io } = machine();
    expect([io.inb(0x0a), io.inb(0x0b)]).toEqual([0x50, 0x43]);
  });

  it('keeps the station PROM at 0–31: each MAC byte doubled, bytes 28–31 "W"', () => {
    const { io } = machine();
    const prom = readBytes(io, 0, 32);
    expect(prom.slice(0, 12)).toEqual(MAC.flatMap((b) => [b, b]));
    expect(prom.slice(12, 28)).toEqual(new Array(16).fill(0));
    expect(prom.slice(28)).toEqual([0x57, 0x57, 0x57, 0x57]);
  });

  it('in word mode a byte read of the data port consumes a word (how ne2k-pci reads the PROM)', () => {
    const { io, failure, counters } = machine();
    io.outb(CR, 0x21);
    io.outb(DCR, 0x49);
    io.outb(RCR, 0x20); // monitor: the ring is not programmed yet, and need not be
    io.outb(TCR, 0x02);
    setRemote(io, 0, 32);
    io.outb(CR, 0x0a); // RREAD | START with PSTART = PSTOP = 0
    const sa = Array.from({ length: 32 }, () => io.inb(DATA));
    expect(sa.slice(0, 6)).toEqual(MAC);
    expect(sa.slice(14, 16)).toEqual([0x57, 0x57]);
    // The count (32 bytes = 16 words) ran out halfway; the rest read nothing, and that is no fault.
    expect(sa.slice(16)).toEqual(new Array(16).fill(0xff));
    expect(io.inb(ISR) & 0x40).toBe(0x40);
    expect(counters().dataPortIdleReads).toBe(16);
    expect(failure()).toBeUndefined();
  });

  it('moves data through the data port in byte and word mode, advancing RSAR, setting RDC at count 0', () => {
    const { io } = machine();
    io.outb(CR, 0x21);
    io.outb(ISR, 0xff);
    writeBytes(io, 0x4000, [1, 2, 3, 4, 5]);
    expect(io.inb(ISR) & 0x40).toBe(0x40);
    expect(io.inb(RSAR0) | (io.inb(RSAR1) << 8)).toBe(0x4005); // CRDA
    io.outb(ISR, 0x40);
    expect(io.inb(ISR) & 0x40).toBe(0);
    // Word mode: little-endian words (DCR.BOS clear).
    io.outb(DCR, 0x49);
    setRemote(io, 0x4100, 4);
    io.outb(CR, 0x10);
    io.outw(DATA, 0x2211);
    expect(io.inb(ISR) & 0x40).toBe(0); // half done
    io.outw(DATA, 0x4433);
    expect(io.inb(ISR) & 0x40).toBe(0x40);
    expect(readBytes(io, 0x4100, 4)).toEqual([0x11, 0x22, 0x33, 0x44]);
    expect(readBytes(io, 0x4000, 5)).toEqual([1, 2, 3, 4, 5]);
    io.outb(DCR, 0x49);
    setRemote(io, 0x4000, 4);
    io.outb(CR, 0x08);
    expect(io.inw(DATA)).toBe(0x0201);
    expect(io.inw(DATA)).toBe(0x0403);
    // In byte mode a 16-bit access is two byte transfers (the ISA bus splits it).
    io.outb(DCR, 0x48);
    setRemote(io, 0x4001, 2);
    io.outb(CR, 0x08);
    expect(io.inw(DATA)).toBe(0x0302);
  });

  it('a zero-length remote DMA completes at once', () => {
    const { io } = machine();
    io.outb(ISR, 0xff);
    setRemote(io, 0x4000, 0);
    io.outb(CR, 0x0a | 0x01);
    expect(io.inb(ISR) & 0x40).toBe(0x40);
  });

  it('a remote read wraps from PSTOP to PSTART, so a packet split by the ring end reads whole', () => {
    const { io } = machine();
    io.outb(CR, 0x21);
    io.outb(PSTART, 0x4c);
    io.outb(PSTOP, 0x50);
    writeBytes(io, 0x4ffe, [0xaa, 0xbb]);
    writeBytes(io, 0x4c00, [0xcc, 0xdd]);
    expect(readBytes(io, 0x4ffe, 4)).toEqual([0xaa, 0xbb, 0xcc, 0xdd]);
  });

  it('transmits TBCR bytes from page TPSR, then TSR.PTX and ISR.PTX, and interrupts while unmasked', () => {
    const { io, got, run, intx, counters } = machine();
    bringUp(io);
    const frame = [...frameTo([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 60).map((_, i) => i)];
    writeBytes(io, 0x4000, frame);
    io.outb(ISR, 0xff);
    io.outb(TPSR, 0x40);
    io.outb(TBCR0, 60);
    io.outb(TBCR1, 0);
    io.outb(CR, 0x26);
    expect(io.inb(CR) & 0x04).toBe(0); // TXP clears when the frame has gone
    expect(io.inb(TSR) & 0x01).toBe(1);
    expect(io.inb(ISR) & 0x02).toBe(0x02);
    expect(intx()).toBe(true);
    io.outb(ISR, 0x02); // write 1 to clear
    expect(io.inb(ISR) & 0x02).toBe(0);
    expect(intx()).toBe(false);
    run();
    expect(got.map((f) => [...f])).toEqual([frame]);
    expect(counters().txFrames).toBe(1);
  });

  it('IRQ follows ISR & IMR: masked events stay pending and fire when unmasked', () => {
    const { io, wire, run, intx } = machine();
    bringUp(io);
    io.outb(IMR, 0x00);
    wire.send(frameTo(MAC, 64));
    run();
    expect(io.inb(ISR) & 0x01).toBe(1);
    expect(intx()).toBe(false);
    io.outb(IMR, 0x01);
    expect(intx()).toBe(true);
    io.outb(ISR, 0x01);
    expect(intx()).toBe(false);
  });

  it('stores a received frame with its 4-byte header, padding to 60 and the FCS; CURR advances', () => {
    const { io, wire, run, counters } = machine();
    bringUp(io);
    const f = frameTo(MAC, 42);
    wire.send(f);
    run();
    expect(io.inb(ISR) & 0x01).toBe(1);
    expect(io.inb(RSR) & 0x01).toBe(1);
    expect(curr(io)).toBe(0x4d);
    const hdr = readBytes(io, 0x4c00, 4);
    expect(hdr).toEqual([0x01, 0x4d, 64, 0]); // PRX, next page, 60 + 4 CRC bytes
    const body = readBytes(io, 0x4c04, 64);
    const padded = new Uint8Array(60);
    padded.set(f);
    expect(body.slice(0, 60)).toEqual([...padded]);
    const fcs = ethernetFcs(padded);
    expect(body.slice(60)).toEqual([fcs & 0xff, (fcs >>> 8) & 0xff, (fcs >>> 16) & 0xff, fcs >>> 24]);
    expect(counters()).toMatchObject({ rxFrames: 1, rxBytes: 42 });
  });

  it('a packet that runs past PSTOP continues at PSTART, and the next-page pointer wraps', () => {
    const { io, wire, run } = machine();
    bringUp(io, 0x04, { start: 0x4c, stop: 0x54 });
    // Three 1000-byte frames take 4 pages each: the second starts at 0x50 and wraps to 0x4c.
    const frames = [1, 2, 3].map((n) => frameTo(MAC, 1000, n));
    wire.send(frames[0]!);
    run();
    expect(curr(io)).toBe(0x50);
    io.outb(BNRY, 0x4f); // the driver took the first packet
    wire.send(frames[1]!);
    run();
    expect(curr(io)).toBe(0x4c);
    const hdr = readBytes(io, 0x5000, 4);
    expect(hdr.slice(0, 2)).toEqual([0x01, 0x4c]);
    expect(hdr[2]! | (hdr[3]! << 8)).toBe(1004);
    const body = readBytes(io, 0x5004, 1000); // the remote read wraps with the ring
    expect(body).toEqual([...frames[1]!]);
  });

  it('overflows when the ring is full: OVW and the missed-packet tally, nothing overwritten until OVW is cleared', () => {
    const { io, wire, run, counters } = machine({ flowControl: false });
    bringUp(io, 0x04, { start: 0x4c, stop: 0x54 });
    for (let i = 0; i < 4; i++) wire.send(frameTo(MAC, 600, i)); // 3 pages each: two fit in 7
    run();
    expect(counters().rxFrames).toBe(2);
    expect(counters().rxDropOverflow).toBe(2);
    expect(io.inb(ISR) & 0x10).toBe(0x10);
    expect(io.inb(CNTR2)).toBe(2);
    expect(io.inb(CNTR2)).toBe(0); // cleared when read
    // The datasheet's recovery: stop, loopback, start, free the ring, clear OVW, leave loopback.
    io.outb(CR, 0x21);
    io.outb(TCR, 0x02);
    io.outb(CR, 0x22);
    io.outb(BNRY, 0x51);
    wire.send(frameTo(MAC, 600, 9)); // looped back: the wire is not heard
    run();
    expect(counters().rxDropLoopback).toBe(1);
    io.outb(ISR, 0x10);
    io.outb(TCR, 0x00);
    wire.send(frameTo(MAC, 600, 7));
    run();
    expect(counters().rxFrames).toBe(3);
    expect(readBytes(io, 0x5200, 2)).toEqual([0x01, 0x4d]); // pages 0x52, 0x53, 0x4c: next is 0x4d
  });

  it('filters by RCR: own address always, broadcast with AB, multicast with AM and the MAR hash, all physical with PRO', () => {
    const { io, wire, run, counters } = machine();
    const other = [0x52, 0x54, 0x00, 0x99, 0x99, 0x99];
    const bcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    const mcast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    const stored = (dst: number[]): number => {
      const before = counters().rxFrames;
      wire.send(frameTo(dst, 60));
      run();
      return counters().rxFrames - before;
    };
    bringUp(io, 0x00);
    expect([stored(MAC), stored(other), stored(bcast), stored(mcast)]).toEqual([1, 0, 0, 0]);
    io.outb(RCR, 0x04);
    expect([stored(bcast), stored(mcast)]).toEqual([1, 0]);
    io.outb(RCR, 0x0c);
    expect(stored(mcast)).toBe(0); // MAR all zero
    const bit = multicastHashBit(new Uint8Array(mcast));
    io.outb(CR, 0x62);
    io.outb(0x08 + (bit >> 3), 1 << (bit & 7));
    io.outb(CR, 0x22);
    expect(stored(mcast)).toBe(1);
    expect(readBytes(io, 0x4c00, 1)[0]).toBe(0x01); // the first packet, unicast: PRX without PHY
    io.outb(RCR, 0x14);
    expect([stored(other), stored(mcast)]).toEqual([1, 0]);
    expect(counters().rxDropFiltered).toBeGreaterThan(0);
  });

  it('in monitor mode (RCR.MON) accepted packets are tallied as missed, never stored', () => {
    const { io, wire, run, counters } = machine();
    bringUp(io, 0x24);
    wire.send(frameTo(MAC, 60));
    run();
    expect(counters().rxFrames).toBe(0);
    expect(io.inb(CNTR2)).toBe(1);
    expect(curr(io)).toBe(0x4c);
  });
});

describe('NE2000 fail-stop', () => {
  it('starting the receiver with PSTART >= PSTOP stops the device, not the VM', () => {
    const { io, vm, failure } = machine();
    io.outb(CR, 0x21);
    io.outb(PSTART, 0x60);
    io.outb(PSTOP, 0x50);
    io.outb(RCR, 0x04);
    io.outb(CR, 0x22);
    expect(failure()).toMatch(/PSTART 0x60 is not below PSTOP 0x50/);
    expect(vm.state).toBe('running');
    expect(io.inb(CR)).toBe(0xff); // a stopped device answers nothing
  });

  it('a ring outside the packet RAM (pages 0x40–0xBF) is refused', () => {
    const { io, failure } = machine();
    bringUp(io, 0x20, { start: 0x30, stop: 0x50 });
    expect(failure()).toBeUndefined(); // monitor mode: nothing is stored yet
    io.outb(RCR, 0x04);
    expect(failure()).toMatch(/outside the packet RAM/);
  });

  it('a runtime BNRY outside the ring is refused', () => {
    const { io, failure } = machine();
    bringUp(io);
    io.outb(BNRY, 0x90);
    expect(failure()).toMatch(/BNRY 0x90 is outside the ring/);
  });

  it('remote DMA writes outside the packet RAM (into the PROM) are refused', () => {
    const { io, failure } = machine();
    writeBytes(io, 0x0000, [1]);
    expect(failure()).toMatch(/remote DMA write to 0x0000/);
  });

  it('writing the data port with no remote write set up is refused', () => {
    const { io, failure } = machine();
    io.outb(DATA, 0x12);
    expect(failure()).toMatch(/no remote DMA write/);
  });

  it('TXP while stopped, and a transmit from outside RAM, are refused', () => {
    const a = machine();
    a.io.outb(TPSR, 0x40);
    a.io.outb(TBCR0, 60);
    a.io.outb(CR, 0x25);
    expect(a.failure()).toMatch(/TXP with the NIC stopped/);
    const b = machine();
    bringUp(b.io);
    b.io.outb(TPSR, 0xbf);
    b.io.outb(TBCR0, 0x00);
    b.io.outb(TBCR1, 0x02);
    b.io.outb(CR, 0x26);
    expect(b.failure()).toMatch(/outside the packet RAM/);
  });

  it('CR with RD=000 ("not allowed") is refused', () => {
    const { io, failure } = machine();
    io.outb(CR, 0x00);
    expect(failure()).toMatch(/not allowed/);
  });
});

describe('NE2000 on ISA (no PCI bus)', () => {
  it('sits at 0xC100–0xC11F, IRQ 11, and raises the IRQ through the PIC', () => {
    const { vm, io, wire, run } = machine({ pci: false });
    const d = vm.describe().find((x) => x.id === 'net0')!;
    expect(d.ports).toEqual([{ base: 0xc100, length: 32 }]);
    expect(d.irq).toBe(11);
    // Unmask IRQ 11 after a minimal 8259 initialisation, then watch the slave's IRR.
    vm.io.outb(0x20, 0x11);
    vm.io.outb(0xa0, 0x11);
    vm.io.outb(0x21, 0x20);
    vm.io.outb(0xa1, 0x28);
    vm.io.outb(0x21, 0x04);
    vm.io.outb(0xa1, 0x02);
    vm.io.outb(0x21, 0x01);
    vm.io.outb(0xa1, 0x01);
    expect(readBytes(io, 0, 2)).toEqual([0x52, 0x52]);
    bringUp(io);
    wire.send(frameTo(MAC, 60));
    run();
    vm.io.outb(0xa0, 0x0a); // OCW3: read IRR
    expect(vm.io.inb(0xa0) & (1 << 3)).toBe(1 << 3);
  });

  it('takes <port> and <irq> overrides', () => {
    const { vm, io } = machine({ pci: false, params: '<port>0x300</port><irq>9</irq>' });
    const d = vm.describe().find((x) => x.id === 'net0')!;
    expect(d.ports).toEqual([{ base: 0x300, length: 32 }]);
    expect(d.irq).toBe(9);
    expect(vm.io.inb(0x30a)).toBe(0x50);
    void io;
  });
});

describe('NE2000 as Linux 8390 drives it (issue 10)', () => {
  it('a ring that wraps exactly, with BNRY = PSTART − 1 as ei_receive writes it, keeps receiving', () => {
    const { io, wire, run, counters, failure } = machine();
    bringUp(io, 0x04, { start: 0x4c, stop: 0x54 });
    // 1000-byte frames take 4 pages: the second ends exactly at PSTOP, so CURR wraps to PSTART.
    wire.send(frameTo(MAC, 1000, 1));
    run();
    io.outb(BNRY, 0x4f); // next − 1 after the first packet
    wire.send(frameTo(MAC, 1000, 2));
    run();
    expect(curr(io)).toBe(0x4c);
    io.outb(BNRY, 0x4b); // next − 1 with next = PSTART: PSTART − 1, what Linux writes
    expect(failure()).toBeUndefined();
    expect(io.inb(BNRY)).toBe(0x4b);
    // The ring is empty again (CURR = BNRY + 1 going round): a whole ring less one page is free.
    wire.send(frameTo(MAC, 1000, 3));
    run();
    expect(curr(io)).toBe(0x50);
    expect(readBytes(io, 0x4c04, 3)).toEqual([...frameTo(MAC, 1000, 3).subarray(0, 3)]);
    io.outb(CR, 0x22);
    io.outb(BNRY, 0x4f);
    expect(counters()).toMatchObject({ rxFrames: 3, rxDropOverflow: 0, rxHeldRingFull: 0 });
    expect(failure()).toBeUndefined();
  });

  it('with BNRY = PSTART − 1 the ring is full when CURR reaches PSTOP − 1: the frame waits, then goes in', () => {
    const { io, wire, run, counters } = machine();
    bringUp(io, 0x04, { start: 0x4c, stop: 0x54 });
    io.outb(BNRY, 0x4b);
    // Seven free pages: one 1000-byte frame (4 pages) fits, a second one does not.
    wire.send(frameTo(MAC, 1000, 1));
    wire.send(frameTo(MAC, 1000, 2));
    run();
    expect(counters()).toMatchObject({ rxFrames: 1, rxHeldRingFull: 1, rxDropOverflow: 0 });
    io.outb(BNRY, 0x4f); // the driver took the first packet
    run();
    expect(counters()).toMatchObject({ rxFrames: 2, rxDropOverflow: 0 });
    expect(curr(io)).toBe(0x4c);
  });

  it("ei_rx_overrun's recovery (STOP, clear RBCR, loopback, START, drain, clear OVW) works with BNRY = PSTART − 1", () => {
    const { io, wire, run, counters, failure } = machine({ flowControl: false });
    bringUp(io, 0x04, { start: 0x4c, stop: 0x54 });
    io.outb(BNRY, 0x4b);
    for (let i = 0; i < 3; i++) wire.send(frameTo(MAC, 600, i)); // 3 pages each: two fit in 7
    run();
    expect(counters()).toMatchObject({ rxFrames: 2, rxDropOverflow: 1 });
    expect(io.inb(ISR) & 0x10).toBe(0x10);
    io.outb(CR, 0x21); // E8390_NODMA + PAGE0 + STOP
    expect(io.inb(ISR) & 0x80).toBe(0x80); // the RST bit Linux's older drivers poll
    io.outb(RBCR0, 0);
    io.outb(RBCR1, 0);
    io.outb(TCR, 0x02); // E8390_TXOFF: loopback
    io.outb(CR, 0x22); // START — the ring's BNRY is still PSTART − 1 here
    expect(failure()).toBeUndefined();
    io.outb(BNRY, 0x4e); // ei_receive drained the first packet
    io.outb(BNRY, 0x51); // and the second
    io.outb(ISR, 0x01 | 0x04);
    io.outb(ISR, 0x10); // ENISR_OVER
    io.outb(TCR, 0x00); // E8390_TXCONFIG
    wire.send(frameTo(MAC, 600, 9));
    run();
    expect(counters().rxFrames).toBe(3);
    expect(failure()).toBeUndefined();
  });

  it('a giant frame from the wire is dropped and counted, never held: the frame behind it arrives', () => {
    const { io, wire, run, counters, failure } = machine(); // the link holds frames on 'busy'
    bringUp(io);
    wire.send(frameTo(MAC, 1642, 1)); // an ICMP echo with 1600 bytes of payload, from a 1700-MTU tap
    wire.send(frameTo(MAC, 20_000, 2)); // bigger than the whole ring
    wire.send(frameTo(MAC, 1518, 3)); // the largest frame there is (VLAN-tagged)
    wire.send(frameTo(MAC, 100, 4));
    run();
    expect(counters()).toMatchObject({ rxDropGiant: 2, rxFrames: 2, rxHeldRingFull: 0 });
    expect(readBytes(io, 0x4c00, 4)).toEqual([0x01, 0x52, (1522 & 0xff), 1522 >> 8]);
    expect(readBytes(io, 0x5204, 15)[14]).toBe(4);
    expect(failure()).toBeUndefined();
  });

  it('a frame that needs more pages than the whole ring is dropped as missed, not held for good', () => {
    const { io, wire, run, counters } = machine();
    bringUp(io, 0x04, { start: 0x4c, stop: 0x50 }); // 4 pages: at most 3 free
    wire.send(frameTo(MAC, 1000, 1)); // 4 pages
    wire.send(frameTo(MAC, 500, 2)); // 2 pages
    run();
    expect(counters()).toMatchObject({ rxDropRingTooSmall: 1, rxFrames: 1, rxHeldRingFull: 0 });
    expect(io.inb(CNTR2)).toBe(1);
    expect(io.inb(ISR) & 0x10).toBe(0); // no overflow: the ring is fine for what fits it
  });

  it('a guest transmit over 1518 bytes or under 60 reports PTX and never reaches the wire', () => {
    const { io, got, run, counters, failure } = machine();
    bringUp(io);
    const send = (len: number): number => {
      io.outb(ISR, 0xff);
      io.outb(TPSR, 0x40);
      io.outb(TBCR0, len & 0xff);
      io.outb(TBCR1, len >> 8);
      io.outb(CR, 0x26);
      return io.inb(ISR) & 0x0a;
    };
    expect(send(0x8000)).toBe(0x02); // 32 KiB from page 0x40: the whole packet RAM
    expect(send(1519)).toBe(0x02);
    expect(send(20)).toBe(0x02);
    expect(send(0)).toBe(0x02);
    expect(io.inb(TSR) & 0x01).toBe(1);
    expect(send(1518)).toBe(0x02);
    expect(send(60)).toBe(0x02);
    run();
    expect(got.map((f) => f.length)).toEqual([1518, 60]);
    expect(counters()).toMatchObject({ txDropGiant: 2, txDropRunt: 2, txFrames: 2 });
    expect(failure()).toBeUndefined();
  });
});

describe('NE2000 under the exact register sequence of Linux ne2k-pci + 8390', () => {
  it('probe, NS8390_init(dev, 1), set_multicast_list, a transmit and ei_receive (32-bit data port) all work', () => {
    const { io, vm, wire, got, run, failure } = machine();
    const outl = (r: number, v: number): void => vm.io.outl(0xc000 + r, v);
    const inl = (r: number): number => vm.io.inl(0xc000 + r);
    // ne2k_pci_init_one: reg0, the tally-counter check (page 1 offset 0x0D is MAR5), reset.
    expect(io.inb(CR)).not.toBe(0xff);
    io.outb(CR, 0x61);
    const regd = io.inb(0x0d);
    io.outb(0x0d, 0xff);
    io.outb(CR, 0x20);
    io.inb(0x0d);
    expect(io.inb(0x0d)).toBe(0);
    void regd;
    io.outb(RESET, io.inb(RESET));
    expect(io.inb(ISR) & 0x80).toBe(0x80);
    io.outb(ISR, 0xff);
    // The station-address program_seq, then 32 byte reads in word mode.
    for (const [v, r] of [[0x21, CR], [0x49, DCR], [0, RBCR0], [0, RBCR1], [0, IMR], [0xff, ISR], [0x20, RCR], [0x02, TCR], [32, RBCR0], [0, RBCR1], [0, RSAR0], [0, RSAR1], [0x0a, CR]] as const) io.outb(r, v);
    const sa = Array.from({ length: 32 }, () => io.inb(DATA));
    expect(sa.slice(0, 6)).toEqual(MAC);
    io.outb(DCR, 0x49);
    // set_realtek_fdx: page 3, unlock CONFIG3, full duplex, lock, page 0.
    io.outb(CR, 0xe0);
    io.outb(0x01, 0xc0);
    io.outb(0x06, 0x40);
    io.outb(0x01, 0x00);
    io.outb(CR, 0x20);
    // NS8390_init(dev, 1) with ne2k-pci's pages: TX 0x40, RX 0x4C–0x80.
    for (const [v, r] of [[0x21, CR], [0x49, DCR], [0, RBCR0], [0, RBCR1], [0x20, RCR], [0x02, TCR], [0x40, TPSR], [0x4c, PSTART], [0x7f, BNRY], [0x80, PSTOP], [0xff, ISR], [0, IMR], [0x61, CR]] as const) io.outb(r, v);
    MAC.forEach((b, i) => {
      io.outb(0x01 + i, b);
      expect(io.inb(0x01 + i)).toBe(b);
    });
    io.outb(CURR, 0x4c);
    for (const [v, r] of [[0x21, CR], [0xff, ISR], [0x3f, IMR], [0x22, CR], [0x00, TCR], [0x04, RCR]] as const) io.outb(r, v);
    // do_set_multicast_list: RCR, page 1 without STA/STP, MAR written and read back, page 0, RCR.
    io.outb(RCR, 0x04);
    io.outb(CR, 0x60);
    for (let i = 0; i < 8; i++) {
      io.outb(0x08 + i, 0);
      expect(io.inb(0x08 + i)).toBe(0);
    }
    io.outb(CR, 0x20);
    io.outb(RCR, 0x04);
    expect(io.inb(CR)).toBe(0x22); // still running
    // ei_start_xmit: IMR 0, ne2k_pci_block_output with outsl, RDC polled, NS8390_trigger_send.
    const frame = frameTo([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 62, 0x5a);
    io.outb(IMR, 0);
    io.outb(CR, 0x22);
    io.outb(RBCR0, 62);
    io.outb(RBCR1, 0);
    io.outb(RSAR0, 0);
    io.outb(RSAR1, 0x40);
    io.outb(CR, 0x12);
    for (let i = 0; i + 4 <= 62; i += 4) outl(DATA, frame[i]! | (frame[i + 1]! << 8) | (frame[i + 2]! << 16) | (frame[i + 3]! << 24));
    io.outw(DATA, frame[60]! | (frame[61]! << 8));
    expect(io.inb(ISR) & 0x40).toBe(0x40);
    io.outb(ISR, 0x40);
    io.outb(CR, 0x20);
    expect(io.inb(CR) & 0x04).toBe(0);
    io.outb(TBCR0, 62);
    io.outb(TBCR1, 0);
    io.outb(TPSR, 0x40);
    io.outb(CR, 0x26);
    io.outb(IMR, 0x3f);
    run();
    expect(got.map((f) => [...f])).toEqual([[...frame]]);
    // ei_receive with ne2k_pci_get_8390_hdr (one inl) and block_input (insl + tail).
    wire.send(frameTo(MAC, 101, 0x33));
    run();
    io.outb(CR, 0x60);
    const rxing = io.inb(CURR);
    io.outb(CR, 0x20);
    const thisFrame = io.inb(BNRY) + 1 >= 0x80 ? 0x4c : io.inb(BNRY) + 1;
    const header = (): number[] => {
      io.outb(CR, 0x22);
      io.outb(RBCR0, 4);
      io.outb(RBCR1, 0);
      io.outb(RSAR0, 0);
      io.outb(RSAR1, thisFrame);
      io.outb(CR, 0x0a);
      const h = inl(DATA);
      io.outb(ISR, 0x40);
      return [h & 0xff, (h >>> 8) & 0xff, (h >>> 16) & 0xffff];
    };
    const [status, next, count] = header();
    expect([status, next, rxing]).toEqual([0x01, 0x4d, 0x4d]);
    const len = count! - 4;
    expect(len).toBe(101);
    io.outb(CR, 0x22);
    io.outb(RBCR0, len & 0xff);
    io.outb(RBCR1, len >> 8);
    io.outb(RSAR0, 4);
    io.outb(RSAR1, thisFrame);
    io.outb(CR, 0x0a);
    const body: number[] = [];
    for (let i = 0; i < len >> 2; i++) {
      const w = inl(DATA);
      body.push(w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, w >>> 24);
    }
    body.push(io.inb(DATA)); // count & 1
    io.outb(ISR, 0x40);
    expect(body).toEqual([...frameTo(MAC, 101, 0x33)]);
    io.outb(BNRY, next! - 1);
    io.outb(ISR, 0x05);
    expect(failure()).toBeUndefined();
  });
});

describe('NE2000 guest-chosen accesses', () => {
  it('a wide access from the registers into the data port is refused, naming it (it was half ignored)', () => {
    const { vm, failure } = machine();
    vm.io.outl(0xc000 + 0x0e, 0x12345678);
    expect(failure()).toMatch(/4-byte write at offset 0x0e runs from the 8390 registers into the data port/);
    const b = machine();
    b.vm.io.inw(0xc000 + 0x0f);
    expect(b.failure()).toMatch(/2-byte read at offset 0x0f/);
  });
});
