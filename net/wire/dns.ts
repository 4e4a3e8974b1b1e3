/**
 * DNS messages (RFC 1035 §4): header, questions and resource records, with name compression
 * (§4.1.4) followed on parse under loop and length limits, and optionally used on emit.
 *
 * Record data is decoded for A, AAAA (16 raw octets) and the types whose data is a single domain
 * name (CNAME, NS, PTR), since a compressed name inside RDATA means nothing once lifted out of its
 * message; everything else is kept as raw octets. `parseDns` never throws; `encodeDns` throws a
 * RangeError only for a caller error (a label over 63 octets, a name over 255, a message over 64 KiB).
 *
 * Names are text in master-file form without the trailing dot ('' is the root): a '.' or '\' inside
 * a label is escaped with '\', and octets outside printable ASCII as '\DDD' (RFC 1035 §5.1).
 */
import { ipv4FromBytes, ipv4ToBytes, type Ipv4Addr } from '../addr.js';

export const DNS_PORT = 53;
export const DNS_HEADER_LEN = 12;
/** RFC 1035 §2.3.4. */
export const DNS_MAX_LABEL = 63;
export const DNS_MAX_NAME = 255;
/** RFC 1035 §2.3.4: UDP messages are limited to 512 octets unless EDNS says otherwise. */
export const DNS_UDP_MAX = 512;

/** RR types (RFC 1035 §3.2.2, AAAA from RFC 3596). */
export const DnsType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  ANY: 255,
} as const;

export const DNS_CLASS_IN = 1;

/** RCODE values (RFC 1035 §4.1.1). */
export const DnsRcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

export const DnsOpcode = { QUERY: 0, IQUERY: 1, STATUS: 2 } as const;

export type DnsError =
  | 'truncated' // the message ends inside the header, a name, a question or a record
  | 'bad-label' // a label type other than 00 (normal) or 11 (pointer): 01 and 10 are reserved
  | 'bad-pointer' // a compression pointer not pointing before the labels it ends (this is what rules out loops)
  | 'name-too-long' // over 255 octets uncompressed, or too many pointer hops
  | 'bad-rdata'; // RDATA of a decoded type with the wrong length (A ≠ 4, AAAA ≠ 16, a name not filling RDLENGTH)

export type DnsParsed<T> = { ok: true; value: T } | { ok: false; error: DnsError };

export interface DnsFlags {
  /** true in a response. */
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  /** RFC 4035 §3.2: authentic data and checking disabled; kept so a message round-trips. */
  ad: boolean;
  cd: boolean;
  rcode: number;
}

export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

export type DnsRdata =
  | { kind: 'a'; address: Ipv4Addr }
  | { kind: 'aaaa'; address: Uint8Array }
  | { kind: 'name'; name: string }
  | { kind: 'raw'; bytes: Uint8Array };

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  data: DnsRdata;
}

export interface DnsMessage {
  id: number;
  flags: DnsFlags;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

/** Flags of a plain recursive query. */
export function queryFlags(): DnsFlags {
  return { qr: false, opcode: DnsOpcode.QUERY, aa: false, tc: false, rd: true, ra: false, ad: false, cd: false, rcode: 0 };
}

/** Whether two names are the same name (RFC 1035 §2.3.3: comparisons are case-insensitive for ASCII). */
export function dnsNameEquals(a: string, b: string): boolean {
  return asciiLower(a) === asciiLower(b);
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

// ---------------------------------------------------------------------------------------------
// Names

function labelToText(b: Uint8Array, start: number, len: number): string {
  let s = '';
  for (let i = start; i < start + len; i++) {
    const c = b[i]!;
    if (c === 0x2e || c === 0x5c) s += '\\' + String.fromCharCode(c);
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += '\\' + String(c).padStart(3, '0');
  }
  return s;
}

/**
 * Split master-file text into label octets, undoing the escapes `labelToText` makes. A trailing dot
 * is accepted (fully-qualified form). Throws RangeError for text that is not a name.
 */
export function nameToLabels(name: string): Uint8Array[] {
  const labels: Uint8Array[] = [];
  if (name === '' || name === '.') return labels;
  let cur: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const ch = name[i]!;
    if (ch === '\\') {
      const rest = name.slice(i + 1, i + 4);
      if (/^\d{3}$/.test(rest)) {
        const v = Number(rest);
        if (v > 255) throw new RangeError(`bad escape in DNS name ${JSON.stringify(name)}`);
        cur.push(v);
        i += 3;
      } else if (i + 1 < name.length) {
        cur.push(name.charCodeAt(i + 1) & 0xff);
        i += 1;
      } else throw new RangeError(`dangling escape in DNS name ${JSON.stringify(name)}`);
    } else if (ch === '.') {
      if (cur.length === 0) throw new RangeError(`empty label in DNS name ${JSON.stringify(name)}`);
      labels.push(Uint8Array.from(cur));
      cur = [];
      if (i === name.length - 1) return checkLabels(labels, name);
    } else {
      const c = name.charCodeAt(i);
      if (c > 0x7e) throw new RangeError(`non-ASCII DNS name ${JSON.stringify(name)} (use punycode)`);
      cur.push(c);
    }
  }
  if (cur.length === 0) throw new RangeError(`empty label in DNS name ${JSON.stringify(name)}`);
  labels.push(Uint8Array.from(cur));
  return checkLabels(labels, name);
}

function checkLabels(labels: Uint8Array[], name: string): Uint8Array[] {
  let wire = 1;
  for (const l of labels) {
    if (l.length > DNS_MAX_LABEL) throw new RangeError(`DNS label longer than 63 octets in ${JSON.stringify(name)}`);
    wire += 1 + l.length;
  }
  if (wire > DNS_MAX_NAME) throw new RangeError(`DNS name longer than 255 octets: ${JSON.stringify(name)}`);
  return labels;
}

/**
 * Read a possibly compressed name at `offset`. Returns the name and the offset just past it in the
 * message (past the first pointer when there is one). RFC 1035 §4.1.4 says a pointer refers to "a
 * prior occurrence", so each pointer must point before the start of the run of labels it ends:
 * the runs then start at strictly decreasing offsets and no chain can loop (a pointer merely
 * behind itself is not enough — `01 'a' C0 0C` at offset 12 would spin forever). The 255-octet
 * limit and a hop limit bound the work besides.
 */
export function readName(msg: Uint8Array, offset: number): DnsParsed<{ name: string; end: number }> {
  const parts: string[] = [];
  let pos = offset;
  let end = -1;
  let wireLength = 1; // the root label's zero octet
  let hops = 0;
  let runStart = offset;
  for (;;) {
    if (pos >= msg.length) return { ok: false, error: 'truncated' };
    const len = msg[pos]!;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= msg.length) return { ok: false, error: 'truncated' };
      const target = ((len & 0x3f) << 8) | msg[pos + 1]!;
      if (target >= runStart) return { ok: false, error: 'bad-pointer' };
      if (++hops > 127) return { ok: false, error: 'name-too-long' };
      if (end < 0) end = pos + 2;
      pos = runStart = target;
      continue;
    }
    if (kind !== 0) return { ok: false, error: 'bad-label' };
    if (len === 0) {
      if (end < 0) end = pos + 1;
      return { ok: true, value: { name: parts.join('.'), end } };
    }
    wireLength += 1 + len;
    if (wireLength > DNS_MAX_NAME) return { ok: false, error: 'name-too-long' };
    if (pos + 1 + len > msg.length) return { ok: false, error: 'truncated' };
    parts.push(labelToText(msg, pos + 1, len));
    pos += 1 + len;
  }
}

// ---------------------------------------------------------------------------------------------
// Parse

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function u32(b: Uint8Array, o: number): number {
  return ipv4FromBytes(b, o);
}

/** A checked view over the 12-octet header. */
export class DnsHeaderView {
  private constructor(readonly bytes: Uint8Array) {}

  static check(bytes: Uint8Array): DnsParsed<DnsHeaderView> {
    if (bytes.length < DNS_HEADER_LEN) return { ok: false, error: 'truncated' };
    return { ok: true, value: new DnsHeaderView(bytes) };
  }

  get id(): number {
    return u16(this.bytes, 0);
  }
  get flags(): DnsFlags {
    const hi = this.bytes[2]!;
    const lo = this.bytes[3]!;
    return {
      qr: (hi & 0x80) !== 0,
      opcode: (hi >> 3) & 0x0f,
      aa: (hi & 0x04) !== 0,
      tc: (hi & 0x02) !== 0,
      rd: (hi & 0x01) !== 0,
      ra: (lo & 0x80) !== 0,
      ad: (lo & 0x20) !== 0,
      cd: (lo & 0x10) !== 0,
      rcode: lo & 0x0f,
    };
  }
  get qdcount(): number {
    return u16(this.bytes, 4);
  }
  get ancount(): number {
    return u16(this.bytes, 6);
  }
  get nscount(): number {
    return u16(this.bytes, 8);
  }
  get arcount(): number {
    return u16(this.bytes, 10);
  }
}

function readRecord(msg: Uint8Array, offset: number): DnsParsed<{ record: DnsRecord; end: number }> {
  const n = readName(msg, offset);
  if (!n.ok) return n;
  let o = n.value.end;
  if (o + 10 > msg.length) return { ok: false, error: 'truncated' };
  const type = u16(msg, o);
  const cls = u16(msg, o + 2);
  const ttl = u32(msg, o + 4);
  const rdlength = u16(msg, o + 8);
  o += 10;
  if (o + rdlength > msg.length) return { ok: false, error: 'truncated' };
  const rdEnd = o + rdlength;
  let data: DnsRdata;
  switch (type) {
    case DnsType.A:
      if (rdlength !== 4) return { ok: false, error: 'bad-rdata' };
      data = { kind: 'a', address: u32(msg, o) };
      break;
    case DnsType.AAAA:
      if (rdlength !== 16) return { ok: false, error: 'bad-rdata' };
      data = { kind: 'aaaa', address: msg.slice(o, rdEnd) };
      break;
    case DnsType.CNAME:
    case DnsType.NS:
    case DnsType.PTR: {
      // The name is read within the RDATA (a name running past RDLENGTH is malformed), but its
      // pointers may refer anywhere earlier in the message.
      const target = readName(msg.subarray(0, rdEnd), o);
      if (!target.ok) return target.error === 'truncated' ? { ok: false, error: 'bad-rdata' } : target;
      if (target.value.end !== rdEnd) return { ok: false, error: 'bad-rdata' };
      data = { kind: 'name', name: target.value.name };
      break;
    }
    default:
      data = { kind: 'raw', bytes: msg.slice(o, rdEnd) };
  }
  return { ok: true, value: { record: { name: n.value.name, type, class: cls, ttl, data }, end: rdEnd } };
}

/**
 * Parse a DNS message. Never throws. Octets after the last counted record are ignored (as
 * resolvers do); a count promising more than the message holds is 'truncated'.
 */
export function parseDns(msg: Uint8Array): DnsParsed<DnsMessage> {
  const h = DnsHeaderView.check(msg);
  if (!h.ok) return h;
  const header = h.value;
  let o = DNS_HEADER_LEN;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < header.qdcount; i++) {
    const n = readName(msg, o);
    if (!n.ok) return n;
    o = n.value.end;
    if (o + 4 > msg.length) return { ok: false, error: 'truncated' };
    questions.push({ name: n.value.name, type: u16(msg, o), class: u16(msg, o + 2) });
    o += 4;
  }
  const sections: DnsRecord[][] = [[], [], []];
  const counts = [header.ancount, header.nscount, header.arcount];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s]!; i++) {
      const r = readRecord(msg, o);
      if (!r.ok) return r;
      sections[s]!.push(r.value.record);
      o = r.value.end;
    }
  }
  return {
    ok: true,
    value: {
      id: header.id,
      flags: header.flags,
      questions,
      answers: sections[0]!,
      authorities: sections[1]!,
      additionals: sections[2]!,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Emit

export interface DnsEncodeOptions {
  /** Use compression pointers for repeated name suffixes (RFC 1035 §4.1.4). Default true. */
  compress?: boolean;
}

/** A growable byte buffer; DNS messages are small and built once. */
class Writer {
  buf = new Uint8Array(512);
  len = 0;
  /** Suffix (lower-cased label text joined by '.') → offset of its first occurrence. */
  readonly suffixes = new Map<string, number>();

  constructor(readonly compress: boolean) {}

  private room(n: number): void {
    if (this.len + n > 0xffff) throw new RangeError('DNS message longer than 65535 octets');
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.len++] = v & 0xff;
  }
  u16(v: number): void {
    this.room(2);
    this.buf[this.len++] = (v >> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
  }
  u32(v: number): void {
    this.room(4);
    ipv4ToBytes(v >>> 0, this.buf, this.len);
    this.len += 4;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  name(name: string): void {
    const labels = nameToLabels(name);
    const keys = labels.map((l) => asciiLower(labelToText(l, 0, l.length)));
    for (let i = 0; i < labels.length; i++) {
      const suffix = keys.slice(i).join('.');
      if (this.compress) {
        const at = this.suffixes.get(suffix);
        if (at !== undefined) {
          this.u16(0xc000 | at);
          return;
        }
        // Pointers hold 14 bits: a suffix beyond 16 KiB cannot be pointed at.
        if (this.len < 0x4000) this.suffixes.set(suffix, this.len);
      }
      this.u8(labels[i]!.length);
      this.bytes(labels[i]!);
    }
    this.u8(0);
  }
}

function writeRecord(w: Writer, r: DnsRecord): void {
  w.name(r.name);
  w.u16(r.type);
  w.u16(r.class);
  w.u32(r.ttl);
  const lenAt = w.len;
  w.u16(0);
  const d = r.data;
  switch (d.kind) {
    case 'a':
      w.u32(d.address);
      break;
    case 'aaaa':
      if (d.address.length !== 16) throw new RangeError('AAAA data must be 16 octets');
      w.bytes(d.address);
      break;
    case 'name':
      w.name(d.name);
      break;
    case 'raw':
      w.bytes(d.bytes);
      break;
  }
  const rdlength = w.len - lenAt - 2;
  w.buf[lenAt] = rdlength >> 8;
  w.buf[lenAt + 1] = rdlength & 0xff;
}

/** `msg` as wire octets; the section counts come from the arrays. */
export function encodeDns(msg: DnsMessage, options: DnsEncodeOptions = {}): Uint8Array {
  const w = new Writer(options.compress ?? true);
  const f = msg.flags;
  w.u16(msg.id);
  w.u8((f.qr ? 0x80 : 0) | ((f.opcode & 0x0f) << 3) | (f.aa ? 0x04 : 0) | (f.tc ? 0x02 : 0) | (f.rd ? 0x01 : 0));
  w.u8((f.ra ? 0x80 : 0) | (f.ad ? 0x20 : 0) | (f.cd ? 0x10 : 0) | (f.rcode & 0x0f));
  for (const section of [msg.questions, msg.answers, msg.authorities, msg.additionals]) {
    if (section.length > 0xffff) throw new RangeError('too many DNS records in a section');
    w.u16(section.length);
  }
  for (const q of msg.questions) {
    w.name(q.name);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const r of msg.answers) writeRecord(w, r);
  for (const r of msg.authorities) writeRecord(w, r);
  for (const r of msg.additionals) writeRecord(w, r);
  return w.buf.slice(0, w.len);
}

/** Write `msg` into `buf` at `offset`; returns the octets written. RangeError when it does not fit. */
export function emitDns(msg: DnsMessage, buf: Uint8Array, offset = 0, options: DnsEncodeOptions = {}): number {
  const bytes = encodeDns(msg, options);
  if (offset + bytes.length > buf.length) throw new RangeError('buffer too small for DNS message');
  buf.set(bytes, offset);
  return bytes.length;
}

/** A one-question recursive query. */
export function dnsQuery(id: number, name: string, type: number, cls: number = DNS_CLASS_IN): DnsMessage {
  return {
    id,
    flags: queryFlags(),
    questions: [{ name, type, class: cls }],
    answers: [],
    authorities: [],
    additionals: [],
  };
}
