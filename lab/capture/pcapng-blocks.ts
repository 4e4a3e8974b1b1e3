/**
 * pcapng blocks as Wireshark reads them (draft-ietf-opsawg-pcapng; FACTS.md, pcapng): the byte
 * format only, apart from the writers' batching and rotation. Little-endian throughout, as on the
 * machines that write them; readers take byte order from the Section Header's magic.
 *
 * Each encoder returns the whole block (type, length, body, options, trailing length), so a writer
 * copies it into its batch in one piece. The Enhanced Packet Block is the exception: it is the hot
 * path, so `writeEpb` writes it straight into the caller's buffer with no temporary.
 */

export const BLOCK_SHB = 0x0a0d0d0a;
export const BLOCK_IDB = 0x00000001;
export const BLOCK_ISB = 0x00000005;
export const BLOCK_EPB = 0x00000006;
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
export const LINKTYPE_ETHERNET = 1;

const OPT_ENDOFOPT = 0;
const OPT_COMMENT = 1;
const SHB_HARDWARE = 2;
const SHB_OS = 3;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const IF_FCSLEN = 13;
const EPB_FLAGS = 2;
const EPB_PACKETID = 5;
const ISB_STARTTIME = 2;
const ISB_ENDTIME = 3;
const ISB_IFRECV = 4;
const ISB_IFDROP = 5;

/** epb_flags bits 0-1: 01 inbound, 10 outbound. */
export const EPB_FLAG_INBOUND = 1;
export const EPB_FLAG_OUTBOUND = 2;

export const pad4 = (n: number): number => (n + 3) & ~3;

/** An option's bytes: code, length, value, zero padding to 32 bits. */
function option(code: number, value: Uint8Array): Buffer {
  const b = Buffer.alloc(4 + pad4(value.length));
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(value.length, 2);
  b.set(value, 4);
  return b;
}

const textOption = (code: number, text: string): Buffer => option(code, Buffer.from(text, 'utf8'));

function u64Option(code: number, v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v, 0);
  return option(code, b);
}

/** A timestamp option (isb_starttime/endtime): high 32 bits, then low 32 bits, in if_tsresol units. */
function tsOption(code: number, ts: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(Number(ts >> 32n), 0);
  b.writeUInt32LE(Number(ts & 0xffffffffn), 4);
  return option(code, b);
}

/** Wrap a block body and its options with the type and both length words. */
function block(type: number, body: Buffer, options: Buffer[]): Buffer {
  const opts = options.length > 0 ? [...options, Buffer.alloc(4)] : [];
  const len = 8 + body.length + opts.reduce((n, o) => n + o.length, 0) + 4;
  const out = Buffer.alloc(len);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(len, 4);
  body.copy(out, 8);
  let o = 8 + body.length;
  for (const x of opts) {
    x.copy(out, o);
    o += x.length;
  }
  out.writeUInt32LE(len, len - 4);
  return out;
}

export interface SectionInfo {
  /** shb_userappl: the writing program and its version ("netlab 0.1.0"). */
  userAppl: string;
  /** shb_os ("Linux 6.1.0 x64"). */
  os?: string;
  /** shb_hardware. */
  hardware?: string;
}

export function encodeShb(info: SectionInfo): Buffer {
  const body = Buffer.alloc(16);
  body.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
  body.writeUInt16LE(1, 4);
  body.writeUInt16LE(0, 6);
  // Section length unknown (-1): the file is written as it goes.
  body.writeBigInt64LE(-1n, 8);
  const opts = [textOption(SHB_USERAPPL, info.userAppl)];
  if (info.os) opts.push(textOption(SHB_OS, info.os));
  if (info.hardware) opts.push(textOption(SHB_HARDWARE, info.hardware));
  return block(BLOCK_SHB, body, opts);
}

export interface InterfaceInfo {
  name: string;
  description?: string;
  snaplen: number;
  /** Timestamp resolution: 6 (µs) or 9 (ns), as powers of ten. */
  tsresolDigits: number;
}

export function encodeIdb(i: InterfaceInfo): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16LE(LINKTYPE_ETHERNET, 0);
  body.writeUInt32LE(i.snaplen, 4);
  const opts = [textOption(IF_NAME, i.name)];
  if (i.description) opts.push(textOption(IF_DESCRIPTION, i.description));
  opts.push(option(IF_TSRESOL, Uint8Array.of(i.tsresolDigits)));
  // Frames are captured without their FCS (the FramePort contract), which Wireshark should know.
  opts.push(option(IF_FCSLEN, Uint8Array.of(0)));
  return block(BLOCK_IDB, body, opts);
}

export interface InterfaceStats {
  interfaceId: number;
  /** Time of these counts (the block's own timestamp), in if_tsresol units. */
  ts: bigint;
  startTime: bigint;
  endTime: bigint;
  /** Frames seen at the hop since the capture started. */
  received: bigint;
  /** Of those, frames the next element refused (dropped at this hop). */
  dropped: bigint;
}

export function encodeIsb(s: InterfaceStats): Buffer {
  const body = Buffer.alloc(12);
  body.writeUInt32LE(s.interfaceId, 0);
  body.writeUInt32LE(Number(s.ts >> 32n), 4);
  body.writeUInt32LE(Number(s.ts & 0xffffffffn), 8);
  return block(BLOCK_ISB, body, [
    tsOption(ISB_STARTTIME, s.startTime),
    tsOption(ISB_ENDTIME, s.endTime),
    u64Option(ISB_IFRECV, s.received),
    u64Option(ISB_IFDROP, s.dropped),
  ]);
}

/** Bytes of an EPB around its data: header 28, epb_flags 8, epb_packetid 12, end 4, trailer 4. */
export const EPB_OVERHEAD = 28 + 8 + 12 + 4 + 4;

/** Length of an EPB for `caplen` captured bytes and an optional comment. */
export function epbLength(caplen: number, comment?: Uint8Array): number {
  return EPB_OVERHEAD + pad4(caplen) + (comment ? 4 + pad4(comment.length) : 0);
}

/**
 * Write an Enhanced Packet Block for `frame` (cut to `caplen`) into `buf` at `at`; returns its
 * length. `packetId` is epb_packetid, the same for one frame on every interface it crossed.
 */
export function writeEpb(
  buf: Buffer,
  at: number,
  interfaceId: number,
  ts: bigint,
  frame: Uint8Array,
  caplen: number,
  flags: number,
  packetId: number,
  comment?: Uint8Array,
): number {
  const len = epbLength(caplen, comment);
  buf.writeUInt32LE(BLOCK_EPB, at);
  buf.writeUInt32LE(len, at + 4);
  buf.writeUInt32LE(interfaceId, at + 8);
  buf.writeUInt32LE(Number(ts >> 32n), at + 12);
  buf.writeUInt32LE(Number(ts & 0xffffffffn), at + 16);
  buf.writeUInt32LE(caplen, at + 20);
  buf.writeUInt32LE(frame.length, at + 24);
  buf.set(caplen === frame.length ? frame : frame.subarray(0, caplen), at + 28);
  // Padding must be zero; the caller's batch is reused, so clear it.
  let o = at + 28 + caplen;
  const dataEnd = at + 28 + pad4(caplen);
  buf.fill(0, o, dataEnd);
  o = dataEnd;
  if (comment) {
    buf.writeUInt16LE(OPT_COMMENT, o);
    buf.writeUInt16LE(comment.length, o + 2);
    buf.set(comment, o + 4);
    buf.fill(0, o + 4 + comment.length, o + 4 + pad4(comment.length));
    o += 4 + pad4(comment.length);
  }
  buf.writeUInt16LE(EPB_FLAGS, o);
  buf.writeUInt16LE(4, o + 2);
  buf.writeUInt32LE(flags, o + 4);
  buf.writeUInt16LE(EPB_PACKETID, o + 8);
  buf.writeUInt16LE(8, o + 10);
  buf.writeBigUInt64LE(BigInt(packetId), o + 12);
  buf.writeUInt16LE(OPT_ENDOFOPT, o + 20);
  buf.writeUInt16LE(0, o + 22);
  buf.writeUInt32LE(len, o + 24);
  return len;
}

// ---------------------------------------------------------------------------------------------
// Reading (what `lab captures` and `--follow` use; tshark stays the independent check in tests).

export interface PcapngPacket {
  interfaceId: number;
  /** Seconds since the epoch, as a float (µs precision survives; ns is rounded). */
  time: number;
  /** Exact timestamp in the interface's units. */
  ts: bigint;
  caplen: number;
  origlen: number;
  data: Uint8Array;
  direction: 'in' | 'out' | null;
  packetId: bigint | null;
  comments: string[];
}

export interface PcapngInterface {
  name: string | null;
  description: string | null;
  snaplen: number;
  linkType: number;
  unitsPerSec: bigint;
}

export interface PcapngStatistics {
  interfaceId: number;
  received: bigint | null;
  dropped: bigint | null;
}

export interface PcapngFile {
  userAppl: string | null;
  os: string | null;
  interfaces: PcapngInterface[];
  packets: PcapngPacket[];
  stats: PcapngStatistics[];
  /** Problems met while reading (a block cut short by a crash, an unknown byte order …). */
  problems: string[];
}

function readOptions(b: Buffer, start: number, end: number): Map<number, Buffer[]> {
  const m = new Map<number, Buffer[]>();
  let o = start;
  while (o + 4 <= end) {
    const code = b.readUInt16LE(o);
    const len = b.readUInt16LE(o + 2);
    if (code === OPT_ENDOFOPT) break;
    if (o + 4 + len > end) break;
    const list = m.get(code) ?? [];
    list.push(b.subarray(o + 4, o + 4 + len));
    m.set(code, list);
    o += 4 + pad4(len);
  }
  return m;
}

const text = (opts: Map<number, Buffer[]>, code: number): string | null => opts.get(code)?.[0]?.toString('utf8') ?? null;

function u64(opts: Map<number, Buffer[]>, code: number): bigint | null {
  const v = opts.get(code)?.[0];
  return v && v.length === 8 ? v.readBigUInt64LE(0) : null;
}

/**
 * Parse a little-endian pcapng file (what netlab writes) into its interfaces, packets and
 * statistics. Never throws on bad input: what cannot be read is listed in `problems`.
 */
export function parsePcapng(b: Buffer): PcapngFile {
  const f: PcapngFile = { userAppl: null, os: null, interfaces: [], packets: [], stats: [], problems: [] };
  let o = 0;
  while (o + 12 <= b.length) {
    const type = b.readUInt32LE(o);
    const len = b.readUInt32LE(o + 4);
    if (len < 12 || len % 4 !== 0 || o + len > b.length) {
      f.problems.push(`block at ${o} cut short (${b.length - o} of ${len} bytes)`);
      return f;
    }
    if (b.readUInt32LE(o + len - 4) !== len) {
      f.problems.push(`block at ${o}: trailing length differs`);
      return f;
    }
    const end = o + len - 4;
    if (type === BLOCK_SHB) {
      if (b.readUInt32LE(o + 8) !== BYTE_ORDER_MAGIC) {
        f.problems.push('section not little-endian (not written by netlab)');
        return f;
      }
      // A new section starts interface numbering again.
      f.interfaces = [];
      const opts = readOptions(b, o + 24, end);
      f.userAppl = text(opts, SHB_USERAPPL);
      f.os = text(opts, SHB_OS);
    } else if (type === BLOCK_IDB) {
      const opts = readOptions(b, o + 16, end);
      const res = opts.get(IF_TSRESOL)?.[0]?.[0] ?? 6;
      // High bit set means a power of two; netlab writes powers of ten only.
      const unitsPerSec = res & 0x80 ? 1n << BigInt(res & 0x7f) : 10n ** BigInt(res);
      f.interfaces.push({ name: text(opts, IF_NAME), description: text(opts, IF_DESCRIPTION), snaplen: b.readUInt32LE(o + 12), linkType: b.readUInt16LE(o + 8), unitsPerSec });
    } else if (type === BLOCK_EPB) {
      const ifId = b.readUInt32LE(o + 8);
      const ts = (BigInt(b.readUInt32LE(o + 12)) << 32n) | BigInt(b.readUInt32LE(o + 16));
      const caplen = b.readUInt32LE(o + 20);
      const origlen = b.readUInt32LE(o + 24);
      if (o + 28 + caplen > end) {
        f.problems.push(`packet at ${o}: captured length ${caplen} runs past its block`);
        return f;
      }
      const iface = f.interfaces[ifId];
      const units = iface?.unitsPerSec ?? 1_000_000n;
      const opts = readOptions(b, o + 28 + pad4(caplen), end);
      const flags = opts.get(EPB_FLAGS)?.[0];
      const dirBits = flags && flags.length === 4 ? flags.readUInt32LE(0) & 3 : 0;
      f.packets.push({
        interfaceId: ifId,
        time: Number(ts / units) + Number(ts % units) / Number(units),
        ts,
        caplen,
        origlen,
        data: b.subarray(o + 28, o + 28 + caplen),
        direction: dirBits === EPB_FLAG_INBOUND ? 'in' : dirBits === EPB_FLAG_OUTBOUND ? 'out' : null,
        packetId: u64(opts, EPB_PACKETID),
        comments: (opts.get(OPT_COMMENT) ?? []).map((c) => c.toString('utf8')),
      });
      if (!iface) f.problems.push(`packet at ${o} names interface ${ifId}, which has no description block`);
    } else if (type === BLOCK_ISB) {
      const opts = readOptions(b, o + 20, end);
      f.stats.push({ interfaceId: b.readUInt32LE(o + 8), received: u64(opts, ISB_IFRECV), dropped: u64(opts, ISB_IFDROP) });
    }
    o += len;
  }
  if (o !== b.length) f.problems.push(`${b.length - o} bytes left over after the last whole block`);
  return f;
}
