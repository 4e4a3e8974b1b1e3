/**
 * Frames for the fuzz harness: a corpus of real traffic (ARP, ICMP, TCP, UDP between two net/
 * stacks) and the mutations applied to it.
 */
import { VirtualClock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import { createLink } from '../../net/link.js';
import { mulberry32 } from '../../net/random.js';
import { Stack } from '../../net/stack.js';
import { internetChecksum, sumBytes } from '../../net/wire/checksum.js';
import { ip, PEER_MAC, STACK_MAC, type Op } from './ops.js';

/** The stack under test listens here: TCP echo on 7, a UDP socket on 9. */
export function listenEcho(s: Stack): void {
  s.tcp.listen(7, (c) => {
    c.onData = (d) => {
      c.write(d);
      c.recved(d.length);
    };
    c.onEnd = () => c.shutdown();
  });
  s.udp.socket().bind(9);
}

let corpusCache: Uint8Array[] | null = null;

/**
 * Real traffic to mutate: ARP, ICMP echo, a TCP handshake with data and close, UDP — what a peer
 * stack sends to the stack at 10.0.0.2, recorded once (deterministic: virtual time, fixed seeds).
 */
export function corpus(): Uint8Array[] {
  if (corpusCache) return corpusCache;
  const clock = new VirtualClock();
  const [pa, pb] = createLink(clock, ['peer', 'victim']);
  const frames: Uint8Array[] = [];
  const recorder: FramePort = {
    name: 'recorder',
    get stats() {
      return pa.stats;
    },
    send: (f) => {
      frames.push(f.slice());
      return pa.send(f);
    },
    setReceiver: (r) => pa.setReceiver(r),
  };
  const peer = new Stack({ clock, name: 'peer', random: mulberry32(1) });
  const victim = new Stack({ clock, name: 'victim', random: mulberry32(2) });
  peer.configure(peer.addNetif('eth0', recorder, new Uint8Array(PEER_MAC)), ip(10, 0, 0, 1), 24);
  victim.configure(victim.addNetif('eth0', pb, new Uint8Array(STACK_MAC)), ip(10, 0, 0, 2), 24);
  listenEcho(victim);
  void peer.ping(ip(10, 0, 0, 2), 1, 1400);
  const c = peer.tcp.connect(ip(10, 0, 0, 2), 7);
  c.onConnected = () => {
    c.write(new Uint8Array(3000).fill(0x61));
    c.shutdown();
  };
  c.onData = (d) => c.recved(d.length);
  const u = peer.udp.socket().bind(0);
  u.send(new Uint8Array(100).fill(0x62), ip(10, 0, 0, 2), 9);
  clock.runUntil(() => false, 2_000);
  corpusCache = frames;
  return frames;
}

export const INTERESTING_LEN = [14, 15, 42, 59, 60, 61, 64, 576, 1499, 1500, 1514, 1515, 1518, 1519, 1522, 1642, 4096, 9000, 9018, 16_384, 20_000, 65_535];

export function buildFrame(op: Extract<Op, { k: 'frame' }>, ownMac: number[]): Uint8Array {
  const r = mulberry32(op.seed);
  const pool = corpus();
  let f: Uint8Array;
  if (op.corpus < 0 || pool.length === 0) {
    f = new Uint8Array(Math.max(14, Math.min(65_535, op.len)));
    for (let i = 0; i < f.length; i++) f[i] = (r() * 256) | 0;
  } else f = pool[op.corpus % pool.length]!.slice();
  const dst = [ownMac, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01], [0x02, 0x11, 0x22, 0x33, 0x44, 0x55]][op.dst];
  if (dst) f.set(dst, 0);
  for (let m = 0; m < op.mutations; m++) f = mutate(f, r);
  if (op.fix) fixChecksums(f);
  return f;
}

/** Recompute the IPv4 header checksum and the TCP/UDP checksum, where the lengths allow it. */
function fixChecksums(f: Uint8Array): void {
  if (f.length < 34 || f[12] !== 0x08 || f[13] !== 0x00) return;
  const ihl = (f[14]! & 0x0f) * 4;
  if (ihl < 20 || 14 + ihl > f.length) return;
  const dv = new DataView(f.buffer, f.byteOffset, f.length);
  dv.setUint16(24, 0);
  dv.setUint16(24, internetChecksum(f.subarray(14, 14 + ihl)));
  const total = dv.getUint16(16);
  const proto = f[23]!;
  if (total < ihl || 14 + total > f.length || (proto !== 6 && proto !== 17)) return;
  const seg = f.subarray(14 + ihl, 14 + total);
  const at = proto === 6 ? 16 : 6;
  if (seg.length < at + 2) return;
  seg[at] = 0;
  seg[at + 1] = 0;
  const pseudo = sumBytes(f.subarray(26, 34)) + proto + seg.length;
  const c = internetChecksum(seg, pseudo);
  seg[at] = c >> 8;
  seg[at + 1] = c & 0xff;
}

function mutate(f: Uint8Array, r: () => number): Uint8Array {
  const at = (n: number): number => Math.floor(r() * n);
  switch (at(7)) {
    case 0: {
      const i = at(f.length);
      f[i] = f[i]! ^ (1 << at(8));
      return f;
    }
    case 1: {
      f[at(f.length)] = [0, 0xff, 0x7f, 0x80, 0x01][at(5)]!;
      return f;
    }
    case 2: {
      // A 16-bit field (lengths, ports, checksums, offsets) set to an edge value.
      const i = at(Math.max(1, f.length - 1));
      const v = [0, 0xffff, 0x7fff, 0x8000, 1, 20, 40, 1500, f.length, f.length - 14][at(10)]! & 0xffff;
      f[i] = v >> 8;
      if (i + 1 < f.length) f[i + 1] = v & 0xff;
      return f;
    }
    case 3:
      return f.slice(0, Math.max(14, at(f.length + 1)));
    case 4: {
      const len = Math.min(65_535, f.length + 1 + at(r() < 0.2 ? 64_000 : 2000));
      const g = new Uint8Array(len);
      g.set(f);
      for (let i = f.length; i < len; i++) g[i] = (r() * 256) | 0;
      return g;
    }
    case 5: {
      // IPv4 header length / flags / fragment offset / TTL bytes, where parsers make choices.
      if (f.length > 22) {
        f[14] = 0x40 | at(16);
        f[20] = at(256);
        f[21] = at(256);
      }
      return f;
    }
    default: {
      // TCP data offset and flags, if this is TCP over a 20-byte IPv4 header.
      if (f.length > 47 && f[23] === 6) {
        f[46] = at(16) << 4;
        f[47] = at(256);
      }
      return f;
    }
  }
}
