import type { Clock } from '../clock.js';
import type { Ipv4Header } from '../wire/ipv4.js';
import { IP_MF, IP_OFFMASK } from '../wire/ipv4.js';

/**
 * IPv4 fragment reassembly (RFC 791 §3.2, with RFC 815's hole idea reduced to a sorted list):
 * bounded in datagrams, in bytes held and in time. Overlapping fragments with different data are
 * resolved by keeping the first arrival (RFC 5722's spirit for IPv6: overlaps are suspicious);
 * a datagram that would exceed 65535 bytes is discarded.
 */
export interface ReassemblyOptions {
  timeoutMs: number;
  maxDatagrams: number;
  maxBytes: number;
}

export const DEFAULT_REASSEMBLY: ReassemblyOptions = { timeoutMs: 30_000, maxDatagrams: 64, maxBytes: 1 << 20 };

interface Pending {
  pieces: { start: number; data: Uint8Array }[];
  total: number; // -1 until the last fragment arrives
  bytes: number;
  header: Uint8Array; // the first fragment's header (offset 0), for the reassembled datagram
  timer: { cancel(): void };
  created: number;
}

export interface ReassemblyStats {
  fragments: number;
  reassembled: number;
  timeouts: number;
  dropsLimit: number;
  dropsBad: number;
}

export class Reassembler {
  private readonly pending = new Map<string, Pending>();
  private bytesHeld = 0;
  readonly stats: ReassemblyStats = { fragments: 0, reassembled: 0, timeouts: 0, dropsLimit: 0, dropsBad: 0 };

  constructor(
    private readonly clock: Clock,
    private readonly options: ReassemblyOptions = DEFAULT_REASSEMBLY,
    /** Told when a datagram timed out with its first fragment present (ICMP time exceeded, code 1). */
    private readonly onTimeout: (firstFragmentPacket: Uint8Array | null) => void = () => {},
  ) {}

  /** Feed a fragment; returns the whole datagram's payload and first header once complete. */
  input(h: Ipv4Header): { payload: Uint8Array; headerBytes: Uint8Array } | null {
    this.stats.fragments++;
    const key = `${h.src}:${h.dst}:${h.protocol}:${h.id}`;
    const start = (h.flagsOffset & IP_OFFMASK) * 8;
    const more = (h.flagsOffset & IP_MF) !== 0;
    const data = h.payload;
    if (start + data.length > 65535 - h.headerLength || (more && data.length % 8 !== 0)) {
      this.stats.dropsBad++;
      this.drop(key);
      return null;
    }
    let p = this.pending.get(key);
    if (!p) {
      if (this.pending.size >= this.options.maxDatagrams) {
        this.stats.dropsLimit++;
        return null;
      }
      p = {
        pieces: [],
        total: -1,
        bytes: 0,
        header: new Uint8Array(0),
        created: this.clock.now(),
        timer: this.clock.setTimer(this.options.timeoutMs, () => {
          const q = this.pending.get(key);
          if (!q) return;
          this.stats.timeouts++;
          this.drop(key);
          this.onTimeout(q.header.length > 0 ? q.header : null);
        }),
      };
      this.pending.set(key, p);
    }
    if (this.bytesHeld + data.length > this.options.maxBytes) {
      this.stats.dropsLimit++;
      this.drop(key);
      return null;
    }
    if (!more) {
      const end = start + data.length;
      if (p.total >= 0 && p.total !== end) {
        this.stats.dropsBad++;
        this.drop(key);
        return null;
      }
      p.total = end;
    }
    if (start === 0) p.header = h.packet.slice(0, h.headerLength + Math.min(8, data.length));
    // Keep only the bytes not already held (first arrival wins).
    const copy = data.slice();
    p.pieces.push({ start, data: copy });
    p.pieces.sort((a, b) => a.start - b.start);
    p.bytes += copy.length;
    this.bytesHeld += copy.length;
    if (p.total < 0) return null;
    let covered = 0;
    for (const piece of p.pieces) {
      if (piece.start > covered) return null; // a hole
      covered = Math.max(covered, piece.start + piece.data.length);
    }
    if (covered < p.total) return null;
    const out = new Uint8Array(p.total);
    // Later pieces first so that earlier (first-arrived at that offset after sorting) win on overlap.
    for (let i = p.pieces.length - 1; i >= 0; i--) {
      const piece = p.pieces[i]!;
      out.set(piece.data.subarray(0, Math.max(0, Math.min(piece.data.length, p.total - piece.start))), piece.start);
    }
    const headerBytes = p.header;
    this.drop(key);
    this.stats.reassembled++;
    return { payload: out, headerBytes };
  }

  private drop(key: string): void {
    const p = this.pending.get(key);
    if (!p) return;
    p.timer.cancel();
    this.bytesHeld -= p.bytes;
    this.pending.delete(key);
  }

  get held(): { datagrams: number; bytes: number } {
    return { datagrams: this.pending.size, bytes: this.bytesHeld };
  }
}
