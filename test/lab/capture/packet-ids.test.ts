import { describe, expect, it } from 'vitest';
import { fingerprint, PacketIds } from '../../../lab/capture/packet-ids.js';
import { pingFrame, tcpFrame, udpFrame } from './frames.js';

describe('lab-wide packet ids', () => {
  it('one frame keeps its id across hops, even as a copy (a NIC DMA, a TAP read)', () => {
    const ids = new PacketIds();
    const f = udpFrame(100, 1);
    const id = ids.idFor(f, 'vm0.eth0.stack', 0);
    expect(ids.idFor(new Uint8Array(f), 'vm0.eth0', 0.01)).toBe(id);
    expect(ids.idFor(new Uint8Array(f), 'tap2', 0.5)).toBe(id);
    expect(ids.idFor(udpFrame(100, 2), 'tap2', 0.6)).not.toBe(id);
  });

  it('a frame seen twice at one hop is two frames (a duplicate, a repeated ARP): FIFO at the next hop', () => {
    const ids = new PacketIds();
    const f = pingFrame(1);
    const a = ids.idFor(f, 'sw.p1', 0);
    const b = ids.idFor(f, 'sw.p1', 1);
    expect(b).not.toBe(a);
    expect(ids.idFor(f, 'tap2', 2)).toBe(a);
    expect(ids.idFor(f, 'tap2', 3)).toBe(b);
    // A third copy at tap2 has no earlier sighting left: a new frame.
    expect(ids.idFor(f, 'tap2', 4)).toBeGreaterThan(b);
  });

  it('a dropped frame goes no further: an equal frame after it is a new one', () => {
    const ids = new PacketIds();
    const f = tcpFrame(10, 1);
    const a = ids.idFor(f, 'vm0.eth0', 0);
    ids.retire(a);
    expect(ids.idFor(f, 'tap2', 1)).not.toBe(a);
  });

  it('matches only within the window, and remembers a bounded number of frames', () => {
    const ids = new PacketIds({ windowMs: 100, maxEntries: 50 });
    const f = udpFrame(10, 9);
    const a = ids.idFor(f, 'x', 0);
    expect(ids.idFor(f, 'y', 200)).not.toBe(a);
    for (let i = 0; i < 1000; i++) ids.idFor(udpFrame(10, i), 'x', 300);
    expect(ids.size).toBeLessThanOrEqual(51);
  });

  it('fingerprints see the headers and the tail of a frame', () => {
    const a = udpFrame(1400, 1);
    const b = new Uint8Array(a);
    b[a.length - 1]! ^= 1;
    const c = new Uint8Array(a);
    c[20]! ^= 1;
    expect(new Set([fingerprint(a), fingerprint(b), fingerprint(c)]).size).toBe(3);
  });
});
