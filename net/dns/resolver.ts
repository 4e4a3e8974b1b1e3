/**
 * A DNS stub resolver (RFC 1035 §7, RFC 1123 §6.1.3): one recursive query per lookup, sent to the
 * configured servers in turn, retransmitted on the Clock, answers matched by id, source and
 * question (RFC 5452 §9.1), CNAME chains followed within the answer.
 *
 * Pure: queries go out through the injected `send` (the caller wraps them in UDP to port 53) and
 * responses come in through `input`. Outcomes are values, never rejections: `query` resolves to
 * `{ ok: true, value }` or `{ ok: false, error }` with NXDOMAIN, SERVFAIL, timeouts and the rest.
 *
 * Not done: TCP fallback for truncated answers (reported as 'truncated'), EDNS, search lists and
 * caching; a CNAME whose target has no records in the same answer is reported as 'no-data' rather
 * than queried again.
 */
import { formatIpv4, type Ipv4Addr } from '../addr.js';
import type { DebugLog } from '../debug.js';
import type { Clock, TimerHandle } from '../clock.js';
import {
  DNS_CLASS_IN,
  DnsRcode,
  DnsType,
  dnsNameEquals,
  dnsQuery,
  encodeDns,
  parseDns,
  type DnsMessage,
  type DnsRecord,
} from '../wire/dns.js';

export type DnsQueryType = keyof typeof DnsType | number;

export type DnsResolveError =
  | 'nxdomain' // the name does not exist (RCODE 3)
  | 'no-data' // the name exists but has no record of the type asked for
  | 'servfail' // every server failed (RCODE 2, or FORMERR/NOTIMP)
  | 'refused' // the last server answering refused (RCODE 5)
  | 'timeout' // no answer after every retransmission
  | 'truncated' // the answer did not fit in UDP (TC) and TCP is not implemented
  | 'cname-loop' // the CNAME chain in the answer is longer than any sane one
  | 'bad-name' // the name asked for is not a valid domain name
  | 'no-servers'
  | 'cancelled'; // close() was called

export interface DnsAnswer {
  /** The name asked for. */
  name: string;
  /** The name the records belong to, after CNAMEs. */
  canonicalName: string;
  /** CNAME targets followed, in order. */
  aliases: string[];
  type: number;
  /** Records of the asked type owned by `canonicalName`. */
  records: DnsRecord[];
  /** For A queries: the addresses, in answer order. */
  addresses: Ipv4Addr[];
  /** The smallest TTL along the chain, in seconds. */
  ttl: number;
}

export type DnsResult = { ok: true; value: DnsAnswer } | { ok: false; error: DnsResolveError };

export interface DnsResolverOptions {
  clock: Clock;
  servers: Ipv4Addr[];
  send: (payload: Uint8Array, server: Ipv4Addr) => void;
  /** Uniform in [0, 1): query ids come from it, unpredictable as RFC 5452 asks. */
  random: () => number;
  /** Wait for the first transmission; each round over all servers doubles it. Default 2000 ms. */
  timeoutMs?: number;
  /** Rounds over the server list. Default 3. */
  attempts?: number;
  /** `--debug dns`: queries, transmissions, answers, responses dropped and why. */
  debug?: DebugLog;
}

export interface DnsResolverStats {
  queries: number;
  sent: number;
  retransmits: number;
  received: number;
  malformed: number;
  /** Responses that matched no outstanding query (late, spoofed or from the wrong server). */
  unmatched: number;
}

interface Pending {
  id: number;
  name: string;
  type: number;
  /** Index into the (server × round) sequence of transmissions. */
  step: number;
  /** Servers this query has been sent to; a response from anyone else is not accepted. */
  sentTo: Set<Ipv4Addr>;
  timer: TimerHandle | null;
  payload: Uint8Array;
  lastError: DnsResolveError;
  resolve: (r: DnsResult) => void;
}

/** RFC 1034 §5.2.2 warns about CNAME loops; real chains are a handful of links. */
const MAX_CNAME_CHAIN = 16;

export class DnsResolver {
  servers: Ipv4Addr[];
  readonly stats: DnsResolverStats = { queries: 0, sent: 0, retransmits: 0, received: 0, malformed: 0, unmatched: 0 };
  private readonly pending = new Map<number, Pending>();
  private readonly timeoutMs: number;
  private readonly attempts: number;

  constructor(private readonly opts: DnsResolverOptions) {
    this.servers = [...opts.servers];
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.attempts = opts.attempts ?? 3;
  }

  /** Look `name` up. Resolves (never rejects) to the records or the reason there are none. */
  query(name: string, type: DnsQueryType = 'A'): Promise<DnsResult> {
    const qtype = typeof type === 'number' ? type : DnsType[type];
    this.stats.queries++;
    return new Promise<DnsResult>((resolve) => {
      if (this.servers.length === 0) return resolve({ ok: false, error: 'no-servers' });
      const id = this.newId();
      let payload: Uint8Array;
      try {
        payload = encodeDns(dnsQuery(id, name, qtype));
      } catch {
        return resolve({ ok: false, error: 'bad-name' });
      }
      const p: Pending = { id, name, type: qtype, step: 0, sentTo: new Set(), timer: null, payload, lastError: 'timeout', resolve };
      this.pending.set(id, p);
      this.transmit(p);
    });
  }

  /** A UDP payload that arrived from port 53 of `from`. */
  input(payload: Uint8Array, from: Ipv4Addr): void {
    this.stats.received++;
    const parsed = parseDns(payload);
    const d = this.opts.debug;
    if (!parsed.ok) {
      this.stats.malformed++;
      if (d?.on) d.debug(`drop (malformed: ${parsed.error}) from ${formatIpv4(from)}`);
      return;
    }
    const m = parsed.value;
    const p = this.pending.get(m.id);
    if (!p || !m.flags.qr || !p.sentTo.has(from) || !this.sameQuestion(p, m)) {
      this.stats.unmatched++;
      if (d?.on) d.debug(`drop (unmatched response id ${m.id} from ${formatIpv4(from)}: ${!p ? 'no such query' : !m.flags.qr ? 'not a response' : !p.sentTo.has(from) ? 'server not asked' : 'other question'})`);
      return;
    }
    if (d?.on) d.debug(`response id ${m.id} ${p.name} from ${formatIpv4(from)}: rcode ${m.flags.rcode}${m.flags.tc ? ' truncated' : ''}, ${m.answers.length} answers`);
    if (m.flags.tc) return this.finish(p, { ok: false, error: 'truncated' });
    switch (m.flags.rcode) {
      case DnsRcode.NOERROR:
        return this.finish(p, answerFrom(p, m));
      case DnsRcode.NXDOMAIN:
        return this.finish(p, { ok: false, error: 'nxdomain' });
      default:
        // SERVFAIL, REFUSED and the rest speak for that server only: try the next one now
        // (RFC 1035 §7.3: a server error means "try another").
        p.lastError = m.flags.rcode === DnsRcode.REFUSED ? 'refused' : 'servfail';
        p.timer?.cancel();
        p.step++;
        this.transmit(p);
    }
  }

  /** Resolve every outstanding query with 'cancelled'. */
  close(): void {
    for (const p of [...this.pending.values()]) this.finish(p, { ok: false, error: 'cancelled' });
  }

  /** Queries waiting for an answer. */
  get outstanding(): number {
    return this.pending.size;
  }

  private transmit(p: Pending): void {
    const n = this.servers.length;
    if (p.step >= n * this.attempts) return this.finish(p, { ok: false, error: p.lastError });
    const server = this.servers[p.step % n]!;
    const round = Math.floor(p.step / n);
    if (p.step > 0) this.stats.retransmits++;
    this.stats.sent++;
    if (this.opts.debug?.on) this.opts.debug.debug(`${p.step > 0 ? 'retransmit' : 'query'} id ${p.id} ${p.name} type ${p.type} to ${formatIpv4(server)} (try ${p.step + 1})`);
    p.sentTo.add(server);
    p.timer = this.opts.clock.setTimer(this.timeoutMs * 2 ** round, () => {
      p.timer = null;
      p.step++;
      this.transmit(p);
    });
    this.opts.send(p.payload, server);
  }

  private finish(p: Pending, result: DnsResult): void {
    p.timer?.cancel();
    p.timer = null;
    if (this.pending.get(p.id) !== p) return;
    this.pending.delete(p.id);
    if (this.opts.debug?.on) this.opts.debug.debug(`${p.name}: ${result.ok ? 'resolved' : `failed (${result.error})`}`);
    p.resolve(result);
  }

  private sameQuestion(p: Pending, m: DnsMessage): boolean {
    const q = m.questions[0];
    return m.questions.length === 1 && q !== undefined && q.type === p.type && q.class === DNS_CLASS_IN && dnsNameEquals(q.name, stripDot(p.name));
  }

  private newId(): number {
    for (;;) {
      const id = Math.floor(this.opts.random() * 0x10000) & 0xffff;
      if (!this.pending.has(id)) return id;
    }
  }
}

function stripDot(name: string): string {
  return name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
}

/** Follow CNAMEs from the question name through the answer section to records of the asked type. */
function answerFrom(p: Pending, m: DnsMessage): DnsResult {
  const name = stripDot(p.name);
  let current = name;
  const aliases: string[] = [];
  let ttl = Infinity;
  for (let hop = 0; hop <= MAX_CNAME_CHAIN; hop++) {
    const records = m.answers.filter((r) => r.type === p.type && r.class === DNS_CLASS_IN && dnsNameEquals(r.name, current));
    if (records.length > 0) {
      for (const r of records) ttl = Math.min(ttl, r.ttl);
      const addresses = records.flatMap((r) => (r.data.kind === 'a' ? [r.data.address] : []));
      return { ok: true, value: { name, canonicalName: current, aliases, type: p.type, records, addresses, ttl } };
    }
    const cname = m.answers.find((r) => r.type === DnsType.CNAME && dnsNameEquals(r.name, current));
    if (!cname || cname.data.kind !== 'name') return { ok: false, error: 'no-data' };
    ttl = Math.min(ttl, cname.ttl);
    current = cname.data.name;
    aliases.push(current);
  }
  return { ok: false, error: 'cname-loop' };
}
