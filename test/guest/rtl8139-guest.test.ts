import { describe, expect, it } from 'vitest';
import { rtl8139Driver, type Rtl8139Port } from '../../src/guest/drivers/rtl8139.js';
import { echoExchange, httpGet, sha256 } from '../net/tcp-io.js';
import { hostOn, ip, testGuest } from './guest-vm.js';

describe('RTL8139 driver on the RTL8139 model, in a VM', () => {
  it('binds, prints the probe line, and answers ARP and ping', async () => {
    const g = testGuest({ drivers: [rtl8139Driver] });
    const host = hostOn(g.clock, g.wire);
    expect(g.kernel.log.join('\n')).toMatch(/eth0: RTL-8139 at 0xc000, 52:54:00:12:34:56, IRQ 1[01]/);
    const replies = [];
    for (let i = 1; i <= 5; i++) {
      const p = host.ping(ip('10.0.0.2'), i);
      g.clock.runUntil(() => false, 200);
      replies.push(await p);
    }
    expect(replies.every((r) => r !== null)).toBe(true);
    const nic = g.vm.nics()[0]!.counters();
    expect(nic.rxFrames).toBeGreaterThanOrEqual(6);
    expect(nic.txFrames).toBeGreaterThanOrEqual(6);
    expect(nic.interrupts).toBeGreaterThan(0);
  });

  it('serves the status page and /bytes/N over HTTP', () => {
    const g = testGuest({ drivers: [rtl8139Driver] });
    const host = hostOn(g.clock, g.wire);
    const page = httpGet(g.clock, host, ip('10.0.0.2'), '/');
    expect(page).toMatch(/^HTTP\/1\.1 200/);
    expect(page).toContain('10.0.0.2');
    const bytes = httpGet(g.clock, host, ip('10.0.0.2'), '/bytes/100000');
    const body = bytes.slice(bytes.indexOf('\r\n\r\n') + 4);
    expect(body.length).toBe(100000);
    expect(body.charCodeAt(70000)).toBe((70000 % 65536) % 251);
  });

  it('carries 10 MB each way byte-exact through the echo service, wrapping the RX ring many times', () => {
    const g = testGuest({ drivers: [rtl8139Driver] });
    const host = hostOn(g.clock, g.wire);
    const size = 10 * 1024 * 1024;
    const data = new Uint8Array(size).map((_, i) => (i * 131 + (i >> 11)) & 0xff);
    // host → guest: the guest's echo service returns it, so both directions are exercised and checked.
    const back = echoExchange(g.clock, host, ip('10.0.0.2'), data, 600_000, 50_000_000);
    expect(back.received).toBe(size);
    expect(sha256(back.bytes())).toBe(sha256(data));
    const nic = g.vm.nics()[0]!.counters();
    expect(nic.rxBytes).toBeGreaterThan(size);
    expect(nic.txBytes).toBeGreaterThan(size);
    // Segments sent while a transmit buffer was free were built straight in it (lendTx); the rest
    // of each burst waited in the backlog, copied, as before.
    const port = g.kernel.netDevices[0] as Rtl8139Port;
    expect(port.driverStats.txInPlace).toBeGreaterThan(500);
  }, 120_000);

  it('with flow control the link holds frames while the ring is full; the guest gets every one', () => {
    const g = testGuest({ drivers: [rtl8139Driver] });
    g.clock.runUntil(() => false, 10);
    const before = g.vm.nics()[0]!.counters().rxFrames;
    g.kernel.hw.cli(); // the guest is busy: nobody drains the 32 KiB ring
    for (let i = 0; i < 60; i++) {
      const f = new Uint8Array(1000);
      f.set([0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 2, 0, 0, 0, 0, 9, 0x88, 0xb5, i]);
      g.wire.send(f);
    }
    g.clock.runUntil(() => false, 5);
    const held = g.vm.nics()[0]!.counters();
    expect(held.rxFrames - before).toBeLessThan(60);
    expect(held.rxHeldRingFull).toBe(1);
    g.kernel.hw.sti();
    g.clock.runUntil(() => false, 20);
    const after = g.vm.nics()[0]!.counters();
    expect(after.rxFrames - before).toBe(60);
    expect(after.rxDropRingFull).toBe(0);
    expect(g.vm.failures.size).toBe(0);
  });

  it('reads its MAC from the 93C46 EEPROM as 8139too does (word 0 probed with 8 address bits, then words 7-9)', () => {
    const g = testGuest({ drivers: [rtl8139Driver], mac: '02:11:22:33:44:55' });
    expect(g.kernel.log.join('\n')).toMatch(/eth0: RTL-8139 at 0xc000, 02:11:22:33:44:55/);
    expect(g.vm.nics()[0]!.counters().eepromReads).toBe(4);
  });

  it('after a 1642-byte frame from the wire (a host with a larger MTU) it still answers ping; the giant is dropped and counted', async () => {
    const g = testGuest({ drivers: [rtl8139Driver] });
    const host = hostOn(g.clock, g.wire);
    const port = g.kernel.netDevices[0] as Rtl8139Port;
    const ping = async (seq: number) => {
      const p = host.ping(ip('10.0.0.2'), seq);
      g.clock.runUntil(() => false, 1100); // past the ping timeout: the promise has settled
      return p;
    };
    expect(await ping(1)).not.toBeNull();
    // The frame: an ICMP echo with 1600 bytes of payload to the guest's MAC.
    const giant = new Uint8Array(1642);
    giant.set([0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0x06, 0x5c, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 8, 0]);
    g.wire.send(giant);
    g.clock.runUntil(() => false, 50);
    const replies = [];
    for (let seq = 2; seq <= 6; seq++) replies.push(await ping(seq));
    expect(replies.every((r) => r !== null)).toBe(true);
    const nic = g.vm.nics()[0]!.counters();
    expect(nic.rxDropGiant).toBe(1);
    // Every frame the model stored reached the stack exactly once.
    expect(port.stats.rxFrames).toBe(nic.rxFrames);
    expect(g.vm.failures.size).toBe(0);
  });

  it("a bad packet header makes it reset its receiver as 8139too's rtl8139_rx_err does; model and driver restart together at offset 0, nothing is replayed", async () => {
    const g = testGuest({ drivers: [rtl8139Driver] });
    const host = hostOn(g.clock, g.wire);
    const port = g.kernel.netDevices[0] as Rtl8139Port;
    const ping = async (seq: number) => {
      const p = host.ping(ip('10.0.0.2'), seq);
      g.clock.runUntil(() => false, 1100); // past the ping timeout: the promise has settled
      return p;
    };
    expect(await ping(1)).not.toBeNull();
    // Hold off the guest, let a frame land, and corrupt its header (status without ROK) in the
    // ring, as when a driver loses its place: the driver must reset, and the model with it.
    g.kernel.hw.cli();
    const nicBefore = g.vm.nics()[0]!.counters().rxFrames!;
    // Where the model will put the next packet: RBSTART + CBR (read as a debugger would).
    const header = g.vm.io.inl(0xc000 + 0x30) + g.vm.io.inw(0xc000 + 0x3a);
    const next = host.ping(ip('10.0.0.2'), 2);
    g.clock.runUntil(() => g.vm.nics()[0]!.counters().rxFrames! > nicBefore, 50);
    const mem = g.vm.memory.bytes;
    expect(mem[header + 4 + 34]).toBe(8); // the echo request landed there
    mem[header] = 0x00; // ROK clear
    g.kernel.hw.sti();
    g.clock.runUntil(() => false, 1100); // past the ping's 1 s timeout
    expect(port.driverStats.resets).toBe(1);
    expect(await next).toBeNull(); // the corrupted request is lost, as on the real chip
    const replies = [];
    for (let seq = 3; seq <= 7; seq++) replies.push(await ping(seq));
    expect(replies.every((r) => r !== null)).toBe(true);
    // Nothing was delivered twice: the stack saw every stored frame but the corrupted one.
    const nic = g.vm.nics()[0]!.counters();
    expect(port.stats.rxFrames).toBe(nic.rxFrames! - 1);
    expect(nic.rxRingResets).toBeGreaterThanOrEqual(1);
    expect(g.vm.failures.size).toBe(0);
  });

  it('the shell answers on the serial console', () => {
    const g = testGuest({ drivers: [rtl8139Driver] });
    const uart = g.vm.device('com1') as unknown as { input(b: Uint8Array): void };
    uart.input(new TextEncoder().encode('ifconfig\r'));
    g.clock.runUntil(() => g.console().includes('ether 52:54:00:12:34:56'), 1000);
    expect(g.console()).toContain('inet 10.0.0.2/24');
  });
});
