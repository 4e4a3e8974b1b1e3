/**
 * Initial sequence numbers per RFC 6528 §3: ISN = M + F(localip, localport, remoteip, remoteport,
 * secretkey), M a clock ticking every 4 µs, F a keyed cryptographic hash. Each 4-tuple gets its own
 * sequence space (an off-path attacker cannot predict one connection's ISN from another's), and
 * a new incarnation of the same 4-tuple starts ahead of the old one (the clock moved on).
 *
 * F is the first 32 bits of HMAC-SHA-256 keyed with a 128-bit secret drawn once per TCP layer
 * from its configured random source, so a seeded source makes every ISN reproducible.
 */
import { createHmac } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Ipv4Addr } from '../addr.js';

/** RFC 6528 §3 (after RFC 793): M advances once every 4 µs. */
const TICKS_PER_MS = 250;

export class IsnGenerator {
  private readonly key: Buffer;

  constructor(
    private readonly clock: Clock,
    random: () => number,
  ) {
    this.key = Buffer.alloc(16);
    for (let i = 0; i < 16; i += 4) this.key.writeUInt32BE(Math.floor(random() * 0x100000000) >>> 0, i);
  }

  /** The ISN for a connection on this 4-tuple now. */
  isn(localAddr: Ipv4Addr, localPort: number, remoteAddr: Ipv4Addr, remotePort: number): number {
    const tuple = Buffer.alloc(12);
    tuple.writeUInt32BE(localAddr >>> 0, 0);
    tuple.writeUInt16BE(localPort, 4);
    tuple.writeUInt32BE(remoteAddr >>> 0, 6);
    tuple.writeUInt16BE(remotePort, 10);
    const f = createHmac('sha256', this.key).update(tuple).digest().readUInt32BE(0);
    const m = Math.floor(this.clock.now() * TICKS_PER_MS);
    return (f + m) >>> 0;
  }
}
