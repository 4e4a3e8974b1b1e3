import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { isLent } from '../../net/lend-pool.js';
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
const CTRL_PFN = 0x38; // ring at 0x38000 (64 entries)
const CQ = 64;
const F = {
  CSUM: 1 << 0,
  GUEST_CSUM: 1 << 1,
  MAC: 1 << 5,
  GUEST_TSO4: 1 << 7,
  HOST_TSO4: 1 << 11,
  MRG_RXBUF: 1 << 15,
  STATUS: 1 << 16,
  CTRL_VQ: 1 << 17,
  CTRL_RX: 1 << 18,
  CTRL_RX_EXTRA: 1 << 20,
  CTRL_MAC_ADDR: 1 << 23,
  INDIRECT: 1 << 28,
  EVENT_IDX: 1 << 29,
};
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
  const ringOf = (pfn: number, size = Q) => {
    const desc = pfn * 4096;
    const avail = desc + 16 * size;
    const used = Math.ceil((avail + 6 + 2 * size) / 4096) * 4096;
    // used_event after the avail ring, avail_event after the used ring (§2.7.10).
    return { desc, avail, used, size, usedEvent: avail + 4 + 2 * size, availEvent: used + 4 + 8 * size };
  };
  const rings = [ringOf(RX_PFN), ringOf(TX_PFN), ringOf(CTRL_PFN, CQ)] as const;
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
    offer(q: 0 | 1 | 2, head: number, notify = true) {
      const r = rings[q];
      const idx = m.readU16(r.avail + 2) as number;
      m.writeU16(r.avail + 4 + 2 * (idx % r.size), head);
      m.writeU16(r.avail + 2, (idx + 1) & 0xffff);
      if (notify) vm.io.outw(IO + 0x10, q);
    },
    usedIdx: (q: 0 | 1 | 2) => m.readU16(rings[q].used + 2) as number,
    used: (q: 0 | 1 | 2, k: number) => ({ id: m.readU32(rings[q].used + 4 + 8 * (k % rings[q].size)) as number, len: m.readU32(rings[q].used + 8 + 8 * (k % rings[q].size)) as number }),
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
      if (features & F.CTRL_VQ) {
        vm.io.outw(IO + 0x0e, 2);
        vm.io.outl(IO + 0x08, CTRL_PFN);
      }
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

/** `f` (an IPv4/TCP frame) with the folded pseudo-header sum in its TCP checksum field (CHECKSUM_PARTIAL). */
function withPartialSum(f: Uint8Array): Uint8Array {
  const p = foldSum(pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, f.length - 34));
  f[50] = p >> 8;
  f[51] = p & 0xff;
  return f;
}

/** Whether an IPv4/TCP frame's TCP checksum is right. */
function tcpChecksumOk(f: Uint8Array): boolean {
  return internetChecksum(f.subarray(34), pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, f.length - 34)) === 0;
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

  it('sets up queues from a PFN: size 256 for rx and tx, 64 for control, no queue 3; a ring outside memory fail-stops', () => {
    const { vm, failure } = machine();
    vm.io.outw(IO + 0x0e, 0);
    expect(vm.io.inw(IO + 0x0c)).toBe(256);
    vm.io.outl(IO + 0x08, RX_PFN);
    expect(vm.io.inl(IO + 0x08)).toBe(RX_PFN);
    vm.io.outw(IO + 0x0e, 1);
    expect(vm.io.inw(IO + 0x0c)).toBe(256);
    expect(vm.io.inl(IO + 0x08)).toBe(0);
    vm.io.outw(IO + 0x0e, 2);
    expect(vm.io.inw(IO + 0x0c)).toBe(64); // the control queue, QEMU's size
    vm.io.outw(IO + 0x0e, 3);
    expect(vm.io.inw(IO + 0x0c)).toBe(0); // no multiqueue
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
    postRx(t, 4, 0x1000, 0x50000);
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
    const joined = rxJoined(t, 10054 + 12, 0x1000, 0x50000);
    expect([...joined.subarray(12)]).toEqual([...f]);
    expect(t.dev.counters().rxGsoFrames).toBe(1);
    t.vm.io.outb(IO + 0x12, 0);
    expect(t.wire.gso).toBe(false);
    expect(t.failure()).toBeUndefined();
  });

  it('partial checksums: offered only with GUEST_CSUM, handed in as NEEDS_CSUM (csum_start, csum_offset), finished for a guest without it', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.GUEST_CSUM | F.GUEST_TSO4);
    expect(t.wire.gsoChecksumPartial).toBe(true);
    postRx(t, 8, 0x1000, 0x50000);
    const f = withPartialSum(tcpSegment(10_000));
    t.wire.send(f.slice(), { checksumPartial: true });
    t.clock.runUntil(() => false, 1);
    const hdr = t.m.read(0x50000, 12) as Uint8Array;
    expect(hdr[0]).toBe(1); // NEEDS_CSUM, not DATA_VALID: the guest finishes (or trusts) the sum
    expect(hdr[1]).toBe(1); // GSO_TCPV4
    expect(hdr[6]! | (hdr[7]! << 8)).toBe(34); // csum_start: the TCP header
    expect(hdr[8]! | (hdr[9]! << 8)).toBe(16); // csum_offset: its checksum field
    const joined = rxJoined(t, 10054 + 12, 0x1000, 0x50000);
    expect([...joined.subarray(12)]).toEqual([...f]); // left as the sender left it
    // A frame sent without the word is a finished one: DATA_VALID as before.
    const whole = tcpSegment(3000);
    t.wire.send(whole);
    t.clock.runUntil(() => false, 1);
    expect((t.m.read(0x53000, 1) as Uint8Array)[0]).toBe(2);
    expect(t.dev.counters().rxPartialChecksums).toBe(1);
    t.vm.io.outb(IO + 0x12, 0);
    expect(t.wire.gsoChecksumPartial).toBe(false);

    // No GUEST_CSUM: never offered, and a frame that arrives partial anyway is finished first.
    const plain = machine();
    plain.bringUp(F.MAC | F.MRG_RXBUF);
    expect(plain.wire.gsoChecksumPartial).toBe(false);
    plain.setDesc(plain.rings[0].desc, 0, 0x50000, 0x1000, WRITE);
    plain.offer(0, 0, false);
    plain.wire.send(withPartialSum(tcpSegment(1000)), { checksumPartial: true });
    plain.clock.runUntil(() => false, 1);
    const got = plain.m.read(0x50000, 12 + 1054) as Uint8Array;
    expect(got[0]).toBe(0);
    expect(tcpChecksumOk(got.subarray(12))).toBe(true);
    expect(plain.dev.counters().rxPartialChecksums).toBe(0);
  });

  it('a TSO packet with NEEDS_CSUM leaves whole and partial to a far end that takes partial checksums, whole and finished to one that does not', () => {
    for (const partial of [true, false]) {
      const t = machine();
      t.bringUp(F.MAC | F.MRG_RXBUF | F.CSUM | F.HOST_TSO4);
      t.wire.offerGso!(true, partial);
      const seen: { f: Uint8Array; partial: boolean }[] = [];
      t.wire.setReceiver((f, info) => void seen.push({ f, partial: info?.checksumPartial === true }));
      const len = writeTso(t, 0x100000, 20_000, 1460, true);
      t.setDesc(t.rings[1].desc, 0, 0x100000, len, 0);
      t.offer(1, 0);
      t.clock.runUntil(() => false, 1);
      expect(seen).toHaveLength(1);
      const f = seen[0]!.f;
      expect(seen[0]!.partial).toBe(partial);
      expect(internetChecksum(f.subarray(14, 34))).toBe(0); // the IPv4 header is always finished
      const tcp = f.subarray(34);
      const pseudo = pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, tcp.length);
      if (partial) expect((tcp[16]! << 8) | tcp[17]!).toBe(foldSum(pseudo));
      else expect(tcpChecksumOk(f)).toBe(true);
      expect(t.dev.counters()).toMatchObject({ txGsoWhole: 1, txGsoPartial: partial ? 1 : 0 });
      // Gathered straight into the buffer the link lent (no 64 KiB buffer of the device's own), whole.
      expect(isLent(f)).toBe(true);
      expect([...f.subarray(54)]).toEqual([...tcpSegment(20_000).subarray(54)]);
    }
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
    postRx(t, 8, 2048, 0x50000);
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

/** A frame `size` bytes long to `dst` (local experimental EtherType), tagged with `seq`. */
function rawFrame(dst: number[], seq: number, size = 60): Uint8Array {
  const f = new Uint8Array(size);
  f.set(dst, 0);
  f.set([0x02, 0, 0, 0, 0, 1], 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  new DataView(f.buffer).setUint32(14, seq);
  return f;
}

/**
 * A control command as Linux's virtnet_send_command lays it out: the 2-byte header, each data part
 * in its own buffer, the ack byte last; through an indirect table when `indirect` (as Linux does
 * whenever it has more than one buffer and INDIRECT_DESC was agreed). Returns the ack byte.
 */
function ctrl(t: ReturnType<typeof machine>, cls: number, cmd: number, parts: number[][], opts: { indirect?: boolean; kick?: boolean } = {}): number {
  const ack = 0x61000;
  t.m.write(0x60000, new Uint8Array([cls, cmd]));
  t.m.writeU8(ack, 0xee);
  const bufs: [number, number, number][] = [[0x60000, 2, 0]];
  parts.forEach((p, i) => {
    t.m.write(0x60100 + 0x100 * i, new Uint8Array(p));
    bufs.push([0x60100 + 0x100 * i, p.length, 0]);
  });
  bufs.push([ack, 1, WRITE]);
  const table = opts.indirect ? 0x62000 : t.rings[2].desc;
  bufs.forEach(([addr, len, flags], i) => t.setDesc(table, i, addr, len, flags | (i < bufs.length - 1 ? NEXT : 0), i + 1));
  if (opts.indirect) t.setDesc(t.rings[2].desc, 0, table, 16 * bufs.length, INDIRECT);
  t.offer(2, 0, opts.kick ?? true);
  return t.m.readU8(ack) as number;
}

const le32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
const macTable = (macs: number[][]): number[] => [...le32(macs.length), ...macs.flat()];
const FOREIGN = [0x52, 0x54, 0, 0x99, 0x99, 0x99];
const BCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/** Post `n` receive buffers of `size` bytes (descriptors 0..n-1) without a notify. */
function postRx(t: ReturnType<typeof machine>, n: number, size = 2048, at = 0x100000): void {
  for (let i = 0; i < n; i++) {
    t.setDesc(t.rings[0].desc, i, at + i * size, size, WRITE);
    t.offer(0, i, false);
  }
}

/** The first `length` bytes the device wrote across buffers postRx posted, joined. */
function rxJoined(t: ReturnType<typeof machine>, length: number, size = 2048, at = 0x100000): Uint8Array {
  const out = new Uint8Array(length);
  for (let off = 0, k = 0; off < length; off += size, k++) out.set(t.m.read(at + k * size, Math.min(size, length - off)) as Uint8Array, off);
  return out;
}

/** Frames delivered into the receive ring so far, by the seq rawFrame put in them (2 KiB buffers, 12-byte header). */
function receivedSeqs(t: ReturnType<typeof machine>, at = 0x100000): number[] {
  const out: number[] = [];
  for (let k = 0; k < t.usedIdx(0); k++) out.push(new DataView((t.m.read(at + t.used(0, k).id * 2048 + 12 + 14, 4) as Uint8Array).slice().buffer).getUint32(0));
  return out;
}

describe('virtio-net EVENT_IDX on every queue', () => {
  it('writes the transmit queue avail_event after each run, so a driver that kicks only when it says so gets every frame out', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.EVENT_IDX);
    const tx = t.rings[1];
    let availIdx = 0;
    let kicks = 0;
    for (let i = 0; i < 1000; i++) {
      // Ring full (the device never consumed): the driver would stop its queue here.
      if (((availIdx - t.usedIdx(1)) & 0xffff) >= Q) break;
      const d = availIdx % Q;
      const buf = 0x40000 + d * 128;
      t.m.write(buf, new Uint8Array(12));
      t.m.write(buf + 12, rawFrame([2, 0, 0, 0, 0, 1], i));
      t.setDesc(tx.desc, d, buf, 72, 0);
      const old = availIdx;
      t.m.writeU16(tx.avail + 4 + 2 * d, d);
      availIdx = (availIdx + 1) & 0xffff;
      t.m.writeU16(tx.avail + 2, availIdx);
      // vring_need_event(avail_event, new, old), as Linux's virtqueue_kick_prepare.
      const event = t.m.readU16(tx.availEvent) as number;
      if (((availIdx - event - 1) & 0xffff) < ((availIdx - old) & 0xffff)) {
        kicks++;
        t.vm.io.outw(IO + 0x10, 1);
      }
    }
    t.clock.runUntil(() => t.got.length === 1000, 100);
    expect(t.got.length).toBe(1000);
    expect(t.got.map((f) => new DataView(f.buffer, f.byteOffset).getUint32(14))).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(kicks).toBe(1000); // the device caught up each time and asked for the next one
    expect(t.m.readU16(tx.availEvent)).toBe(1000);
    expect(t.failure()).toBeUndefined();
  });

  it('keeps the receive queue quiet (avail_event behind the device) while it has buffers, and asks for a kick with avail.idx when it holds a frame', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.EVENT_IDX);
    postRx(t, 2);
    expect(t.m.readU16(t.rings[0].availEvent)).toBe(0xffff); // behind index 0: no kicks
    t.wire.send(rawFrame(MAC, 1));
    t.clock.runUntil(() => false, 1);
    expect(t.m.readU16(t.rings[0].availEvent)).toBe(0); // followed the device to index 1
    t.wire.send(rawFrame(MAC, 2));
    t.wire.send(rawFrame(MAC, 3));
    t.clock.runUntil(() => false, 1);
    expect(t.dev.counters().rxHeldNoBuffer).toBe(1);
    expect(t.m.readU16(t.rings[0].availEvent)).toBe(2); // kick me when you add entry 2
    t.setDesc(t.rings[0].desc, 2, 0x100000 + 2 * 2048, 2048, WRITE);
    t.offer(0, 2);
    t.clock.runUntil(() => false, 1);
    expect(receivedSeqs(t)).toEqual([1, 2, 3]);
  });
});

describe('virtio-net control queue (CTRL_VQ, CTRL_RX)', () => {
  it('offers CTRL_VQ, CTRL_RX, CTRL_RX_EXTRA and CTRL_MAC_ADDR, and no CTRL_VLAN', () => {
    const { vm } = machine();
    const host = vm.io.inl(IO + 0x00);
    for (const f of [F.CTRL_VQ, F.CTRL_RX, F.CTRL_RX_EXTRA, F.CTRL_MAC_ADDR]) expect(host & f).toBe(f);
    expect(host & (1 << 19)).toBe(0);
  });

  it('promiscuous on: a foreign unicast frame reaches the guest; off: it is filtered again', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.CTRL_VQ | F.CTRL_RX);
    postRx(t, 8);
    t.wire.send(rawFrame(FOREIGN, 1));
    t.clock.runUntil(() => false, 1);
    expect(t.usedIdx(0)).toBe(0);
    expect(ctrl(t, 0, 0, [[1]])).toBe(0); // VIRTIO_NET_CTRL_RX_PROMISC on: VIRTIO_NET_OK
    expect(t.used(2, 0)).toEqual({ id: 0, len: 1 });
    t.wire.send(rawFrame(FOREIGN, 2));
    t.clock.runUntil(() => false, 1);
    expect(receivedSeqs(t)).toEqual([2]);
    expect(ctrl(t, 0, 0, [[0]])).toBe(0);
    t.wire.send(rawFrame(FOREIGN, 3));
    t.wire.send(rawFrame(MAC, 4));
    t.clock.runUntil(() => false, 1);
    expect(receivedSeqs(t)).toEqual([2, 4]);
    expect(t.dev.counters().rxDropFiltered).toBe(2);
    expect(t.failure()).toBeUndefined();
  });

  it('runs the open sequence of Linux virtio_net (indirect, EVENT_IDX): PROMISC off, ALLMULTI off, MAC table; then filters multicast by the table', () => {
    const t = machine();
    t.bringUp(F.CSUM | F.GUEST_CSUM | F.MAC | F.GUEST_TSO4 | F.HOST_TSO4 | F.MRG_RXBUF | F.STATUS | F.CTRL_VQ | F.CTRL_RX | F.CTRL_MAC_ADDR | F.INDIRECT | F.EVENT_IDX);
    postRx(t, 16);
    const allHosts = [0x01, 0x00, 0x5e, 0, 0, 1];
    const ipv6AllNodes = [0x33, 0x33, 0, 0, 0, 1];
    // Each command is kicked only if avail_event asks for it: the device must keep writing it.
    const kickWanted = () => {
      const idx = t.m.readU16(t.rings[2].avail + 2) as number;
      const event = t.m.readU16(t.rings[2].availEvent) as number;
      return ((idx + 1 - event - 1) & 0xffff) < 1;
    };
    for (const [cls, cmd, parts] of [
      [0, 0, [[0]]],
      [0, 1, [[0]]],
      [1, 0, [macTable([]), macTable([ipv6AllNodes, allHosts])]],
    ] as [number, number, number[][]][]) {
      expect(kickWanted()).toBe(true);
      expect(ctrl(t, cls, cmd, parts, { indirect: true, kick: true })).toBe(0);
    }
    expect(t.usedIdx(2)).toBe(3);
    t.wire.send(rawFrame(allHosts, 1));
    t.wire.send(rawFrame([0x01, 0x00, 0x5e, 0, 0, 0xfb], 2)); // mDNS: not in the table
    t.wire.send(rawFrame(BCAST, 3));
    t.wire.send(rawFrame(MAC, 4));
    t.wire.send(rawFrame(FOREIGN, 5));
    t.clock.runUntil(() => false, 1);
    expect(receivedSeqs(t)).toEqual([1, 3, 4]);
    expect(t.dev.counters().ctrlCommands).toBe(3);
    expect(t.failure()).toBeUndefined();
  });

  it('MAC table: unicast entries pass, an over-long table accepts all of its kind; RX_EXTRA NOBCAST/NOUNI; MAC_ADDR_SET moves our own address', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.CTRL_VQ | F.CTRL_RX | F.CTRL_RX_EXTRA | F.CTRL_MAC_ADDR);
    postRx(t, 32);
    const other = [0x02, 0, 0, 0, 0, 0x42];
    expect(ctrl(t, 1, 0, [macTable([other]), macTable([])])).toBe(0);
    t.wire.send(rawFrame(other, 1));
    t.wire.send(rawFrame(FOREIGN, 2));
    t.clock.runUntil(() => false, 1);
    expect(receivedSeqs(t)).toEqual([1]);
    const many = Array.from({ length: 65 }, (_, i) => [0x02, 0, 0, 0, 1, i]);
    expect(ctrl(t, 1, 0, [macTable(many), macTable([])])).toBe(0);
    t.wire.send(rawFrame(FOREIGN, 3)); // 65 > 64 entries: every unicast passes (QEMU's uni_overflow)
    t.clock.runUntil(() => false, 1);
    expect(ctrl(t, 0, 5, [[1]])).toBe(0); // NOBCAST
    t.wire.send(rawFrame(BCAST, 4));
    t.clock.runUntil(() => false, 1);
    expect(receivedSeqs(t)).toEqual([1, 3]);
    expect(ctrl(t, 1, 0, [macTable([]), macTable([])])).toBe(0);
    expect(ctrl(t, 1, 1, [other])).toBe(0); // MAC_ADDR_SET
    expect([0, 1, 2, 3, 4, 5].map((i) => t.vm.io.inb(IO + 0x14 + i))).toEqual(other);
    t.wire.send(rawFrame(MAC, 5)); // the old address is just another foreign one now
    t.wire.send(rawFrame(other, 6));
    t.clock.runUntil(() => false, 1);
    expect(ctrl(t, 0, 4, [[1]])).toBe(0); // NOUNI
    t.wire.send(rawFrame(other, 7));
    t.clock.runUntil(() => false, 1);
    expect(receivedSeqs(t)).toEqual([1, 3, 6]);
    // A device reset restores the power-on address and filter (QEMU's virtio_net_reset).
    t.vm.io.outb(IO + 0x12, 0);
    expect([0, 1, 2, 3, 4, 5].map((i) => t.vm.io.inb(IO + 0x14 + i))).toEqual(MAC);
    expect(t.failure()).toBeUndefined();
  });

  it('answers VIRTIO_NET_ERR to unknown, malformed and not-negotiated commands, leaving the filter as it was', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.CTRL_VQ | F.CTRL_RX);
    postRx(t, 8);
    expect(ctrl(t, 7, 0, [[1]])).toBe(1); // no such class
    expect(ctrl(t, 0, 9, [[1]])).toBe(1); // no such RX command
    expect(ctrl(t, 0, 0, [[1, 1]])).toBe(1); // PROMISC takes one byte
    expect(ctrl(t, 0, 0, [])).toBe(1);
    expect(ctrl(t, 0, 2, [[1]])).toBe(1); // ALLUNI: CTRL_RX_EXTRA not negotiated
    expect(ctrl(t, 1, 1, [FOREIGN])).toBe(1); // MAC_ADDR_SET: CTRL_MAC_ADDR not negotiated
    expect(ctrl(t, 1, 0, [le32(0xffffffff), macTable([])])).toBe(1); // entries beyond the data
    expect(ctrl(t, 1, 0, [macTable([FOREIGN])])).toBe(1); // multicast table missing
    expect(ctrl(t, 1, 0, [macTable([FOREIGN]), macTable([]), [0]])).toBe(1); // trailing byte
    t.wire.send(rawFrame(FOREIGN, 1));
    t.clock.runUntil(() => false, 1);
    expect(t.usedIdx(0)).toBe(0);
    expect(t.dev.counters().ctrlErrors).toBe(9);
    expect(t.failure()).toBeUndefined();
  });

  it('answers ERR to RX commands when CTRL_RX was not negotiated', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.CTRL_VQ);
    expect(ctrl(t, 0, 0, [[1]])).toBe(1);
  });

  it('fail-stops on a command chain without an ack byte or header, and on CTRL_RX without CTRL_VQ', () => {
    const a = machine();
    a.bringUp(F.MAC | F.MRG_RXBUF | F.CTRL_VQ | F.CTRL_RX);
    a.m.write(0x60000, new Uint8Array([0, 0, 1]));
    a.setDesc(a.rings[2].desc, 0, 0x60000, 3, 0); // no writable ack
    a.offer(2, 0);
    expect(a.failure()).toMatch(/control queue: command chain \(head 0\) has 3 readable and 0 writable bytes/);
    expect(a.vm.state).toBe('running');
    const b = machine();
    b.bringUp(F.MAC | F.MRG_RXBUF | F.CTRL_VQ | F.CTRL_RX);
    b.setDesc(b.rings[2].desc, 0, 0x61000, 1, WRITE); // ack only, no header
    b.offer(2, 0);
    expect(b.failure()).toMatch(/has 0 readable and 1 writable/);
    const c = machine();
    c.vm.io.outl(IO + 0x04, F.MAC | F.CTRL_RX);
    expect(c.failure()).toMatch(/without VIRTIO_NET_F_CTRL_VQ/);
  });
});

/** A TSO packet on the transmit queue: header (GSO_TCPV4, gso_size) and frame in one buffer at `at`. */
function writeTso(t: ReturnType<typeof machine>, at: number, payload: number, gsoSize: number, needsCsum = false): number {
  const hdr = new Uint8Array(12);
  const hv = new DataView(hdr.buffer);
  hv.setUint8(1, 1); // GSO_TCPV4
  hv.setUint16(2, 54, true);
  hv.setUint16(4, gsoSize, true);
  if (needsCsum) {
    hv.setUint8(0, 1); // NEEDS_CSUM from the TCP header, the pseudo-header sum in its field
    hv.setUint16(6, 34, true);
    hv.setUint16(8, 16, true);
  }
  const frame = needsCsum ? withPartialSum(tcpSegment(payload)) : tcpSegment(payload);
  t.m.write(at, hdr);
  t.m.write(at + 12, frame);
  return 12 + frame.length;
}

describe('virtio-net transmit bounds', () => {
  const TSO = F.MAC | F.MRG_RXBUF | F.CSUM | F.HOST_TSO4;

  it('drops and counts a TSO packet whose gso_size is below 48 or does not fit the MTU with its headers', () => {
    const t = machine();
    t.bringUp(TSO);
    const tx = t.rings[1].desc;
    const sizes = [1, 47, 1461, 48, 1460];
    sizes.forEach((g, i) => {
      const len = writeTso(t, 0x100000 + i * 0x1000, 1000, g);
      t.setDesc(tx, i, 0x100000 + i * 0x1000, len, 0);
      t.offer(1, i, false);
    });
    t.vm.io.outw(IO + 0x10, 1);
    t.clock.runUntil(() => false, 1);
    expect(t.dev.counters().txDropGsoSize).toBe(3);
    // 1000 bytes in 48-byte segments (21) and in one 1460-byte segment.
    expect(t.got.length).toBe(21 + 1);
    expect(t.usedIdx(1)).toBe(5); // every chain is given back, dropped or not
    expect(t.failure()).toBeUndefined();
  });

  it('drops and counts a plain frame longer than Ethernet allows (a virtio chain may be 64 KiB); 1518 bytes still go', () => {
    const t = machine();
    t.bringUp(TSO);
    const tx = t.rings[1].desc;
    t.m.write(0x100000, new Uint8Array(12));
    t.m.write(0x100000 + 12, rawFrame([2, 0, 0, 0, 0, 1], 1, 3000));
    t.setDesc(tx, 0, 0x100000, 12 + 3000, 0);
    t.m.write(0x110000, new Uint8Array(12));
    t.m.write(0x110000 + 12, rawFrame([2, 0, 0, 0, 0, 1], 2, 1518));
    t.setDesc(tx, 1, 0x110000, 12 + 1518, 0);
    t.offer(1, 0, false);
    t.offer(1, 1);
    t.clock.runUntil(() => false, 1);
    expect(t.got.map((f) => f.length)).toEqual([1518]);
    expect(t.dev.counters().txDropOversize).toBe(1);
    expect(t.usedIdx(1)).toBe(2);
  });

  it('bounds the work of one notify: 256 TSO chains go out over several clock turns, the lab runs in between, nothing is lost', () => {
    const t = machine();
    t.bringUp(TSO);
    const tx = t.rings[1].desc;
    // One 64 KB packet (45 segments of 1460) shared by all 256 chains: the device only reads it.
    const len = writeTso(t, 0x100000, 65_000, 1460);
    for (let i = 0; i < Q; i++) {
      t.setDesc(tx, i, 0x100000, len, 0);
      t.offer(1, i, false);
    }
    let framesWhenOtherWorkRan = -1;
    t.clock.setTimer(0, () => (framesWhenOtherWorkRan = t.dev.counters().txFrames));
    const started = performance.now();
    t.vm.io.outw(IO + 0x10, 1);
    const notifyMs = performance.now() - started;
    const inNotify = t.dev.counters().txFrames;
    expect(inNotify).toBeGreaterThanOrEqual(512);
    expect(inNotify).toBeLessThanOrEqual(512 + 45);
    t.clock.runUntil(() => t.got.length === Q * 45, 1000);
    expect(t.got.length).toBe(Q * 45);
    expect(framesWhenOtherWorkRan).toBeLessThan(Q * 45);
    expect(t.dev.counters().txDeferred).toBeGreaterThan(10);
    expect(t.usedIdx(1)).toBe(Q);
    expect(t.wire.stats.rxDrops + t.nicEnd.stats.txDrops).toBe(0);
    expect(notifyMs).toBeLessThan(2000);
  });
});

describe('virtio-net receive: nothing unreceivable is held', () => {
  it('drops a GSO frame no ring of the posted buffers could hold, instead of holding it (and every frame behind it) forever', () => {
    const t = machine(); // the link holds frames the NIC answers 'busy'
    t.bringUp(F.MAC | F.MRG_RXBUF | F.GUEST_CSUM | F.GUEST_TSO4);
    // 64-byte buffers: a full ring of them holds 16 KiB, a 60 KB segment never fits.
    for (let i = 0; i < 4; i++) {
      t.setDesc(t.rings[0].desc, i, 0x100000 + i * 64, 64, WRITE);
      t.offer(0, i, false);
    }
    t.wire.send(tcpSegment(60_000));
    t.wire.send(udpFrame([1, 2, 3]));
    t.clock.runUntil(() => false, 5);
    expect(t.dev.counters().rxDropTooBig).toBe(1);
    expect(t.dev.counters().rxHeldNoBuffer).toBe(0);
    expect(t.dev.counters().rxFrames).toBe(1);
    expect(t.usedIdx(0)).toBe(1);
    expect(t.used(0, 0).len).toBe(12 + 45);
  });

  it('still holds a frame that fits once the driver adds buffers', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.GUEST_CSUM | F.GUEST_TSO4);
    postRx(t, 2, 2048);
    t.wire.send(tcpSegment(10_000)); // needs 5 buffers of 2 KiB
    t.clock.runUntil(() => false, 5);
    expect(t.dev.counters().rxHeldNoBuffer).toBe(1);
    for (let i = 2; i < 5; i++) {
      t.setDesc(t.rings[0].desc, i, 0x100000 + i * 2048, 2048, WRITE);
      t.offer(0, i);
    }
    t.clock.runUntil(() => false, 5);
    expect(t.dev.counters().rxGsoFrames).toBe(1);
    expect(t.usedIdx(0)).toBe(5);
  });

  it('drops and counts a runt shorter than an Ethernet header', () => {
    const t = machine();
    t.bringUp();
    postRx(t, 2);
    // A port that hands over whatever it is given (a TAP may read anything).
    let deliver: ((f: Uint8Array) => unknown) | null = null;
    t.dev.attach({ name: 'raw', stats: t.nicEnd.stats, send: () => true, setReceiver: (r) => void (deliver = r) });
    expect(deliver!(new Uint8Array(10))).toBe(false);
    expect(t.dev.counters().rxDropRunt).toBe(1);
    expect(t.usedIdx(0)).toBe(0);
    expect(t.failure()).toBeUndefined();
  });
});

describe('virtio-net guards its own timer and frame delivery', () => {
  it('a throw in the deferred transmit run fail-stops the device, naming the path; the clock and the VM go on', () => {
    const t = machine();
    t.bringUp(F.MAC | F.MRG_RXBUF | F.CSUM | F.HOST_TSO4);
    let sends = 0;
    // A port whose far side breaks mid-burst (a bug there must not end the lab).
    t.dev.attach({
      name: 'breaks',
      stats: t.nicEnd.stats,
      send: () => {
        if (++sends === 600) throw new Error('backend exploded');
        return true;
      },
      setReceiver: () => {},
    });
    const len = writeTso(t, 0x100000, 65_000, 1460);
    for (let i = 0; i < Q; i++) {
      t.setDesc(t.rings[1].desc, i, 0x100000, len, 0);
      t.offer(1, i, false);
    }
    t.vm.io.outw(IO + 0x10, 1);
    expect(t.failure()).toBeUndefined(); // the first run stays under 600 frames
    let later = false;
    t.clock.setTimer(5, () => (later = true));
    expect(() => t.clock.runUntil(() => later, 10)).not.toThrow();
    expect(t.failure()).toMatch(/transmit timer: backend exploded/);
    expect(t.dev.state).toBe('stopped');
    expect(t.vm.state).toBe('running');
    expect(later).toBe(true);
  });

  it('a throw while delivering a received frame fail-stops the device instead of reaching the link', () => {
    const t = machine();
    t.bringUp();
    postRx(t, 2);
    // Guest memory that throws on a write stands in for any bug on the receive path.
    const m = t.vm.memory as unknown as { write: (...a: unknown[]) => unknown };
    m.write = () => {
      throw new Error('dma bug');
    };
    expect(() => {
      t.wire.send(rawFrame(MAC, 1));
      t.clock.runUntil(() => false, 1);
    }).not.toThrow();
    expect(t.failure()).toMatch(/receive: dma bug/);
    expect(t.vm.state).toBe('running');
  });
});
