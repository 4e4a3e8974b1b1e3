import { MAX_FRAME } from '../../net/frame-port.js';
import { foldSum, internetChecksum, pseudoHeaderSum, sumBytes } from '../../net/wire/checksum.js';
import { finishIpv4HeaderChecksum, tcpv4Layout } from './tcp-gso.js';

/**
 * Coalescing of TCP/IPv4 segments into one large segment: the reverse of tcp-gso.ts's cutting, as
 * Linux's GRO does in a NIC driver (net/ipv4/tcp_offload.c, tcp_gro_receive): consecutive in-order
 * segments of one flow, handed over together, leave as one frame of up to 64 KiB with a segment
 * size, for a far end that takes GSO frames whole (a TAP with offloads). The merged stream is the
 * same bytes; the far end's stack sees one segment where it would have seen many, and sends one ACK.
 *
 * A segment is merged only where GRO would merge it: IPv4 without options or fragmentation, TCP
 * with ACK and at most PSH besides, both checksums correct (a corrupt segment is not made valid by
 * merging: it goes out as it came), and, against what is held, the same addresses, ports, TOS, TTL,
 * DF, ACK number, window and TCP options byte for byte, the next sequence number, the next IP ID
 * (or the same one with DF set), and a payload no longer than the first's. A shorter segment, or
 * one with PSH, is the last of its frame. Anything else flushes what is held and goes out as it is.
 */

const ETH_HLEN = 14;
const IP_AT = ETH_HLEN;
const TCP_ACK = 0x10;
const TCP_PSH = 0x08;
/** The largest frame merged: a 1500-byte MTU and the Ethernet header. */
const MTU_FRAME = ETH_HLEN + 1500;

/**
 * What leaves: a frame; the segment size when it is a merge of several (0: one frame, as it came);
 * how many frames it stands for and their bytes as they came. Returns whether it went out.
 */
export type CoalescedOut = (frame: Uint8Array, gsoSize: number, segments: number, bytesIn: number) => boolean;

export class TcpCoalescer {
  private readonly buf = new Uint8Array(MAX_FRAME);
  /** Bytes held in `buf`; 0 when nothing is held. */
  private len = 0;
  private segments = 0;
  private bytesIn = 0;
  private tcpAt = 0;
  private hdrLen = 0;
  private gsoSize = 0;
  private nextSeq = 0;
  private firstId = 0;
  private dontFragment = false;
  /** Unfolded sum of the payload bytes held, as they lie in the merged segment. */
  private payloadSum = 0;

  constructor(private readonly out: CoalescedOut) {}

  /** True while a frame is held (the owner must `flush` before its turn ends). */
  get holding(): boolean {
    return this.len > 0;
  }

  /**
   * Take one frame: merged into what is held, held as the start of a new merge, or sent at once.
   * Returns false only for a frame sent at once that did not go out (a held one counts as taken).
   */
  push(frame: Uint8Array): boolean {
    const seg = this.mergeable(frame);
    if (seg === null) {
      this.flush();
      return this.out(frame, 0, 1, frame.length);
    }
    if (this.len > 0 && this.matches(frame, seg)) this.append(frame, seg);
    else {
      this.flush();
      this.start(frame, seg);
    }
    // PSH ends a merge at once (the sender wants it delivered); so does a short segment.
    if (frame[seg.tcpAt + 13]! & TCP_PSH || seg.payloadLen < this.gsoSize || this.len + this.gsoSize > MAX_FRAME) this.flush();
    return true;
  }

  /** Send what is held. */
  flush(): void {
    if (this.len === 0) return;
    const n = this.len;
    this.len = 0;
    const f = this.buf.subarray(0, n);
    if (this.segments === 1) {
      this.out(f, 0, 1, n);
      return;
    }
    // IPv4 total length and header checksum for the merged datagram.
    f[IP_AT + 2] = (n - ETH_HLEN) >> 8;
    f[IP_AT + 3] = (n - ETH_HLEN) & 0xff;
    finishIpv4HeaderChecksum(f, this.tcpAt);
    // TCP checksum from the pseudo-header, the header and the payload sums gathered on the way.
    const t = this.tcpAt;
    f[t + 16] = 0;
    f[t + 17] = 0;
    const pseudo = pseudoHeaderSum(f.subarray(IP_AT + 12, IP_AT + 16), f.subarray(IP_AT + 16, IP_AT + 20), 6, n - t);
    const sum = ~foldSum(pseudo + sumBytes(f.subarray(t, this.hdrLen)) + this.payloadSum) & 0xffff;
    f[t + 16] = sum >> 8;
    f[t + 17] = sum & 0xff;
    this.out(f, this.gsoSize, this.segments, this.bytesIn);
  }

  /** The layout and payload sum of a segment GRO would merge, or null. */
  private mergeable(frame: Uint8Array): { tcpAt: number; hdrLen: number; payloadLen: number; payloadSum: number } | null {
    // Only MTU-sized frames: a GSO frame (a virtio guest's TSO segment) is already as large as a
    // merge gets, and verifying its checksum would cost a pass over 64 KiB for nothing.
    if (frame.length > MTU_FRAME) return null;
    const l = tcpv4Layout(frame);
    if (!l || l.tcpAt !== IP_AT + 20) return null; // IP options: not merged (as GRO)
    if ((frame[IP_AT + 6]! & 0x3f) !== 0 || frame[IP_AT + 7] !== 0) return null; // MF or a fragment offset
    if (frame[l.tcpAt + 13]! & ~(TCP_ACK | TCP_PSH) || !(frame[l.tcpAt + 13]! & TCP_ACK)) return null;
    const payloadLen = frame.length - l.hdrLen;
    if (payloadLen === 0) return null;
    if (internetChecksum(frame.subarray(IP_AT, l.tcpAt)) !== 0) return null;
    const payloadSum = sumBytes(frame.subarray(l.hdrLen));
    const pseudo = pseudoHeaderSum(frame.subarray(IP_AT + 12, IP_AT + 16), frame.subarray(IP_AT + 16, IP_AT + 20), 6, frame.length - l.tcpAt);
    // The payload starts at an even offset of the segment (the TCP header is whole 32-bit words).
    if (foldSum(pseudo + sumBytes(frame.subarray(l.tcpAt, l.hdrLen)) + payloadSum) !== 0xffff) return null;
    return { tcpAt: l.tcpAt, hdrLen: l.hdrLen, payloadLen, payloadSum };
  }

  private matches(frame: Uint8Array, seg: { tcpAt: number; hdrLen: number; payloadLen: number }): boolean {
    const b = this.buf;
    if (seg.hdrLen !== this.hdrLen || seg.payloadLen > this.gsoSize) return false;
    if (this.len + seg.payloadLen > MAX_FRAME) return false;
    // Ethernet addresses; TOS; TTL and protocol; addresses.
    for (let i = 0; i < 12; i++) if (frame[i] !== b[i]) return false;
    if (frame[IP_AT + 1] !== b[IP_AT + 1] || frame[IP_AT + 8] !== b[IP_AT + 8]) return false;
    for (let i = IP_AT + 12; i < IP_AT + 20; i++) if (frame[i] !== b[i]) return false;
    const df = (frame[IP_AT + 6]! & 0x40) !== 0;
    if (df !== this.dontFragment) return false;
    const id = (frame[IP_AT + 4]! << 8) | frame[IP_AT + 5]!;
    if (id !== ((this.firstId + this.segments) & 0xffff) && !(df && id === this.firstId)) return false;
    const t = this.tcpAt;
    // Ports; then ACK number, data offset, window and every option byte (not seq, flags, checksum).
    for (let i = 0; i < 4; i++) if (frame[t + i] !== b[t + i]) return false;
    if (seqOf(frame, t) !== this.nextSeq) return false;
    for (let i = t + 8; i < t + 13; i++) if (frame[i] !== b[i]) return false;
    if (frame[t + 14] !== b[t + 14] || frame[t + 15] !== b[t + 15]) return false;
    for (let i = t + 20; i < this.hdrLen; i++) if (frame[i] !== b[i]) return false;
    return true;
  }

  private start(frame: Uint8Array, seg: { tcpAt: number; hdrLen: number; payloadLen: number; payloadSum: number }): void {
    this.buf.set(frame);
    this.len = frame.length;
    this.segments = 1;
    this.bytesIn = frame.length;
    this.tcpAt = seg.tcpAt;
    this.hdrLen = seg.hdrLen;
    this.gsoSize = seg.payloadLen;
    this.nextSeq = (seqOf(frame, seg.tcpAt) + seg.payloadLen) >>> 0;
    this.firstId = (frame[IP_AT + 4]! << 8) | frame[IP_AT + 5]!;
    this.dontFragment = (frame[IP_AT + 6]! & 0x40) !== 0;
    this.payloadSum = seg.payloadSum;
  }

  private append(frame: Uint8Array, seg: { tcpAt: number; hdrLen: number; payloadLen: number; payloadSum: number }): void {
    // A payload landing at an odd offset of the merged segment pairs its bytes the other way round.
    const at = this.len - this.tcpAt;
    const s = foldSum(seg.payloadSum);
    this.payloadSum += at & 1 ? ((s & 0xff) << 8) | (s >> 8) : s;
    this.buf.set(frame.subarray(seg.hdrLen), this.len);
    this.len += seg.payloadLen;
    this.segments++;
    this.bytesIn += frame.length;
    this.nextSeq = (this.nextSeq + seg.payloadLen) >>> 0;
    // The last segment's PSH goes on the merged one.
    this.buf[this.tcpAt + 13] = this.buf[this.tcpAt + 13]! | (frame[seg.tcpAt + 13]! & TCP_PSH);
  }
}

function seqOf(frame: Uint8Array, tcpAt: number): number {
  return ((frame[tcpAt + 4]! << 24) | (frame[tcpAt + 5]! << 16) | (frame[tcpAt + 6]! << 8) | frame[tcpAt + 7]!) >>> 0;
}
