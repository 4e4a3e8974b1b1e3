/** What the fuzz harness does to a system under test, as plain data (./harness.ts). */
import type { AccessSize } from '../../src/vmm/io-bus.js';

export type Target = 'ne2000' | 'rtl8139' | 'virtio' | 'stack';
export const TARGETS: readonly Target[] = ['ne2000', 'rtl8139', 'virtio', 'stack'];

/** One guest or wire action. Plain data, so a finding prints as JSON and replays exactly. */
export type Op =
  | { k: 'in'; bar: number; off: number; size: AccessSize }
  | { k: 'out'; bar: number; off: number; size: AccessSize; v: number }
  /** PCI configuration: `addr` goes to 0xCF8, the access to 0xCFC + `port` (0–3). */
  | { k: 'cfg-in'; addr: number; port: number; size: AccessSize }
  | { k: 'cfg-out'; addr: number; port: number; size: AccessSize; v: number }
  /** Bytes into guest memory (descriptors, rings, buffers), as hex. */
  | { k: 'poke'; addr: number; hex: string }
  /** Random bytes from mulberry32(seed) into guest memory. */
  | { k: 'fill'; addr: number; len: number; seed: number }
  /**
   * A frame from the wire: corpus frame `corpus` (−1: random bytes of `len`), destination rewritten
   * (0 the NIC's MAC, 1 broadcast, 2 multicast, 3 random unicast, 4 as it is), then `mutations`
   * mutations drawn from mulberry32(seed); with `fix`, the IPv4 header and TCP/UDP checksums are
   * recomputed afterwards, so the mutation reaches the protocol logic behind the checksum check.
   */
  | { k: 'frame'; corpus: number; len: number; dst: number; mutations: number; seed: number; fix?: boolean }
  /** Let `ms` of virtual time pass (timers, link delivery, device work). */
  | { k: 'run'; ms: number };

export const GUEST_MB = 2;
export const GUEST_BYTES = GUEST_MB * 1024 * 1024;
/** Largest frame (no FCS) a NIC may put on a cable that did not offer GSO: 1514 + a VLAN tag. */
export const MAX_TX_FRAME = 1518;
export const NIC_MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
export const PEER_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
export const STACK_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

export function ip(a: number, b: number, c: number, d: number): number {
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

export function cfgAddr(slot: number, reg: number): number {
  return (0x80000000 | (slot << 11) | (reg & 0xfc)) >>> 0;
}
