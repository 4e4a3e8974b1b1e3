/**
 * Resets: RFC 9293 §3.10.7.1 (no connection), §3.10.7.3 (SYN-SENT) and RFC 5961's defences against
 * blind in-window resets and SYNs (challenge ACKs).
 */
import { describe, expect, it } from 'vitest';
import type { TcpConnection } from '../../../net/tcp/connection.js';
import { TH_ACK, TH_RST, TH_SYN, type TcpOptions, type TcpRepr } from '../../../net/wire/tcp.js';
import { ADDR_B, establish, TestNet } from './harness.js';

function seg(over: Partial<TcpRepr>): TcpRepr {
  return { srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 1024, urgent: 0, options: {}, payload: new Uint8Array(0), ...over };
}

/** An established pair with nothing in flight, and B's RCV.NXT / SND.NXT read off the wire. */
function quietPair(): { net: TestNet; client: TcpConnection; server: TcpConnection; bRcvNxt: number; bSndNxt: number; errors: string[]; ts: TcpOptions } {
  const net = new TestNet();
  const { client, server } = establish(net);
  net.clock.advance(1000); // let delayed ACKs and everything else settle
  const finalAck = net.trace.filter((e) => e.from === 'a').at(-1)!.seg;
  const synAck = net.trace.find((e) => e.from === 'b' && e.seg.flags & TH_SYN)!.seg;
  const errors: string[] = [];
  server.onError = (e) => errors.push(e);
  net.trace.length = 0;
  // The connection uses timestamps, and a non-RST segment without one is dropped unseen
  // (RFC 7323 §3.2): crafted segments carry A's current one, as a blind attacker's could.
  const ts: TcpOptions = { timestamp: { tsVal: finalAck.options.timestamp!.tsVal, tsEcr: 0 } };
  return { net, client, server, bRcvNxt: finalAck.seq, bSndNxt: (synAck.seq + 1) >>> 0, errors, ts };
}

describe('RST to a closed port', () => {
  it('a SYN to a port without a listener is answered <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>', () => {
    const net = new TestNet();
    net.inject('a', seg({ srcPort: 40000, dstPort: 81, seq: 0x12345678, flags: TH_SYN, options: { mss: 1460 } }));
    net.clock.advance(100);
    const replies = net.trace.filter((e) => e.from === 'b');
    expect(replies).toHaveLength(1);
    const r = replies[0]!.seg;
    expect(r.flags).toBe(TH_RST | TH_ACK);
    expect(r.seq).toBe(0);
    expect(r.ack).toBe(0x12345679);
    expect(r.srcPort).toBe(81);
    expect(r.dstPort).toBe(40000);
    expect(net.b.stats.noListener).toBe(1);
  });

  it('a stray ACK is answered <SEQ=SEG.ACK><CTL=RST>, and a stray RST is not answered at all', () => {
    const net = new TestNet();
    net.inject('a', seg({ srcPort: 40000, dstPort: 81, seq: 5, ack: 0xabcdef01, flags: TH_ACK }));
    net.inject('a', seg({ srcPort: 40000, dstPort: 81, seq: 5, flags: TH_RST }));
    net.clock.advance(100);
    const replies = net.trace.filter((e) => e.from === 'b');
    expect(replies).toHaveLength(1);
    expect(replies[0]!.seg.flags).toBe(TH_RST);
    expect(replies[0]!.seg.seq).toBe(0xabcdef01);
  });
});

describe('RFC 5961 in synchronized states', () => {
  it('an in-window RST that is not exact gets a challenge ACK; the exact one resets', () => {
    const { net, client, server, bRcvNxt, bSndNxt, errors } = quietPair();
    const rst = (seq: number): TcpRepr => seg({ srcPort: client.localPort, dstPort: 80, seq, flags: TH_RST });
    net.inject('a', rst((bRcvNxt + 1000) >>> 0));
    net.clock.advance(100);
    expect(server.state).toBe('ESTABLISHED');
    const challenge = net.trace.filter((e) => e.from === 'b');
    expect(challenge).toHaveLength(1);
    expect(challenge[0]!.seg.flags).toBe(TH_ACK);
    expect(challenge[0]!.seg.ack).toBe(bRcvNxt);
    expect(challenge[0]!.seg.seq).toBe(bSndNxt);
    expect(net.b.stats.challengeAcks).toBe(1);
    // The real client answers the challenge ACK with nothing (it is a duplicate ACK to it).
    expect(client.state).toBe('ESTABLISHED');

    // Out of the window entirely: silently dropped.
    net.trace.length = 0;
    net.inject('a', rst((bRcvNxt + 0x40000000) >>> 0));
    net.clock.advance(100);
    expect(net.trace.filter((e) => e.from === 'b')).toHaveLength(0);
    expect(server.state).toBe('ESTABLISHED');

    // Exactly RCV.NXT: reset.
    net.inject('a', rst(bRcvNxt));
    net.clock.advance(100);
    expect(server.state).toBe('CLOSED');
    expect(errors).toEqual(['ECONNRESET']);
    expect(net.b.connections()).toHaveLength(0);
  });

  it('a SYN on an established connection gets a challenge ACK and changes nothing', () => {
    const { net, client, server, bRcvNxt, ts } = quietPair();
    net.inject('a', seg({ srcPort: client.localPort, dstPort: 80, seq: (bRcvNxt + 10) >>> 0, flags: TH_SYN, options: ts }));
    net.clock.advance(100);
    const replies = net.trace.filter((e) => e.from === 'b');
    expect(replies.map((e) => e.seg.flags)).toEqual([TH_ACK]);
    expect(replies[0]!.seg.ack).toBe(bRcvNxt);
    expect(server.state).toBe('ESTABLISHED');
  });

  it('an ACK for data never sent is dropped with an ACK; one far below SND.UNA gets a challenge ACK', () => {
    const { net, client, server, bRcvNxt, bSndNxt, ts } = quietPair();
    net.inject('a', seg({ srcPort: client.localPort, dstPort: 80, seq: bRcvNxt, ack: (bSndNxt + 5000) >>> 0, flags: TH_ACK, options: ts }));
    net.clock.advance(100);
    expect(net.trace.filter((e) => e.from === 'b').map((e) => e.seg.flags)).toEqual([TH_ACK]);
    net.trace.length = 0;
    net.inject('a', seg({ srcPort: client.localPort, dstPort: 80, seq: bRcvNxt, ack: (bSndNxt - 0x20000000) >>> 0, flags: TH_ACK, options: ts }));
    net.clock.advance(100);
    expect(net.trace.filter((e) => e.from === 'b').map((e) => e.seg.flags)).toEqual([TH_ACK]);
    expect(net.b.stats.challengeAcks).toBe(1);
    expect(server.state).toBe('ESTABLISHED');
  });

  it('rate-limits challenge ACKs (RFC 5961 §7) with a budget drawn anew each second (CVE-2016-5696)', () => {
    const net = new TestNet({ tcp: { challengeAckLimit: 10 } });
    const { client, server } = establish(net);
    net.clock.advance(1000);
    const bRcvNxt = net.trace.filter((e) => e.from === 'a').at(-1)!.seg.seq;
    const counts: number[] = [];
    for (let second = 0; second < 8; second++) {
      net.trace.length = 0;
      for (let i = 0; i < 40; i++) net.inject('a', seg({ srcPort: client.localPort, dstPort: 80, seq: (bRcvNxt + 100 + i) >>> 0, flags: TH_RST }));
      net.clock.advance(1000);
      counts.push(net.trace.filter((e) => e.from === 'b').length);
    }
    for (const n of counts) {
      expect(n).toBeGreaterThanOrEqual(5);
      expect(n).toBeLessThan(15);
    }
    expect(new Set(counts).size).toBeGreaterThan(1); // not a fixed, countable number
    expect(server.state).toBe('ESTABLISHED');
  });
});

describe('RST in SYN-SENT', () => {
  it('is accepted only when its ACK acknowledges our SYN', () => {
    const net = new TestNet();
    net.filter = (from) => from !== 'a'; // the SYN never reaches B: we play B by hand
    const c = net.a.connect(ADDR_B, 80);
    const errors: string[] = [];
    c.onError = (e) => errors.push(e);
    net.clock.advance(1);
    const syn = net.trace.find((e) => e.from === 'a' && e.seg.flags === TH_SYN)!.seg;
    const iss = syn.seq;
    const rst = (flags: number, ack: number): TcpRepr => seg({ srcPort: 80, dstPort: c.localPort, seq: 777, ack, flags });

    net.inject('b', rst(TH_RST, 0)); // no ACK: not acceptable in SYN-SENT
    net.inject('b', rst(TH_RST | TH_ACK, iss)); // acknowledges nothing of ours (ACK ≤ ISS)
    net.inject('b', rst(TH_RST | TH_ACK, (iss + 2) >>> 0)); // beyond SND.NXT
    net.clock.advance(10);
    expect(c.state).toBe('SYN_SENT');
    expect(errors).toEqual([]);
    // An unacceptable RST is dropped without reply (a reply to a RST could loop).
    expect(net.trace.filter((e) => e.from === 'a' && e.seg.flags & TH_RST)).toHaveLength(0);

    net.inject('b', rst(TH_RST | TH_ACK, (iss + 1) >>> 0));
    net.clock.advance(10);
    expect(c.state).toBe('CLOSED');
    expect(errors).toEqual(['ECONNREFUSED']);
    expect(net.a.connections()).toHaveLength(0);
  });

  it('an unacceptable ACK (no RST) in SYN-SENT is answered with <SEQ=SEG.ACK><CTL=RST>', () => {
    const net = new TestNet();
    net.filter = (from) => from !== 'a';
    const c = net.a.connect(ADDR_B, 80);
    net.clock.advance(1);
    const iss = net.trace[0]!.seg.seq;
    net.inject('b', seg({ srcPort: 80, dstPort: c.localPort, seq: 1, ack: (iss + 100) >>> 0, flags: TH_SYN | TH_ACK }));
    net.clock.advance(10);
    const rsts = net.trace.filter((e) => e.from === 'a' && e.seg.flags & TH_RST);
    expect(rsts).toHaveLength(1);
    expect(rsts[0]!.seg.seq).toBe((iss + 100) >>> 0);
    expect(c.state).toBe('SYN_SENT');
  });
});

describe('SYN-RECEIVED', () => {
  function halfOpen(): { net: TestNet; synAck: TcpRepr } {
    const net = new TestNet();
    net.b.listen(80, () => undefined);
    // We play the client by hand: a SYN from port 40000. B's answers are traced but not delivered
    // (A's real layer would rightly reset a SYN-ACK it never asked for).
    net.filter = (from) => from === 'a';
    net.inject('a', seg({ srcPort: 40000, dstPort: 80, seq: 1000, flags: TH_SYN, window: 65535, options: { mss: 1460 } }));
    net.clock.advance(10);
    const synAck = net.trace.find((e) => e.from === 'b' && e.seg.flags === (TH_SYN | TH_ACK))!.seg;
    expect(synAck.ack).toBe(1001);
    net.trace.length = 0;
    return { net, synAck };
  }

  it('an ACK that does not acknowledge the SYN-ACK is answered <SEQ=SEG.ACK><CTL=RST>', () => {
    const { net, synAck } = halfOpen();
    for (const badAck of [synAck.seq, (synAck.seq + 2) >>> 0, (synAck.seq + 100_000) >>> 0]) {
      net.inject('a', seg({ srcPort: 40000, dstPort: 80, seq: 1001, ack: badAck, flags: TH_ACK }));
    }
    net.clock.advance(10);
    const replies = net.trace.filter((e) => e.from === 'b');
    expect(replies.map((e) => [e.seg.flags, e.seg.seq])).toEqual([
      [TH_RST, synAck.seq],
      [TH_RST, (synAck.seq + 2) >>> 0],
      [TH_RST, (synAck.seq + 100_000) >>> 0],
    ]);
    expect(net.b.listening()[0]!.halfOpen).toBe(1); // still waiting for the right ACK
    net.inject('a', seg({ srcPort: 40000, dstPort: 80, seq: 1001, ack: (synAck.seq + 1) >>> 0, flags: TH_ACK }));
    net.clock.advance(10);
    expect(net.b.connections().map((c) => c.state)).toEqual(['ESTABLISHED']);
  });

  it('an exact RST returns a passive half-open connection to nothing (the listener stays)', () => {
    const { net } = halfOpen();
    net.inject('a', seg({ srcPort: 40000, dstPort: 80, seq: 1001, flags: TH_RST }));
    net.clock.advance(10);
    expect(net.b.connections()).toHaveLength(0);
    expect(net.b.listening()[0]!.halfOpen).toBe(0);
  });
});
