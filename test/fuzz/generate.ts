/**
 * Drawing a fuzz episode's operations from its seed: each model's bring-up, then random and
 * driver-shaped operations with values that sit on an edge somewhere.
 */
import type { AccessSize } from '../../src/vmm/io-bus.js';
import { mulberry32 } from '../../net/random.js';
import { INTERESTING_LEN } from './frames.js';
import { cfgAddr, GUEST_BYTES, NIC_MAC, type Op, type Target } from './ops.js';
import type { World } from './worlds.js';

export const DEFAULT_OPS_PER_EPISODE = 300;

interface Gen {
  r: () => number;
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
}

function gen(seed: number): Gen {
  const r = mulberry32(seed);
  return {
    r,
    int: (n) => Math.floor(r() * n),
    pick: (xs) => xs[Math.floor(r() * xs.length)]!,
    chance: (p) => r() < p,
  };
}

/** Values a guest might write that sit on an edge somewhere. */
function value(g: Gen, size: AccessSize): number {
  const mask = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
  const v = g.pick([
    () => 0,
    () => 1,
    () => 0xffffffff,
    () => 0x80000000,
    () => g.int(0x100),
    () => Math.floor(g.r() * 2 ** 32),
    () => guestAddr(g),
    () => g.pick(INTERESTING_LEN),
    () => 0x3f + g.int(0x84), // NE2000 pages, around the packet RAM
  ])();
  return (v & mask) >>> 0;
}

/** Guest physical addresses: mostly inside memory, some at or past its end. */
function guestAddr(g: Gen): number {
  return g.pick([
    () => 0x10000 + g.int(0x60) * 0x1000,
    () => g.int(GUEST_BYTES),
    () => GUEST_BYTES - 1 - g.int(64),
    () => GUEST_BYTES + g.int(64),
    () => 0xfffff000 + g.int(0x1000),
    () => 0,
  ])();
}

const SIZES: readonly AccessSize[] = [1, 2, 4];

/**
 * Each model's registers with their natural width (offset, size): most random accesses use one, so
 * an episode gets past the "wrong width" fail-stop and reaches the logic behind the register.
 */
const REGISTERS: Record<Exclude<Target, 'stack'>, [number, AccessSize][]> = {
  ne2000: [...Array.from({ length: 16 }, (_, i): [number, AccessSize] => [i, 1]), [0x10, 1], [0x10, 2], [0x10, 4], [0x1f, 1]],
  rtl8139: [
    ...Array.from({ length: 8 }, (_, i): [number, AccessSize] => [i, 1]), [0x08, 4], [0x0c, 4],
    ...Array.from({ length: 8 }, (_, i): [number, AccessSize] => [0x10 + 4 * i, 4]),
    [0x30, 4], [0x37, 1], [0x38, 2], [0x3a, 2], [0x3c, 2], [0x3e, 2], [0x40, 4], [0x44, 4], [0x48, 4], [0x4c, 4],
    [0x50, 1], [0x51, 1], [0x52, 1], [0x58, 1], [0x59, 1], [0x5a, 1], [0x5c, 2], [0x60, 2], [0x62, 2], [0x64, 2], [0x66, 2], [0x68, 2], [0x6a, 2], [0xd9, 1], [0xe0, 2], [0xe4, 4],
  ],
  virtio: [[0x00, 4], [0x04, 4], [0x08, 4], [0x0c, 2], [0x0e, 2], [0x10, 2], [0x12, 1], [0x13, 1], ...Array.from({ length: 8 }, (_, i): [number, AccessSize] => [0x14 + i, 1])],
};

/** Legacy virtio-pci registers a driver writes (the rest are read-only and fail-stop on a write). */
const VIRTIO_WRITABLE: [number, AccessSize][] = [[0x08, 4], [0x0e, 2], [0x10, 2], [0x12, 1]];

function frameOp(g: Gen): Op {
  const random = g.chance(0.25);
  return { k: 'frame', corpus: random ? -1 : g.int(1000), len: g.pick(INTERESTING_LEN), dst: g.chance(0.7) ? 0 : g.int(5), mutations: g.chance(0.2) ? 0 : 1 + g.int(3), seed: g.int(2 ** 31), fix: g.chance(0.7) };
}

function genericOp(g: Gen, w: World, target: Target): Op[] {
  const roll = g.int(100);
  if (w.bars.length === 0 || roll < 20) return [frameOp(g)];
  if (roll < 25) return [{ k: 'run', ms: g.pick([0, 1, 1, 5, 20]) }];
  if (roll < 32) {
    // PCI configuration: mostly our function's header, some anywhere on the bus.
    const addr = g.chance(0.8) ? cfgAddr(w.slot, g.int(256)) : Math.floor(g.r() * 2 ** 32) >>> 0;
    const size = g.pick(SIZES);
    const port = g.int(4);
    // BAR and command rewrites would usually just unplug the device; keep them rare.
    const reg = addr & 0xfc;
    if ((reg === 0x04 || (reg >= 0x10 && reg < 0x28)) && g.chance(0.9)) return [{ k: 'cfg-in', addr, port, size }];
    return g.chance(0.5) ? [{ k: 'cfg-in', addr, port, size }] : [{ k: 'cfg-out', addr, port, size, v: value(g, size) }];
  }
  if (roll < 36) return [{ k: 'fill', addr: guestAddr(g), len: g.pick([16, 64, 256, 4096]), seed: g.int(2 ** 31) }];
  const bar = g.int(w.bars.length);
  let size = g.pick(SIZES);
  let off = g.chance(0.97) ? g.int(w.bars[bar]!.size) : w.bars[bar]!.size - 2 + g.int(6);
  const read = g.chance(0.4);
  if (target !== 'stack' && g.chance(0.85)) [off, size] = g.pick(!read && target === 'virtio' ? VIRTIO_WRITABLE : REGISTERS[target]);
  return read ? [{ k: 'in', bar, off, size }] : [{ k: 'out', bar, off, size, v: value(g, size) }];
}

const ioOut = (off: number, v: number, size: AccessSize = 1): Op => ({ k: 'out', bar: 0, off, size, v });
const ioIn = (off: number, size: AccessSize = 1): Op => ({ k: 'in', bar: 0, off, size });

// -- NE2000 (DP8390 register offsets, page 0 unless noted)

function ne2000BringUp(g: Gen): Op[] {
  const start = g.chance(0.9) ? 0x4c : 0x40 + g.int(0x40);
  const stop = g.chance(0.9) ? 0x80 : Math.min(0xc0, start + 2 + g.int(0x40));
  const rcr = g.pick([0x04, 0x0c, 0x14, 0x1c, 0x00]);
  return [
    ioIn(0x1f), ioOut(0x00, 0x21), ioOut(0x0e, 0x49), ioOut(0x0a, 0), ioOut(0x0b, 0), ioOut(0x0c, 0x20), ioOut(0x0d, 0x02),
    ioOut(0x04, 0x40), ioOut(0x01, start), ioOut(0x03, g.chance(0.5) ? stop - 1 : start - 1), ioOut(0x02, stop), ioOut(0x07, 0xff), ioOut(0x0f, 0),
    ioOut(0x00, 0x61), ...NIC_MAC.map((b, i) => ioOut(0x01 + i, b)), ioOut(0x07, start), ioOut(0x00, 0x21),
    ioOut(0x07, 0xff), ioOut(0x0f, 0x3f), ioOut(0x00, 0x22), ioOut(0x0d, 0), ioOut(0x0c, rcr),
  ];
}

function ne2000Op(g: Gen, w: World, target: Target = 'ne2000'): Op[] {
  switch (g.int(8)) {
    case 0: {
      // A remote DMA: count, address, read or write, then data-port traffic of every width.
      const count = g.pick([0, 1, 2, 4, 60, 1514, 0xffff, g.int(0x10000)]);
      const inRam = g.chance(0.8);
      const addr = inRam ? 0x4000 + g.int(0x8000) : g.pick([0, 0x3ffe, 0x7ffe, 0xbfff, 0xc000, 0xfffe, g.int(0x10000)]);
      const write = g.chance(0.5);
      const ops: Op[] = [ioOut(0x00, 0x22), ioOut(0x0a, count & 0xff), ioOut(0x0b, count >> 8), ioOut(0x08, addr & 0xff), ioOut(0x09, addr >> 8), ioOut(0x00, write ? 0x12 : 0x0a)];
      // Mostly what the count allows (a driver's loop), sometimes past it.
      const units = g.chance(0.9) ? Math.min(40, count >> 2) : g.int(40);
      for (let i = units; i > 0; i--) {
        const size: AccessSize = g.chance(0.9) ? 4 : g.pick(SIZES);
        ops.push(write ? ioOut(0x10, value(g, size), size) : ioIn(0x10, size));
      }
      return ops;
    }
    case 1: {
      // A transmit of an edge length from an edge page.
      const len = g.pick([0, 13, 14, 59, 60, 1514, 1518, 1519, 0x8000, 0xffff, g.int(0x10000)]);
      return [ioOut(0x00, 0x22), ioOut(0x04, g.pick([0x40, 0x46, 0xbf, 0xc0, 0x3f, g.int(256)])), ioOut(0x05, len & 0xff), ioOut(0x06, len >> 8), ioOut(0x00, 0x26)];
    }
    case 2:
      // The driver frees ring pages: BNRY to an edge (PSTART − 1 included), or an ISR ack.
      return g.chance(0.5) ? [ioOut(0x00, 0x22), ioOut(0x03, g.chance(0.9) ? 0x4b + g.int(0x35) : g.int(256))] : [ioOut(0x07, g.pick([0xff, 0x01, 0x10, 0x40]))];
    case 3:
      // The overflow recovery, Linux's ei_rx_overrun.
      return [ioOut(0x00, 0x21), ioOut(0x0a, 0), ioOut(0x0b, 0), ioOut(0x0d, 0x02), ioOut(0x00, 0x22), ioOut(0x07, 0x10), ioOut(0x0d, 0)];
    default:
      return genericOp(g, w, target);
  }
}

// -- RTL8139 (datasheet register offsets)

const RTL_RX_BUF = 0x20000;
const RTL_TX_BUF = 0x30000;

function rtl8139BringUp(g: Gen): Op[] {
  return [
    ioOut(0x37, 0x10), ioOut(0x30, g.chance(0.8) ? RTL_RX_BUF : guestAddr(g), 4), ioOut(0x37, 0x0c),
    ioOut(0x44, (g.pick([0x0f, 0x8f, 0x0e, 0x1f]) | (g.int(4) << 11)) >>> 0, 4), ioOut(0x40, 0x03000700, 4), ioOut(0x3c, 0xffff, 2), ioOut(0x38, 0xfff0, 2),
  ];
}

function rtl8139Op(g: Gen, w: World, target: Target = 'rtl8139'): Op[] {
  switch (g.int(8)) {
    case 0:
    case 1: {
      // A transmit: a buffer (sometimes filled with a real frame), TSADn, then TSDn with a size.
      const n = g.int(4);
      const addr = g.chance(0.8) ? RTL_TX_BUF + n * 0x800 : guestAddr(g);
      const size = g.pick([0, 1, 14, 59, 60, 1514, 1518, 1519, 1792, 0x1fff, g.int(0x2000)]);
      const ops: Op[] = [];
      if (g.chance(0.5)) ops.push({ k: 'fill', addr, len: Math.min(size, 0x2000), seed: g.int(2 ** 31) });
      ops.push(ioOut(0x20 + 4 * n, addr, 4), ioOut(0x10 + 4 * n, (size | (g.chance(0.2) ? value(g, 4) & ~0x1fff : 0)) >>> 0, 4));
      return ops;
    }
    case 2:
      // The driver consumed packets: CAPR to an edge, or an ISR ack.
      return g.chance(0.5) ? [ioOut(0x38, g.pick([0xfff0, 0, 0x1ff0, 0x2000, 0xfffc, g.int(0x10000)]), 2)] : [ioOut(0x3e, g.pick([0xffff, 0x01, 0x10, 0x04]), 2)];
    case 3:
      // A receive-configuration rewrite (ring size, WRAP, accept bits), as a driver's RX reset.
      return [ioOut(0x37, g.pick([0x04, 0x0c, 0x08, 0x10])), ioOut(0x44, value(g, 4), 4), ioOut(0x37, 0x0c)];
    default:
      return genericOp(g, w, target);
  }
}

// -- virtio-net, legacy PCI (virtio 1.x §4.1.4.8)

const VQ_SIZE = 256;
const VQ_PFN = [0x100, 0x108];
const VQ_BUF = 0x40000;

function virtioBringUp(g: Gen): Op[] {
  // MAC | STATUS, or those with checksum/TSO offloads and EVENT_IDX, or (rarely) anything at all.
  const features = g.pick([(1 << 5) | (1 << 16), (1 << 5) | (1 << 16) | 0x3 | (1 << 7) | (1 << 11), (1 << 5) | (1 << 29) | 0x883, 0, g.chance(0.2) ? Math.floor(g.r() * 2 ** 32) >>> 0 : 0x20]);
  return [
    ioOut(0x12, 0), ioOut(0x12, 1), ioOut(0x12, 3), ioIn(0x00, 4), ioOut(0x04, features, 4),
    ioOut(0x0e, 0, 2), ioIn(0x0c, 2), ioOut(0x08, VQ_PFN[0]!, 4), ioOut(0x0e, 1, 2), ioIn(0x0c, 2), ioOut(0x08, VQ_PFN[1]!, 4),
    ioOut(0x12, 7),
  ];
}

/** A descriptor chain written into queue `q`'s table, published in the avail ring, then notified. */
function virtioChain(g: Gen, q: number, avail: number[]): Op[] {
  const base = VQ_PFN[q]! * 4096;
  const n = 1 + (g.chance(0.8) ? g.int(3) : g.int(20));
  const head = g.int(VQ_SIZE);
  const ops: Op[] = [];
  for (let i = 0; i < n; i++) {
    const idx = (head + i) % VQ_SIZE;
    const d = Buffer.alloc(16);
    const addr = g.chance(0.8) ? VQ_BUF + g.int(0x80) * 0x800 : guestAddr(g);
    const len = g.chance(0.7) ? g.pick([10, 12, 54, 64, 1514, 1526, 2048]) : value(g, 4);
    let flags = i < n - 1 ? 1 : 0; // NEXT
    if (q === 0) flags |= 2; // WRITE: a receive buffer
    if (g.chance(0.1)) flags = g.int(8);
    const next = g.chance(0.9) ? (idx + 1) % VQ_SIZE : g.int(0x10000);
    d.writeUInt32LE(addr >>> 0, 0);
    d.writeUInt32LE(0, 4);
    d.writeUInt32LE(len >>> 0, 8);
    d.writeUInt16LE(flags, 12);
    d.writeUInt16LE(next, 14);
    ops.push({ k: 'poke', addr: base + idx * 16, hex: d.toString('hex') });
    if (q === 1 && i === 0 && g.chance(0.7)) {
      // A virtio_net_hdr with edge GSO values, then frame bytes.
      const h = Buffer.alloc(10);
      h[0] = g.int(4);
      h[1] = g.pick([0, 1, 3, 4, 0x80, g.int(256)]);
      h.writeUInt16LE(g.pick([0, 14, 54, 0xffff]), 2);
      h.writeUInt16LE(g.pick([0, 1, 8, 536, 1460, 0xffff]), 4);
      h.writeUInt16LE(g.pick([0, 14, 34, 0xffff]), 6);
      h.writeUInt16LE(g.pick([0, 16, 6, 0xffff]), 8);
      ops.push({ k: 'poke', addr, hex: h.toString('hex') }, { k: 'fill', addr: addr + 10, len: 64, seed: g.int(2 ** 31) });
    }
  }
  const availBase = base + VQ_SIZE * 16;
  const slot = avail[q]! % VQ_SIZE;
  const entry = Buffer.alloc(2);
  entry.writeUInt16LE(g.chance(0.95) ? head : g.int(0x10000));
  ops.push({ k: 'poke', addr: availBase + 4 + slot * 2, hex: entry.toString('hex') });
  avail[q] = (avail[q]! + (g.chance(0.97) ? 1 : g.int(0x10000))) & 0xffff;
  const idx = Buffer.alloc(2);
  idx.writeUInt16LE(avail[q]!);
  ops.push({ k: 'poke', addr: availBase + 2, hex: idx.toString('hex') }, ioOut(0x10, q, 2));
  return ops;
}

function virtioOp(g: Gen, w: World, avail: number[], target: Target = 'virtio'): Op[] {
  switch (g.int(8)) {
    case 0:
    case 1:
    case 2:
      return virtioChain(g, g.chance(0.5) ? 0 : 1, avail);
    case 3:
      return g.chance(0.5) ? [ioIn(0x13)] : [ioOut(0x10, g.pick([0, 1, 2, 0xffff]), 2)];
    default:
      return genericOp(g, w, target);
  }
}

/** The operations of one episode, drawn as they are executed (replayable without the generator). */
export function* episodeOps(target: Target, seed: number, world: World, count: number): Generator<Op> {
  const g = gen(seed);
  const avail = [0, 0];
  if (target !== 'stack' && g.chance(0.85)) {
    const up = target === 'ne2000' ? ne2000BringUp(g) : target === 'rtl8139' ? rtl8139BringUp(g) : virtioBringUp(g);
    yield* up;
  }
  for (let i = 0; i < count; i++) {
    const ops = target === 'ne2000' ? ne2000Op(g, world) : target === 'rtl8139' ? rtl8139Op(g, world) : target === 'virtio' ? virtioOp(g, world, avail) : g.chance(0.9) ? [frameOp(g)] : [{ k: 'run', ms: g.pick([0, 1, 10, 200, 1000]) } as Op];
    yield* ops;
  }
}
