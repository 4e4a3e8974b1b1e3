import { describe, expect, it } from 'vitest';
import { parseIpv4 } from '../../../net/addr.js';
import {
  DNS_CLASS_IN,
  DnsRcode,
  DnsType,
  dnsQuery,
  encodeDns,
  nameToLabels,
  parseDns,
  readName,
  type DnsMessage,
} from '../../../net/wire/dns.js';

const ip = (s: string): number => parseIpv4(s)!;
const ascii = (s: string): number[] => s.split('').map((c) => c.charCodeAt(0));

/** The answer to "localhost. IN A", laid out by hand from RFC 1035 §4.1.1–§4.1.4. */
const LOCALHOST_RESPONSE = Uint8Array.from([
  0x12, 0x34, // ID
  0x81, 0x80, // QR=1 opcode=0 AA=0 TC=0 RD=1 | RA=1 Z=0 RCODE=0
  0x00, 0x01, // QDCOUNT
  0x00, 0x01, // ANCOUNT
  0x00, 0x00, // NSCOUNT
  0x00, 0x00, // ARCOUNT
  // question at offset 12: QNAME, QTYPE A, QCLASS IN
  9, ...ascii('localhost'), 0,
  0x00, 0x01,
  0x00, 0x01,
  // answer: NAME = pointer to offset 12, TYPE A, CLASS IN, TTL 3600, RDLENGTH 4, 127.0.0.1
  0xc0, 0x0c,
  0x00, 0x01,
  0x00, 0x01,
  0x00, 0x00, 0x0e, 0x10,
  0x00, 0x04,
  127, 0, 0, 1,
]); // prettier-ignore

const localhostMessage: DnsMessage = {
  id: 0x1234,
  flags: { qr: true, opcode: 0, aa: false, tc: false, rd: true, ra: true, ad: false, cd: false, rcode: 0 },
  questions: [{ name: 'localhost', type: DnsType.A, class: DNS_CLASS_IN }],
  answers: [{ name: 'localhost', type: DnsType.A, class: DNS_CLASS_IN, ttl: 3600, data: { kind: 'a', address: ip('127.0.0.1') } }],
  authorities: [],
  additionals: [],
};

/** A 12-octet header with the given counts, then `body`. */
function message(qd: number, an: number, body: number[]): Uint8Array {
  return Uint8Array.from([0, 1, 0x81, 0x80, 0, qd, 0, an, 0, 0, 0, 0, ...body]);
}

describe('DNS message parsing', () => {
  it('reads the localhost A response', () => {
    expect(LOCALHOST_RESPONSE.length).toBe(43);
    expect(parseDns(LOCALHOST_RESPONSE)).toEqual({ ok: true, value: localhostMessage });
  });

  it('refuses every truncation with an error value', () => {
    for (let n = 0; n < LOCALHOST_RESPONSE.length; n++) {
      const r = parseDns(LOCALHOST_RESPONSE.subarray(0, n));
      expect(r, `length ${n}`).toEqual({ ok: false, error: 'truncated' });
    }
  });

  it('rejects a pointer to itself', () => {
    const b = message(1, 0, [0xc0, 0x0c, 0, 1, 0, 1]);
    expect(parseDns(b)).toEqual({ ok: false, error: 'bad-pointer' });
  });

  it('rejects two pointers pointing at each other', () => {
    // offset 12: pointer to 14; offset 14: pointer to 12
    const b = message(1, 0, [0xc0, 0x0e, 0xc0, 0x0c, 0, 1, 0, 1]);
    expect(parseDns(b)).toEqual({ ok: false, error: 'bad-pointer' });
    expect(readName(b, 14)).toEqual({ ok: false, error: 'bad-pointer' });
  });

  it('rejects a pointer back into the labels it ends', () => {
    // offset 12: label "a", then a pointer to 12 — behind the pointer, yet a loop
    const b = message(1, 0, [1, 0x61, 0xc0, 0x0c, 0, 1, 0, 1]);
    expect(parseDns(b)).toEqual({ ok: false, error: 'bad-pointer' });
  });

  it('follows a chain of backward pointers', () => {
    // 12: "com" root; 17: "example" + ptr 12; 27: "www" + ptr 17
    const b = message(0, 0, [3, ...ascii('com'), 0, 7, ...ascii('example'), 0xc0, 12, 3, ...ascii('www'), 0xc0, 17]);
    expect(readName(b, 27)).toEqual({ ok: true, value: { name: 'www.example.com', end: 33 } });
  });

  it('rejects names over 255 octets and reserved label types', () => {
    const label = [63, ...new Array<number>(63).fill(0x61)];
    const long = message(1, 0, [...label, ...label, ...label, ...label, 0, 0, 1, 0, 1]);
    expect(parseDns(long)).toEqual({ ok: false, error: 'name-too-long' });
    expect(parseDns(message(1, 0, [0x41, 0x61, 0, 0, 1, 0, 1]))).toEqual({ ok: false, error: 'bad-label' });
    expect(parseDns(message(1, 0, [0x81, 0x61, 0, 0, 1, 0, 1]))).toEqual({ ok: false, error: 'bad-label' });
  });

  it('rejects A data that is not four octets', () => {
    const b = message(0, 1, [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5]);
    expect(parseDns(b)).toEqual({ ok: false, error: 'bad-rdata' });
  });

  it('reads CNAME, AAAA and unknown types', () => {
    const msg: DnsMessage = {
      ...localhostMessage,
      questions: [{ name: 'www.example.com', type: DnsType.AAAA, class: DNS_CLASS_IN }],
      answers: [
        { name: 'www.example.com', type: DnsType.CNAME, class: 1, ttl: 60, data: { kind: 'name', name: 'web.example.com' } },
        { name: 'web.example.com', type: DnsType.AAAA, class: 1, ttl: 60, data: { kind: 'aaaa', address: Uint8Array.from({ length: 16 }, (_, i) => i) } },
        { name: 'web.example.com', type: DnsType.TXT, class: 1, ttl: 60, data: { kind: 'raw', bytes: Uint8Array.of(2, 0x68, 0x69) } },
      ],
    };
    for (const compress of [true, false]) {
      const r = parseDns(encodeDns(msg, { compress }));
      expect(r).toEqual({ ok: true, value: msg });
    }
  });

  it('does not throw on random garbage', () => {
    let seed = 7;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
    for (let i = 0; i < 2000; i++) {
      const b = new Uint8Array(12 + (i % 60));
      for (let j = 0; j < b.length; j++) b[j] = rnd();
      b[4] = 0;
      b[5] = 2;
      expect(() => parseDns(b)).not.toThrow();
    }
  });
});

describe('DNS message emission', () => {
  it('builds the localhost response octet for octet with compression', () => {
    expect(encodeDns(localhostMessage)).toEqual(LOCALHOST_RESPONSE);
  });

  it('writes names in full without compression', () => {
    const b = encodeDns(localhostMessage, { compress: false });
    expect(b.length).toBe(LOCALHOST_RESPONSE.length - 2 + 11);
    expect(Array.from(b.subarray(27, 38))).toEqual([9, ...ascii('localhost'), 0]);
    expect(parseDns(b)).toEqual({ ok: true, value: localhostMessage });
  });

  it('compresses shared suffixes case-insensitively', () => {
    const msg = dnsQuery(1, 'a.example.com', DnsType.A);
    msg.answers = [{ name: 'B.Example.COM', type: DnsType.A, class: 1, ttl: 1, data: { kind: 'a', address: 1 } }];
    const b = encodeDns(msg);
    // question name at 12 (15 octets), then "B" label and a pointer to "example.com" at 14
    expect(Array.from(b.subarray(31, 35))).toEqual([1, 0x42, 0xc0, 14]);
  });

  it('escapes dots and odd octets inside labels and reads them back', () => {
    expect(nameToLabels('a\\.b.c').map((l) => Array.from(l))).toEqual([[0x61, 0x2e, 0x62], [0x63]]);
    const msg = dnsQuery(2, 'a\\.b\\032c.example', DnsType.A);
    const r = parseDns(encodeDns(msg));
    if (!r.ok) throw new Error(r.error);
    expect(r.value.questions[0]!.name).toBe('a\\.b\\032c.example');
  });

  it('throws RangeError for names that cannot be encoded', () => {
    expect(() => encodeDns(dnsQuery(1, 'x'.repeat(64) + '.com', DnsType.A))).toThrow(RangeError);
    expect(() => encodeDns(dnsQuery(1, Array(130).fill('ab').join('.'), DnsType.A))).toThrow(RangeError);
    expect(() => encodeDns(dnsQuery(1, 'a..b', DnsType.A))).toThrow(RangeError);
  });

  it('puts the flag bits where RFC 1035 §4.1.1 says', () => {
    const msg = { ...localhostMessage, flags: { ...localhostMessage.flags, aa: true, tc: true, rcode: DnsRcode.NXDOMAIN, opcode: 2 } };
    const b = encodeDns(msg);
    expect(b[2]).toBe(0x80 | (2 << 3) | 0x04 | 0x02 | 0x01);
    expect(b[3]).toBe(0x80 | 3);
  });
});
