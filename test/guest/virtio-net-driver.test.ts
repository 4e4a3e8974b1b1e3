import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { Logger, memorySink } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { startGuestVm } from '../../lab/guest-vm.js';
import { createVirtioNet, type VirtioNet } from '../../src/devices/virtio-net.js';
import { virtioNetDriver, type VirtioNetPort } from '../../src/guest/drivers/virtio-net.js';
import type { BoundDriver } from '../../src/guest/kernel.js';
import { httpGet } from '../net/tcp-io.js';
import { internetChecksum } from '../../net/wire/checksum.js';
import { hostOn, ip, testGuest } from './guest-vm.js';

/** The guest driver and the device model together: a booted guest kernel, its NIC on a cable. */
const XML = `<vm class="PC" name="vm0"><memory>32</memory><devices>
<device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
<device class="SERIAL" id="com1"><port>0x3F8</port><irq>4</irq></device>
<device class="LNX_VIRTIO_NIC" id="net0"><bus>pci0</bus><mac>52:54:00:ab:cd:ef</mac></device>
</devices><guest><kernel>ip=10.0.0.2 netmask=255.255.255.0 gw=10.0.0.1</kernel></guest></vm>`;

const MAC = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];

function guest(link: { flowControl?: boolean } = {}) {
  const registry = createDeviceRegistry();
  registry.register('LNX_VIRTIO_NIC', createVirtioNet);
  const parsed = parseVmConfig(XML, { knownClasses: registry.names() });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const clock = new VirtualClock();
  const started = startGuestVm(parsed.value, { clock, logger: new Logger([], memorySink([])), registry, drivers: [virtioNetDriver] });
  if (!started.ok) throw new Error(started.errors.join('\n'));
  const { vm, kernel } = started.value;
  const dev = vm.device('net0') as VirtioNet;
  const [wire, nicEnd] = createLink(clock, ['wire', 'vm0.eth0'], link);
  dev.attach(nicEnd);
  const bound = kernel.bound.find((b) => b.name === 'virtio_net') as (BoundDriver & { netdev: VirtioNetPort }) | undefined;
  if (!bound) throw new Error(`virtio_net did not bind:\n${kernel.log.join('\n')}`);
  const port = bound.netdev;
  const rx: Uint8Array[] = [];
  /** What the driver told the stack of each frame (RxInfo.checksumValid). */
  const vouched: boolean[] = [];
  /** ... and whether it said the checksum was left partial (RxInfo.checksumPartial, from NEEDS_CSUM). */
  const partial: boolean[] = [];
  port.setReceiver((f, info) => {
    // A lent frame's bytes are the driver's again once this returns: keep a copy.
    rx.push(info?.lent ? f.slice() : f);
    vouched.push(info?.checksumValid === true);
    partial.push(info?.checksumPartial === true);
  });
  const out: Uint8Array[] = [];
  wire.setReceiver((f) => void out.push(f));
  return { clock, vm, kernel, dev, wire, nicEnd, port, rx, out, vouched, partial };
}

/** A frame to the guest carrying a 32-bit sequence number, `size` bytes long. */
function frameTo(dst: number[], seq: number, size = 64): Uint8Array {
  const f = new Uint8Array(size);
  f.set(dst, 0);
  f.set([0x02, 0, 0, 0, 0, 1], 6);
  f[12] = 0x88;
  f[13] = 0xb5; // local experimental EtherType
  new DataView(f.buffer).setUint32(14, seq);
  for (let i = 18; i < size; i++) f[i] = (seq + i) & 0xff;
  return f;
}

/** An Ethernet+IPv4+TCP frame to `dst` with `payload` bytes of data (checksums left zero). */
function tcpFrameTo(dst: number[], payload: number): Uint8Array {
  const f = new Uint8Array(14 + 20 + 20 + payload);
  f.set(dst, 0);
  f.set([0x02, 0, 0, 0, 0, 1], 6);
  f[12] = 0x08;
  f[14] = 0x45;
  new DataView(f.buffer).setUint16(16, 20 + 20 + payload);
  f[14 + 8] = 64;
  f[14 + 9] = 6;
  f[34 + 12] = 5 << 4;
  for (let i = 54; i < f.length; i++) f[i] = (i * 7) & 0xff;
  return f;
}

const seqOf = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset).getUint32(14);

describe('virtio_net guest driver on the virtio-net model', () => {
  it('binds, negotiates MAC, STATUS, MRG_RXBUF and large receives, reads the MAC and reaches DRIVER_OK', () => {
    const { vm, kernel, port, dev, wire } = guest();
    expect(kernel.bootReport?.errors).toEqual([]);
    expect(kernel.netDevices).toEqual([port]);
    expect(port.name).toBe('eth0');
    expect([...port.mac]).toEqual(MAC);
    // MAC, MRG_RXBUF, STATUS; GUEST_CSUM and GUEST_TSO4 for 64 KiB TCP receives; CSUM and
    // HOST_TSO4 for 64 KiB TCP sends; EVENT_IDX (kicks as Linux decides them); CTRL_VQ + CTRL_RX.
    expect(port.negotiatedFeatures).toBe(((1 << 5) | (1 << 15) | (1 << 16) | (1 << 1) | (1 << 7) | (1 << 0) | (1 << 11) | (1 << 29) | (1 << 17) | (1 << 18)) >>> 0);
    expect(port.gso).toBe(true);
    // The far end of the link may now send GSO frames.
    expect(wire.gso).toBe(true);
    expect(port.linkUp()).toBe(true);
    expect(vm.io.inb(0xc000 + 0x12)).toBe(7); // ACKNOWLEDGE | DRIVER | DRIVER_OK
    expect(kernel.log.some((l) => /eth0: virtio-net at 0xc000, 52:54:00:ab:cd:ef/.test(l))).toBe(true);
    expect(vm.failures.size).toBe(0);
    expect(dev.state).toBe('running');
  });

  it('sends frames through the transmit ring, wrapping it several times, without transmit interrupts', () => {
    const { clock, port, out, dev } = guest();
    for (let i = 0; i < 1000; i++) expect(port.send(frameTo([2, 0, 0, 0, 0, 1], i, 60 + (i % 50)))).toBe(true);
    clock.runUntil(() => out.length === 1000, 100);
    expect(out.map(seqOf)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(out[7]!.length).toBe(67);
    expect(dev.counters().txFrames).toBe(1000);
    expect(dev.counters().interrupts).toBe(0); // the driver asked for none on tx (NO_INTERRUPT)
    expect(port.stats.txDrops).toBe(0);
  });

  it('receives many frames in order, refilling the ring; the 16-bit ring indices wrap past 65535', () => {
    const { clock, wire, rx, dev, port, vm } = guest();
    const total = 66_000;
    const batch = 200;
    for (let sent = 0; sent < total; ) {
      const n = Math.min(batch, total - sent);
      for (let i = 0; i < n; i++) wire.send(frameTo(MAC, sent + i));
      sent += n;
      clock.runUntil(() => rx.length === sent, 100);
    }
    expect(rx.length).toBe(total);
    let inOrder = true;
    for (let i = 0; i < total; i++) if (seqOf(rx[i]!) !== i) inOrder = false;
    expect(inOrder).toBe(true);
    expect(dev.counters().rxDropNoBuffer).toBe(0);
    expect(port.driverStats.rxErrors).toBe(0);
    // The device said it needs no rx notifications, so refilling cost no exits.
    expect(port.driverStats.kicks).toBe(1); // only the prefill, before DRIVER_OK
    expect(port.driverStats.kicksSuppressed).toBeGreaterThan(0);
    expect(vm.failures.size).toBe(0);
  });

  it('reassembles a 60 KB TCP segment the device spread over mergeable buffers with a GSO header', () => {
    const { clock, wire, rx, dev } = guest();
    const big = tcpFrameTo(MAC, 60_000);
    wire.send(big);
    clock.runUntil(() => rx.length === 1, 10);
    expect([...rx[0]!]).toEqual([...big]);
    expect(dev.counters().rxGsoFrames).toBe(1);
    expect(dev.counters().rxBuffersMerged).toBeGreaterThanOrEqual(29); // 2 KiB buffers
  });

  it('lends large frames to the stack: read in the receive buffers where they lie back to back, gathered once where the ring wraps', () => {
    const { clock, wire, rx, port } = guest();
    const lentSeen: boolean[] = [];
    const inner = rx.length;
    port.setReceiver((f, info) => {
      lentSeen.push(info?.lent === true);
      rx.push(info?.lent ? f.slice() : f);
    });
    // 12 frames of 60 KB take 30 of the 256 2 KiB buffers each: the ring wraps once on the way.
    const frames = Array.from({ length: 12 }, (_, k) => {
      const f = tcpFrameTo(MAC, 60_000);
      f.fill(k + 1, 54);
      return f;
    });
    for (const f of frames) {
      wire.send(f);
      clock.runUntil(() => rx.length === inner + frames.indexOf(f) + 1, 10);
    }
    frames.forEach((f, k) => expect([...rx[inner + k]!]).toEqual([...f]));
    expect(lentSeen).toEqual(frames.map(() => true));
    const s = port.driverStats;
    expect(s.rxLent).toBe(12);
    expect(s.rxInPlace).toBeGreaterThanOrEqual(10);
    expect(s.rxInPlace).toBeLessThan(12);
    // A plain frame is the stack's own, as before.
    wire.send(frameTo(MAC, 1));
    clock.runUntil(() => rx.length === inner + 13, 10);
    expect(lentSeen[12]).toBe(false);
  });

  it('passes the device\'s DATA_VALID on to the stack (a GSO frame), and nothing for a plain frame', () => {
    const { clock, wire, rx, vouched } = guest();
    wire.send(tcpFrameTo(MAC, 60_000));
    wire.send(frameTo(MAC, 1));
    clock.runUntil(() => rx.length === 2, 10);
    expect(vouched).toEqual([true, false]);
  });

  it('a segment the host left partial arrives as NEEDS_CSUM and goes to the stack as checksumPartial, bytes untouched', () => {
    const { clock, wire, rx, partial, vouched } = guest();
    expect(wire.gsoChecksumPartial).toBe(true); // the driver took GUEST_CSUM and GUEST_TSO4
    const big = tcpFrameTo(MAC, 60_000);
    wire.send(big, { checksumPartial: true });
    wire.send(tcpFrameTo(MAC, 60_000));
    clock.runUntil(() => rx.length === 2, 10);
    expect([...rx[0]!]).toEqual([...big]);
    expect(partial).toEqual([true, false]);
    expect(vouched).toEqual([false, true]);
  });

  it('TSO: a 64 KiB TCP packet leaves whole to a far end that takes GSO, cut to the MTU otherwise', () => {
    const { clock, wire, port, dev, out } = guest();
    const big = tcpFrameTo([0x02, 0, 0, 0, 0, 1], 40_000);
    big.set(MAC, 6); // from us
    big[26] = 10; // src 10.0.0.2, dst 10.0.0.1
    big[29] = 2;
    big[30] = 10;
    big[33] = 1;
    expect(port.send(big)).toBe(true);
    clock.runUntil(() => false, 5);
    // The wire end takes no GSO frames: ceil(40000 / 1460) pieces, each within the MTU.
    expect(out.length).toBe(28);
    expect(Math.max(...out.map((f) => f.length))).toBe(1514);
    expect(out.reduce((n, f) => n + f.length - 54, 0)).toBe(40_000);
    expect(dev.counters().txGsoSegments).toBe(28);
    out.length = 0;
    wire.offerGso!(true);
    expect(port.send(big)).toBe(true);
    clock.runUntil(() => false, 5);
    expect(out.length).toBe(1);
    expect([...out[0]!.subarray(54)]).toEqual([...big.subarray(54)]);
    expect(dev.counters().txGsoWhole).toBe(1);
    expect(port.driverStats.txLarge).toBe(2);
  });

  it('a frame built in a buffer lendTx lent reaches the wire without a copy, MTU-sized and 64 KiB; loans never sent leak no descriptor', () => {
    const { clock, wire, port, out } = guest();
    wire.offerGso!(true);
    const small = frameTo([0x02, 0, 0, 0, 0, 1], 7, 300);
    const big = tcpFrameTo([0x02, 0, 0, 0, 0, 1], 40_000);
    // Loans given up without a send, more than the ring has descriptors and large buffers.
    for (let i = 0; i < 1000; i++) expect(port.lendTx(i % 2 ? 300 : big.length)).not.toBeNull();
    for (const f of [small, big]) {
      const lent = port.lendTx(f.length)!;
      expect(lent.length).toBe(f.length);
      lent.set(f);
      expect(port.send(lent)).toBe(true);
    }
    clock.runUntil(() => out.length === 2, 5);
    expect([...out[0]!]).toEqual([...small]);
    // The IPv4 and TCP checksums are the device's (the test frame carries none); every other byte is ours.
    const withoutSums = (f: Uint8Array): number[] => [...f.slice().fill(0, 24, 26).fill(0, 50, 52)];
    expect(withoutSums(out[1]!)).toEqual(withoutSums(big));
    expect(port.driverStats.txInPlace).toBe(2);
    // Every descriptor is still there: a ring's worth and more of copied frames all leave.
    for (let i = 0; i < 600; i++) {
      expect(port.send(frameTo([0x02, 0, 0, 0, 0, 1], 100 + i))).toBe(true);
      if (i % 64 === 63) clock.runUntil(() => false, 1);
    }
    clock.runUntil(() => out.length === 602, 10);
    expect(out.slice(2).map(seqOf)).toEqual(Array.from({ length: 600 }, (_, i) => 100 + i));
    expect(port.driverStats.txInPlace).toBe(2);
  });

  it('drops a giant frame that is not a TCP/IPv4 segment, as a NIC drops giants', () => {
    const { clock, wire, rx, dev } = guest();
    wire.send(frameTo(MAC, 42, 5000));
    wire.send(frameTo(MAC, 43));
    clock.runUntil(() => rx.length === 1, 10);
    expect(seqOf(rx[0]!)).toBe(43);
    expect(dev.counters().rxDropTooBig).toBe(1);
  });

  it('counts frames refused while every receive buffer is full, and recovers when the guest catches up', () => {
    const { clock, wire, rx, dev, nicEnd, kernel } = guest({ flowControl: false });
    kernel.hw.cli(); // the guest is busy with interrupts off: nobody harvests the ring
    for (let i = 0; i < 300; i++) wire.send(frameTo(MAC, i));
    clock.runUntil(() => false, 5);
    expect(rx.length).toBe(0);
    expect(dev.counters().rxFrames).toBe(256);
    expect(dev.counters().rxDropNoBuffer).toBe(44);
    expect(nicEnd.stats.rxDrops).toBe(44);
    kernel.hw.sti();
    clock.runUntil(() => rx.length === 256, 10);
    expect(rx.map(seqOf)).toEqual(Array.from({ length: 256 }, (_, i) => i));
    wire.send(frameTo(MAC, 1000));
    clock.runUntil(() => rx.length === 257, 10);
    expect(seqOf(rx[256]!)).toBe(1000);
  });

  it('with flow control the link holds frames while no receive buffer is posted, and nothing is lost', () => {
    const { clock, wire, rx, dev, nicEnd, kernel } = guest();
    kernel.hw.cli();
    for (let i = 0; i < 300; i++) wire.send(frameTo(MAC, i));
    clock.runUntil(() => false, 5);
    expect(dev.counters().rxFrames).toBe(256);
    expect(dev.counters().rxHeldNoBuffer).toBe(1);
    expect(dev.counters().rxDropNoBuffer).toBe(0);
    kernel.hw.sti();
    // The driver refills the queue and kicks (the device asked for it while holding a frame).
    clock.runUntil(() => rx.length === 300, 10);
    expect(rx.map(seqOf)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(nicEnd.stats.rxDrops).toBe(0);
  });

  it('kicks only when the avail_event of the device says so (EVENT_IDX, as Linux) and still gets every frame out', () => {
    const { clock, port, out, dev, vm } = guest();
    expect(port.negotiatedFeatures & (1 << 29)).toBe(1 << 29);
    for (let i = 0; i < 600; i++) expect(port.send(frameTo([2, 0, 0, 0, 0, 1], i))).toBe(true);
    clock.runUntil(() => out.length === 600, 100);
    expect(out.map(seqOf)).toEqual(Array.from({ length: 600 }, (_, i) => i));
    // The device caught up after each kick and asked for the next one in avail_event.
    expect(dev.counters().notifies).toBe(port.driverStats.kicks);
    expect(port.driverStats.kicks).toBeGreaterThanOrEqual(600);
    expect(vm.failures.size).toBe(0);
  });

  it('promiscuous mode through the control queue: a foreign unicast frame reaches the guest, and not once it is off', () => {
    const { clock, wire, rx, port, dev } = guest();
    const foreign = [0x52, 0x54, 0, 1, 2, 3];
    expect(port.setPromiscuous(true)).toBe(true);
    wire.send(frameTo(foreign, 1));
    clock.runUntil(() => false, 5);
    expect(rx.map(seqOf)).toEqual([1]);
    expect(port.setPromiscuous(false)).toBe(true);
    wire.send(frameTo(foreign, 2));
    wire.send(frameTo(MAC, 3));
    clock.runUntil(() => false, 5);
    expect(rx.map(seqOf)).toEqual([1, 3]);
    expect(dev.counters().rxDropFiltered).toBe(1);
    expect(port.driverStats.ctrlErrors).toBe(0);
    // Answers are polled for: the control queue raised no interrupt.
    expect(port.driverStats.interrupts).toBe(dev.counters().interrupts);
    expect(dev.counters().interruptsSuppressed).toBeGreaterThanOrEqual(2);
    // All-multicast goes the same way; with it off an unlisted group is filtered.
    expect(port.setAllMulticast(false)).toBe(true);
    wire.send(frameTo([0x01, 0x00, 0x5e, 0, 0, 0xfb], 4));
    clock.runUntil(() => false, 5);
    expect(rx.map(seqOf)).toEqual([1, 3]);
  });

  it('does not see unicast frames for another MAC', () => {
    const { clock, wire, rx, dev } = guest();
    wire.send(frameTo([0x52, 0x54, 0, 1, 2, 3], 1));
    wire.send(frameTo([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 2));
    clock.runUntil(() => false, 5);
    expect(rx.map(seqOf)).toEqual([2]);
    expect(dev.counters().rxDropFiltered).toBe(1);
  });
});

/** An ICMP echo request from 10.0.0.1 to 10.0.0.2 with `payload` bytes: 1600 makes the 1642-byte giant. */
function icmpEcho(dst: number[], payload: number): Uint8Array {
  const f = new Uint8Array(14 + 20 + 8 + payload);
  f.set(dst, 0);
  f.set([0x02, 0, 0, 0, 0, 1], 6);
  f[12] = 0x08;
  const ipLen = 20 + 8 + payload;
  f.set([0x45, 0, ipLen >> 8, ipLen & 0xff, 0, 7, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
  const ipSum = internetChecksum(f.subarray(14, 34));
  f[24] = ipSum >> 8;
  f[25] = ipSum & 0xff;
  f[34] = 8; // echo request
  const sum = internetChecksum(f.subarray(34));
  f[36] = sum >> 8;
  f[37] = sum & 0xff;
  return f;
}

describe('virtio_net under the guest network stack', () => {
  it('a giant frame from the wire (1642-byte ICMP echo, and a 64 KB one) is dropped and counted; the next ping is answered', async () => {
    const g = testGuest({ nicClass: 'LNX_VIRTIO_NIC', extraClasses: { LNX_VIRTIO_NIC: createVirtioNet }, drivers: [virtioNetDriver] });
    const host = hostOn(g.clock, g.wire);
    const guestMac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    g.wire.send(icmpEcho(guestMac, 1600));
    g.wire.send(icmpEcho(guestMac, 65_000));
    const p = host.ping(ip('10.0.0.2'), 1);
    g.clock.runUntil(() => false, 200);
    expect(await p).not.toBeNull();
    const dev = g.vm.device('net0') as VirtioNet;
    expect(dev.counters().rxDropTooBig).toBe(2);
    expect(g.vm.failures.size).toBe(0);
  });

  it('answers ping and serves 100 kB over HTTP to a host on the wire', async () => {
    const g = testGuest({ nicClass: 'LNX_VIRTIO_NIC', extraClasses: { LNX_VIRTIO_NIC: createVirtioNet }, drivers: [virtioNetDriver] });
    const host = hostOn(g.clock, g.wire);
    const p = host.ping(ip('10.0.0.2'), 1);
    g.clock.runUntil(() => false, 200);
    expect(await p).not.toBeNull();
    const text = httpGet(g.clock, host, ip('10.0.0.2'), '/bytes/100000');
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text.length - text.indexOf('\r\n\r\n') - 4).toBe(100000);
    expect(g.vm.failures.size).toBe(0);
  });
});
