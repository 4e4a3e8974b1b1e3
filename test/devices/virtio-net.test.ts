import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { internetChecksum, pseudoHeaderSum, foldSum } from '../../net/wire/checksum.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { Logger, memorySink } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { Vm } from '../../src/vmm/vm.js';
import { createVirtioNet, type VirtioNet } from '../../src/devices/virtio-net.js';

/**
 * The device model driven the way a driver drives it: port I/O to BAR0 and rings written into
 * guest memory by hand, laid out as the virtio spec's legacy interface says (§2.7.2).
 */
const XML = `<vm class="PC" name="t"><memory>16</memory><devices>
<device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
<device class="LNX_VIRTIO_NIC" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>
</devices></vm>`;

const MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const IO = 0xc000;
const Q = 256;
const RX_PFN = 0x20; // ring at 0x20000
const TX_PFN = 0x30; // ring at 0x30000
const F = { CSUM: 1 << 0, GUEST_CSUM: 1 << 1, MAC: 1 << 5, GUEST_TSO4: 1 << 7, MRG_RXBUF: 1 << 15, STATUS: 1 << 16, INDIRECT: 1 << 28, EVENT_IDX: 1 << 29 };
const NEXT = 1;
const WRITE = 2;
const INDIRECT = 4;

function machine(link: { flowControl?: boolean } = {}) {
  const registry = createDeviceRegistry();
  registry.register('LNX_VIRTIO_NIC', createVirtioNet);
  const parsed = parseVmConfig(XML, { knownClasses: registry.names() });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const clock = new VirtualClock();
  const made = Vm.create(parsed.value, { clock, logger: new Logger([], memorySink([])), registry });
  if (!made.ok) throw new Error(made.errors.join('\n'));
  const vm = made.vm;
  const dev = vm.device('net0') as VirtioNet;
  const [wire, nicEnd] = createLink(clock, ['wire', 'nic'], link);
  dev.attach(nicEnd);
  const got: Uint8Array[] = [];
  wire.setReceiver((f) => void got.push(f));
  vm.io.outl(0xcf8, 0x80000800 | 0x04);
  vm.io.outw(0xcfc, 0x7); // I/O decode, memory decode, bus master
  const m = vm.memory;
  const ringOf = (pfn: number) => {
    const desc = pfn * 4096;
    const avail = desc + 16 * Q;
    const used = Math.ceil((avail + 6 + 2 * Q) / 4096) * 4096;
    return { desc, avail, used };
  };
  const rings = [ringOf(RX_PFN), ringOf(TX_PFN)] as const;
  const api = {
    vm,
    dev,
    clock,
    wire,
    nicEnd,
    got,
    m,
    rings,
    intx: () => (dev.pci.readConfig(0x06, 2) & 0x08) !== 0,
    failure: () => vm.failures.get('net0'),
    setDesc(table: number, i: number, addr: number, len: number, flags: number, next = 0) {
      m.writeU64(table + 16 * i, BigInt(addr));
      m.writeU32(table + 16 * i + 8, len);
      m.writeU16(table + 16 * i + 12, flags);
      m.writeU16(table + 16 * i + 14, next);
    },
    /** Make `head` available on queue q and notify (as virtqueue_add + kick). */
    offer(q: 0 | 1, head: number, notify = true) {
      const r = rings[q];
      const idx = m.readU16(r.avail + 2) as number;
      m.writeU16(r.avail + 4 + 2 * (idx % Q), head);
      m.writeU16(r.avail + 2, (idx + 1) & 0xffff);
      if (notify) vm.io.outw(IO + 0x10, q);
    },
    usedIdx: (q: 0 | 1) => m.readU16(rings[q].used + 2) as number,
    used: (q: 0 | 1, k: number) => ({ id: m.readU32(rings[q].used + 4 + 8 * (k % Q)) as number, len: m.readU32(rings[q].used + 8 + 8 * (k % Q)) as number }),
    /** The driver's bring-up: reset, ACK, DRIVER, features, queues, DRIVER_OK. */
    bringUp(features = F.MAC | F.STATUS | F.MRG_RXBUF | F.CSUM | F.INDIRECT) {
      vm.io.outb(IO + 0x12, 0);
      vm.io.outb(IO + 0x12, 1);
      vm.io.outb(IO + 0x12, 3);
      vm.io.outl(IO + 0x04, features);
      vm.io.outw(IO + 0x0e, 0);
      vm.io.outl(IO + 0x08, RX_PFN);
      vm.io.outw(IO + 0x0e, 1);
      vm.io.outl(IO + 0x08, TX_PFN);
      vm.io.outb(IO + 0x12, 7);
    },
  };
  return api;
}

/** An IPv4/TCP frame to us with `payload` data bytes (contents only; checksums not checked here). */
function tcpSegment(payload: number): Uint8Array {
  const f = new Uint8Array(54 + payload);
  f.set(MAC, 0);
  f.set([0x02, 0, 0, 0, 0, 1], 6);
  f[12] = 0x08;
  const ipLen = 40 + payload;
  f.set([0x45, 0, ipLen >> 8, ipLen & 0xff, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
  f[34 + 12] = 0x50;
  for (let i = 54; i < f.length; i++) f[i] = (i * 13) & 0xff;
  return f;
}

/** An IPv4/UDP frame to us with its checksum field holding the pseudo-header sum (CHECKSUM_PARTIAL). */
function udpFrame(payload: number[], dst = MAC): Uint8Array {
  const f = new Uint8Array(14 + 20 + 8 + payload.length);
  f.set(dst, 0);
  f.set([0x02, 0, 0, 0, 0, 1], 6);
  f[12] = 0x08;
  const ipLen = 20 + 8 + payload.length;
  f.set([0x45, 0, ipLen >> 8, ipLen & 0xff, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
  const udpLen = 8 + payload.length;
  f.set([0x30, 0x39, 0x00, 0x07, udpLen >> 8, udpLen & 0xff, 0, 0], 34);
  f.set(payload, 42);
  const pseudo = foldSum(pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 17, udpLen));
  f[40] = pseudo >> 8;
  f[41] = pseudo & 0xff;
  return f;
}

describe('virtio-net legacy PCI device', () => {
  it('identifies as 1af4:1000 subsystem 1, class 020000, with a legacy I/O BAR', () => {
    const { dev } = machine();
    expect(dev.pci.readConfig(0x00, 4)).toBe(0x10001af4);
    expect(dev.pci.readConfig(0x2e, 2)).toBe(1);
    expect(dev.pci.readConfig(0x08, 4) >>> 8).toBe(0x020000);
    expect(dev.pci.barAddress(0)).toBe(IO);
    expect(dev.model).toBe('virtio');
  });

  it('offers MAC, STATUS, MRG_RXBUF, CSUM, GUEST_CSUM, INDIRECT_DESC; keeps what the driver accepts; reset clears it', () => {
    const { vm, failure } = machine();
    const host = vm.io.inl(IO + 0x00);
    for (const f of [F.MAC, F.STATUS, F.MRG_RXBUF, F.CSUM, F.GUEST_CSUM, F.INDIRECT]) expect(host & f).toBe(f);
    expect([0, 1, 2, 3, 4, 5].map((i) => vm.io.inb(IO + 0x14 + i))).toEqual(MAC);
    expect(vm.io.inw(IO + 0x1a)).toBe(1); // VIRTIO_NET_S_LINK_UP
    vm.io.outb(IO + 0x12, 1);
    vm.io.outb(IO + 0x12, 3);
    vm.io.outl(IO + 0x04, F.MAC | F.MRG_RXBUF);
    expect(vm.io.inl(IO + 0x04)).toBe(F.MAC | F.MRG_RXBUF);
    expect(vm.io.inb(IO + 0x12)).toBe(3);
    vm.io.outb(IO + 0x12, 0);
    expect(vm.io.inl(IO + 0x04)).toBe(0);
    expect(vm.io.inb(IO + 0x12)).toBe(0);
    expect(failure()).toBeUndefined();
  });

  it('fail-stops a driver that accepts a feature it was not offered', () => {
    const { vm, failure } = machine();
    vm.io.outl(IO + 0x04, 1 << 22); // MQ: not offered
    expect(failure()).toMatch(/did not offer/);
    expect(vm.state).toBe('running');
  });

  it('sets up queues from a PFN: size 256 for rx and tx, no queue 2; a ring outside memory fail-stops', () => {
    const { vm, failure } = machine();
    vm.io.outw(IO + 0x0e, 0);
    expect(vm.io.inw(IO + 0x0c)).toBe(256);
    vm.io.outl(IO + 0x08, RX_PFN);
    expect(vm.io.inl(IO + 0x08)).toBe(RX_PFN);
    vm.io.outw(IO + 0x0e, 1);
    expect(vm.io.inw(IO + 0x0c)).toBe(256);
    expect(vm.io.inl(IO + 0x08)).toBe(0);
    vm.io.outw(IO + 0x0e, 2);
    expect(vm.io.inw(IO + 0x0c)).toBe(0); // no control queue
    vm.io.outw(IO + 0x0e, 1);
    vm.io.outl(IO + 0x08, (16 * 1024 * 1024) / 4096 - 1); // ring would run past the end of 16 MB
    expect(failure()).toMatch(/queue 1: ring at PFN 0xfff .* outside guest memory/);
  });

  it('transmits a header+frame chain, strips the 12-byte header and fills in the UDP checksum at csum_start+csum_offset', () => {
    const t = machine();
    t.bringUp();
    const frame = udpFrame([1, 2, 3, 4, 5]);
    const hdr = new Uint8Array(12);
    const hv = new DataView(hdr.buffer);
    hv.setUint8(0, 1); // NEEDS_CSUM
    hv.setUint16(6, 34, true); // csum_start: the UDP header
    hv.setUint16(8, 6, true); // csum_offset: UDP checksum field
    t.m.write(0x40000, hdr);
    t.m.write(0x41000, frame);
    const tx = t.rings[1].desc;
    t.setDesc(tx, 0, 0x40000, 12, NEXT, 1);
    t.setDesc(tx, 1, 0x41000, frame.length, 0);
    t.offer(1, 0);
    expect(t.usedIdx(1)).toBe(1);
    expect(t.used(1, 0)).toEqual({ id: 0, len: 0 });
    t.clock.runUntil(() => t.got.length === 1, 10);
    const out = t.got[0]!;
    expect(out.length).toBe(frame.length);
    expect([...out.subarray(0, 40)]).toEqual([...frame.subarray(0, 40)]);
    // Valid: the sum over pseudo-header and UDP datagram folds to all ones.
    const udp = out.subarray(34);
    expect(internetChecksum(udp, pseudoHeaderSum(out.subarray(26, 30), out.subarray(30, 34), 17, udp.length))).toBe(0);
    expect(t.dev.counters().txChecksumsFilled).toBe(1);
    expect(t.dev.counters().txFrames).toBe(1);
  });

  it('raises ISR bit 0 with INTx held until ISR is read, which clears both', () => {
    const t = machine();
    t.bringUp();
    const pkt = new Uint8Array(12 + 60);
    pkt.set(MAC, 12);
    t.m.write(0x40000, pkt);
    t.setDesc(t.rings[1].desc, 3, 0x40000, pkt.length, 0);
    t.offer(1, 3);
    expect(t.intx()).toBe(true);
    expect(t.vm.io.inb(IO + 0x13)).toBe(1);
    expect(t.intx()).toBe(false);
    expect(t.vm.io.inb(IO + 0x13)).toBe(0);
  });

  it('takes a transmit packet through an indirect table', () => {
    const t = machine();
    t.bringUp();
    const frame = udpFrame([9, 9]);
    t.m.write(0x40000, new Uint8Array(12));
    t.m.write(0x41000, frame);
    const table = 0x42000;
    t.setDesc(table, 0, 0x40000, 12, NEXT, 1);
    t.setDesc(table, 1, 0x41000, frame.length, 0);
    t.setDesc(t.rings[1].desc, 5, table, 32, INDIRECT);
    t.offer(1, 5);
    t.clock.runUntil(() => t.got.length === 1, 10);
    expect([...t.got[0]!]).toEqual([...frame]);
    expect(t.used(1, 0).id).toBe(5);
  });

  it('receives into a posted buffer with a 12-byte header (num_buffers 1) and raises an interrupt', () => {
    const t = machine();
    t.bringUp();
    t.setDesc(t.rings[0].desc, 0, 0x50000, 2048, WRITE);
    t.offer(0, 0);
    const f = udpFrame([7, 7, 7]);
    t.wire.send(f);
    t.clock.runUntil(() => false, 1);
    expect(t.usedIdx(0)).toBe(1);
    expect(t.used(0, 0)).toEqual({ id: 0, len: 12 + f.length });
    const hdr = t.m.read(0x50000, 12) as Uint8Array;
    expect([...hdr]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]); // only num_buffers = 1
    expect([...(t.m.read(0x5000c, f.length) as Uint8Array)]).toEqual([...f]);
    expect(t.vm.io.inb(IO + 0x13)).toBe(1);
    expect(t.dev.counters().rxFrames).toBe(1);
  });

  it('spreads a frame across several mergeable buffers and says so in num_buffers', () => {
    const t = machine();
    t.bringUp();
    for (let i = 0; i < 4; i++) {
      t.setDesc(t.rings[0].desc, i, 0x50000 + i * 0x100, 64, WRITE);
      t.offer(0, i, false);
    }
    const f = udpFrame(Array.from({ length: 100 }, (_, i) => i)); // 142 bytes + 12 = 154: three buffers
    t.wire.send(f);
    t.clock.runUntil(() => false, 1);
    expect(t.usedIdx(0)).toBe(3);
    expect([0, 1, 2].map((k) => t.used(0, k))).toEqual([
      { id: 0, len: 64 },
      { id: 1, len: 64 },
      { id: 2, len: 26 },
    ]);
    expect(t.m.readU16(0x5000a)).toBe(3);
    const joined = new Uint8Array([...(t.m.read(0x50000, 64) as Uint8Array), ...(t.m.read(0x50100, 64) as Uint8Array), ...(t.m.read(0x50200, 26) as Uint8Array)]);
    expect([...joined.subarray(12)]).toEqual([...f]);
  });

  it('GUEST_TSO4: tells the far end it takes 64 KiB TCP segments, writes the GSO header, withdraws on reset', () => {
    const plain = machine();
    plain.bringUp(F.MAC | F.MRG_RXBUF);
    expect(plain.wire.gso).toBe(false);
    // A giant that no GSO guest asked for is dropped, as a NIC drops giants.
    plain.setDesc(plain.rings[0].desc, 0, 0x50000, 2048, WRITE);
    plain.offer(0, 0, false);
    plain.wire.send(tcpSegment(3000));
    plain.clock.runUntil(() => false, 1);
    expect(plain.dev.counters().rxDropTooBig).toBe(1);
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.GUEST_CSUM | F.GUEST_TSO4);
    expect(t.wire.gso).toBe(true);
    for (let i = 0; i < 4; i++) {
      t.setDesc(t.rings[0].desc, i, 0x50000 + i * 0x1000, 0x1000, WRITE);
      t.offer(0, i, false);
    }
    const f = tcpSegment(10_000); // 10054 bytes + 12: three 4 KiB buffers
    t.wire.send(f);
    t.clock.runUntil(() => false, 1);
    expect(t.usedIdx(0)).toBe(3);
    const hdr = t.m.read(0x50000, 12) as Uint8Array;
    expect(hdr[0]).toBe(2); // DATA_VALID: the checksums are complete
    expect(hdr[1]).toBe(1); // GSO_TCPV4
    expect(hdr[2]! | (hdr[3]! << 8)).toBe(54); // hdr_len: Ethernet + IPv4 + TCP
    expect(hdr[4]! | (hdr[5]! << 8)).toBe(1460); // gso_size
    expect(hdr[10]! | (hdr[11]! << 8)).toBe(3); // num_buffers
    const joined = new Uint8Array([...(t.m.read(0x50000, 0x1000) as Uint8Array), ...(t.m.read(0x51000, 0x1000) as Uint8Array), ...(t.m.read(0x52000, 10054 + 12 - 0x2000) as Uint8Array)]);
    expect([...joined.subarray(12)]).toEqual([...f]);
    expect(t.dev.counters().rxGsoFrames).toBe(1);
    t.vm.io.outb(IO + 0x12, 0);
    expect(t.wire.gso).toBe(false);
    expect(t.failure()).toBeUndefined();
  });

  it('without MRG_RXBUF uses a 10-byte header and one buffer per frame', () => {
    const t = machine();
    t.bringUp(F.MAC | F.STATUS);
    t.setDesc(t.rings[0].desc, 0, 0x50000, 1600, WRITE);
    t.offer(0, 0);
    const f = udpFrame([1]);
    t.wire.send(f);
    t.clock.runUntil(() => false, 1);
    expect(t.used(0, 0)).toEqual({ id: 0, len: 10 + f.length });
    expect([...(t.m.read(0x5000a, f.length) as Uint8Array)]).toEqual([...f]);
  });

  it('refuses a frame when no receive buffer is posted, and counts it on both sides', () => {
    const t = machine({ flowControl: false });
    t.bringUp();
    t.wire.send(udpFrame([1]));
    t.clock.runUntil(() => false, 1);
    expect(t.dev.counters().rxDropNoBuffer).toBe(1);
    expect(t.nicEnd.stats.rxDrops).toBe(1);
    expect(t.intx()).toBe(false);
  });

  it('accepts its own unicast, broadcast and multicast; ignores other unicast', () => {
    const t = machine();
    t.bringUp();
    for (let i = 0; i < 8; i++) {
      t.setDesc(t.rings[0].desc, i, 0x50000 + i * 0x800, 2048, WRITE);
      t.offer(0, i, false);
    }
    t.wire.send(udpFrame([1], MAC));
    t.wire.send(udpFrame([2], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    t.wire.send(udpFrame([3], [0x01, 0x00, 0x5e, 0, 0, 1]));
    t.wire.send(udpFrame([4], [0x52, 0x54, 0, 0x99, 0x99, 0x99]));
    t.clock.runUntil(() => false, 1);
    expect(t.usedIdx(0)).toBe(3);
    expect(t.dev.counters().rxDropFiltered).toBe(1);
  });

  it('honours VRING_AVAIL_F_NO_INTERRUPT and asks for no rx notifications (VRING_USED_F_NO_NOTIFY)', () => {
    const t = machine();
    t.bringUp();
    expect(t.m.readU16(t.rings[0].used) as number).toBe(1);
    t.m.writeU16(t.rings[1].avail, 1); // NO_INTERRUPT on tx
    t.m.write(0x40000, new Uint8Array(12 + 60));
    t.setDesc(t.rings[1].desc, 0, 0x40000, 72, 0);
    t.offer(1, 0);
    expect(t.usedIdx(1)).toBe(1);
    expect(t.intx()).toBe(false);
    expect(t.vm.io.inb(IO + 0x13)).toBe(0);
    expect(t.dev.counters().interruptsSuppressed).toBe(1);
  });

  it('with EVENT_IDX interrupts only when used.idx passes used_event', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.EVENT_IDX);
    const usedEvent = t.rings[1].avail + 4 + 2 * Q;
    t.m.writeU16(usedEvent, 1); // interrupt when the second buffer (index 1) is used
    t.m.write(0x40000, new Uint8Array(12 + 60));
    for (let i = 0; i < 2; i++) t.setDesc(t.rings[1].desc, i, 0x40000, 72, 0);
    t.offer(1, 0);
    expect(t.intx()).toBe(false);
    t.offer(1, 1);
    expect(t.intx()).toBe(true);
  });

  it('fail-stops on a descriptor chain that loops', () => {
    const t = machine();
    t.bringUp();
    const tx = t.rings[1].desc;
    t.setDesc(tx, 0, 0x40000, 12, NEXT, 1);
    t.setDesc(tx, 1, 0x41000, 60, NEXT, 0);
    t.offer(1, 0);
    expect(t.failure()).toMatch(/virtqueue 1: .*longer than its queue \(256\): a loop/);
    expect(t.vm.state).toBe('running');
    expect(t.dev.state).toBe('stopped');
  });

  it('fail-stops on a next index outside the table and on a buffer outside guest memory', () => {
    const a = machine();
    a.bringUp();
    a.setDesc(a.rings[1].desc, 0, 0x40000, 12, NEXT, 300);
    a.offer(1, 0);
    expect(a.failure()).toMatch(/descriptor 0 points to 300, queue has 256/);
    const b = machine();
    b.bringUp();
    b.setDesc(b.rings[1].desc, 0, 0x7fff0000, 72, 0);
    b.offer(1, 0);
    expect(b.failure()).toMatch(/buffer 0x7fff0000\+72 is outside guest memory/);
    const c = machine();
    c.bringUp();
    c.m.writeU16(c.rings[1].avail + 4, 999); // head index out of range
    c.m.writeU16(c.rings[1].avail + 2, 1);
    c.vm.io.outw(IO + 0x10, 1);
    expect(c.failure()).toMatch(/names descriptor 999/);
  });

  it('fail-stops on an indirect descriptor inside an indirect table', () => {
    const t = machine();
    t.bringUp();
    const outer = 0x42000;
    const inner = 0x43000;
    t.setDesc(inner, 0, 0x41000, 72, 0);
    t.setDesc(outer, 0, inner, 16, INDIRECT);
    t.setDesc(t.rings[1].desc, 0, outer, 16, INDIRECT);
    t.offer(1, 0);
    expect(t.failure()).toMatch(/indirect descriptor inside an indirect table/);
  });

  it('fail-stops on indirect descriptors when INDIRECT_DESC was not negotiated', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF);
    t.setDesc(t.rings[1].desc, 0, 0x42000, 16, INDIRECT);
    t.offer(1, 0);
    expect(t.failure()).toMatch(/INDIRECT_DESC was not negotiated/);
  });

  it('a stopped device refuses frames and keeps its line low', () => {
    const t = machine();
    t.bringUp();
    t.setDesc(t.rings[1].desc, 0, 0x40000, 12, NEXT, 0);
    t.offer(1, 0);
    t.setDesc(t.rings[0].desc, 0, 0x50000, 2048, WRITE);
    t.offer(0, 0);
    t.wire.send(udpFrame([1]));
    t.clock.runUntil(() => false, 1);
    expect(t.usedIdx(0)).toBe(0);
    expect(t.intx()).toBe(false);
  });
});
