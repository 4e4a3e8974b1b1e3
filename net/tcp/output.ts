/**
 * TCP output (lwIP's tcp_out): what may be sent now and how each segment is built. The send
 * window, cwnd, Nagle and sender silly-window avoidance (RFC 9293 §3.7.4, §3.8.6.2.1), SACK-based
 * hole filling during recovery (RFC 6675 §5), segment construction with options, the receive
 * window we advertise (RFC 9293 §3.8.6.2.2, RFC 7323 §2.3), and the persist decision.
 */
import { TH_ACK, TH_FIN, TH_PSH, TH_RST, TH_SYN, TH_URG, type SackBlock, type TcpOptions, type TcpRepr } from '../wire/tcp.js';
import { seqAdd, seqDiff, seqGt, seqLe, seqLt, seqMax } from './seq.js';
import { DUPTHRESH, EMPTY_PAYLOAD, PERSIST_MAX_MS, PERSIST_MIN_MS, TcpControlBlock, type PayloadFill } from './tcb.js';

/** RFC 8985 §7.2: the PTO before any RTT sample. */
const TLP_NO_RTT_PTO_MS = 1000;
/** A little on top of 2·SRTT when several segments are in flight (Linux's TCP_TIMEOUT_MIN). */
const TLP_MIN_EXTRA_MS = 2;
/** Retransmitted ranges remembered per loss episode for D-SACK undo. */
const UNDO_MAX_RANGES = 256;

export abstract class TcpOutput extends TcpControlBlock {
  protected scheduleOutput(): void {
    if (this.outputScheduled) return;
    this.outputScheduled = true;
    this.host.clock.setTimer(0, () => {
      this.outputScheduled = false;
      this.output(false);
    });
  }

  /** Largest payload for a segment carrying our usual options now (SACK blocks take room). */
  protected maxPayload(): number {
    return this.effectiveMss() - this.sackOptionBytes();
  }

  protected sackOptionBytes(): number {
    if (!this.sackEnabled || (this.ooo.isEmpty && this.dsack === null)) return 0;
    const n = Math.min(this.tsEnabled ? 3 : 4, this.ooo.sackBlocks(4).length + (this.dsack ? 1 : 0));
    return 4 + 8 * n;
  }

  /**
   * The SACK blocks for an ACK now (RFC 2018 §4): a pending D-SACK block first (RFC 2883 §4), then
   * the out-of-order blocks, most recent first, as many as the option space holds.
   */
  protected sackBlocksNow(): SackBlock[] | undefined {
    if (!this.sackEnabled || (this.ooo.isEmpty && this.dsack === null)) return undefined;
    const max = this.tsEnabled ? 3 : 4;
    const blocks: SackBlock[] = [];
    if (this.dsack) {
      blocks.push(this.dsack);
      this.dsack = null;
      this.host.stats.dsacksOut++;
    }
    for (const b of this.ooo.sackBlocks(max - blocks.length)) blocks.push(b);
    return blocks;
  }

  /**
   * Send what the windows, Nagle and silly-window avoidance allow; then a pure ACK if one is due.
   * `force` sends one segment regardless of the windows (after a retransmission timeout without
   * SACK: go-back-N).
   */
  protected output(force: boolean): void {
    if (this.isClosed()) return;
    let sent = false;
    if (this.canSendData()) {
      // RFC 5681 §4.1: after an idle period of more than an RTO, restart from the restart window —
      // before the first segment is sized, not after it went out with the stale window.
      const now = this.host.clock.now();
      if (this.sndMax === this.sndUna && this.lastSendTime > 0 && now - this.lastSendTime > this.rtoEst.rto) this.cc.restartAfterIdle();
      const maxBefore = this.sndMax;
      if (this.mtuProbeDue && !force) sent = this.sendMtuProbe();
      if (this.sackEnabled && !force) sent = this.outputSack() || sent;
      else {
        for (;;) {
          const r = this.outputOne(force);
          if (!r) break;
          sent = true;
          force = false;
        }
      }
      if (this.sndMax !== maxBefore) this.scheduleLossProbe();
      // Persist (RFC 9293 §3.8.6.1 zero window; §3.8.6.2.1 the SWS override timeout): data waits
      // and nothing is in flight whose ACK would restart sending.
      const pending = seqDiff(this.finSeq(), this.sndNxt) > 0 || (this.finQueued && !this.finSent);
      if (!sent && pending && this.sndMax === this.sndUna && !this.rtxTimer.armed) {
        if (!this.persistTimer.armed && this.persistSince === null) this.persistSince = this.host.clock.now();
        this.persistTimer.ensure(this.persistInterval());
      }
    }
    if (!sent && this.ackNow && this.state !== 'SYN_SENT') this.sendAck();
  }

  protected persistInterval(): number {
    const base = Math.max(PERSIST_MIN_MS, this.rtoEst.rto);
    return Math.min(PERSIST_MAX_MS, base * 2 ** this.persistShift);
  }

  /**
   * With SACK: RFC 6675 §5 NextSeg while the pipe leaves room in cwnd — (1) a segment deemed lost
   * (by RACK, DupThresh or an RTO), (2) new data, (3) in recovery, an unSACKed segment below the
   * highest SACKed one never retransmitted, (4) once per recovery the rescue retransmission of
   * the highest unSACKed segment. During recovery cwnd is what PRR (RFC 6937) made it.
   */
  protected outputSack(): boolean {
    let sent = false;
    const mss = this.cc.mss;
    // Bounded: each pass sends a segment or stops; a window's worth of segments at most.
    for (let pass = 0; pass < 65536; pass++) {
      const room = this.cc.cwnd - this.scoreboard.pipe();
      const lost = this.scoreboard.firstLost();
      if (lost) {
        if (room < Math.min(mss, seqDiff(lost.end, lost.start))) break;
        this.retransmitRange(lost.start, lost.end, false);
        sent = true;
        continue;
      }
      if (this.outputOne(false)) {
        sent = true;
        continue;
      }
      if (!this.inRecovery || room < mss) break;
      const below = this.scoreboard.firstUnsackedBelowHigh();
      if (below) {
        this.retransmitRange(below.start, below.end, false);
        sent = true;
        continue;
      }
      if (this.rescueRxt === null || seqGt(this.sndUna, this.rescueRxt)) {
        const last = this.scoreboard.lastUnsacked();
        if (last) {
          this.retransmitRange(last.start, last.end, true);
          this.rescueRxt = this.recover;
          sent = true;
          continue;
        }
      }
      break;
    }
    return sent;
  }

  /**
   * Retransmit one segment's worth of [start, end) (a scoreboard range, which may end with the
   * FIN): its first bytes, or with `tail` its last ones (a rescue or a loss probe, which must
   * carry the highest outstanding sequence number).
   */
  protected retransmitRange(start: number, end: number, tail: boolean): void {
    const total = seqDiff(end, start);
    const finIn = this.finSent && end === seqAdd(this.finSeq(), 1);
    const dataLen = total - (finIn ? 1 : 0);
    const maxPayload = this.maxPayload();
    const len = Math.min(maxPayload, dataLen);
    const from = tail ? seqAdd(start, dataLen - len) : start;
    const fin = finIn && seqAdd(from, len + 1) === end;
    this.sendData(from, len, fin, true);
    this.rtxTimer.ensure(this.rtoEst.rto);
  }

  /**
   * RFC 8985 §7.2: (re)arm the tail loss probe after new data went out or new data was ACKed —
   * PTO = 2·SRTT, plus the peer's delayed-ACK allowance when one segment is in flight, at most
   * until the RTO would expire: then the probe goes instead of the timeout (RFC 8985 §7.2
   * TLP_calc_PTO), and the RTO is rearmed after it. Not during recovery or with a probe outstanding.
   */
  protected scheduleLossProbe(): void {
    if (!this.sackEnabled || !this.config.tailLossProbe || this.inRecovery || this.lossRecovery || this.tlpEnd !== null) return;
    const flight = seqDiff(this.sndMax, this.sndUna);
    if (flight <= 0 || !this.canSendData()) {
      this.tlpTimer.cancel();
      return;
    }
    const srtt = this.rtoEst.srtt;
    let pto = srtt === null ? TLP_NO_RTT_PTO_MS : 2 * srtt;
    pto += flight <= this.effectiveMss() ? this.config.lossProbeAckDelayMs : TLP_MIN_EXTRA_MS;
    const rtoLeft = this.rtxTimer.remaining ?? this.rtoEst.rto;
    if (pto >= rtoLeft) {
      pto = rtoLeft;
      // The probe, not the timeout, goes first; sending it rearms the RTO.
      this.rtxTimer.set(rtoLeft + this.rtoEst.rto);
    }
    this.tlpTimer.set(pto);
  }

  /**
   * The probe after a black-hole reduction (RFC 4821's probe, as Linux's tcp_mtu_probe): one segment
   * of new data at the MSS from before. It waits until there is data for DupThresh segments behind
   * it, so that its loss shows in SACKs or duplicate ACKs rather than after a timeout, and until
   * no loss is being repaired and the windows take it whole. Returns whether it went out.
   */
  protected sendMtuProbe(): boolean {
    const probeMss = this.mtuProbeMss;
    if (probeMss === null || probeMss <= this.sendMss) {
      this.stopMtuProbing();
      return false;
    }
    if (this.mtuProbe !== null || this.inRecovery || this.lossRecovery || seqLt(this.sndNxt, this.sndMax)) return false;
    const maxPayload = this.maxPayload();
    // The same options as any segment now, so the datagram is exactly the size being tested.
    const len = maxPayload + probeMss - this.sendMss;
    if (seqDiff(this.finSeq(), this.sndNxt) < len + DUPTHRESH * maxPayload) return false;
    const inFlight = this.sackEnabled ? this.scoreboard.pipe() : seqDiff(this.sndNxt, this.sndUna);
    if (this.cc.cwnd - inFlight < len || seqDiff(seqAdd(this.sndUna, this.sndWnd), this.sndNxt) < len) return false;
    this.mtuProbeDue = false;
    this.host.stats.mtuProbes++;
    const start = this.sndNxt;
    this.sendData(start, len, false, false);
    this.advanceSent(len, false);
    this.mtuProbe = { start, end: this.sndNxt };
    return true;
  }

  /** Send the next segment from SND.NXT if allowed; returns whether one went out. */
  protected outputOne(force: boolean): boolean {
    const dataEnd = this.finSeq();
    const avail = seqDiff(dataEnd, this.sndNxt); // may be −1 once the FIN is sent
    const retransmitting = seqLt(this.sndNxt, this.sndMax);
    let usable: number;
    if (this.sackEnabled && !force) {
      // RFC 6675: what the network holds is the pipe, not SND.NXT − SND.UNA (SACKed and lost
      // bytes have left it).
      const pipe = this.scoreboard.pipe();
      usable = Math.min(this.cc.cwnd - pipe, seqDiff(seqAdd(this.sndUna, this.sndWnd), this.sndNxt));
    } else {
      // RFC 3042 Limited Transmit (RFC 5681 §3.2 SHOULD): on the first and second duplicate ACK,
      // one new segment each may go beyond cwnd, so that a loss in a small window still draws the
      // three duplicates fast retransmit needs instead of waiting for the RTO. New data only.
      const limited = !this.inRecovery && !retransmitting && this.dupAcks > 0 ? Math.min(this.dupAcks, DUPTHRESH - 1) * this.cc.mss : 0;
      usable = Math.min(this.cc.cwnd + limited, this.sndWnd) - seqDiff(this.sndNxt, this.sndUna);
    }
    const maxPayload = this.maxPayload();
    // New data may leave as one segment of several MSS when the link's far end takes GSO frames
    // (virtio GUEST_TSO4): the receiver sees what TSO on a real NIC would have cut into MSS-sized
    // pieces. Retransmissions and recovery stay MSS-sized, as after a loss Linux re-segments too.
    // Only when the peer takes our full MTU-derived MSS: whoever cuts the segment up (a TSO device)
    // derives the piece size from the MTU and the headers, and it must match what we would send.
    // Asked (a route lookup) only when more than one MSS could go now.
    const multi = !retransmitting && !this.inRecovery && !this.lossRecovery && !force && this.sendMss === this.ourMss && avail > maxPayload && usable > maxPayload;
    const gso = multi ? (this.host.gsoPayloadFor?.(this.remoteAddr) ?? 0) : 0;
    const sendMax = gso > maxPayload ? gso - (gso % maxPayload) : maxPayload;
    let len = Math.max(0, Math.min(sendMax, avail, force ? maxPayload : usable));
    // A GSO segment ends on an MSS boundary unless it carries the last of the data: its tail would
    // otherwise be the short segment Nagle exists to avoid.
    if (len > maxPayload && len < avail) len -= len % maxPayload;
    const finPending = this.finQueued && (!this.finSent || retransmitting) && seqLe(this.sndNxt, dataEnd);
    if (len === 0) {
      // A FIN alone, once all data is out (it takes sequence space but needs no window to try).
      if (finPending && avail === 0) {
        this.sendData(this.sndNxt, 0, true, retransmitting);
        this.advanceSent(1, retransmitting);
        return true;
      }
      return false;
    }
    if (!retransmitting && !force && !this.swsOverride && len < maxPayload) {
      // Sender SWS avoidance (RFC 9293 §3.8.6.2.1) with Nagle (§3.7.4): a short segment goes
      // only if it empties the queue and nothing is unacknowledged (or Nagle is off), or it is at
      // least half the largest window the peer ever offered.
      const emptiesQueue = len === avail;
      const nothingUnacked = this.sndMax === this.sndUna;
      const okNagle = emptiesQueue && (this.noDelay || nothingUnacked);
      const okHalfWindow = len >= this.maxSndWnd / 2 && this.maxSndWnd > 0;
      if (!okNagle && !okHalfWindow) return false;
    }
    const fin = finPending && len === avail;
    this.sendData(this.sndNxt, len, fin, retransmitting);
    this.advanceSent(len + (fin ? 1 : 0), retransmitting);
    return true;
  }

  protected advanceSent(n: number, retransmitting: boolean): void {
    const seq = this.sndNxt;
    if (!retransmitting && this.rttSeq === null && !this.tsEnabled) {
      this.rttSeq = seq;
      this.rttStart = this.host.clock.now();
    }
    this.sndNxt = seqAdd(this.sndNxt, n);
    if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
    this.rtxTimer.ensure(this.rtoEst.rto);
    this.persistTimer.cancel();
  }

  /** Emit a data (and/or FIN) segment for [seq, seq+len) of the send buffer. */
  protected sendData(seq: number, len: number, fin: boolean, retransmission: boolean): void {
    const now = this.host.clock.now();
    const end = seqAdd(seq, len + (fin ? 1 : 0));
    if (retransmission) {
      this.host.stats.retransmits++;
      this.counters.retransmits++;
      // Resending any of the probe (after RACK, DupThresh, a loss probe or a timeout gave it up)
      // ends it: the resend is cut to the MSS in use, and an ACK can no longer tell the two apart.
      const probe = this.mtuProbe;
      if (probe && seqLt(seq, probe.end) && seqGt(end, probe.start)) this.mtuProbeFailed();
      this.rttSeq = null; // Karn's algorithm
      const u = this.undo;
      // Only the episode's own retransmissions (not a later probe) decide whether it was spurious.
      if (u && (this.inRecovery || this.lossRecovery)) {
        // Bounded: an episode with more retransmissions than this is no spurious one.
        if (u.ranges.length < UNDO_MAX_RANGES) u.ranges.push({ start: seq, end });
        else this.undo = null;
      }
    }
    if (this.sackEnabled) this.scoreboard.record(seq, end, now, retransmission);
    if (this.inRecovery) this.prrOut += len + (fin ? 1 : 0);
    const from = seqDiff(seq, this.bufSeq);
    const sendBuf = this.sendBuf;
    const fill: PayloadFill | undefined = len > 0 ? { length: len, copyTo: (dest, offset) => sendBuf.copyOut(from, len, dest, offset) } : undefined;
    let flags = TH_ACK;
    if (fin) {
      flags |= TH_FIN;
      this.finSent = true;
    }
    if (len > 0 && seqAdd(seq, len) === this.finSeq()) flags |= TH_PSH;
    this.emit(flags, seq, EMPTY_PAYLOAD, null, fill);
  }

  /** SYN (active open) or SYN,ACK (passive or simultaneous open) with our options. */
  protected sendSyn(withAck: boolean): void {
    const opts: TcpOptions = { mss: this.ourMss };
    // RFC 7323 §2.2/§3.2, RFC 2018 §2: in a SYN,ACK only what the peer's SYN offered.
    if (this.offerWscale) opts.windowScale = this.rcvWscale;
    if (this.offerSack && (!withAck || this.sackEnabled)) opts.sackPermitted = true;
    if (this.offerTs && (!withAck || this.tsEnabled)) opts.timestamp = { tsVal: this.tsNow(), tsEcr: withAck && this.tsEnabled ? this.tsRecent : 0 };
    if (this.sndMax === this.iss) {
      this.sndNxt = seqAdd(this.iss, 1);
      this.sndMax = this.sndNxt;
      if (this.rttSeq === null) {
        this.rttSeq = this.iss;
        this.rttStart = this.host.clock.now();
      }
    }
    this.emit(withAck ? TH_SYN | TH_ACK : TH_SYN, this.iss, new Uint8Array(0), opts);
  }

  protected sendAck(): void {
    // SND.MAX, not a rewound SND.NXT: the peer may already hold what we are resending, and an ACK
    // below its RCV.NXT would be unacceptable to it.
    this.emit(TH_ACK, this.sndMax, new Uint8Array(0), null);
  }

  /** A segment that elicits an ACK: SEG.SEQ = SND.UNA − 1, no data (RFC 9293 §3.8.4). */
  protected sendProbe(): void {
    this.emit(TH_ACK, seqAdd(this.sndUna, -1), new Uint8Array(0), null);
  }

  protected sendRst(seq: number): void {
    this.host.stats.resetsOut++;
    this.emit(TH_RST | TH_ACK, seq, new Uint8Array(0), null);
  }

  /** RST for an unacceptable segment (RFC 9293 §3.10.7.3 / SYN-RECEIVED): <SEQ=SEG.ACK><CTL=RST>. */
  protected sendRstFor(seg: TcpRepr): void {
    this.host.stats.resetsOut++;
    this.host.transmit(this.asConnection, {
      srcPort: this.localPort,
      dstPort: this.remotePort,
      seq: seg.ack,
      ack: 0,
      flags: TH_RST,
      window: 0,
      urgent: 0,
      options: {},
      payload: new Uint8Array(0),
    });
  }

  protected emit(flags: number, seq: number, payload: Uint8Array, synOptions: TcpOptions | null, fill?: PayloadFill): void {
    let options: TcpOptions;
    let window: number;
    if (synOptions) {
      options = synOptions;
      // RFC 7323 §2.2: the window field of a SYN is not scaled.
      window = Math.min(0xffff, this.receiveSpace());
      if (this.state !== 'SYN_SENT') this.rcvAdvRight = seqMax(this.rcvAdvRight, seqAdd(this.rcvNxt, window));
    } else {
      options = {};
      if (this.tsEnabled) options.timestamp = { tsVal: this.tsNow(), tsEcr: this.tsRecent };
      const sack = flags & TH_ACK ? this.sackBlocksNow() : undefined;
      if (sack) options.sackBlocks = sack;
      window = this.windowField();
    }
    if (flags & TH_ACK) {
      this.ackNow = false;
      if (this.quickAcks > 0 && this.rcvNxt !== this.lastAckSent) this.quickAcks--;
      this.lastAckSent = this.rcvNxt;
      this.bytesSinceAck = 0;
      this.ackAtBurstEnd = false;
      this.delackTimer.cancel();
    }
    // RFC 9293 §3.8.5 (MUST-30, MUST-62): while urgent data is unacknowledged, every segment
    // carries URG and a pointer to the octet following it, relative to its own SEG.SEQ; one
    // beyond 64 KiB is sent as 0xFFFF until the segments catch up (RFC 6093 §4, as Linux does).
    let urgent = 0;
    if (this.sndUp !== null) {
      if (!seqGt(this.sndUp, this.sndUna)) this.sndUp = null;
      else if (!synOptions && seqGt(this.sndUp, seq)) {
        flags |= TH_URG;
        urgent = Math.min(0xffff, seqDiff(this.sndUp, seq));
      }
    }
    this.counters.segmentsOut++;
    this.lastSendTime = this.host.clock.now();
    this.host.transmit(this.asConnection, {
      srcPort: this.localPort,
      dstPort: this.remotePort,
      seq,
      ack: flags & TH_ACK ? this.rcvNxt : 0,
      flags,
      window,
      urgent,
      options,
      payload,
    }, fill);
  }

  /**
   * The window field to send (RFC 9293 §3.8.6.2.2 receiver SWS avoidance; RFC 7323 §2.3 scaling):
   * the right edge advances only by at least min(RCV.BUFF/2, Eff.snd.MSS) and never retreats;
   * the scaled value is rounded up so that it never shrinks the edge already offered.
   */
  protected windowField(): number {
    const right = seqAdd(this.rcvNxt, this.receiveSpace());
    const grow = seqDiff(right, this.rcvAdvRight);
    if (grow > 0 && grow >= Math.min(this.rcvBufSize / 2, this.effectiveMss())) {
      this.rcvAdvRight = right;
    }
    const wnd = Math.max(0, seqDiff(this.rcvAdvRight, this.rcvNxt));
    const field = Math.min(0xffff, Math.ceil(wnd / (1 << this.rcvWscale)));
    const edge = seqAdd(this.rcvNxt, field << this.rcvWscale);
    if (seqGt(edge, this.rcvAdvRight)) this.rcvAdvRight = edge;
    return field;
  }

  /** Retransmit one segment from SND.UNA (or the FIN alone). */
  protected retransmitFirst(): void {
    const avail = seqDiff(this.finSeq(), this.sndUna);
    const len = Math.min(this.maxPayload(), Math.max(0, avail));
    const fin = this.finSent && len === avail;
    if (len === 0 && !fin) return;
    this.sendData(this.sndUna, len, fin, true);
    const end = seqAdd(this.sndUna, len + (fin ? 1 : 0));
    if (seqLt(this.highRxt, end)) this.highRxt = end;
  }

  /** RFC 5961 §3.2/§4.2/§5.2: answer a suspicious segment with an ACK, rate limited (§7). */
  protected challengeAck(): void {
    if (!this.host.allowChallengeAck()) return;
    this.host.stats.challengeAcks++;
    this.sendAck();
  }
}
