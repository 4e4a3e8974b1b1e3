import { describe, expect, it } from 'vitest';
import { parseIpv4, type Ipv4Addr } from '../../../net/addr.js';
import { VirtualClock } from '../../../net/clock.js';
import { DnsResolver, type DnsResult } from '../../../net/dns/resolver.js';
import { DNS_CLASS_IN, DnsRcode, DnsType, encodeDns, parseDns, type DnsMessage, type DnsRecord } from '../../../net/wire/dns.js';

const ip = (s: string): Ipv4Addr => parseIpv4(s)!;
const DNS1 = ip('10.0.2.3');
const DNS2 = ip('10.0.2.4');

const a = (name: string, addr: string, ttl = 300): DnsRecord => ({ name, type: DnsType.A, class: DNS_CLASS_IN, ttl, data: { kind: 'a', address: ip(addr) } });
const cname = (name: string, target: string, ttl = 300): DnsRecord => ({ name, type: DnsType.CNAME, class: DNS_CLASS_IN, ttl, data: { kind: 'name', name: target } });

type Answerer = (q: DnsMessage, server: Ipv4Addr) => Partial<DnsMessage> & { rcode?: number; tc?: boolean; from?: Ipv4Addr; id?: number } | null;

/** A resolver whose servers answer through `answer` after 5 ms (null = no answer). */
function setup(answer: Answerer, servers = [DNS1]) {
  const clock = new VirtualClock();
  const sent: Array<{ at: number; server: Ipv4Addr; id: number }> = [];
  let seed = 1;
  const resolver = new DnsResolver({
    clock,
    servers,
    random: () => ((seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff),
    send: (payload, server) => {
      const q = parseDns(payload);
      if (!q.ok) throw new Error(q.error);
      sent.push({ at: clock.now(), server, id: q.value.id });
      const r = answer(q.value, server);
      if (!r) return;
      const { rcode, tc, from, ...rest } = r;
      const msg: DnsMessage = {
        ...q.value,
        flags: { ...q.value.flags, qr: true, ra: true, rcode: rcode ?? 0, tc: tc ?? false },
        ...rest,
      };
      clock.setTimer(5, () => resolver.input(encodeDns(msg), from ?? server));
    },
  });
  const run = async (p: Promise<DnsResult>): Promise<DnsResult> => {
    let result: DnsResult | undefined;
    void p.then((r) => (result = r));
    for (let i = 0; i < 1000 && result === undefined; i++) {
      await Promise.resolve();
      if (result === undefined && !clock.step()) await Promise.resolve();
    }
    await Promise.resolve();
    if (result === undefined) throw new Error('query never finished');
    return result;
  };
  return { clock, resolver, sent, run };
}

describe('DNS stub resolver', () => {
  it('resolves localhost to 127.0.0.1', async () => {
    const { resolver, run, sent } = setup((q) => ({ answers: [a(q.questions[0]!.name, '127.0.0.1', 3600)] }));
    const r = await run(resolver.query('localhost', 'A'));
    expect(r).toEqual({
      ok: true,
      value: {
        name: 'localhost',
        canonicalName: 'localhost',
        aliases: [],
        type: DnsType.A,
        records: [a('localhost', '127.0.0.1', 3600)],
        addresses: [ip('127.0.0.1')],
        ttl: 3600,
      },
    });
    expect(sent).toHaveLength(1);
    expect(resolver.outstanding).toBe(0);
  });

  it('follows a CNAME chain through the answer, whatever the record order', async () => {
    const { resolver, run } = setup(() => ({
      answers: [a('edge.cdn.example', '192.0.2.7', 20), cname('WWW.example.com', 'web.example.com', 600), cname('web.example.com', 'edge.cdn.example', 60)],
    }));
    const r = await run(resolver.query('www.example.com.'));
    expect(r.ok && r.value).toMatchObject({
      name: 'www.example.com',
      canonicalName: 'edge.cdn.example',
      aliases: ['web.example.com', 'edge.cdn.example'],
      addresses: [ip('192.0.2.7')],
      ttl: 20,
    });
  });

  it('reports NXDOMAIN, no data, truncation and CNAME loops as error values', async () => {
    const nx = setup(() => ({ rcode: DnsRcode.NXDOMAIN }));
    expect(await nx.run(nx.resolver.query('nope.example'))).toEqual({ ok: false, error: 'nxdomain' });
    const empty = setup(() => ({ answers: [] }));
    expect(await empty.run(empty.resolver.query('mail.example', 'AAAA'))).toEqual({ ok: false, error: 'no-data' });
    const tc = setup(() => ({ tc: true }));
    expect(await tc.run(tc.resolver.query('big.example'))).toEqual({ ok: false, error: 'truncated' });
    const loop = setup(() => ({ answers: [cname('x.example', 'y.example'), cname('y.example', 'x.example')] }));
    expect(await loop.run(loop.resolver.query('x.example'))).toEqual({ ok: false, error: 'cname-loop' });
    const bad = setup(() => null);
    expect(await bad.run(bad.resolver.query('a'.repeat(64) + '.example'))).toEqual({ ok: false, error: 'bad-name' });
  });

  it('moves on to the next server at once after SERVFAIL, and reports SERVFAIL when all fail', async () => {
    const some = setup((q, server) => (server === DNS1 ? { rcode: DnsRcode.SERVFAIL } : { answers: [a(q.questions[0]!.name, '192.0.2.1')] }), [DNS1, DNS2]);
    const r = await some.run(some.resolver.query('host.example'));
    expect(r.ok).toBe(true);
    expect(some.sent.map((s) => [s.server, s.at])).toEqual([
      [DNS1, 0],
      [DNS2, 5],
    ]);
    const all = setup(() => ({ rcode: DnsRcode.SERVFAIL }), [DNS1, DNS2]);
    expect(await all.run(all.resolver.query('host.example'))).toEqual({ ok: false, error: 'servfail' });
    expect(all.sent).toHaveLength(6);
  });

  it('retransmits on timeouts that double each round over the servers, then times out', async () => {
    const one = setup(() => null);
    const r = await one.run(one.resolver.query('slow.example'));
    expect(r).toEqual({ ok: false, error: 'timeout' });
    expect(one.sent.map((s) => s.at)).toEqual([0, 2000, 6000]);
    expect(one.clock.now()).toBe(14000);
    expect(new Set(one.sent.map((s) => s.id)).size).toBe(1);

    const two = setup(() => null, [DNS1, DNS2]);
    await two.run(two.resolver.query('slow.example'));
    expect(two.sent.map((s) => [s.server, s.at])).toEqual([
      [DNS1, 0],
      [DNS2, 2000],
      [DNS1, 4000],
      [DNS2, 8000],
      [DNS1, 12000],
      [DNS2, 20000],
    ]);
  });

  it('accepts a late answer to an earlier transmission', async () => {
    const { clock, resolver, sent } = setup(() => null);
    let result: DnsResult | undefined;
    void resolver.query('late.example').then((r) => (result = r));
    clock.advance(2500);
    expect(sent.map((s) => s.at)).toEqual([0, 2000]);
    // The retransmission reuses the id, so an answer to either is the answer.
    resolver.input(encodeDns(responseFor(sent[0]!.id, 'late.example', [a('late.example', '192.0.2.9')])), DNS1);
    await Promise.resolve();
    expect(result).toMatchObject({ ok: true, value: { addresses: [ip('192.0.2.9')] } });
  });

  it('ignores answers with another id, from another address or to another question', async () => {
    const { resolver, sent, clock } = setup(() => null);
    let result: DnsResult | undefined;
    void resolver.query('host.example').then((r) => (result = r));
    const id = sent[0]!.id;
    resolver.input(encodeDns(responseFor((id + 1) & 0xffff, 'host.example', [a('host.example', '6.6.6.6')])), DNS1);
    resolver.input(encodeDns(responseFor(id, 'host.example', [a('host.example', '6.6.6.6')])), ip('10.9.9.9'));
    resolver.input(encodeDns(responseFor(id, 'other.example', [a('other.example', '6.6.6.6')])), DNS1);
    resolver.input(Uint8Array.of(1, 2, 3), DNS1);
    await Promise.resolve();
    expect(result).toBeUndefined();
    expect(resolver.stats).toMatchObject({ unmatched: 3, malformed: 1 });
    resolver.input(encodeDns(responseFor(id, 'HOST.example', [a('host.example', '192.0.2.2')])), DNS1);
    await Promise.resolve();
    expect(result).toMatchObject({ ok: true, value: { addresses: [ip('192.0.2.2')] } });
    expect(clock.pending()).toBe(0);
  });

  it('close() ends outstanding queries with "cancelled"', async () => {
    const { resolver, clock } = setup(() => null);
    const p = resolver.query('host.example');
    resolver.close();
    expect(await p).toEqual({ ok: false, error: 'cancelled' });
    expect(clock.pending()).toBe(0);
  });
});

function responseFor(id: number, name: string, answers: DnsRecord[]): DnsMessage {
  return {
    id,
    flags: { qr: true, opcode: 0, aa: false, tc: false, rd: true, ra: true, ad: false, cd: false, rcode: 0 },
    questions: [{ name, type: DnsType.A, class: DNS_CLASS_IN }],
    answers,
    authorities: [],
    additionals: [],
  };
}
