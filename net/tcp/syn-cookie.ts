/**
 * SYN cookies (RFC 4987 §3.6): when a listener's SYN queue is full, the SYN-ACK's ISN carries the
 * half-open connection's state instead of a queue entry, and the handshake's ACK (ack − 1 = the
 * cookie) brings it back. Linux's syncookies are the model for what goes where; the encoding here
 * is our own and pure: no clock (the caller passes the time counter), no I/O.
 *
 * The 32-bit cookie, all arithmetic modulo 2^32:
 *
 *     cookie = H1 + (counter[8] << 24 | (H2(counter) + mssIndex · SPREAD) mod 2^24)
 *
 * H1 = keyed hash (SipHash-2-4, as Linux uses) of the 4-tuple and the peer's ISN; H2 = keyed hash of
 * the same and the counter.
 * H1 makes the whole ISN unpredictable (RFC 6528's point); the top byte under it names the coarse
 * time counter the cookie was made in, so a check knows which H2 to recompute, and the low 24 bits
 * less H2 must give one of the four codewords mssIndex · SPREAD: a forged cookie passes with
 * probability 4 / 2^24 (1 in 4 M). Linux adds the bare index, so flipping a low bit of its
 * cookie turns one valid MSS into another; SPREAD keeps the codewords more than two bit-flips
 * (added or subtracted) apart.
 *
 * With timestamps (RFC 7323), the SYN-ACK's TSval carries the options the cookie cannot: its low
 * 6 bits hold the peer's window scale (4 bits, 0xF = none) and SACK-permitted (bit 4); bit 5 (ECN
 * in Linux) is always 0 here. The peer echoes TSval in the ACK's TSecr.
 */
import { randomBytes } from 'node:crypto';
import type { Ipv4Addr } from '../addr.js';
import { siphash24, sipKey, type SipKey } from '../siphash.js';
import { TCP_MAX_WINSHIFT } from '../wire/tcp.js';

/**
 * MSS values a cookie can carry (2 bits): the largest entry not above the peer's MSS is encoded.
 * Linux's IPv4 table: 536 (the RFC 9293 default), 1300 (tunnels, PPPoE-ish paths), 1440/1460
 * (Ethernet with and without some encapsulation).
 */
export const SYN_COOKIE_MSS_TABLE: readonly number[] = [536, 1300, 1440, 1460];

/** Bits of a cookie holding the time counter; the rest hold the hash and the MSS index. */
const COUNTER_SHIFT = 24;
const LOW_MASK = (1 << COUNTER_SHIFT) - 1;
/** Multiplier for the MSS index: codewords 0, 0x5B3C1D, 0xB6783A, 0x11B457 (see above). */
const SPREAD = 0x5b3c1d;
/** Low TSval bits carrying options. */
export const SYN_COOKIE_TS_BITS = 6;
const TS_MASK = (1 << SYN_COOKIE_TS_BITS) - 1;
const TS_WSCALE_MASK = 0x0f;
const TS_WSCALE_NONE = 0x0f;
const TS_SACK = 0x10;
/** Linux's ECN bit; we never set it, so an echo with it set was not our TSval. */
const TS_RESERVED = 0x20;
/** Key length in bytes (SipHash's 128-bit key). */
export const SYN_COOKIE_KEY_BYTES = 16;

/** The connection a cookie belongs to, as the listener sees it. */
export interface SynCookieTuple {
  localAddr: Ipv4Addr;
  localPort: number;
  remoteAddr: Ipv4Addr;
  remotePort: number;
}

export type SynCookieCheck = { ok: true; mss: number; mssIndex: number } | { ok: false; error: 'expired' | 'bad-cookie' };

/** Options a cookie's TSval carries. `windowScale` undefined: the peer offered none. */
export interface SynCookieTsOptions {
  windowScale: number | undefined;
  sackPermitted: boolean;
}

/** Index of the largest table MSS not above `mss` (0 when `mss` is below them all). */
export function synCookieMssIndex(mss: number): number {
  for (let i = SYN_COOKIE_MSS_TABLE.length - 1; i > 0; i--) if (mss >= SYN_COOKIE_MSS_TABLE[i]!) return i;
  return 0;
}

/** Holds the secret key; encodes and checks cookies. */
export class SynCookieJar {
  private readonly key: SipKey;
  /** The hashed message: five big-endian words (see `hash`). */
  private readonly msg = new Uint8Array(20);
  private readonly view = new DataView(this.msg.buffer);

  /** `key` (16 bytes) defaults to fresh bytes from node:crypto; tests and seeded labs pass their own. */
  constructor(key: Uint8Array = randomBytes(SYN_COOKIE_KEY_BYTES)) {
    if (key.length !== SYN_COOKIE_KEY_BYTES) throw new RangeError(`SYN cookie key of ${key.length} bytes: ${SYN_COOKIE_KEY_BYTES} needed`);
    this.key = sipKey(key);
  }

  /**
   * The cookie ISN for a SYN from `tuple` with ISN `peerIsn`, made in time counter `counter`,
   * carrying `mssIndex` (from synCookieMssIndex).
   */
  encode(tuple: SynCookieTuple, peerIsn: number, counter: number, mssIndex: number): number {
    if (!(mssIndex >= 0 && mssIndex < SYN_COOKIE_MSS_TABLE.length)) throw new RangeError(`bad MSS index ${mssIndex}`);
    const c = counter & 0xff;
    const low = (this.hash(2, tuple, peerIsn, c) + mssIndex * SPREAD) & LOW_MASK;
    return (this.hash(1, tuple, peerIsn, 0) + ((c << COUNTER_SHIFT) | low)) >>> 0;
  }

  /**
   * Check `cookie` (the ACK's ack − 1) for a handshake from `tuple` whose ISN was `peerIsn` (the
   * ACK's seq − 1), at time counter `counter`. A cookie is accepted while fewer than `validTicks`
   * counter ticks have passed since it was made.
   */
  check(tuple: SynCookieTuple, peerIsn: number, cookie: number, counter: number, validTicks: number): SynCookieCheck {
    const v = (cookie - this.hash(1, tuple, peerIsn, 0)) >>> 0;
    const made = v >>> COUNTER_SHIFT;
    const age = ((counter & 0xff) - made) & 0xff;
    if (age >= validTicks) return { ok: false, error: 'expired' };
    const data = ((v & LOW_MASK) - this.hash(2, tuple, peerIsn, made)) & LOW_MASK;
    const mssIndex = SYN_COOKIE_MSS_TABLE.findIndex((_, i) => ((i * SPREAD) & LOW_MASK) === data);
    if (mssIndex < 0) return { ok: false, error: 'bad-cookie' };
    return { ok: true, mss: SYN_COOKIE_MSS_TABLE[mssIndex]!, mssIndex };
  }

  /** Low 32 bits of SipHash-2-4(key, localAddr ‖ ports ‖ remoteAddr ‖ peerIsn ‖ which·counter). */
  private hash(which: number, t: SynCookieTuple, peerIsn: number, counter: number): number {
    const v = this.view;
    v.setUint32(0, t.localAddr >>> 0);
    v.setUint32(4, ((t.localPort & 0xffff) << 16) | (t.remotePort & 0xffff));
    v.setUint32(8, t.remoteAddr >>> 0);
    v.setUint32(12, peerIsn >>> 0);
    v.setUint32(16, ((which << 24) | (counter & 0xffffff)) >>> 0);
    return siphash24(this.key, this.msg)[1];
  }
}

/**
 * The TSval for a cookie SYN-ACK: `tsClock` (the timestamp clock the connection will use) with its
 * low bits replaced by the options, moved one step back when that would put it ahead of the
 * clock, so the connection's later TSvals never go backwards (RFC 7323 §5.3 PAWS at the peer).
 */
export function synCookieTsVal(tsClock: number, options: SynCookieTsOptions): number {
  const now = tsClock >>> 0;
  const ws = options.windowScale;
  let bits = ws === undefined ? TS_WSCALE_NONE : Math.min(ws, TCP_MAX_WINSHIFT);
  if (options.sackPermitted) bits |= TS_SACK;
  let ts = ((now & ~TS_MASK) | bits) >>> 0;
  if (((ts - now) | 0) > 0) ts = (ts - (1 << SYN_COOKIE_TS_BITS)) >>> 0;
  return ts;
}

/** The options a cookie TSval echoed back in TSecr carries, or null if no TSval of ours had them. */
export function synCookieTsOptions(tsEcr: number): SynCookieTsOptions | null {
  const bits = tsEcr & TS_MASK;
  if (bits & TS_RESERVED) return null;
  const ws = bits & TS_WSCALE_MASK; // 0..14 a shift (we never send more), 15 none
  return { windowScale: ws === TS_WSCALE_NONE ? undefined : ws, sackPermitted: (bits & TS_SACK) !== 0 };
}
