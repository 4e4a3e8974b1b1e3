/**
 * Loss recovery as a modern stack does it: the tail loss probe (RFC 8985 §7), a scoreboard kept
 * across a retransmission timeout (RFC 6675 with RFC 2018 §8), and D-SACK undo (RFC 2883 §5).
 */
import { describe, expect, it } from 'vitest';
import { establish, randomBytes, sha256, Sink, TestNet } from './harness.js';

describe('tail loss probe (RFC 8985 §7)', () => {
  it('a dropped last segment is repaired by the probe within 2 SRTT + RTT + the delayed ACK of the last ACK, with no RTO', () => {
    const DELAY = 50; // RTT 100 ms
    const net = new TestNet({ path: { delayMs: DELAY } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    client.noDelay = true;
    client.write(new Uint8Array(64 * 1024)); // warm up: an RTT sample, a window
    net.run(() => client.sendQueued === 0, 10_000, 'warm-up');
    net.clock.advance(20);
    const mss = client.info().sendMss;
    const data = randomBytes(10 * mss, 5);
    const before = net.a.stats.rtoTimeouts;
    let dropped = 0;
    // Drop exactly the first transmission of the last segment of the write.
    let count = 0;
    let tailSeqNum = -1;
    net.filter = (from, seg) => {
      if (from !== 'a' || seg.payload.length === 0) return true;
      count++;
      if (count === 10 && dropped === 0) {
        dropped++;
        tailSeqNum = seg.seq;
        return false;
      }
      return true;
    };
    const t0 = net.clock.now();
    client.write(data);
    net.run(() => client.sendQueued === 0, 10_000, 'tail repaired');
    expect(dropped).toBe(1);
    const acksOfRest = net.trace.filter((e) => e.from === 'b' && e.t > t0 && e.seg.ack === tailSeqNum);
    const lastAckT = acksOfRest.at(-1)!.t + DELAY; // when A heard it
    const repaired = net.clock.now();
    // The probe goes out 2 SRTT after that ACK and is repaired one RTT later, plus the receiver's
    // delayed-ACK time: the probe, one segment in order, is not acknowledged at once.
    expect(repaired - lastAckT).toBeLessThanOrEqual(2 * 2 * DELAY + 2 * DELAY + 40);
    expect(net.a.stats.rtoTimeouts - before).toBe(0);
    expect(net.a.stats.lossProbes).toBeGreaterThanOrEqual(1);
    // The probe resent the tail (nothing new to send), and it was a real loss.
    const tailSends = net.trace.filter((e) => e.from === 'a' && e.seg.seq === tailSeqNum && e.seg.payload.length > 0);
    expect(tailSends).toHaveLength(2);
    expect(sink.received).toBe(64 * 1024 + data.length);
  });
});

describe('the scoreboard survives a retransmission timeout', () => {
  it('after an RTO, no segment the receiver SACKed is sent again', () => {
    const DELAY = 5;
    const net = new TestNet({ path: { delayMs: DELAY } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    client.write(new Uint8Array(64 * 1024));
    net.run(() => client.sendQueued === 0, 10_000, 'warm-up');
    net.clock.advance(20);
    const data = randomBytes(20 * client.info().sendMss, 6);
    // Lose the first segment of the write and every copy of it for 1.5 s: fast recovery's
    // retransmission and the probes are lost too, so only the RTO is left.
    let lostSeq = -1;
    const t0 = net.clock.now();
    net.filter = (from, seg) => {
      if (from !== 'a' || seg.payload.length === 0) return true;
      if (lostSeq === -1) lostSeq = seg.seq;
      return !(seg.seq === lostSeq && net.clock.now() - t0 < 1500);
    };
    client.write(data);
    net.run(() => client.sendQueued === 0, 20_000, 'recovery through RTOs');
    expect(sink.received).toBe(64 * 1024 + data.length);
    expect(net.a.stats.rtoTimeouts).toBeGreaterThanOrEqual(1);
    // Every data segment A sent after the write's first flight went out: only the lost one.
    const sends = net.trace.filter((e) => e.from === 'a' && e.t > t0 && e.seg.payload.length > 0);
    const resent = sends.filter((e) => e.seg.seq !== lostSeq);
    const seqs = new Set<number>();
    for (const e of resent) {
      expect(seqs.has(e.seg.seq)).toBe(false); // each other segment exactly once...
      seqs.add(e.seg.seq);
    }
    expect(resent.length).toBeLessThanOrEqual(20); // ...except what the first flight held back
  });
});

describe('D-SACK undo (RFC 2883 §5)', () => {
  it('a segment delayed past the reordering window is retransmitted, the D-SACK shows it was not lost, and cwnd is restored', () => {
    const DELAY = 10;
    const net = new TestNet({ path: { delayMs: DELAY } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    const warm = new Uint8Array(256 * 1024);
    client.write(warm);
    net.run(() => client.sendQueued === 0, 10_000, 'warm-up');
    net.clock.advance(20);
    const before = client.info();
    const data = randomBytes(30 * before.sendMss, 7);
    let held = false;
    net.filter = (from, seg) => {
      if (from === 'a' && seg.payload.length > 0 && !held) {
        held = true;
        // Reordered, not lost: it arrives 15 ms late, after the segments behind it.
        net.inject('a', seg, DELAY + 15);
        return false;
      }
      return true;
    };
    client.write(data);
    net.run(() => client.sendQueued === 0, 10_000, 'transfer');
    net.clock.advance(100);
    expect(sink.received).toBe(warm.length + data.length);
    expect(sink.digest()).toBe(sha256(new Uint8Array([...warm, ...data])));
    expect(net.a.stats.fastRetransmits).toBeGreaterThanOrEqual(1);
    expect(net.b.stats.dsacksOut).toBeGreaterThanOrEqual(1);
    expect(net.a.stats.spuriousRetransmitsUndone).toBe(1);
    const after = client.info();
    expect(after.ssthresh).toBe(before.ssthresh); // the reduction was undone
    expect(after.cwnd).toBeGreaterThanOrEqual(before.cwnd);
  });
});

describe('the end of fast recovery', () => {
  it('a full ACK that leaves nothing in flight ends recovery at ssthresh, not at one segment', () => {
    // Measured over the real TAP against Linux: with cwnd = FlightSize + SMSS at the full ACK,
    // cwnd fell to one segment whenever recovery ended with nothing outstanding, and Linux's
    // receiver held the ACK of that lone segment for its 40 ms delayed-ACK time.
    const DELAY = 5;
    const net = new TestNet({ path: { delayMs: DELAY } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    client.noDelay = true;
    client.write(new Uint8Array(128 * 1024));
    net.run(() => client.sendQueued === 0, 10_000, 'warm-up');
    net.clock.advance(20);
    const mss = client.info().sendMss;
    expect(client.info().cwnd).toBeGreaterThan(20 * mss);
    let count = 0;
    net.filter = (from, seg) => !(from === 'a' && seg.payload.length > 0 && ++count === 5);
    client.write(randomBytes(20 * mss, 11)); // all 20 leave at once; the 5th is lost
    net.run(() => client.sendQueued === 0, 10_000, 'recovered');
    expect(net.a.stats.fastRetransmits).toBe(1);
    expect(net.a.stats.rtoTimeouts).toBe(0);
    const info = client.info();
    expect(info.inRecovery).toBe(false);
    expect(info.unacked).toBe(0);
    expect(info.ssthresh).toBeGreaterThanOrEqual(10 * mss);
    expect(info.cwnd).toBe(info.ssthresh);
    // What a peer sees: the next write leaves as one flight, not one segment per round trip.
    const t0 = net.clock.now();
    client.write(randomBytes(10 * mss, 12));
    net.run(() => client.sendQueued === 0, 10_000, 'next write');
    const firstFlight = net.trace.filter((e) => e.from === 'a' && e.t >= t0 && e.t < t0 + 2 * DELAY && e.seg.payload.length > 0);
    expect(firstFlight).toHaveLength(10);
    expect(sink.received).toBe(128 * 1024 + 30 * mss);
  });
});
