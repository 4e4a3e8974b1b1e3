/**
 * Timing behaviour checked against virtual time: the retransmission timer (RFC 6298: 1 s initial,
 * doubling backoff, Karn's algorithm), the persist timer on a zero window (RFC 9293 §3.8.6.1),
 * and fast retransmit after three duplicate ACKs (RFC 5681 §3.2).
 */
import { describe, expect, it } from 'vitest';
import { TH_ACK, TH_SYN } from '../../../net/wire/tcp.js';
import { ADDR_B, establish, randomBytes, sha256, Sink, Source, TestNet, type TraceEntry } from './harness.js';

const DELAY = 5; // one-way path delay in ms
const gaps = (times: number[]): number[] => times.slice(1).map((t, i) => t - times[i]!);

describe('retransmission timeout (RFC 6298)', () => {
  it('SYN: first RTO 1 s, then doubling; gives up after synRetries with ETIMEDOUT', () => {
    const net = new TestNet({ tcp: { synRetries: 4 } });
    net.filter = (from) => from !== 'a'; // every SYN lost
    const c = net.a.connect(ADDR_B, 80);
    let err: string | null = null;
    c.onError = (e) => (err = e);
    net.run(() => c.state === 'CLOSED', 120_000, 'SYN timeout');
    const synTimes = net.trace.filter((e) => e.from === 'a' && e.seg.flags === TH_SYN).map((e) => e.t);
    expect(synTimes).toEqual([0, 1000, 3000, 7000, 15000]);
    expect(net.clock.now()).toBe(31000); // the fifth wait (16 s) ends the attempt
    expect(err).toBe('ETIMEDOUT');
  });

  it('data: a tail loss probe after 2·SRTT + the delayed-ACK allowance, then the RTO (200 ms floor) doubling, and the retransmissions resume the stream', () => {
    const net = new TestNet({ path: { delayMs: DELAY } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    net.clock.advance(500);
    const lost = 4;
    let dropped = 0;
    net.filter = (from, seg) => {
      if (from === 'a' && seg.payload.length > 0 && dropped < lost) {
        dropped++;
        return false;
      }
      return true;
    };
    const t0 = net.clock.now();
    expect(client.write(new Uint8Array(100).fill(7))).toBe(100);
    net.run(() => sink.received === 100, 60_000, 'delivery after 4 timeouts');
    const sends = net.trace.filter((e) => e.from === 'a' && e.seg.payload.length > 0).map((e) => e.t - t0);
    // SRTT 10 ms: the probe at 2·10 + 40 ms (one segment in flight: the peer may delay its ACK),
    // the RTO 200 ms after the probe, then 400 and 800 ms.
    expect(sends).toEqual([0, 60, 260, 660, 1460]);
    expect(net.a.stats.lossProbes).toBe(1);
    const backedOff = client.info();
    expect(backedOff.rtoTimeouts).toBe(3);
    expect(backedOff.rtoMs).toBe(1600); // 200 ms doubled three times, the ACK not back yet
    net.run(() => client.sendQueued === 0, 60_000, 'ACK of the retransmission');
    // With timestamps the echo names the transmission it answers, so even the ACK of a
    // retransmission is a valid sample (RFC 7323 §4.1) and the backoff ends. (Without them
    // Karn's rule applies: see the next test.)
    expect(client.info().rtoMs).toBe(200);
  });

  it('data: gives up with ETIMEDOUT after maxRetries retransmissions (RFC 9293 §3.8.3 R2)', () => {
    const net = new TestNet({ path: { delayMs: DELAY }, tcp: { maxRetries: 3 } });
    const { client, server } = establish(net);
    new Sink(server);
    net.clock.advance(500);
    net.filter = (from) => from !== 'a'; // the path from A dies
    let err: string | null = null;
    client.onError = (e) => (err = e);
    const t0 = net.clock.now();
    client.write(new Uint8Array(100));
    net.run(() => client.state === 'CLOSED', 60_000, 'give up');
    expect(err).toBe('ETIMEDOUT');
    // Sent at 0, probed at 60 ms, retransmitted at 260, 660, 1460 ms; the fourth expiry (1.6 s
    // more) ends it.
    expect(net.clock.now() - t0).toBe(3060);
    expect(net.a.connections()).toHaveLength(0);
  });

  it("Karn's rule without timestamps: no sample from a retransmission; a fresh segment restores the RTO", () => {
    // Without the loss probe, which would resend before the RTO and spare the backoff.
    const net = new TestNet({ path: { delayMs: DELAY }, tcp: { timestamps: false, tailLossProbe: false } });
    const { client, server } = establish(net);
    new Sink(server);
    net.clock.advance(500);
    const before = client.info();
    expect(before.timestamps).toBe(false);
    expect(before.srttMs).toBe(2 * DELAY); // the handshake's RTT
    expect(before.rtoMs).toBe(200); // the floor (Linux's; RFC 6298 §2.4 allows less than 1 s)
    let dropOne = true;
    net.filter = (from, seg) => {
      if (from === 'a' && seg.payload.length > 0 && dropOne) {
        dropOne = false;
        return false;
      }
      return true;
    };
    const t0 = net.clock.now();
    client.write(new Uint8Array(10).fill(1));
    net.run(() => client.sendQueued === 0, 10_000, 'retransmission acknowledged');
    expect(net.clock.now() - t0).toBe(200 + 2 * DELAY);
    const after = client.info();
    // Had the ACK been sampled, SRTT would have jumped toward 1010 ms (ambiguous: which send?).
    expect(after.srttMs).toBe(2 * DELAY);
    expect(after.rtoMs).toBe(400); // the backed-off RTO is kept until a valid sample
    client.write(new Uint8Array(10).fill(2));
    net.run(() => client.sendQueued === 0, 10_000, 'fresh segment acknowledged');
    expect(client.info().rtoMs).toBe(200);
    expect(client.info().srttMs).toBeGreaterThanOrEqual(2 * DELAY);
  });

  it('RTT sampling with timestamps follows the path delay', () => {
    const net = new TestNet({ path: { delayMs: 40 } });
    const { client, server } = establish(net);
    new Sink(server);
    new Source(client, randomBytes(200_000, 9), false);
    net.run(() => client.sendQueued === 0, 60_000, 'transfer');
    const srtt = client.info().srttMs!;
    expect(srtt).toBeGreaterThanOrEqual(80);
    expect(srtt).toBeLessThan(80 + 210); // at most a delayed ACK on top
  });
});

describe('fast retransmit (RFC 5681 §3.2)', () => {
  for (const sack of [true, false]) {
    it(`retransmits the lost segment when the third duplicate ACK arrives (SACK ${sack ? 'on' : 'off'})`, () => {
      const net = new TestNet({ path: { delayMs: DELAY }, tcp: { sack } });
      const { client, server } = establish(net);
      const sink = new Sink(server);
      net.clock.advance(500);
      const mss = client.info().sendMss;
      let nth = 0;
      let lostSeq = -1;
      net.filter = (from, seg) => {
        if (from === 'a' && seg.payload.length > 0 && ++nth === 3) {
          lostSeq = seg.seq;
          return false;
        }
        return true;
      };
      const data = randomBytes(8 * mss, 4);
      expect(client.write(data)).toBe(data.length);
      net.run(() => client.sendQueued === 0, 10_000, 'recovery');
      expect(sink.received).toBe(data.length);
      // The duplicate ACKs B sent for the hole, in order.
      const dupAcks = net.trace.filter((e: TraceEntry) => e.from === 'b' && e.seg.flags === TH_ACK && e.seg.ack === lostSeq && e.seg.payload.length === 0);
      expect(dupAcks.length).toBeGreaterThanOrEqual(4); // the first ACK of the hole + ≥3 duplicates
      if (sack) expect(dupAcks[1]!.seg.options.sackBlocks?.length).toBeGreaterThan(0);
      const third = dupAcks[3]!.t; // dupAcks[0] is the original ACK; [1..3] the duplicates
      const rtx = net.trace.filter((e) => e.from === 'a' && e.seg.seq === lostSeq && e.seg.payload.length > 0);
      expect(rtx).toHaveLength(2); // the lost original, one fast retransmission, no RTO
      expect(rtx[1]!.t).toBe(third + DELAY); // sent the moment the third duplicate arrives
      expect(client.info().fastRetransmits).toBe(1);
      expect(client.info().rtoTimeouts).toBe(0);
      expect(sha256(data)).toBe(sink.digest());
    });
  }

  for (const sack of [true, false]) {
    it(`limited transmit (RFC 3042): a loss in a 3-segment window still recovers by fast retransmit (SACK ${sack ? 'on' : 'off'})`, () => {
      const net = new TestNet({ path: { delayMs: DELAY }, tcp: { sack } });
      const { client, server } = establish(net);
      const sink = new Sink(server);
      net.clock.advance(500);
      const mss = client.info().sendMss;
      // White-box setup: a congestion window of three segments, as after losses on a busy path.
      (client as unknown as { cc: { cwnd: number } }).cc.cwnd = 3 * mss;
      let nth = 0;
      let lostSeq = -1;
      net.filter = (from, seg) => {
        if (from === 'a' && seg.payload.length > 0 && ++nth === 1) {
          lostSeq = seg.seq;
          return false;
        }
        return true;
      };
      const data = randomBytes(8 * mss, 5);
      client.write(data);
      net.run(() => client.sendQueued === 0, 10_000, 'recovery');
      expect(sink.digest()).toBe(sha256(data));
      const firstRound = net.trace.filter((e) => e.from === 'a' && e.seg.payload.length > 0);
      // Segments 1–3 (cwnd), then 4 and 5 on the first two duplicate ACKs, then the retransmission.
      expect(firstRound.slice(0, 6).map((e) => (e.seg.seq - lostSeq) >>> 0)).toEqual([0, mss, 2 * mss, 3 * mss, 4 * mss, 0]);
      expect(client.info().fastRetransmits).toBe(1);
      expect(client.info().rtoTimeouts).toBe(0);
    });
  }

  it('two duplicate ACKs are not enough: a loss with only two segments after it waits for the RTO', () => {
    const net = new TestNet({ path: { delayMs: DELAY }, tcp: { sack: false } });
    const { client, server } = establish(net);
    new Sink(server);
    net.clock.advance(500);
    const mss = client.info().sendMss;
    let nth = 0;
    net.filter = (from, seg) => !(from === 'a' && seg.payload.length > 0 && ++nth === 1);
    client.write(randomBytes(3 * mss, 5));
    net.run(() => client.sendQueued === 0, 10_000, 'recovery by RTO');
    expect(client.info().fastRetransmits).toBe(0);
    expect(client.info().rtoTimeouts).toBe(1);
  });
});

describe('zero window and persist timer (RFC 9293 §3.8.6.1)', () => {
  it('gives up with ETIMEDOUT once the window stayed closed for persistTimeoutMs, though the probes are answered', () => {
    const net = new TestNet({ path: { delayMs: DELAY }, tcp: { recvBufferSize: 16 * 1024 }, tcpA: { persistTimeoutMs: 30_000 } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    sink.reading = false;
    let err: string | null = null;
    client.onError = (e) => (err = e);
    new Source(client, randomBytes(100_000, 6), false);
    net.run(() => sink.received === 16 * 1024, 10_000, 'receive buffer full');
    const tFull = net.clock.now();
    net.run(() => client.state === 'CLOSED', 120_000, 'persist give-up');
    expect(err).toBe('ETIMEDOUT');
    expect(net.a.stats.zeroWindowProbes).toBeGreaterThanOrEqual(3); // answered, and still it ends
    const elapsed = net.clock.now() - tFull;
    expect(elapsed).toBeGreaterThanOrEqual(30_000);
    expect(elapsed).toBeLessThan(30_000 + 60_000); // at the first probe due after the limit
    expect(server.state).toBe('ESTABLISHED'); // the receiver is not at fault; it only learns by RST later
  });

  it('stalls while the receiver does not read, probes with backoff, recovers when it reads', () => {
    const bufSize = 64 * 1024;
    const net = new TestNet({ path: { delayMs: DELAY }, tcp: { recvBufferSize: bufSize } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    sink.reading = false;
    const data = randomBytes(300_000, 6);
    const src = new Source(client, data, false);
    net.run(() => sink.received === bufSize, 10_000, 'receive buffer full');
    const tFull = net.clock.now();
    // Stay stalled for a while: nothing beyond the buffer is delivered, the sender keeps probing.
    net.clock.advance(120_000);
    expect(sink.received).toBe(bufSize);
    expect(client.state).toBe('ESTABLISHED');
    const probes = net.trace.filter((e) => e.from === 'a' && e.t > tFull && e.seg.payload.length === 0 && e.seg.flags === TH_ACK);
    expect(probes.length).toBeGreaterThanOrEqual(4);
    expect(net.a.stats.zeroWindowProbes).toBe(probes.length);
    const intervals = gaps(probes.map((p) => p.t));
    // Exponential backoff: each interval twice the last, capped at 60 s (RFC 6298 §2.5 bound).
    for (let i = 1; i < intervals.length; i++) expect(intervals[i]).toBe(Math.min(60_000, 2 * intervals[i - 1]!));
    // Each probe is answered with a zero window.
    const answers = net.trace.filter((e) => e.from === 'b' && e.t > tFull + 1 && e.seg.flags === TH_ACK);
    expect(answers.length).toBeGreaterThanOrEqual(probes.length);
    expect(answers.every((e) => e.seg.window === 0)).toBe(true);
    // The application reads: the window reopens and everything arrives.
    sink.resume();
    // The reopened window is announced at once (not left for the next probe, by now up to 60 s
    // away): the remaining ~170 KB flow within a few round trips.
    const tResume = net.clock.now();
    net.run(() => src.done && client.sendQueued === 0, 60_000, 'recovery');
    expect(net.clock.now() - tResume).toBeLessThan(2000);
    expect(sink.received).toBe(data.length);
    expect(sink.digest()).toBe(sha256(data));
    expect(client.info().rtoTimeouts).toBe(0);
  });

  it('recovers even when the window update is lost (the next probe learns the open window)', () => {
    const net = new TestNet({ path: { delayMs: DELAY }, tcp: { recvBufferSize: 32 * 1024 } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    sink.reading = false;
    const data = randomBytes(100_000, 7);
    const src = new Source(client, data, false);
    net.run(() => sink.received === 32 * 1024, 10_000, 'buffer full');
    net.clock.advance(5000);
    let dropUpdate = true;
    net.filter = (from, seg) => {
      if (from === 'b' && dropUpdate && seg.window > 0) {
        dropUpdate = false;
        return false;
      }
      return true;
    };
    sink.resume();
    net.run(() => src.done && client.sendQueued === 0, 120_000, 'recovery via probe');
    expect(dropUpdate).toBe(false);
    expect(sink.digest()).toBe(sha256(data));
  });
});

describe('delayed ACK (RFC 9293 §3.8.6.3, RFC 5681 §4.2)', () => {
  it('a reading receiver ACKs every second full segment, not every one', () => {
    const net = new TestNet({ path: { delayMs: DELAY, bytesPerMs: 5000 } });
    const { client, server } = establish(net);
    const sink = new Sink(server); // reads (and releases the window) as soon as data arrives
    net.trace.length = 0;
    const data = randomBytes(1024 * 1024, 8);
    new Source(client, data, false);
    net.run(() => client.sendQueued === 0, 60_000, 'transfer');
    expect(sink.received).toBe(data.length);
    const dataSegs = net.trace.filter((e) => e.from === 'a' && e.seg.payload.length > 0).length;
    const acks = net.trace.filter((e) => e.from === 'b').length;
    // Every second segment, plus a few window updates and delayed-ACK timer expiries.
    expect(acks).toBeLessThanOrEqual(Math.ceil(dataSegs / 2) + 20);
    expect(acks).toBeGreaterThanOrEqual(Math.floor(dataSegs / 2));
  });

  it('a lone small segment is ACKed by the delayed-ACK timer, 40 ms later, once quick-ACK mode is over', () => {
    const net = new TestNet({ path: { delayMs: DELAY } });
    const { client, server } = establish(net);
    new Sink(server);
    // The first segments of a connection are ACKed at once (quick-ACK mode); 64 KiB uses that up.
    client.write(new Uint8Array(64 * 1024));
    net.run(() => client.sendQueued === 0, 5000, 'warm-up acked');
    net.clock.advance(50); // less than an RTO: not idle, so no new quick-ACK period
    net.trace.length = 0;
    const t0 = net.clock.now();
    client.write(new Uint8Array(100));
    net.run(() => client.sendQueued === 0, 5000, 'ack');
    const ack = net.trace.find((e) => e.from === 'b')!;
    expect(ack.t - t0).toBe(DELAY + 40);
  });

  it('after an idle RTO the receiver is in quick-ACK mode again: the lone segment is ACKed at once', () => {
    const net = new TestNet({ path: { delayMs: DELAY } });
    const { client, server } = establish(net);
    new Sink(server);
    client.write(new Uint8Array(64 * 1024));
    net.run(() => client.sendQueued === 0, 5000, 'warm-up acked');
    net.clock.advance(2000);
    net.trace.length = 0;
    const t0 = net.clock.now();
    client.write(new Uint8Array(100));
    net.run(() => client.sendQueued === 0, 5000, 'ack');
    expect(net.trace.find((e) => e.from === 'b')!.t - t0).toBe(DELAY);
  });

  it('a 4 KiB writer (1448 + 1448 + 1200) is ACKed on every second segment; only a lone tail waits for the timer', () => {
    const net = new TestNet({ path: { delayMs: DELAY } });
    const { client, server } = establish(net);
    new Sink(server);
    client.noDelay = true; // as a Linux application writing 4 KiB blocks with TCP_NODELAY sees it
    client.write(new Uint8Array(64 * 1024));
    net.run(() => client.sendQueued === 0, 5000, 'warm-up acked');
    net.clock.advance(20);
    net.trace.length = 0;
    // One 4 KiB write every 5 ms for 200 writes: the segments are 1448, 1448, 1200.
    let writes = 0;
    const tick = (): void => {
      client.write(new Uint8Array(4096));
      if (++writes < 200) net.clock.setTimer(5, tick);
    };
    tick();
    net.run(() => writes === 200 && client.sendQueued === 0, 60_000, '4 KiB writes acked');
    const data = net.trace.filter((e) => e.from === 'a' && e.seg.payload.length > 0);
    expect(data.map((e) => e.seg.payload.length).slice(0, 3)).toEqual([1448, 1448, 1200]);
    const acks = net.trace.filter((e) => e.from === 'b');
    // Every data segment is covered by an ACK within the delayed-ACK time (plus the path), never
    // left for the peer's tail loss probe; and about one ACK per two segments, not one each.
    for (const d of data) {
      const end = (d.seg.seq + d.seg.payload.length) >>> 0;
      const ack = acks.find((a) => a.t >= d.t && ((a.seg.ack - end) | 0) >= 0)!;
      expect(ack.t - d.t).toBeLessThanOrEqual(2 * DELAY + 40);
    }
    expect(acks.length).toBeLessThanOrEqual(data.length * 0.7);
    expect(net.b.stats.delayedAcks).toBeLessThanOrEqual(200);
  });
});

describe('handshake loss (RFC 5681 §3.1, RFC 6298 §5.7)', () => {
  it('after a lost SYN the initial window is one segment; without timestamps the RTO becomes 3 s', () => {
    const net = new TestNet({ path: { delayMs: DELAY }, tcp: { timestamps: false } });
    let dropSyn = true;
    net.filter = (from, seg) => {
      if (from === 'a' && seg.flags === TH_SYN && dropSyn) {
        dropSyn = false;
        return false;
      }
      return true;
    };
    const { client } = establish(net);
    const info = client.info();
    expect(info.cwnd).toBe(info.sendMss);
    expect(info.srttMs).toBeNull(); // Karn: the retransmitted SYN gave no sample
    expect(info.rtoMs).toBe(3000);
    const clean = establish(new TestNet({ path: { delayMs: DELAY } })).client.info();
    expect(clean.cwnd).toBe(10 * clean.sendMss);
  });
});
