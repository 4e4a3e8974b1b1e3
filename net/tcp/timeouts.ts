/**
 * What happens when each TCP timer fires (RFC 6298 §5 retransmission, RFC 9293 §3.8.6.1 persist,
 * delayed ACK, §3.8.4 keepalive, TIME-WAIT/FIN-WAIT-2 lifetime). The timers themselves are
 * TcpTimer instances owned by the control block (tcb.ts).
 */
import { seqAdd, seqDiff } from './seq.js';
import { PERSIST_MAX_MS } from './tcb.js';

/** Black-hole detection's first MSS (Linux's tcp_base_mss) and floor (RFC 9293's default MSS). */
const BLACK_HOLE_BASE_MSS = 1024;
const BLACK_HOLE_MIN_MSS = 536;
import { TcpOutput } from './output.js';

export abstract class TcpTimers extends TcpOutput {
  protected abstract detectLosses(now: number): void;
  protected abstract enterFastRecovery(): void;
  protected abstract prrUpdate(deliveredData: number, entering: boolean): void;
  protected abstract onlyMtuProbeLost(): boolean;

  /** RFC 6298 §5.4–5.7. */
  protected onRtoExpired(): void {
    if (this.state === 'CLOSED' || this.state === 'TIME_WAIT') return;
    if (this.sndMax === this.sndUna) return;
    this.retries++;
    this.host.stats.rtoTimeouts++;
    this.counters.rtoTimeouts++;
    if (this.host.debug?.on) this.host.debug.debug(`${this.toString()}: RTO expired (retry ${this.retries}, rto ${this.rtoEst.rto} ms, ${this.sndMax - this.sndUna >>> 0} bytes in flight)`);
    const synPhase = this.state === 'SYN_SENT' || this.state === 'SYN_RECEIVED';
    if (this.retries > (synPhase ? this.config.synRetries : this.config.maxRetries)) {
      this.fail('ETIMEDOUT');
      return;
    }
    this.rtoEst.backoff();
    this.rttSeq = null; // Karn
    if (synPhase) {
      this.synRetransmitted = true;
      this.host.stats.retransmits++;
      this.counters.retransmits++;
      this.sendSyn(this.state === 'SYN_RECEIVED');
      this.rtxTimer.set(this.rtoEst.rto);
      return;
    }
    // RFC 5681 §3.1 eqn. 4 (first timeout of a series) and the one-segment loss window.
    const flight = seqDiff(this.sndMax, this.sndUna);
    if (this.retries === 1) {
      // A timeout during recovery continues that episode; otherwise a new one starts, and what
      // the window was before it is kept for a D-SACK undo.
      if (!this.inRecovery && !this.lossRecovery) this.undo = { cwnd: this.cc.cwnd, ssthresh: this.cc.ssthresh, ranges: [] };
      this.cc.onTimeout(flight, this.host.clock.now());
    } else this.cc.cwnd = this.cc.mss;
    this.tlpTimer.cancel();
    this.reoTimer.cancel();
    this.tlpEnd = null;
    // Black-hole detection: timeouts in a row while the first unacknowledged segment is full-sized
    // may mean a smaller path MTU whose ICMP never reaches us. Smaller segments cost little.
    const probeAfter = this.config.mtuProbeAfterRtos;
    if (probeAfter > 0 && this.retries >= probeAfter && seqDiff(this.finSeq(), this.sndUna) >= this.effectiveMss() && this.sendMss > BLACK_HOLE_MIN_MSS) {
      this.host.stats.mtuBlackHoles++;
      this.startMtuProbing(this.sendMss);
      this.sendMss = Math.max(BLACK_HOLE_MIN_MSS, this.sendMss > BLACK_HOLE_BASE_MSS ? BLACK_HOLE_BASE_MSS : this.sendMss >> 1);
      this.cc.mss = this.effectiveMss();
    }
    if (this.sackEnabled) {
      // RFC 6675 §5.1 with the scoreboard kept: every unSACKed segment is deemed lost and resent
      // in order as the ACK clock allows; nothing the receiver reported holding goes again —
      // unless it reneged (the segment at SND.UNA is SACKed, yet not acknowledged: RFC 2018 §8).
      if (this.scoreboard.reneged) this.scoreboard.clearSacks();
      this.scoreboard.markAllLost();
      this.inRecovery = false;
      this.lossRecovery = true;
      this.recover = this.sndMax;
      this.dupAcks = 0;
      this.rtxTimer.set(this.rtoEst.rto);
      this.output(false);
      return;
    }
    this.inRecovery = false;
    this.recover = this.sndMax; // RFC 6582 §3.2 step 7
    this.dupAcks = 0;
    this.scoreboard.clear(); // RFC 2018 §8
    this.sndNxt = this.sndUna; // go back N
    this.highRxt = this.sndUna;
    this.rtxTimer.set(this.rtoEst.rto);
    this.output(true);
  }

  /**
   * RFC 8985 §7.3: the tail loss probe. One new segment if the receive window allows one, else
   * the last segment again; either way an ACK comes back that lets RACK (or the SACK of the
   * probe) find the lost tail without waiting for the RTO.
   */
  protected onTlpExpired(): void {
    if (!this.canSendData() || this.sndMax === this.sndUna || this.inRecovery || this.lossRecovery || this.tlpEnd !== null) return;
    this.host.stats.lossProbes++;
    const maxPayload = this.maxPayload();
    const avail = seqDiff(this.finSeq(), this.sndNxt);
    const wndRoom = seqDiff(seqAdd(this.sndUna, this.sndWnd), this.sndNxt);
    let sentNew = false;
    if (avail > 0 && wndRoom >= Math.min(avail, maxPayload)) sentNew = this.outputOne(true);
    if (!sentNew) {
      const last = this.scoreboard.lastUnsacked();
      if (!last) return;
      this.retransmitRange(last.start, last.end, true);
    }
    this.tlpEnd = this.sndMax;
    this.tlpRetrans = !sentNew;
    this.rtxTimer.set(this.rtoEst.rto);
  }

  /** RFC 8985 §6.2 step 5: a segment's RACK time ran out; mark it lost and repair. */
  protected onReorderExpired(): void {
    if (!this.canSendData() || this.sndMax === this.sndUna) return;
    const now = this.host.clock.now();
    this.detectLosses(now);
    if (!this.inRecovery && !this.lossRecovery && this.scoreboard.lostBytes() > 0 && !this.onlyMtuProbeLost()) {
      this.enterFastRecovery();
      this.prrUpdate(0, true);
    }
    this.output(false);
  }

  /** The probe interval after a black-hole reduction ran out: the next output tries the larger MSS. */
  protected onMtuProbeExpired(): void {
    if (this.mtuProbeMss === null || !this.canSendData()) return;
    this.mtuProbeDue = true;
    this.output(false);
  }

  /** RFC 9293 §3.8.6.1: probe a zero window, backing off exponentially. */
  protected onPersistExpired(): void {
    if (!this.canSendData()) return;
    if (this.sndWnd > 0) {
      this.swsOverride = true;
      this.output(false);
      this.swsOverride = false;
      return;
    }
    const limit = this.config.persistTimeoutMs;
    if (limit > 0 && this.persistSince !== null && this.host.clock.now() - this.persistSince >= limit) {
      this.fail('ETIMEDOUT');
      return;
    }
    this.host.stats.zeroWindowProbes++;
    this.sendProbe();
    if (this.persistInterval() < PERSIST_MAX_MS) this.persistShift++;
    this.persistTimer.set(this.persistInterval());
  }

  protected onDelayedAck(): void {
    if (this.isClosed()) return;
    if (this.ackAtBurstEnd) this.host.stats.burstAcks++;
    else this.host.stats.delayedAcks++;
    this.sendAck();
  }

  /** RFC 9293 §3.8.4 keepalive. */
  protected onKeepalive(): void {
    if (!this.keepAlive || !this.isSynchronized() || this.state === 'TIME_WAIT') return;
    if (this.keepProbesSent >= this.keepCount) {
      this.fail('ETIMEDOUT');
      return;
    }
    this.keepProbesSent++;
    this.host.stats.keepaliveProbes++;
    this.sendProbe();
    this.keepTimer.set(this.keepIntervalMs);
  }

  protected onLifeExpired(): void {
    // TIME-WAIT's 2·MSL ran out, or FIN-WAIT-2 after a full close waited too long.
    if (this.state === 'TIME_WAIT' || this.state === 'FIN_WAIT_2') this.finish(null);
  }
}
