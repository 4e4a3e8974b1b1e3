import { describe, expect, it } from 'vitest';
import { parseIpv4 } from '../../../net/addr.js';
import { mulberry32 } from '../../../net/random.js';
import {
  SYN_COOKIE_MSS_TABLE,
  SynCookieJar,
  synCookieMssIndex,
  synCookieTsOptions,
  synCookieTsVal,
  type SynCookieTuple,
} from '../../../net/tcp/syn-cookie.js';

const KEY = new Uint8Array(16).map((_, i) => (i * 37 + 11) & 0xff);
const TUPLE: SynCookieTuple = { localAddr: parseIpv4('10.0.0.2')!, localPort: 80, remoteAddr: parseIpv4('192.0.2.7')!, remotePort: 40000 };
const PEER_ISN = 0xdeadbeef;

describe('SYN cookie encoding', () => {
  it('round-trips every MSS-table index and returns the table MSS', () => {
    const jar = new SynCookieJar(KEY);
    for (let i = 0; i < SYN_COOKIE_MSS_TABLE.length; i++) {
      const cookie = jar.encode(TUPLE, PEER_ISN, 1000, i);
      expect(jar.check(TUPLE, PEER_ISN, cookie, 1000, 2)).toEqual({ ok: true, mss: SYN_COOKIE_MSS_TABLE[i], mssIndex: i });
    }
  });

  it('rounds the peer MSS down to the table (536 below the smallest entry)', () => {
    expect(SYN_COOKIE_MSS_TABLE).toEqual([536, 1300, 1440, 1460]);
    const cases: [number, number][] = [[100, 0], [536, 0], [1299, 0], [1300, 1], [1439, 1], [1440, 2], [1459, 2], [1460, 3], [8960, 3], [65535, 3]];
    for (const [mss, index] of cases) expect(synCookieMssIndex(mss), `mss ${mss}`).toBe(index);
  });

  it('is valid in the tick it was made and the next one, and expires after (counter wraps at 8 bits)', () => {
    const jar = new SynCookieJar(KEY);
    const made = 0xff; // the next tick wraps the 8-bit counter to 0
    const cookie = jar.encode(TUPLE, PEER_ISN, made, 3);
    expect(jar.check(TUPLE, PEER_ISN, cookie, made, 2).ok).toBe(true);
    expect(jar.check(TUPLE, PEER_ISN, cookie, made + 1, 2).ok).toBe(true);
    expect(jar.check(TUPLE, PEER_ISN, cookie, made + 2, 2)).toEqual({ ok: false, error: 'expired' });
    expect(jar.check(TUPLE, PEER_ISN, cookie, made + 100, 2)).toEqual({ ok: false, error: 'expired' });
    // A cookie from "the future" (counter went back) is no valid cookie either.
    expect(jar.check(TUPLE, PEER_ISN, cookie, made - 1, 2).ok).toBe(false);
  });

  it('rejects a cookie for another 4-tuple, another peer ISN, or another key', () => {
    const jar = new SynCookieJar(KEY);
    const cookie = jar.encode(TUPLE, PEER_ISN, 7, 2);
    expect(jar.check({ ...TUPLE, remotePort: 40001 }, PEER_ISN, cookie, 7, 2).ok).toBe(false);
    expect(jar.check({ ...TUPLE, remoteAddr: TUPLE.remoteAddr + 1 }, PEER_ISN, cookie, 7, 2).ok).toBe(false);
    expect(jar.check({ ...TUPLE, localPort: 81 }, PEER_ISN, cookie, 7, 2).ok).toBe(false);
    expect(jar.check(TUPLE, PEER_ISN + 1, cookie, 7, 2).ok).toBe(false);
    const other = new SynCookieJar(KEY.map((b) => b ^ 1));
    expect(other.check(TUPLE, PEER_ISN, cookie, 7, 2).ok).toBe(false);
  });

  it('detects tampering: every one- and two-bit flip of the cookie fails, and random guesses pass about 4 in 2^24', () => {
    const jar = new SynCookieJar(KEY);
    for (let index = 0; index < SYN_COOKIE_MSS_TABLE.length; index++) {
      const cookie = jar.encode(TUPLE, PEER_ISN, 42, index);
      for (let bit = 0; bit < 32; bit++) {
        expect(jar.check(TUPLE, PEER_ISN, (cookie ^ (1 << bit)) >>> 0, 42, 2).ok, `index ${index} bit ${bit}`).toBe(false);
        for (let bit2 = 0; bit2 < bit; bit2++) {
          expect(jar.check(TUPLE, PEER_ISN, (cookie ^ (1 << bit) ^ (1 << bit2)) >>> 0, 42, 2).ok, `index ${index} bits ${bit},${bit2}`).toBe(false);
        }
      }
    }
    const rnd = mulberry32(5);
    let passed = 0;
    for (let i = 0; i < 20_000; i++) if (jar.check(TUPLE, PEER_ISN, (rnd() * 2 ** 32) >>> 0, 42, 2).ok) passed++;
    expect(passed).toBe(0); // expected 20 000 · 2 ticks/256 · 4/2^24 ≈ 0.00004
  });

  it('looks random across tuples: cookies for neighbouring ports share no fixed bits', () => {
    const jar = new SynCookieJar(KEY);
    let and = 0xffffffff;
    let or = 0;
    for (let p = 0; p < 64; p++) {
      const c = jar.encode({ ...TUPLE, remotePort: 1000 + p }, PEER_ISN, 3, 0);
      and &= c;
      or |= c;
    }
    expect(and >>> 0).toBe(0);
    expect(or >>> 0).toBe(0xffffffff);
  });

  it('refuses keys that are not 16 bytes and MSS indexes outside the table', () => {
    expect(() => new SynCookieJar(new Uint8Array(8))).toThrow(RangeError);
    expect(() => new SynCookieJar(new Uint8Array(32))).toThrow(RangeError);
    expect(() => new SynCookieJar(KEY).encode(TUPLE, 0, 0, 4)).toThrow(RangeError);
  });
});

describe('SYN cookie options in TSval', () => {
  it('puts window scale (0xF = none) and SACK-permitted in the low 6 bits, never ahead of the clock', () => {
    // Clock 0x12345 = …0100 0101 (low 6 bits 0x05).
    // Spelled out: (0x12345 & ~0x3f) | 0x17 = 0x12357 is ahead of 0x12345, so one step back: 0x12317.
    expect(synCookieTsVal(0x12345, { windowScale: 7, sackPermitted: true })).toBe(0x12317);
    // Low bits 0x3f: (0x1237f & ~0x3f) | 0x0f = 0x1234f is not ahead, so it stays.
    expect(synCookieTsVal(0x1237f, { windowScale: undefined, sackPermitted: false })).toBe(0x1234f);
    expect(synCookieTsVal(0x12340, { windowScale: 0, sackPermitted: false })).toBe(0x12340);
    // Wraps below zero modulo 2^32.
    expect(synCookieTsVal(0x00000001, { windowScale: 14, sackPermitted: true })).toBe(0xffffffde);
    // A shift above 14 is sent as 14 (RFC 7323 §2.3).
    expect(synCookieTsVal(0x1000, { windowScale: 20, sackPermitted: false }) & 0x3f).toBe(14);
  });

  it('decodes what it encoded, for every window scale with and without SACK', () => {
    for (const windowScale of [undefined, 0, 1, 7, 14]) {
      for (const sackPermitted of [false, true]) {
        const ts = synCookieTsVal(0xabcdef12, { windowScale, sackPermitted });
        expect(((ts - 0xabcdef12) | 0) <= 0 && ((ts - 0xabcdef12) | 0) > -128).toBe(true);
        expect(synCookieTsOptions(ts)).toEqual({ windowScale, sackPermitted });
      }
    }
  });

  it('rejects echoes no TSval of ours carried (bit 5 set); a shift field of 15 means "none"', () => {
    expect(synCookieTsOptions(0x100 | 0x0f)).toEqual({ windowScale: undefined, sackPermitted: false });
    expect(synCookieTsOptions(0x100 | 0x20)).toBeNull(); // ECN bit (Linux) never set by us
    expect(synCookieTsOptions(0x100 | 0x0e | 0x10)).toEqual({ windowScale: 14, sackPermitted: true });
    // Every other combination of the 6 bits is something we could have sent.
    for (let low = 0; low < 64; low++) expect(synCookieTsOptions(low) === null).toBe((low & 0x20) !== 0);
  });
});
