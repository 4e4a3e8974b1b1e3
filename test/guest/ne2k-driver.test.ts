import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { Logger, memorySink } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { startGuestVm } from '../../lab/guest-vm.js';
import { LearningSwitch } from '../../lab/switch.js';
import { createNe2000 } from '../../src/devices/ne2000.js';
import { ne2kDriver, type Ne2kPort } from '../../src/guest/drivers/ne2k.js';
import { echoExchange, sha256 } from '../net/tcp-io.js';
import { hostOn, ip, testGuest } from './guest-vm.js';

const MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const PEER = [0x02, 0, 0, 0, 0, 1];

/** A VM with the NE2000 and the ne2k driver bound, no network stack: the test is the stack. */
function bareGuest(link: { flowControl?: boolean } = {}) {
  const clock = new VirtualClock();
  const registry = createDeviceRegistry();
  registry.register('NE2000', createNe2000);
  const xml = `<vm class="PC" name="vm0"><memory>32</memory><devices>
    <device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
    <device class="NE2000" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>
    </devices><guest><kernel>ip=10.0.0.2 netmask=255.255.255.0 gw=10.0.0.1</kernel></guest></vm>`;
  const parsed = parseVmConfig(xml, { knownClasses: registry.names() });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const started = startGuestVm(parsed.value, { clock, logger: new Logger([], memorySink([])), registry, drivers: [ne2kDriver] });
  if (!started.ok) throw new Error(started.errors.join('\n'));
  const { vm, kernel } = started.value;
  const [wire, nicEnd] = createLink(clock, ['wire', 'vm0.eth0'], link);
  vm.nics()[0]!.attach(nicEnd);
  const out: Uint8Array[] = [];
  wire.setReceiver((f) => void out.push(f));
  const bound = kernel.bound[0] as (typeof kernel.bound)[number] & { netdev: Ne2kPort };
  const netdev = bound.netdev;
  const inbox: Uint8Array[] = [];
  netdev.setReceiver((f) => void inbox.push(f));
  const run = (ms = 1): void => void clock.runUntil(() => false, ms);
  return { clock, vm, kernel, wire, out, netdev, inbox, run, nic: () => vm.nics()[0]!.counters() };
}

function frame(dst: number[], len: number, seq: number): Uint8Array {
  const f = new Uint8Array(len).map((_, i) => (i * 7 + seq) & 0xff);
  f.set(dst);
  f.set(PEER, 6);
  f[12] = 0x88;
  f[13] = 0xb5; // local experimental EtherType: nobody answers it
  f[14] = seq & 0xff;
  f[15] = seq >> 8;
  return f;
}

describe('ne2k-pci driver on the NE2000 model, in a VM', () => {
  it('probes like ne2k-pci: resets the chip, reads the MAC from the station PROM, registers eth0', () => {
    const g = bareGuest();
    expect(g.kernel.bootReport?.errors).toEqual([]);
    expect(g.kernel.bootReport?.bound).toEqual([expect.objectContaining({ name: 'ne2k-pci' })]);
    expect(g.kernel.log.join('\n')).toMatch(/eth0: RealTek RTL-8029 found at 0xc000, IRQ 1[01], 52:54:00:12:34:56/);
    expect([...g.netdev.mac]).toEqual(MAC);
    expect(g.kernel.netDevices).toEqual([g.netdev]);
    expect(g.netdev.linkUp()).toBe(true);
    expect(g.vm.failures.size).toBe(0);
    expect(g.nic().resets).toBe(1);
  });

  it('sends frames through remote DMA and TXP; pads runts to 60; queues behind a busy transmitter', () => {
    const g = bareGuest();
    const frames = Array.from({ length: 20 }, (_, i) => frame(PEER, i === 0 ? 20 : 100 + 50 * i, i));
    for (const f of frames) expect(g.netdev.send(f)).toBe(true);
    g.run(10);
    expect(g.out.length).toBe(20);
    const padded = new Uint8Array(60);
    padded.set(frames[0]!);
    expect([...g.out[0]!]).toEqual([...padded]);
    for (let i = 1; i < 20; i++) expect([...g.out[i]!]).toEqual([...frames[i]!]);
    expect(g.nic().txFrames).toBe(20);
    expect(g.netdev.stats.txFrames).toBe(20);
  });

  it('receives frames for its address and broadcast, not for others, byte-exact without the FCS', () => {
    const g = bareGuest();
    g.wire.send(frame(MAC, 60, 1));
    g.wire.send(frame([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 333, 2));
    g.wire.send(frame([0x52, 0x54, 0, 0, 0, 9], 100, 3));
    g.wire.send(frame(MAC, 1514, 4));
    g.run(5);
    expect(g.inbox.map((f) => f[14])).toEqual([1, 2, 4]);
    expect([...g.inbox[2]!]).toEqual([...frame(MAC, 1514, 4)]);
    expect(g.inbox[1]!.length).toBe(333);
    expect(g.nic().rxDropFiltered).toBe(1);
    expect(g.netdev.driverStats.interrupts).toBeGreaterThan(0);
  });

  it('wraps the receive ring many times over thousands of frames of every size', () => {
    const g = bareGuest();
    let sent = 0;
    const expected: string[] = [];
    for (let burst = 0; burst < 300; burst++) {
      for (let k = 0; k < 5; k++) {
        const len = 60 + ((sent * 97) % 1455);
        const f = frame(MAC, len, sent++);
        expected.push(createHash('sha1').update(f).digest('hex'));
        g.wire.send(f);
      }
      g.run(1);
    }
    expect(g.inbox.length).toBe(sent);
    expect(g.inbox.map((f) => createHash('sha1').update(f).digest('hex'))).toEqual(expected);
    expect(g.nic().rxDropOverflow).toBe(0);
    // 1500 frames averaging ~740 bytes through a 52-page (13 KiB) ring: it wrapped over 80 times.
    expect(g.nic().rxBytes).toBeGreaterThan(80 * 52 * 256);
  });

  it('recovers from a ring overflow while the guest was not servicing interrupts', () => {
    const g = bareGuest({ flowControl: false });
    g.kernel.hw.cli(); // the guest is busy with interrupts off
    for (let i = 0; i < 40; i++) g.wire.send(frame(MAC, 1000, i));
    g.run(1);
    const stored = g.nic().rxFrames;
    expect(stored).toBeGreaterThan(5);
    expect(stored).toBeLessThan(40);
    expect(g.nic().rxDropOverflow).toBe(40 - stored);
    g.kernel.hw.sti();
    g.run(1);
    // What the ring held arrives in order; the rest was lost on the wire side, counted there.
    expect(g.inbox.map((f) => f[14])).toEqual(Array.from({ length: stored }, (_, i) => i));
    expect(g.netdev.driverStats.rxOverruns).toBe(1);
    // After the datasheet's recovery the card receives and transmits again.
    g.wire.send(frame(MAC, 200, 77));
    g.netdev.send(frame(PEER, 200, 78));
    g.run(1);
    expect(g.inbox.at(-1)![14]).toBe(77);
    expect(g.out.at(-1)![14]).toBe(78);
    expect(g.vm.failures.size).toBe(0);
  });

  it('with flow control the link holds what the full ring cannot take, and nothing is lost', () => {
    const g = bareGuest();
    g.kernel.hw.cli(); // the guest is busy with interrupts off
    for (let i = 0; i < 40; i++) g.wire.send(frame(MAC, 1000, i));
    g.run(1);
    const stored = g.nic().rxFrames;
    expect(stored).toBeLessThan(40);
    expect(g.nic().rxHeldRingFull).toBe(1); // one refusal, then the link waits for BNRY to move
    expect(g.nic().rxDropOverflow).toBe(0);
    g.kernel.hw.sti();
    g.run(1);
    expect(g.inbox.map((f) => f[14])).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(g.netdev.driverStats.rxOverruns).toBe(0);
    expect(g.nic().rxDropOverflow).toBe(0);
  });

  it('writes BNRY = PSTART − 1 when the ring wraps exactly, as Linux\'s ei_receive does, and goes on receiving', () => {
    const g = bareGuest();
    // 1000-byte frames take 4 pages; the 52-page ring wraps exactly after every 13th.
    for (let i = 0; i < 39; i++) {
      g.wire.send(frame(MAC, 1000, i));
      g.run(1);
    }
    expect(g.inbox.map((f) => f[14])).toEqual(Array.from({ length: 39 }, (_, i) => i));
    // The 13th, 26th and 39th frames ended at PSTOP: the last BNRY write was PSTART − 1.
    g.kernel.hw.outb(0xc000, 0x22);
    expect(g.kernel.hw.inb(0xc000 + 0x03)).toBe(0x4b);
    expect(g.netdev.driverStats.rxBadHeaders).toBe(0);
    expect(g.vm.failures.size).toBe(0);
  });

  it('a giant frame from the wire (over 1518 bytes, or over the whole ring) is dropped; ping is still answered', async () => {
    const g = testGuest({ nicClass: 'NE2000', extraClasses: { NE2000: createNe2000 }, drivers: [ne2kDriver] });
    const host = hostOn(g.clock, g.wire);
    const mac = [...g.vm.nics()[0]!.mac];
    for (const len of [1642, 20_000, 65_535]) g.wire.send(frame(mac, len, len));
    g.clock.runUntil(() => false, 10);
    const p = host.ping(ip('10.0.0.2'), 1, 56, 500);
    g.clock.runUntil(() => false, 600);
    expect(await p).not.toBeNull();
    expect(g.vm.nics()[0]!.counters()).toMatchObject({ rxDropGiant: 3, rxHeldRingFull: 0 });
    expect(g.vm.failures.size).toBe(0);
  });

  it('a careless guest\'s 32 KiB transmit never reaches its neighbour across the switch: the neighbour still answers ping', async () => {
    const clock = new VirtualClock();
    const guest = (name: string, addr: string, mac: string) => testGuest({ clock, nicClass: 'NE2000', extraClasses: { NE2000: createNe2000 }, drivers: [ne2kDriver], name, ip: addr, mac });
    const a = guest('vma', '10.0.0.2', '52:54:00:00:00:0a');
    const b = guest('vmb', '10.0.0.3', '52:54:00:00:00:0b');
    const sw = new LearningSwitch(clock);
    sw.attach(a.wire, 'a');
    sw.attach(b.wire, 'b');
    // Guest A, bypassing its driver: B's MAC into card RAM at 0x4000 by remote DMA (word mode),
    // then TBCR = 0x8000 from page 0x40 — the whole packet RAM as one "frame".
    const hw = a.kernel.hw;
    const io = a.vm.describe().find((d) => d.id === 'net0')!.ports[0]!.base;
    hw.outb(io, 0x22);
    hw.outb(io + 0x0a, 6);
    hw.outb(io + 0x0b, 0);
    hw.outb(io + 0x08, 0x00);
    hw.outb(io + 0x09, 0x40);
    hw.outb(io, 0x12);
    for (const w of [0x5452, 0x0000, 0x0b00]) hw.outw(io + 0x10, w);
    hw.outb(io + 0x07, 0x40);
    hw.outb(io + 0x04, 0x40);
    hw.outb(io + 0x05, 0x00);
    hw.outb(io + 0x06, 0x80);
    hw.outb(io, 0x26);
    clock.runUntil(() => false, 10);
    const p = a.net.stack.ping(ip('10.0.0.3'), 1, 56, 500);
    clock.runUntil(() => false, 600);
    expect(await p).not.toBeNull();
    expect(a.vm.nics()[0]!.counters().txDropGiant).toBe(1);
    expect(a.vm.failures.size + b.vm.failures.size).toBe(0);
  });

  it('carries the guest network: ARP, ping and 1 MB echoed over TCP byte-exact', async () => {
    const g = testGuest({ nicClass: 'NE2000', extraClasses: { NE2000: createNe2000 }, drivers: [ne2kDriver] });
    const host = hostOn(g.clock, g.wire);
    const p = host.ping(ip('10.0.0.2'), 1);
    g.clock.runUntil(() => false, 200);
    expect(await p).not.toBeNull();
    const size = 1024 * 1024;
    const data = new Uint8Array(size).map((_, i) => (i * 131 + (i >> 11)) & 0xff);
    const back = echoExchange(g.clock, host, ip('10.0.0.2'), data, 600_000, 50_000_000);
    expect(sha256(back.bytes())).toBe(sha256(data));
    expect(g.vm.failures.size).toBe(0);
  }, 120_000);
});
