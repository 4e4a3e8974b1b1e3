import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { LearningSwitch } from '../../lab/switch.js';
import type { BoundDriver } from '../../src/guest/kernel.js';
import { guestDrivers } from '../../src/guest/drivers.js';
import { ip, testGuest } from './guest-vm.js';

/**
 * A careless (or hostile) guest that bypasses its driver's size checks and hands its NIC a giant
 * frame must not reach, let alone wedge, its neighbour across the switch (issue 10): the model
 * drops and counts it as the chip would, and the neighbour still answers ping. The NE2000 case is
 * in ne2k-driver.test.ts; these are RTL8139 and virtio-net.
 */

const B_MAC = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0b];
const A_MAC = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0a];

function pair(nicClass: string) {
  const clock = new VirtualClock();
  const a = testGuest({ clock, nicClass, name: 'vma', ip: '10.0.0.2', mac: '52:54:00:00:00:0a', drivers: guestDrivers() });
  const b = testGuest({ clock, nicClass, name: 'vmb', ip: '10.0.0.3', mac: '52:54:00:00:00:0b', drivers: guestDrivers() });
  const sw = new LearningSwitch(clock);
  sw.attach(a.wire, 'a');
  sw.attach(b.wire, 'b');
  // Let ARP and boot traffic settle so the switch has learnt both stations.
  clock.runUntil(() => false, 50);
  return { clock, a, b };
}

/** A frame to B from A, `size` bytes of an experimental EtherType: nothing any stack answers. */
function giant(size: number): Uint8Array {
  const f = new Uint8Array(size).map((_, i) => (i * 29) & 0xff);
  f.set(B_MAC, 0);
  f.set(A_MAC, 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  return f;
}

describe('a guest that hands its NIC a giant frame, bypassing its driver', () => {
  it('RTL8139: TSD with 1700 bytes from guest memory — dropped and counted; the neighbour still answers ping', async () => {
    const { clock, a, b } = pair('RTL8139');
    const frame = giant(1700);
    const addr = a.vm.memory.size - 0x10000;
    expect(a.vm.memory.write(addr, frame)).toBe(true);
    const io = a.vm.describe().find((d) => d.id === 'net0')!.ports[0]!.base;
    const bRxBefore = b.vm.nics()[0]!.counters()['rxFrames'] ?? 0;
    a.kernel.hw.outl(io + 0x20, addr); // TSAD0
    a.kernel.hw.outl(io + 0x10, frame.length); // TSD0: size, OWN clear — "send this"
    clock.runUntil(() => false, 10);
    expect(a.vm.nics()[0]!.counters()['txDropGiant']).toBe(1);
    expect(b.vm.nics()[0]!.counters()['rxFrames'] ?? 0).toBe(bRxBefore);
    const p = a.net.stack.ping(ip('10.0.0.3'), 1, 56, 500);
    clock.runUntil(() => false, 600);
    expect(await p).not.toBeNull();
    expect(a.vm.failures.size + b.vm.failures.size).toBe(0);
  });

  it('virtio-net: a plain 4000-byte transmit descriptor (no GSO) — dropped and counted; the neighbour still answers ping', async () => {
    const { clock, a, b } = pair('LNX_VIRTIO_NIC');
    // The guest's own descriptor on the transmit queue, as a driver without a size check would write it.
    type TxRing = { setDesc(i: number, addr: number, len: number, flags: number): void; add(i: number): void; publish(): void };
    type Careless = { tx: TxRing; txFree: number[]; hdrLen: number; kick(ring: TxRing, queue: number): void };
    const bound = a.kernel.bound.find((x: BoundDriver) => x.name === 'virtio_net') as unknown as { netdev: Careless } | undefined;
    expect(bound).toBeDefined();
    const drv = bound!.netdev;
    const frame = giant(4000);
    const addr = a.vm.memory.size - 0x10000;
    const withHeader = new Uint8Array(drv.hdrLen + frame.length);
    withHeader.set(frame, drv.hdrLen); // virtio_net_hdr all zero: no GSO
    expect(a.vm.memory.write(addr, withHeader)).toBe(true);
    const bRxBefore = b.vm.nics()[0]!.counters()['rxFrames'] ?? 0;
    const i = drv.txFree.pop()!;
    drv.tx.setDesc(i, addr, withHeader.length, 0);
    drv.tx.add(i);
    drv.tx.publish();
    drv.kick(drv.tx, 1);
    clock.runUntil(() => false, 10);
    expect(a.vm.nics()[0]!.counters()['txDropOversize']).toBe(1);
    expect(b.vm.nics()[0]!.counters()['rxFrames'] ?? 0).toBe(bRxBefore);
    const p = a.net.stack.ping(ip('10.0.0.3'), 1, 56, 500);
    clock.runUntil(() => false, 600);
    expect(await p).not.toBeNull();
    expect(a.vm.failures.size + b.vm.failures.size).toBe(0);
  });
});
