/**
 * ACK processing and loss recovery (RFC 9293 §3.10.7.4 fifth check): acceptability (RFC 5961
 * §5.2), RTT sampling (RFC 6298, RFC 7323 §4), freeing acknowledged data, the window update,
 * duplicate ACKs, fast retransmit and recovery (RFC 5681, RFC 6582, RFC 6675 with the scoreboard).
 */
import { TH_FIN, TH_SYN, type SackBlock, type TcpRepr } from '../wire/tcp.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt } from './seq.js';
import { DUPTHRESH } from './tcb.js';
import type { SackResult, SentSegment } from './sack.js';
import { TcpTimers } from './timeouts.js';

export abstract class TcpAckProcessing extends TcpTimers {
  /** ACK processing (RFC 9293 §3.10.7.4 fifth check). Returns false when the segment is dropped. */
  protected processAck(seg: TcpRepr): boolean {
    const ack = seg.ack;
    // RFC 9293 §3.10.7.4 fifth check, SYN-RECEIVED: an ACK outside (SND.UNA, SND.NXT] is answered
    // with <SEQ=SEG.ACK><CTL=RST> — it belongs to some other incarnation, and the RST tells it so.
    // (The general rules below would send an ACK or a challenge ACK instead.)
    if (this.state === 'SYN_RECEIVED' && (!seqGt(ack, this.sndUna) || seqGt(ack, this.sndMax))) {
      this.sendRstFor(seg);
      return false;
    }
    // RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA − MAX.SND.WND, SND.NXT].
    if (seqGt(ack, this.sndMax)) {
      this.ackNow = true;
      return false;
    }
    if (seqLt(ack, seqAdd(this.sndUna, -Math.max(this.maxSndWnd, 1)))) {
      this.challengeAck();
      return false;
    }

    if (this.state === 'SYN_RECEIVED') {
      this.sampleHandshakeRtt(seg);
      this.sndUna = seqAdd(this.sndUna, 1); // the SYN
      if (seqLt(this.sndNxt, this.sndUna)) this.sndNxt = this.sndUna;
      this.sndWnd = seg.window << this.sndWscale;
      this.sndWl1 = seg.seq;
      this.sndWl2 = ack;
      this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
      this.rtxTimer.cancel();
      this.retries = 0;
      if (this.synRetransmitted) this.synWasLost();
      this.setState(this.finQueued ? 'FIN_WAIT_1' : 'ESTABLISHED');
      this.becameEstablished();
      if (this.isClosed()) return false;
    }

    const wnd = seg.window << this.sndWscale;
    const sackedBefore = this.scoreboard.sackedBytes;
    let sr: SackResult | null = null;
    if (this.sackEnabled && seg.options.sackBlocks) sr = this.scoreboard.applySack(seg.options.sackBlocks, this.sndUna, this.sndMax);
    const sackChanged = sr !== null && sr.newlySackedBytes > 0;
    const acked = seqDiff(ack, this.sndUna);
    let finAcked = false;
    if (acked > 0) {
      this.ackAdvanced(seg, ack, acked, sr, sackedBefore);
      if (this.isClosed()) return false;
      finAcked = this.finSent && seqGt(ack, this.finSeq());
    } else {
      if (
        acked === 0 &&
        seqGt(this.sndMax, this.sndUna) &&
        seg.payload.length === 0 &&
        !(seg.flags & (TH_SYN | TH_FIN)) &&
        (wnd === this.sndWnd || sackChanged)
      ) {
        // RFC 5681 §2 DUPLICATE ACKNOWLEDGMENT (RFC 6675 §2: or one carrying new SACK information).
        this.host.stats.dupAcksIn++;
        this.dupAcks++;
        if (!this.sackEnabled) this.onDupAck();
      }
      if (this.sackEnabled && acked === 0) this.sackAckProcessing(ack, 0, [], sr, sackedBefore);
    }

    // Window update (RFC 9293: SND.WL1 < SEG.SEQ, or SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK).
    if (seqLt(this.sndWl1, seg.seq) || (this.sndWl1 === seg.seq && seqLe(this.sndWl2, ack))) {
      this.sndWnd = wnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = ack;
      if (wnd > this.maxSndWnd) this.maxSndWnd = wnd;
      if (wnd > 0) {
        this.persistSince = null;
        if (this.persistTimer.armed) {
          this.persistTimer.cancel();
          this.persistShift = 0;
        }
      }
    }

    this.mtuProbeOutcome();

    if (finAcked) {
      switch (this.state) {
        case 'FIN_WAIT_1':
          this.setState('FIN_WAIT_2');
          if (this.rxClosed) this.lifeTimer.set(this.config.finWait2TimeoutMs);
          break;
        case 'CLOSING':
          this.enterTimeWait();
          return false;
        case 'LAST_ACK':
          this.finish(null);
          return false;
        default:
          break;
      }
    }
    return true;
  }

  /** New data acknowledged: free it, time it, open cwnd, rearm the timer. */
  protected ackAdvanced(seg: TcpRepr, ack: number, acked: number, sr: SackResult | null, sackedBefore: number): void {
    const now = this.host.clock.now();
    // RTT (RFC 7323 §4.1 with timestamps; otherwise one timed segment, never a retransmitted one).
    const ts = this.tsEnabled ? seg.options.timestamp : undefined;
    if (ts && ts.tsEcr !== 0) {
      this.rtoEst.sample(this.tsDiff(ts.tsEcr));
    } else if (this.rttSeq !== null && seqGt(ack, this.rttSeq)) {
      this.rtoEst.sample(now - this.rttStart);
      this.rttSeq = null;
    }
    const dataAcked = Math.min(Math.max(0, seqDiff(ack, this.bufSeq)), this.sendBuf.length);
    if (dataAcked > 0) {
      this.sendBuf.consume(dataAcked);
      this.bufSeq = seqAdd(this.bufSeq, dataAcked);
      this.counters.bytesAcked += dataAcked;
    }
    const flightBefore = seqDiff(this.sndMax, this.sndUna);
    this.sndUna = ack;
    if (seqLt(this.sndNxt, ack)) this.sndNxt = ack;
    if (seqLt(this.highRxt, ack)) this.highRxt = ack;
    const delivered = this.sackEnabled ? this.scoreboard.ackTo(ack) : [];
    this.retries = 0;

    if (this.sackEnabled) {
      const wasRecovering = this.inRecovery || this.lossRecovery;
      this.sackAckProcessing(ack, acked, delivered, sr, sackedBefore);
      // RFC 5681 §3.1 / RFC 7661 spirit: grow cwnd only when the window was in use.
      if (!wasRecovering && !this.inRecovery && (flightBefore + this.cc.mss >= this.cc.cwnd || this.cc.inSlowStart)) this.cc.onAck(acked, now, this.rtoEst.srtt);
      else if (this.lossRecovery) this.cc.onAck(acked, now, this.rtoEst.srtt); // slow start again after an RTO
    } else if (this.inRecovery) {
      if (seqGe(ack, this.recover)) {
        this.inRecovery = false;
        this.cc.exitRecovery();
      } else if (!this.sackEnabled) {
        // RFC 6582 §3.2 step 5, partial ACK: retransmit the first unacknowledged segment and
        // deflate cwnd by the amount acknowledged, adding back one SMSS.
        this.retransmitFirst();
        this.cc.cwnd = Math.max(this.cc.mss, this.cc.cwnd - acked + (acked >= this.cc.mss ? this.cc.mss : 0));
      }
    } else {
      // RFC 5681 §3.1 / RFC 7661 spirit: grow cwnd only when the window was in use.
      if (flightBefore + this.cc.mss >= this.cc.cwnd || this.cc.inSlowStart) this.cc.onAck(acked, now, this.rtoEst.srtt);
    }
    this.dupAcks = 0;

    // RFC 6298 §5.2/§5.3.
    if (this.sndUna === this.sndMax) this.rtxTimer.cancel();
    else this.rtxTimer.set(this.rtoEst.rto);
    this.scheduleLossProbe();

    if (dataAcked > 0 && this.onSent) {
      this.onSent(dataAcked);
    }
  }

  /**
   * Loss detection and recovery with SACK, for every ACK: RACK's delivery record (RFC 8985 §6),
   * D-SACK undo, the loss probe's outcome (§7.4), the end of recovery, losses by RACK and by
   * DupThresh (RFC 6675 IsLost), entering fast recovery, and PRR's cwnd (RFC 6937).
   */
  protected sackAckProcessing(ack: number, acked: number, delivered: readonly SentSegment[], sr: SackResult | null, sackedBefore: number): void {
    const now = this.host.clock.now();
    const wasRecovering = this.inRecovery || this.lossRecovery;
    for (const s of delivered) if (!s.sacked) this.rack.delivered(s, now);
    if (sr) for (const s of sr.newlySacked) this.rack.delivered(s, now);
    const dsack = sr !== null && sr.dsackBytes > 0;
    if (dsack) {
      this.host.stats.dsacksIn++;
      this.dsackReceived(sr.dsack!);
    }
    this.lossProbeOutcome(ack, acked > 0 || (sr !== null && sr.newlySackedBytes > 0), dsack);
    if (seqGe(this.sndUna, this.recover)) {
      if (this.inRecovery) {
        this.inRecovery = false;
        this.cc.exitRecovery();
      }
      this.lossRecovery = false;
    }
    this.rack.updateReoWnd(dsack, wasRecovering && !this.inRecovery && !this.lossRecovery, this.sndUna, this.sndMax);
    if (this.sndUna === this.sndMax) {
      this.reoTimer.cancel();
      return;
    }
    this.detectLosses(now);
    let entering = false;
    if (!this.inRecovery && !this.lossRecovery && this.scoreboard.lostBytes() > 0 && !this.onlyMtuProbeLost()) {
      this.enterFastRecovery();
      entering = true;
    }
    if (this.inRecovery) this.prrUpdate(acked + (this.scoreboard.sackedBytes - sackedBefore), entering);
  }

  /**
   * What is deemed lost is the MSS probe alone: resent as ordinary segments without a recovery
   * episode, since a probe too big for the path says nothing about congestion (RFC 4821;
   * Linux's tcp_simple_retransmit after a failed probe).
   */
  protected onlyMtuProbeLost(): boolean {
    const probe = this.mtuProbe;
    if (probe === null) return false;
    for (const s of this.scoreboard.segments) {
      if (!s.lost || s.rtxInFlight || s.sacked) continue;
      if (seqLt(s.start, probe.start) || seqGt(s.end, probe.end)) return false;
    }
    return true;
  }

  /**
   * After every ACK while an MSS probe is in flight: once all of it is acknowledged or SACKed,
   * before any of it was resent, the path carries segments of that size.
   */
  protected mtuProbeOutcome(): void {
    const probe = this.mtuProbe;
    if (probe === null) return;
    if (seqLt(this.sndUna, probe.end)) {
      if (!this.sackEnabled) return;
      for (const s of this.scoreboard.segments) {
        if (seqLe(s.end, probe.start)) continue;
        if (seqGe(s.start, probe.end)) break;
        if (!s.sacked) return;
      }
    }
    this.mtuProbeSucceeded();
  }

  /** RACK (RFC 8985 §6.2) and RFC 6675's DupThresh rule mark segments lost. */
  protected detectLosses(now: number): void {
    const mss = this.cc.mss;
    const total = this.scoreboard.sackedBytes;
    const thresh = (DUPTHRESH - 1) * mss;
    if (total > thresh && !this.rack.reord) {
      // IsLost (RFC 6675 §4): more than (DupThresh − 1)·SMSS bytes SACKed above it. Only until
      // reordering is seen: from then on RACK's time-based window alone decides (RFC 8985 §6.2
      // step 4 folds DupThresh into it the same way), or a late segment would be resent however
      // wide the window grew.
      let below = 0;
      for (const s of this.scoreboard.segments) {
        if (total - below <= thresh) break;
        if (s.sacked) below += seqDiff(s.end, s.start);
        else if (!s.lost) this.scoreboard.markLost(s);
      }
    }
    const reo = this.rack.reoWnd(this.inRecovery || this.lossRecovery, total > thresh, this.rtoEst.srtt ?? Infinity);
    const r = this.rack.detectLoss(this.scoreboard, now, reo);
    if (r.timeoutMs > 0) this.reoTimer.set(r.timeoutMs);
    else this.reoTimer.cancel();
  }

  /**
   * RFC 6937 Proportional Rate Reduction: during recovery, send in proportion to what was
   * delivered while the pipe is above ssthresh, and slow-start back up to it (SSRB) below.
   * Sets cwnd to pipe + sndcnt (what may go now), rounded up to whole segments.
   */
  protected prrUpdate(deliveredData: number, entering: boolean): void {
    const mss = this.cc.mss;
    this.prrDelivered += Math.max(0, deliveredData);
    const pipe = this.scoreboard.pipe();
    const ssthresh = this.cc.ssthresh;
    let sndcnt: number;
    if (pipe > ssthresh) sndcnt = Math.ceil((this.prrDelivered * ssthresh) / Math.max(1, this.recoverFs)) - this.prrOut;
    else sndcnt = Math.min(ssthresh - pipe, Math.max(this.prrDelivered - this.prrOut, deliveredData) + mss);
    // The fast retransmit itself always goes (RFC 6937 §3: on entering, at least one segment).
    sndcnt = Math.max(sndcnt, entering ? mss : 0);
    this.cc.cwnd = pipe + Math.ceil(sndcnt / mss) * mss;
  }

  /**
   * A D-SACK block arrived (RFC 2883): if it covers retransmissions of the last loss episode,
   * those were not needed; once every retransmission of the episode is reported so, the episode
   * was spurious (reordering or a premature timeout) and its window reduction is undone.
   */
  protected dsackReceived(block: SackBlock): void {
    const u = this.undo;
    if (!u || u.ranges.length === 0) return;
    const before = u.ranges.length;
    u.ranges = u.ranges.filter((r) => !(seqLt(block.left, r.end) && seqGt(block.right, r.start)));
    if (u.ranges.length === before || u.ranges.length > 0) return;
    this.undo = null;
    this.host.stats.spuriousRetransmitsUndone++;
    this.cc.undo(u.cwnd, u.ssthresh);
    if (this.inRecovery || this.lossRecovery) {
      this.inRecovery = false;
      this.lossRecovery = false;
      this.scoreboard.unmarkLost();
    }
  }

  /**
   * RFC 8985 §7.4 (as Linux's tcp_process_tlp_ack): a retransmitted probe that the receiver
   * reports as a duplicate, or a plain duplicate ACK at the probe's end, means nothing was lost;
   * an ACK beyond it without that means the probe repaired a loss: reduce the window once.
   */
  protected lossProbeOutcome(ack: number, advanced: boolean, dsack: boolean): void {
    const end = this.tlpEnd;
    if (end === null || seqLt(ack, end)) return;
    if (!this.tlpRetrans || dsack) {
      this.tlpEnd = null;
      return;
    }
    if (seqGt(ack, end)) {
      this.tlpEnd = null;
      this.host.stats.lossProbeRecoveries++;
      this.cc.onLossRepaired(seqDiff(this.sndMax, this.sndUna), this.host.clock.now());
    } else if (!advanced) this.tlpEnd = null;
  }

  protected onDupAck(): void {
    if (this.inRecovery) {
      // RFC 6582 §3.2 step 4: inflate cwnd for each further duplicate (NewReno without SACK).
      if (!this.sackEnabled) this.cc.cwnd += this.cc.mss;
      return;
    }
    // RFC 6675 §4 IsLost: more than (DupThresh − 1)·SMSS bytes SACKed above SND.UNA.
    const lost = this.dupAcks >= DUPTHRESH || (this.sackEnabled && this.scoreboard.sackedBytes > (DUPTHRESH - 1) * this.cc.mss);
    // RFC 6582 §3.2 step 2: a new recovery only once the ACK passes `recover`.
    if (lost && (seqGt(this.sndUna, this.recover) || this.sndUna === this.recover)) this.enterFastRecovery();
  }

  /** RFC 5681 §3.2 fast retransmit, then recovery (RFC 6675 with SACK, RFC 6582 without). */
  protected enterFastRecovery(): void {
    this.host.stats.fastRetransmits++;
    this.counters.fastRetransmits++;
    this.undo = { cwnd: this.cc.cwnd, ssthresh: this.cc.ssthresh, ranges: [] };
    this.inRecovery = true;
    this.recover = this.sndMax;
    const flight = seqDiff(this.sndMax, this.sndUna);
    this.cc.enterRecovery(flight, this.sackEnabled, this.host.clock.now());
    if (this.sackEnabled) {
      // The retransmissions go from output (NextSeg), paced by PRR.
      this.prrDelivered = 0;
      this.prrOut = 0;
      this.recoverFs = flight;
      this.rescueRxt = null;
      this.tlpTimer.cancel();
      return;
    }
    this.highRxt = this.sndUna;
    this.retransmitFirst();
  }

  /**
   * Our SYN (or SYN-ACK) had to be retransmitted: RFC 6298 §5.7 (RTO of 3 s when no RTT sample
   * exists) and RFC 5681 §3.1 ("the initial window used by a sender after a correctly
   * transmitted SYN MUST be one segment").
   */
  protected synWasLost(): void {
    this.rtoEst.synTimedOut();
    this.cc.cwnd = this.cc.mss;
  }

  protected sampleHandshakeRtt(seg: TcpRepr): void {
    if (this.tsEnabled && seg.options.timestamp && seg.options.timestamp.tsEcr !== 0) {
      this.rtoEst.sample(this.tsDiff(seg.options.timestamp.tsEcr));
    } else if (!this.synRetransmitted && this.rttSeq !== null) {
      // Karn: only a SYN sent once gives a sample.
      this.rtoEst.sample(this.host.clock.now() - this.rttStart);
    }
    this.rttSeq = null;
  }
}
