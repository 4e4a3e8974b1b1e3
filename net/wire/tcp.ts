/**
 * TCP segments (RFC 9293 §3.1) with the options the stack speaks: MSS (RFC 9293 §3.7.1), window
 * scale and timestamps (RFC 7323), SACK-permitted and SACK blocks (RFC 2018).
 *
 * Two faces, as everywhere in net/wire: `TcpView` is a checked view over the bytes (its constructor
 * validates the lengths once, after which no accessor reads out of bounds), and `TcpRepr` is the
 * plain representation the TCP state machine works on. `parseTcp` never throws; `emitTcp` writes
 * header, options and payload into a buffer the caller owns and fills in the checksum.
 */
import { ipv4ToBytes, type Ipv4Addr } from '../addr.js';
import { finishChecksum, foldSum, pseudoHeaderSum, sumBytes } from './checksum.js';
import type { Parsed } from './result.js';
import { startsAt } from '../byte-slab.js';

export const IPPROTO_TCP = 6;
export const TCP_HEADER_LEN = 20;
/** Data offset is 4 bits of 32-bit words: at most 60 bytes of header, 40 of options. */
export const TCP_MAX_HEADER_LEN = 60;

// Control bits (RFC 9293 §3.1; ECE and CWR from RFC 3168 §6.1), named as in BSD's tcp.h.
export const TH_FIN = 0x01;
export const TH_SYN = 0x02;
export const TH_RST = 0x04;
export const TH_PSH = 0x08;
export const TH_ACK = 0x10;
export const TH_URG = 0x20;
export const TH_ECE = 0x40;
export const TH_CWR = 0x80;

// Option kinds and lengths (IANA "TCP Option Kind Numbers").
export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MAXSEG = 2;
export const TCPOPT_WINDOW = 3;
export const TCPOPT_SACK_PERMITTED = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;
export const TCPOLEN_MAXSEG = 4;
export const TCPOLEN_WINDOW = 3;
export const TCPOLEN_SACK_PERMITTED = 2;
export const TCPOLEN_TIMESTAMP = 10;
/** RFC 7323 §2.3: a shift count above 14 is treated as 14. */
export const TCP_MAX_WINSHIFT = 14;

/** One SACK block: sequence numbers [left, right) the receiver holds (RFC 2018 §3). */
export interface SackBlock {
  left: number;
  right: number;
}

export interface TcpTimestamp {
  tsVal: number;
  tsEcr: number;
}

export interface TcpOptions {
  mss?: number;
  windowScale?: number;
  sackPermitted?: boolean;
  sackBlocks?: SackBlock[];
  timestamp?: TcpTimestamp;
}

/** A segment as the state machine sees it. `payload` is a view into the parsed bytes (no copy). */
export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  urgent: number;
  options: TcpOptions;
  payload: Uint8Array;
}

/** A checked view: constructing one (via `TcpView.check`) guarantees every accessor is in bounds. */
export class TcpView {
  private constructor(
    readonly bytes: Uint8Array,
    readonly headerLength: number,
  ) {}

  static check(bytes: Uint8Array): Parsed<TcpView> {
    if (bytes.length < TCP_HEADER_LEN) return { ok: false, error: 'truncated' };
    const headerLength = (bytes[12]! >> 4) * 4;
    if (headerLength < TCP_HEADER_LEN) return { ok: false, error: 'bad-length' };
    if (headerLength > bytes.length) return { ok: false, error: 'truncated' };
    return { ok: true, value: new TcpView(bytes, headerLength) };
  }

  private u16(o: number): number {
    return (this.bytes[o]! << 8) | this.bytes[o + 1]!;
  }
  private u32(o: number): number {
    const b = this.bytes;
    return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
  }

  get srcPort(): number {
    return this.u16(0);
  }
  get dstPort(): number {
    return this.u16(2);
  }
  get seq(): number {
    return this.u32(4);
  }
  get ack(): number {
    return this.u32(8);
  }
  /** Data offset in 32-bit words. */
  get dataOffset(): number {
    return this.headerLength >> 2;
  }
  get flags(): number {
    return this.bytes[13]!;
  }
  get window(): number {
    return this.u16(14);
  }
  get checksum(): number {
    return this.u16(16);
  }
  get urgent(): number {
    return this.u16(18);
  }
  get optionBytes(): Uint8Array {
    return this.bytes.subarray(TCP_HEADER_LEN, this.headerLength);
  }
  get payload(): Uint8Array {
    return this.bytes.subarray(this.headerLength);
  }

  /** Whether the checksum over pseudo-header, header and data is right (RFC 9293 §3.1). */
  verifyChecksum(src: Ipv4Addr, dst: Ipv4Addr): boolean {
    return foldSum(sumBytes(this.bytes, tcpPseudoSum(src, dst, this.bytes.length))) === 0xffff;
  }
}

const srcScratch = new Uint8Array(4);
const dstScratch = new Uint8Array(4);

function tcpPseudoSum(src: Ipv4Addr, dst: Ipv4Addr, length: number): number {
  return pseudoHeaderSum(ipv4ToBytes(src, srcScratch), ipv4ToBytes(dst, dstScratch), IPPROTO_TCP, length);
}

/** The checksum field value for a segment whose checksum field currently holds zero. */
export function tcpChecksum(segment: Uint8Array, src: Ipv4Addr, dst: Ipv4Addr): number {
  return finishChecksum(sumBytes(segment, tcpPseudoSum(src, dst, segment.length)));
}

/**
 * Options (RFC 9293 §3.2): EOL ends the list, NOP pads, every other kind carries a length octet
 * covering kind and length. Unknown kinds are skipped by their length; a known kind with a length
 * it cannot have is ignored (as Linux and BSD do). A length that runs past the header, or below 2,
 * makes the option list unparsable.
 */
export function parseTcpOptions(bytes: Uint8Array): Parsed<TcpOptions> {
  const options: TcpOptions = {};
  let i = 0;
  while (i < bytes.length) {
    const kind = bytes[i]!;
    if (kind === TCPOPT_EOL) break;
    if (kind === TCPOPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= bytes.length) return { ok: false, error: 'bad-option' };
    const len = bytes[i + 1]!;
    if (len < 2 || i + len > bytes.length) return { ok: false, error: 'bad-option' };
    const o = i + 2;
    switch (kind) {
      case TCPOPT_MAXSEG:
        if (len === TCPOLEN_MAXSEG) options.mss = (bytes[o]! << 8) | bytes[o + 1]!;
        break;
      case TCPOPT_WINDOW:
        if (len === TCPOLEN_WINDOW) options.windowScale = Math.min(bytes[o]!, TCP_MAX_WINSHIFT);
        break;
      case TCPOPT_SACK_PERMITTED:
        if (len === TCPOLEN_SACK_PERMITTED) options.sackPermitted = true;
        break;
      case TCPOPT_SACK:
        if ((len - 2) % 8 === 0 && len > 2) {
          const blocks: SackBlock[] = [];
          for (let b = o; b < i + len; b += 8) blocks.push({ left: readU32(bytes, b), right: readU32(bytes, b + 4) });
          options.sackBlocks = blocks;
        }
        break;
      case TCPOPT_TIMESTAMP:
        if (len === TCPOLEN_TIMESTAMP) options.timestamp = { tsVal: readU32(bytes, o), tsEcr: readU32(bytes, o + 4) };
        break;
      default:
        break; // unknown option: skipped by its length
    }
    i += len;
  }
  return { ok: true, value: options };
}

/**
 * Parse a segment. With `pseudo` (the IP source and destination) the checksum is verified too.
 * Never throws: a short buffer, a bad data offset, bad options or a bad checksum are error values.
 */
export function parseTcp(bytes: Uint8Array, pseudo?: { src: Ipv4Addr; dst: Ipv4Addr }): Parsed<TcpRepr> {
  const checked = TcpView.check(bytes);
  if (!checked.ok) return checked;
  const view = checked.value;
  if (pseudo && !view.verifyChecksum(pseudo.src, pseudo.dst)) return { ok: false, error: 'bad-checksum' };
  const options = view.headerLength > TCP_HEADER_LEN ? parseTcpOptions(view.optionBytes) : { ok: true as const, value: {} };
  if (!options.ok) return options;
  return {
    ok: true,
    value: {
      srcPort: view.srcPort,
      dstPort: view.dstPort,
      seq: view.seq,
      ack: view.ack,
      flags: view.flags,
      window: view.window,
      urgent: view.urgent,
      options: options.value,
      payload: view.payload,
    },
  };
}

/** Bytes the options take on the wire, padded with NOPs to a multiple of 4. */
export function tcpOptionsLength(o: TcpOptions): number {
  let n = 0;
  if (o.mss !== undefined) n += TCPOLEN_MAXSEG;
  if (o.windowScale !== undefined) n += 4; // NOP + 3
  if (o.sackPermitted && o.timestamp) n += 12; // SACK-permitted + timestamps share one NOP-free pair of words
  else {
    if (o.sackPermitted) n += 4; // NOP NOP + 2
    if (o.timestamp) n += 12; // NOP NOP + 10
  }
  if (o.sackBlocks && o.sackBlocks.length > 0) n += 4 + 8 * o.sackBlocks.length; // NOP NOP + 2 + 8n
  return n;
}

export function tcpHeaderLength(repr: Pick<TcpRepr, 'options'>): number {
  return TCP_HEADER_LEN + tcpOptionsLength(repr.options);
}

/** Header + options + payload length of `repr` on the wire. */
export function tcpEncodingLength(repr: TcpRepr): number {
  return tcpHeaderLength(repr) + repr.payload.length;
}

/**
 * Write `repr` into `buf` at `offset` (header, options in the layout Linux uses, payload) with the
 * checksum computed over the IPv4 pseudo-header of `src` → `dst`. Returns the bytes written.
 * Throws RangeError only for a caller error: a buffer too small, or options beyond 40 bytes.
 * With `partialChecksum`, the field gets only the folded pseudo-header sum (Linux's
 * CHECKSUM_PARTIAL: summing from the TCP header to the end and complementing finishes it), for a
 * port that finishes checksums itself (FramePort.gsoChecksumPartial).
 */
export function emitTcp(repr: TcpRepr, buf: Uint8Array, offset: number, src: Ipv4Addr, dst: Ipv4Addr, partialChecksum = false): number {
  const optLen = tcpOptionsLength(repr.options);
  if (optLen > TCP_MAX_HEADER_LEN - TCP_HEADER_LEN) throw new RangeError(`TCP options too long (${optLen} bytes)`);
  const hlen = TCP_HEADER_LEN + optLen;
  const total = hlen + repr.payload.length;
  if (offset + total > buf.length) throw new RangeError('buffer too small for TCP segment');
  const b = buf;
  let o = offset;
  b[o] = repr.srcPort >> 8;
  b[o + 1] = repr.srcPort;
  b[o + 2] = repr.dstPort >> 8;
  b[o + 3] = repr.dstPort;
  writeU32(b, o + 4, repr.seq);
  writeU32(b, o + 8, repr.ack);
  b[o + 12] = (hlen >> 2) << 4;
  b[o + 13] = repr.flags;
  b[o + 14] = repr.window >> 8;
  b[o + 15] = repr.window;
  b[o + 16] = 0;
  b[o + 17] = 0;
  b[o + 18] = repr.urgent >> 8;
  b[o + 19] = repr.urgent;
  o += TCP_HEADER_LEN;
  const opt = repr.options;
  if (opt.mss !== undefined) {
    b[o++] = TCPOPT_MAXSEG;
    b[o++] = TCPOLEN_MAXSEG;
    b[o++] = opt.mss >> 8;
    b[o++] = opt.mss;
  }
  if (opt.sackPermitted && opt.timestamp) {
    b[o++] = TCPOPT_SACK_PERMITTED;
    b[o++] = TCPOLEN_SACK_PERMITTED;
    o = writeTimestamp(b, o, opt.timestamp);
  } else {
    if (opt.sackPermitted) {
      b[o++] = TCPOPT_NOP;
      b[o++] = TCPOPT_NOP;
      b[o++] = TCPOPT_SACK_PERMITTED;
      b[o++] = TCPOLEN_SACK_PERMITTED;
    }
    if (opt.timestamp) {
      b[o++] = TCPOPT_NOP;
      b[o++] = TCPOPT_NOP;
      o = writeTimestamp(b, o, opt.timestamp);
    }
  }
  if (opt.windowScale !== undefined) {
    b[o++] = TCPOPT_NOP;
    b[o++] = TCPOPT_WINDOW;
    b[o++] = TCPOLEN_WINDOW;
    b[o++] = opt.windowScale;
  }
  if (opt.sackBlocks && opt.sackBlocks.length > 0) {
    b[o++] = TCPOPT_NOP;
    b[o++] = TCPOPT_NOP;
    b[o++] = TCPOPT_SACK;
    b[o++] = 2 + 8 * opt.sackBlocks.length;
    for (const blk of opt.sackBlocks) {
      writeU32(b, o, blk.left);
      writeU32(b, o + 4, blk.right);
      o += 8;
    }
  }
  // A payload the caller already placed where it belongs (a transport building in place) stays.
  const p = repr.payload;
  if (!startsAt(p, b, o)) b.set(p, o);
  const segment = b.subarray(offset, offset + total);
  const ck = partialChecksum ? foldSum(tcpPseudoSum(src, dst, segment.length)) : tcpChecksum(segment, src, dst);
  b[offset + 16] = ck >> 8;
  b[offset + 17] = ck;
  return total;
}

function writeTimestamp(b: Uint8Array, o: number, ts: TcpTimestamp): number {
  b[o] = TCPOPT_TIMESTAMP;
  b[o + 1] = TCPOLEN_TIMESTAMP;
  writeU32(b, o + 2, ts.tsVal);
  writeU32(b, o + 6, ts.tsEcr);
  return o + TCPOLEN_TIMESTAMP;
}

function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** Flags as text, tcpdump style ("S.", "F.", "R"), for logs and test messages. */
export function formatTcpFlags(flags: number): string {
  let s = '';
  if (flags & TH_SYN) s += 'S';
  if (flags & TH_FIN) s += 'F';
  if (flags & TH_RST) s += 'R';
  if (flags & TH_PSH) s += 'P';
  if (flags & TH_URG) s += 'U';
  if (flags & TH_ECE) s += 'E';
  if (flags & TH_CWR) s += 'W';
  if (flags & TH_ACK) s += '.';
  return s || 'none';
}
