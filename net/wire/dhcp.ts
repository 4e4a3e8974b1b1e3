/**
 * BOOTP/DHCP messages (RFC 2131 §2, RFC 951) and the DHCP options the stack speaks (RFC 2132),
 * with long options split and re-joined as RFC 3396 describes and option overload (RFC 2131 §4.1,
 * RFC 2132 §9.3) honoured when parsing.
 *
 * Two faces, as everywhere in net/wire: `DhcpView` is a checked view over the fixed header (its
 * `check` validates the lengths once), `DhcpRepr` the plain representation the client and server
 * work on. `parseDhcp` never throws: a short buffer, a wrong magic cookie or an option whose length
 * runs past its field are error values. `emitDhcp` writes into a buffer the caller owns.
 */
import { ipv4FromBytes, ipv4ToBytes, type Ipv4Addr } from '../addr.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

/** op field (RFC 951). */
export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
/** htype for Ethernet (IANA ARP hardware types). */
export const HTYPE_ETHERNET = 1;
/** The one flag bit (RFC 2131 §2, figure 2): "reply by broadcast, I cannot take unicast yet". */
export const DHCP_FLAG_BROADCAST = 0x8000;

/** RFC 2131 §3: the first four octets of the options field, 99.130.83.99. */
export const DHCP_MAGIC_COOKIE = 0x63825363;

// Fixed-format layout (RFC 2131 figure 1).
const OFF_OP = 0;
const OFF_HTYPE = 1;
const OFF_HLEN = 2;
const OFF_HOPS = 3;
const OFF_XID = 4;
const OFF_SECS = 8;
const OFF_FLAGS = 10;
const OFF_CIADDR = 12;
const OFF_YIADDR = 16;
const OFF_SIADDR = 20;
const OFF_GIADDR = 24;
const OFF_CHADDR = 28;
const CHADDR_LEN = 16;
const OFF_SNAME = 44;
const SNAME_LEN = 64;
const OFF_FILE = 108;
const FILE_LEN = 128;
const OFF_COOKIE = 236;
/** Fixed header plus the magic cookie: where the options begin. */
export const DHCP_FIXED_LEN = 240;
/**
 * RFC 1542 §2.1: a BOOTP message is at least 300 octets (the old 64-octet vend field), and some
 * relays and servers drop anything shorter, so emitted messages are padded to this.
 */
export const BOOTP_MIN_LEN = 300;

/** Message types, option 53 (RFC 2132 §9.6). */
export const DhcpMessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type DhcpMessageTypeCode = (typeof DhcpMessageType)[keyof typeof DhcpMessageType];

/** Option codes, named as in RFC 2132. */
export const DhcpOption = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DOMAIN_NAME_SERVER: 6,
  HOST_NAME: 12,
  DOMAIN_NAME: 15,
  REQUESTED_IP_ADDRESS: 50,
  IP_ADDRESS_LEASE_TIME: 51,
  OPTION_OVERLOAD: 52,
  DHCP_MESSAGE_TYPE: 53,
  SERVER_IDENTIFIER: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAXIMUM_DHCP_MESSAGE_SIZE: 57,
  RENEWAL_TIME_VALUE: 58,
  REBINDING_TIME_VALUE: 59,
  CLIENT_IDENTIFIER: 61,
  END: 255,
} as const;

/** Lease time 0xffffffff means "infinite" (RFC 2132 §9.2). */
export const DHCP_INFINITE_LEASE = 0xffffffff;

export type DhcpError =
  | 'truncated' // shorter than the fixed header and cookie, or options without an END option
  | 'bad-cookie' // the four octets after `file` are not 99.130.83.99
  | 'bad-option-length' // an option runs past its field, or a known option has a length it cannot have
  | 'bad-hlen' // hardware address length beyond the 16-octet chaddr field
  | 'bad-op'; // op is neither BOOTREQUEST nor BOOTREPLY

export type DhcpParsed<T> = { ok: true; value: T } | { ok: false; error: DhcpError };

/** An option the codec does not decode, kept raw (joined across instances per RFC 3396). */
export interface DhcpRawOption {
  code: number;
  data: Uint8Array;
}

/** Decoded options. Absent fields were absent from the message. */
export interface DhcpOptions {
  messageType?: number;
  subnetMask?: Ipv4Addr;
  routers?: Ipv4Addr[];
  dnsServers?: Ipv4Addr[];
  hostname?: string;
  domainName?: string;
  requestedIp?: Ipv4Addr;
  /** Seconds; DHCP_INFINITE_LEASE for an infinite lease. */
  leaseTime?: number;
  /** Option 52: 1 = `file` holds options, 2 = `sname`, 3 = both. Parsed and honoured; never emitted. */
  overload?: number;
  serverId?: Ipv4Addr;
  parameterRequestList?: number[];
  message?: string;
  maxMessageSize?: number;
  renewalTime?: number;
  rebindingTime?: number;
  /** Option 61 as sent: type octet then the identifier (type 1 + MAC for Ethernet clients). */
  clientId?: Uint8Array;
  /** Options not decoded above, in order of first appearance. */
  other?: DhcpRawOption[];
}

export interface DhcpRepr {
  op: number;
  htype: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: Ipv4Addr;
  yiaddr: Ipv4Addr;
  siaddr: Ipv4Addr;
  giaddr: Ipv4Addr;
  /** Client hardware address, `hlen` octets (6 for Ethernet). A copy, not a view. */
  chaddr: Uint8Array;
  /** Server host name and boot file name (NUL-terminated on the wire); '' when unused or overloaded. */
  sname: string;
  file: string;
  options: DhcpOptions;
}

/** A checked view over the fixed header: constructing one guarantees every accessor is in bounds. */
export class DhcpView {
  private constructor(readonly bytes: Uint8Array) {}

  static check(bytes: Uint8Array): DhcpParsed<DhcpView> {
    if (bytes.length < DHCP_FIXED_LEN) return { ok: false, error: 'truncated' };
    const view = new DhcpView(bytes);
    if (view.op !== BOOTREQUEST && view.op !== BOOTREPLY) return { ok: false, error: 'bad-op' };
    if (view.hlen > CHADDR_LEN) return { ok: false, error: 'bad-hlen' };
    if (view.cookie !== DHCP_MAGIC_COOKIE) return { ok: false, error: 'bad-cookie' };
    return { ok: true, value: view };
  }

  private u16(o: number): number {
    return (this.bytes[o]! << 8) | this.bytes[o + 1]!;
  }

  get op(): number {
    return this.bytes[OFF_OP]!;
  }
  get htype(): number {
    return this.bytes[OFF_HTYPE]!;
  }
  get hlen(): number {
    return this.bytes[OFF_HLEN]!;
  }
  get hops(): number {
    return this.bytes[OFF_HOPS]!;
  }
  get xid(): number {
    return ipv4FromBytes(this.bytes, OFF_XID);
  }
  get secs(): number {
    return this.u16(OFF_SECS);
  }
  get flags(): number {
    return this.u16(OFF_FLAGS);
  }
  get ciaddr(): Ipv4Addr {
    return ipv4FromBytes(this.bytes, OFF_CIADDR);
  }
  get yiaddr(): Ipv4Addr {
    return ipv4FromBytes(this.bytes, OFF_YIADDR);
  }
  get siaddr(): Ipv4Addr {
    return ipv4FromBytes(this.bytes, OFF_SIADDR);
  }
  get giaddr(): Ipv4Addr {
    return ipv4FromBytes(this.bytes, OFF_GIADDR);
  }
  get chaddr(): Uint8Array {
    return this.bytes.subarray(OFF_CHADDR, OFF_CHADDR + this.hlen);
  }
  get snameField(): Uint8Array {
    return this.bytes.subarray(OFF_SNAME, OFF_SNAME + SNAME_LEN);
  }
  get fileField(): Uint8Array {
    return this.bytes.subarray(OFF_FILE, OFF_FILE + FILE_LEN);
  }
  get cookie(): number {
    return ipv4FromBytes(this.bytes, OFF_COOKIE);
  }
  get optionBytes(): Uint8Array {
    return this.bytes.subarray(DHCP_FIXED_LEN);
  }
}

/**
 * Walk one option field, appending each option's data to `into` under its code (RFC 3396 §7:
 * several instances of one code are concatenated in order). `requireEnd` is set for the main
 * options field, which RFC 2131 §4.1 says must end with END: without it the message was cut short.
 * The fixed-size sname/file fields may simply run to their end.
 */
function scanOptions(field: Uint8Array, requireEnd: boolean, into: Map<number, Uint8Array[]>): DhcpError | null {
  let i = 0;
  while (i < field.length) {
    const code = field[i]!;
    if (code === DhcpOption.END) return null;
    if (code === DhcpOption.PAD) {
      i++;
      continue;
    }
    if (i + 1 >= field.length) return requireEnd ? 'truncated' : 'bad-option-length';
    const len = field[i + 1]!;
    if (i + 2 + len > field.length) return requireEnd ? 'truncated' : 'bad-option-length';
    const data = field.subarray(i + 2, i + 2 + len);
    const parts = into.get(code);
    if (parts) parts.push(data);
    else into.set(code, [data]);
    i += 2 + len;
  }
  return requireEnd ? 'truncated' : null;
}

function join(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!.slice();
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const textDecoder = new TextDecoder('utf-8');
const textEncoder = new TextEncoder();

/** NVT ASCII in practice; decoded as UTF-8 (a superset) and cut at the first NUL, which some senders append. */
function decodeText(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return textDecoder.decode(nul >= 0 ? b.subarray(0, nul) : b);
}

function addrList(b: Uint8Array): Ipv4Addr[] {
  const out: Ipv4Addr[] = [];
  for (let o = 0; o < b.length; o += 4) out.push(ipv4FromBytes(b, o));
  return out;
}

/** Decode the joined options. A known option with an impossible length (RFC 2132 minimums and multiples) is refused. */
function decodeOptions(raw: Map<number, Uint8Array[]>): DhcpParsed<DhcpOptions> {
  const options: DhcpOptions = {};
  const bad = { ok: false as const, error: 'bad-option-length' as const };
  for (const [code, parts] of raw) {
    const d = join(parts);
    switch (code) {
      case DhcpOption.SUBNET_MASK:
      case DhcpOption.REQUESTED_IP_ADDRESS:
      case DhcpOption.SERVER_IDENTIFIER: {
        if (d.length !== 4) return bad;
        const a = ipv4FromBytes(d);
        if (code === DhcpOption.SUBNET_MASK) options.subnetMask = a;
        else if (code === DhcpOption.REQUESTED_IP_ADDRESS) options.requestedIp = a;
        else options.serverId = a;
        break;
      }
      case DhcpOption.ROUTER:
      case DhcpOption.DOMAIN_NAME_SERVER:
        if (d.length === 0 || d.length % 4 !== 0) return bad;
        if (code === DhcpOption.ROUTER) options.routers = addrList(d);
        else options.dnsServers = addrList(d);
        break;
      case DhcpOption.IP_ADDRESS_LEASE_TIME:
      case DhcpOption.RENEWAL_TIME_VALUE:
      case DhcpOption.REBINDING_TIME_VALUE: {
        if (d.length !== 4) return bad;
        const t = ipv4FromBytes(d);
        if (code === DhcpOption.IP_ADDRESS_LEASE_TIME) options.leaseTime = t;
        else if (code === DhcpOption.RENEWAL_TIME_VALUE) options.renewalTime = t;
        else options.rebindingTime = t;
        break;
      }
      case DhcpOption.DHCP_MESSAGE_TYPE:
        if (d.length !== 1) return bad;
        options.messageType = d[0]!;
        break;
      case DhcpOption.OPTION_OVERLOAD:
        if (d.length !== 1) return bad;
        options.overload = d[0]!;
        break;
      case DhcpOption.MAXIMUM_DHCP_MESSAGE_SIZE:
        if (d.length !== 2) return bad;
        options.maxMessageSize = (d[0]! << 8) | d[1]!;
        break;
      case DhcpOption.HOST_NAME:
      case DhcpOption.DOMAIN_NAME:
      case DhcpOption.MESSAGE:
        if (d.length === 0) return bad; // RFC 2132: minimum length 1
        if (code === DhcpOption.HOST_NAME) options.hostname = decodeText(d);
        else if (code === DhcpOption.DOMAIN_NAME) options.domainName = decodeText(d);
        else options.message = decodeText(d);
        break;
      case DhcpOption.PARAMETER_REQUEST_LIST:
        if (d.length === 0) return bad;
        options.parameterRequestList = Array.from(d);
        break;
      case DhcpOption.CLIENT_IDENTIFIER:
        if (d.length < 2) return bad; // RFC 2132 §9.14: type plus at least one octet
        options.clientId = d;
        break;
      default:
        (options.other ??= []).push({ code, data: d });
    }
  }
  return { ok: true, value: options };
}

/**
 * Parse a BOOTP/DHCP message (the UDP payload). Never throws. When option 52 says so, options
 * continue in `file` and then `sname` (the order RFC 2131 §4.1 gives), and those fields are not
 * reported as strings.
 */
export function parseDhcp(bytes: Uint8Array): DhcpParsed<DhcpRepr> {
  const checked = DhcpView.check(bytes);
  if (!checked.ok) return checked;
  const view = checked.value;
  const raw = new Map<number, Uint8Array[]>();
  const err = scanOptions(view.optionBytes, true, raw);
  if (err) return { ok: false, error: err };
  // Overload is read from the main field only (RFC 2131 §4.1), before the other fields are scanned.
  const ov = raw.get(DhcpOption.OPTION_OVERLOAD);
  const overload = ov && ov.length === 1 && ov[0]!.length === 1 ? ov[0]![0]! : 0;
  if (overload & 1) {
    const e = scanOptions(view.fileField, false, raw);
    if (e) return { ok: false, error: e };
  }
  if (overload & 2) {
    const e = scanOptions(view.snameField, false, raw);
    if (e) return { ok: false, error: e };
  }
  const options = decodeOptions(raw);
  if (!options.ok) return options;
  return {
    ok: true,
    value: {
      op: view.op,
      htype: view.htype,
      hops: view.hops,
      xid: view.xid,
      secs: view.secs,
      flags: view.flags,
      ciaddr: view.ciaddr,
      yiaddr: view.yiaddr,
      siaddr: view.siaddr,
      giaddr: view.giaddr,
      chaddr: view.chaddr.slice(),
      sname: overload & 2 ? '' : decodeText(view.snameField),
      file: overload & 1 ? '' : decodeText(view.fileField),
      options: options.value,
    },
  };
}

/** The options as (code, data) pairs in the order they are emitted: message type first, as clients and servers expect. */
function optionList(o: DhcpOptions): DhcpRawOption[] {
  const out: DhcpRawOption[] = [];
  const u8 = (v: number): Uint8Array => Uint8Array.of(v & 0xff);
  const u16 = (v: number): Uint8Array => Uint8Array.of((v >> 8) & 0xff, v & 0xff);
  const u32 = (v: number): Uint8Array => ipv4ToBytes(v >>> 0);
  const addrs = (list: Ipv4Addr[]): Uint8Array => {
    const b = new Uint8Array(list.length * 4);
    list.forEach((a, i) => ipv4ToBytes(a, b, i * 4));
    return b;
  };
  const add = (code: number, data: Uint8Array | undefined): void => {
    if (data) out.push({ code, data });
  };
  add(DhcpOption.DHCP_MESSAGE_TYPE, o.messageType !== undefined ? u8(o.messageType) : undefined);
  add(DhcpOption.SERVER_IDENTIFIER, o.serverId !== undefined ? u32(o.serverId) : undefined);
  add(DhcpOption.CLIENT_IDENTIFIER, o.clientId);
  add(DhcpOption.REQUESTED_IP_ADDRESS, o.requestedIp !== undefined ? u32(o.requestedIp) : undefined);
  add(DhcpOption.IP_ADDRESS_LEASE_TIME, o.leaseTime !== undefined ? u32(o.leaseTime) : undefined);
  add(DhcpOption.RENEWAL_TIME_VALUE, o.renewalTime !== undefined ? u32(o.renewalTime) : undefined);
  add(DhcpOption.REBINDING_TIME_VALUE, o.rebindingTime !== undefined ? u32(o.rebindingTime) : undefined);
  add(DhcpOption.SUBNET_MASK, o.subnetMask !== undefined ? u32(o.subnetMask) : undefined);
  add(DhcpOption.ROUTER, o.routers && o.routers.length > 0 ? addrs(o.routers) : undefined);
  add(DhcpOption.DOMAIN_NAME_SERVER, o.dnsServers && o.dnsServers.length > 0 ? addrs(o.dnsServers) : undefined);
  add(DhcpOption.HOST_NAME, o.hostname ? textEncoder.encode(o.hostname) : undefined);
  add(DhcpOption.DOMAIN_NAME, o.domainName ? textEncoder.encode(o.domainName) : undefined);
  add(DhcpOption.MAXIMUM_DHCP_MESSAGE_SIZE, o.maxMessageSize !== undefined ? u16(o.maxMessageSize) : undefined);
  add(
    DhcpOption.PARAMETER_REQUEST_LIST,
    o.parameterRequestList && o.parameterRequestList.length > 0 ? Uint8Array.from(o.parameterRequestList) : undefined,
  );
  add(DhcpOption.MESSAGE, o.message ? textEncoder.encode(o.message) : undefined);
  for (const x of o.other ?? []) add(x.code, x.data);
  return out;
}

/** Octets an option takes, split into 255-octet instances (RFC 3396 §5); an empty one still takes its code and length. */
function optionWireLength(dataLength: number): number {
  const instances = Math.max(1, Math.ceil(dataLength / 255));
  return instances * 2 + dataLength;
}

/** Octets `repr` takes on the wire: fixed header, cookie, options, END, then padding up to 300. */
export function dhcpEncodingLength(repr: DhcpRepr): number {
  let n = DHCP_FIXED_LEN + 1;
  for (const opt of optionList(repr.options)) n += optionWireLength(opt.data.length);
  return Math.max(n, BOOTP_MIN_LEN);
}

function writeText(buf: Uint8Array, offset: number, size: number, text: string): void {
  const b = textEncoder.encode(text);
  if (b.length >= size) throw new RangeError(`DHCP text field longer than ${size - 1} octets`);
  buf.set(b, offset);
}

/**
 * Write `repr` into `buf` at `offset`; returns the octets written (`dhcpEncodingLength`). Unused
 * space is zeroed. Throws RangeError only for a caller error: a buffer too small, a chaddr beyond
 * 16 octets, sname/file text too long, or a reserved option code (0 or 255) in `other`.
 */
export function emitDhcp(repr: DhcpRepr, buf: Uint8Array, offset = 0): number {
  const total = dhcpEncodingLength(repr);
  if (offset + total > buf.length) throw new RangeError('buffer too small for DHCP message');
  if (repr.chaddr.length > CHADDR_LEN) throw new RangeError('DHCP chaddr longer than 16 octets');
  const b = buf.subarray(offset, offset + total);
  b.fill(0);
  b[OFF_OP] = repr.op;
  b[OFF_HTYPE] = repr.htype;
  b[OFF_HLEN] = repr.chaddr.length;
  b[OFF_HOPS] = repr.hops;
  ipv4ToBytes(repr.xid >>> 0, b, OFF_XID);
  b[OFF_SECS] = (repr.secs >> 8) & 0xff;
  b[OFF_SECS + 1] = repr.secs & 0xff;
  b[OFF_FLAGS] = (repr.flags >> 8) & 0xff;
  b[OFF_FLAGS + 1] = repr.flags & 0xff;
  ipv4ToBytes(repr.ciaddr, b, OFF_CIADDR);
  ipv4ToBytes(repr.yiaddr, b, OFF_YIADDR);
  ipv4ToBytes(repr.siaddr, b, OFF_SIADDR);
  ipv4ToBytes(repr.giaddr, b, OFF_GIADDR);
  b.set(repr.chaddr, OFF_CHADDR);
  writeText(b, OFF_SNAME, SNAME_LEN, repr.sname);
  writeText(b, OFF_FILE, FILE_LEN, repr.file);
  ipv4ToBytes(DHCP_MAGIC_COOKIE, b, OFF_COOKIE);
  let o = DHCP_FIXED_LEN;
  for (const { code, data } of optionList(repr.options)) {
    if (code === DhcpOption.PAD || code === DhcpOption.END) throw new RangeError(`DHCP option code ${code} is reserved`);
    let at = 0;
    do {
      const n = Math.min(255, data.length - at);
      b[o++] = code;
      b[o++] = n;
      b.set(data.subarray(at, at + n), o);
      o += n;
      at += n;
    } while (at < data.length);
  }
  b[o] = DhcpOption.END;
  return total;
}

/** `repr` as a fresh byte array (the UDP payload). */
export function encodeDhcp(repr: DhcpRepr): Uint8Array {
  const out = new Uint8Array(dhcpEncodingLength(repr));
  emitDhcp(repr, out, 0);
  return out;
}

/** Option 61 for an Ethernet client: hardware type 1 then the MAC (RFC 2132 §9.14). */
export function ethernetClientId(mac: Uint8Array): Uint8Array {
  const id = new Uint8Array(1 + mac.length);
  id[0] = HTYPE_ETHERNET;
  id.set(mac, 1);
  return id;
}

/** Message type name for logs ("DISCOVER", …); the number as text when unknown. */
export function formatDhcpMessageType(type: number | undefined): string {
  for (const [name, code] of Object.entries(DhcpMessageType)) if (code === type) return name;
  return type === undefined ? 'BOOTP' : String(type);
}
