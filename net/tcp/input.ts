/**
 * TCP input (lwIP's tcp_in): the segment arrival checks of RFC 9293 §3.10.7 in order — SYN-SENT,
 * then for synchronized states PAWS (RFC 7323 §5), sequence acceptability and trimming, RST and
 * SYN (RFC 5961), ACK (ack.ts), segment text with reassembly, and FIN.
 */
import { TH_ACK, TH_FIN, TH_RST, TH_SYN, TH_URG, TCP_MAX_WINSHIFT, type TcpOptions, type TcpRepr } from '../wire/tcp.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqInWindow, seqLe, seqLt } from './seq.js';
import { PAWS_IDLE_LIMIT_MS, QUICKACK_SEGMENTS, TS_OPTION_BYTES, TCP_DEFAULT_MSS } from './tcb.js';
import { TcpAckProcessing } from './ack.js';
import { copyBytes } from '../byte-slab.js';

export abstract class TcpInput extends TcpAckProcessing {
  /**
   * A segment for this connection (already checksummed and parsed by the layer). Its bytes are the
   * frame's, valid for the call only (the stack keeps nothing of a frame): what is kept is copied.
   */
  input(seg: TcpRepr): void {
    this.counters.segmentsIn++;
    if (this.isClosed()) return;
    if (this.state === 'SYN_SENT') this.inputSynSent(seg);
    else this.inputSynchronized(seg);
    if (this.isClosed()) return;
    if (this.keepAlive && this.isSynchronized()) {
      this.keepProbesSent = 0;
      this.keepTimer.set(this.keepIdleMs);
    }
    this.output(false);
  }

  /** RFC 9293 §3.10.7.3: SYN-SENT. */
  protected inputSynSent(seg: TcpRepr): void {
    const f = seg.flags;
    if (f & TH_ACK) {
      // First check: the ACK must acknowledge our SYN.
      if (seqLe(seg.ack, this.iss) || seqGt(seg.ack, this.sndMax)) {
        if (!(f & TH_RST)) this.sendRstFor(seg);
        return;
      }
    }
    if (f & TH_RST) {
      // Second check (RFC 5961 §3.2 agrees: in SYN-SENT a RST is valid when it acknowledges the SYN).
      if (f & TH_ACK) {
        this.host.stats.resetsIn++;
        this.fail('ECONNREFUSED');
      }
      return;
    }
    if (!(f & TH_SYN)) return;
    // Fourth check: SYN.
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.rcvAdvRight = seqAdd(this.rcvNxt, Math.min(0xffff, this.receiveSpace())); // what our SYN offered
    this.negotiate(seg.options);
    if (this.tsEnabled && seg.options.timestamp) this.updateTsRecent(seg.options.timestamp.tsVal);
    if (f & TH_ACK) {
      this.sndUna = seg.ack;
      this.sndWnd = seg.window; // unscaled in a SYN (RFC 7323 §2.2)
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      this.maxSndWnd = this.sndWnd;
      this.sampleHandshakeRtt(seg);
      this.rtxTimer.cancel();
      this.retries = 0;
      if (this.synRetransmitted) this.synWasLost();
      this.setState('ESTABLISHED');
      this.ackNow = true;
      this.becameEstablished();
      if (this.isClosed()) return;
      if (seg.payload.length > 0) this.receiveData(seqAdd(seg.seq, 1), seg.payload);
      if (f & TH_FIN) this.receiveFin(seqAdd(seg.seq, 1 + seg.payload.length));
    } else {
      // Simultaneous open (RFC 9293 Figure 7): SYN-RECEIVED, answer SYN,ACK with our ISS.
      this.sndWnd = seg.window;
      this.sndWl1 = seg.seq;
      this.maxSndWnd = this.sndWnd;
      this.setState('SYN_RECEIVED');
      this.sendSyn(true);
      this.rtxTimer.set(this.rtoEst.rto);
    }
  }

  /** RFC 9293 §3.10.7.4: every state after SYN-SENT. */
  protected inputSynchronized(seg: TcpRepr): void {
    const f = seg.flags;
    const stats = this.host.stats;
    let seq = seg.seq;
    let payload = seg.payload;
    let fin = (f & TH_FIN) !== 0;
    let syn = (f & TH_SYN) !== 0;
    const ts = this.tsEnabled ? seg.options.timestamp : undefined;

    // RFC 7323 §3.2: once timestamps are in use, a non-RST segment without one is dropped.
    if (this.tsEnabled && !ts && !(f & TH_RST)) {
      stats.missingTimestampDrops++;
      return;
    }

    // RFC 7323 §5.3 PAWS: a segment older than TS.Recent is a duplicate from an old incarnation.
    if (ts && this.tsRecentValid && !(f & TH_RST) && seqLt(ts.tsVal, this.tsRecent)) {
      if (this.host.clock.now() - this.tsRecentAge > PAWS_IDLE_LIMIT_MS) {
        this.tsRecentValid = false;
      } else {
        stats.pawsDrops++;
        this.ackNow = true;
        return;
      }
    }

    // First check: sequence number acceptability (RFC 9293 §3.10.7.4, four cases).
    const rcvWnd = Math.max(0, seqDiff(this.rcvAdvRight, this.rcvNxt));
    const segLen = payload.length + (syn ? 1 : 0) + (fin ? 1 : 0);
    const wndEnd = seqAdd(this.rcvNxt, rcvWnd);
    let acceptable: boolean;
    if (segLen === 0) acceptable = rcvWnd === 0 ? seq === this.rcvNxt : seqInWindow(seq, this.rcvNxt, wndEnd);
    else acceptable = rcvWnd > 0 && (seqInWindow(seq, this.rcvNxt, wndEnd) || seqInWindow(seqAdd(seq, segLen - 1), this.rcvNxt, wndEnd));
    if (!acceptable) {
      if (f & TH_RST) return;
      stats.outOfWindow++;
      this.ackNow = true;
      // A retransmission of data we hold: report it (RFC 2883 §4.1.1) so the sender can tell a
      // spurious retransmission from a loss.
      if (payload.length > 0 && seqLe(seqAdd(seq, payload.length), this.rcvNxt)) this.noteDuplicate(seq, seqAdd(seq, payload.length));
      if (this.state === 'TIME_WAIT' && fin) this.lifeTimer.set(2 * this.config.mslMs); // a retransmitted FIN
      // RFC 9293: with a zero window, valid ACKs must still be processed (zero-window probes).
      if (!(rcvWnd === 0 && seq === this.rcvNxt && f & TH_ACK)) return;
      payload = payload.subarray(0, 0);
      fin = false;
      syn = false;
    }

    // Trim to the window: drop what was already received, and what lies beyond the right edge.
    if (seqLt(seq, this.rcvNxt)) {
      let cut = seqDiff(this.rcvNxt, seq);
      if (syn) {
        syn = false;
        cut--;
        seq = seqAdd(seq, 1);
      }
      if (cut >= payload.length) {
        if (cut > payload.length) fin = false;
        cut = payload.length;
      }
      if (cut > 0) this.noteDuplicate(seq, seqAdd(seq, cut));
      payload = payload.subarray(cut);
      seq = seqAdd(seq, cut);
      this.ackNow = true; // a duplicate: tell the sender where we are at once
    }
    const room = seqDiff(wndEnd, seq);
    if (payload.length > room) {
      payload = payload.subarray(0, Math.max(0, room));
      fin = false;
    }

    // Second check: RST (RFC 5961 §3.2: only an exact match resets; in-window gets a challenge ACK).
    if (f & TH_RST) {
      stats.resetsIn++;
      if (seg.seq === this.rcvNxt) this.resetByPeer();
      else this.challengeAck();
      return;
    }

    // Fourth check: SYN in a synchronized state (RFC 5961 §4.2: challenge ACK, drop).
    if (syn) {
      this.challengeAck();
      return;
    }

    // Fifth check: ACK.
    if (!(f & TH_ACK)) return;
    if (!this.processAck(seg)) return;
    if (this.isClosed()) return;

    // RFC 7323 §4.3: TS.Recent follows the segment that covers Last.ACK.sent — and only a segment
    // that passed every check above (as Linux does it): updated earlier, one forged SYN or RST
    // with a far-future TSval would make PAWS drop every genuine segment that follows.
    if (ts && acceptable && seqGe(ts.tsVal, this.tsRecent) && seqLe(seg.seq, this.lastAckSent)) this.updateTsRecent(ts.tsVal);

    // Sixth: URG (RFC 9293 §3.10.7.4; MUST-31): tell the application where urgent data ends,
    // when a pointer first arrives or advances. The pointer names the octet after the urgent data
    // (RFC 6093 §4, MUST-62).
    if (f & TH_URG && seg.urgent > 0 && (this.state === 'ESTABLISHED' || this.state === 'FIN_WAIT_1' || this.state === 'FIN_WAIT_2')) {
      const up = seqAdd(seg.seq, seg.urgent);
      if (this.rcvUp === null || seqGt(up, this.rcvUp)) {
        this.rcvUp = up;
        this.onUrgent?.(this.counters.bytesReceived + seqDiff(up, this.rcvNxt));
        if (this.isClosed()) return;
      }
    }

    // Seventh: segment text.
    if (payload.length > 0) {
      const s = this.state;
      if (s === 'ESTABLISHED' || s === 'FIN_WAIT_1' || s === 'FIN_WAIT_2') {
        this.receiveData(seq, payload);
        if (this.isClosed()) return;
      }
    }

    // Eighth: FIN.
    if (fin) this.receiveFin(seqAdd(seq, payload.length));
  }

  /** In-order data goes to onData (valid for the call); out-of-order data is queued as a copy. */
  protected receiveData(seq: number, data: Uint8Array): void {
    if (this.rxClosed) {
      // RFC 1122 §4.2.2.13: data after a full close is answered with RST.
      this.sendRst(this.sndMax);
      this.finish(null);
      return;
    }
    if (seq === this.rcvNxt) {
      this.deliver(data);
      if (this.isClosed()) return;
      this.ackPolicy(data.length);
      if (!this.ooo.isEmpty) {
        for (const chunk of this.ooo.takeReady(this.rcvNxt)) {
          this.deliver(chunk);
          if (this.isClosed()) return;
        }
        this.ackNow = true; // RFC 5681 §4.2: ACK at once when a gap fills
      }
      if (this.oooFinSeq !== null && this.oooFinSeq === this.rcvNxt) this.receiveFin(this.rcvNxt);
    } else {
      this.host.stats.outOfOrderSegments++;
      const r = this.ooo.insert(seq, copyBytes(data), this.rcvNxt, this.rcvAdvRight);
      if (r === 'dropped') this.host.stats.outOfOrderDrops++;
      else if (r === 'duplicate') this.noteDuplicate(seq, seqAdd(seq, data.length));
      this.ackNow = true; // RFC 5681 §4.2: out-of-order data is acknowledged at once (with SACK)
    }
  }

  /**
   * When to ACK in-order data (RFC 5681 §4.2, RFC 9293 §3.8.6.3, and what Linux peers expect):
   * at once in quick-ACK mode (the first segments of a connection, and after the receive side sat
   * idle for an RTO); at once when more than one full-sized segment is pending, whether the
   * segments were full-sized or not (a 4 KiB writer's 1448 + 1448 + 1200 ACKed on the second);
   * otherwise after the delayed-ACK time.
   *
   * "At once" for in-order data outside quick-ACK mode means at the end of the burst being taken
   * in (a zero-delay timer: after the frames that arrived together, before any later ones), so a
   * burst of segments is acknowledged by one ACK — what a Linux receiver sends when its NIC driver
   * merged the burst with GRO. Out-of-order data, gap fills and duplicates still ACK at once.
   */
  protected ackPolicy(len: number): void {
    const now = this.host.clock.now();
    if (this.lastDataReceived === null || now - this.lastDataReceived > this.rtoEst.rto) this.quickAcks = QUICKACK_SEGMENTS;
    this.lastDataReceived = now;
    const cap = this.ourMss - (this.tsEnabled ? TS_OPTION_BYTES : 0);
    if (len > this.rcvMss) this.rcvMss = Math.min(len, cap);
    this.bytesSinceAck += len;
    if (this.quickAcks > 0) this.ackNow = true;
    else if (this.bytesSinceAck > this.rcvMss) {
      this.ackAtBurstEnd = true;
      this.delackTimer.set(0);
    } else this.delackTimer.ensure(this.config.delayedAckMs);
  }

  /** A duplicate segment arrived: the next ACK reports [start, end) in a D-SACK block (RFC 2883). */
  protected noteDuplicate(start: number, end: number): void {
    if (this.sackEnabled) this.dsack = { left: start, right: end };
  }

  protected deliver(data: Uint8Array): void {
    this.rcvNxt = seqAdd(this.rcvNxt, data.length);
    this.unconsumed += data.length;
    this.counters.bytesReceived += data.length;
    this.onData?.(data);
  }

  /** The peer's FIN at sequence `at` (RFC 9293 §3.10.7.4 eighth check). */
  protected receiveFin(at: number): void {
    if (this.finReceived) {
      if (this.state === 'TIME_WAIT') this.lifeTimer.set(2 * this.config.mslMs);
      this.ackNow = true;
      return;
    }
    if (at !== this.rcvNxt) {
      this.oooFinSeq = at; // waits for the data before it
      this.ackNow = true;
      return;
    }
    this.oooFinSeq = null;
    this.finReceived = true;
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.ackNow = true;
    switch (this.state) {
      case 'SYN_RECEIVED':
      case 'ESTABLISHED':
        this.setState('CLOSE_WAIT');
        break;
      case 'FIN_WAIT_1':
        this.setState('CLOSING'); // simultaneous close: our FIN is not yet acknowledged
        break;
      case 'FIN_WAIT_2':
        this.sendAck(); // the last ACK goes out before we sit in TIME-WAIT
        // The application hears the end of the data before the close (onClose fires on entering
        // TIME-WAIT): the same order as every other path, and as a socket reports EOF then close.
        this.onEnd?.();
        if (this.state === 'FIN_WAIT_2') this.enterTimeWait();
        return;
      default:
        break;
    }
    this.onEnd?.();
  }

  protected resetByPeer(): void {
    const s = this.state;
    if (s === 'SYN_RECEIVED') {
      // RFC 9293: a passive open returns to LISTEN (here: the half-open connection disappears);
      // an active one (simultaneous open) is refused.
      if (this.passive) this.finish(null);
      else this.fail('ECONNREFUSED');
    } else if (s === 'ESTABLISHED' || s === 'FIN_WAIT_1' || s === 'FIN_WAIT_2' || s === 'CLOSE_WAIT') {
      this.host.stats.establishedResets++;
      this.fail('ECONNRESET');
    } else {
      this.finish(null); // CLOSING, LAST-ACK, TIME-WAIT
    }
  }

  /** Option negotiation from the peer's SYN (RFC 9293 §3.7.1, RFC 7323 §2.2/§3.2, RFC 2018 §2). */
  protected negotiate(o: TcpOptions): void {
    const peerMss = o.mss !== undefined && o.mss > 0 ? o.mss : TCP_DEFAULT_MSS;
    this.sendMss = Math.max(64, Math.min(peerMss, this.ourMss));
    if (this.offerWscale && o.windowScale !== undefined) {
      this.sndWscale = Math.min(o.windowScale, TCP_MAX_WINSHIFT);
    } else {
      this.sndWscale = 0;
      this.rcvWscale = 0;
      this.offerWscale = false;
    }
    this.tsEnabled = this.offerTs && o.timestamp !== undefined;
    this.sackEnabled = this.offerSack && o.sackPermitted === true;
    this.cc.mss = this.effectiveMss();
    this.cc.cwnd = Math.min(10 * this.cc.mss, Math.max(2 * this.cc.mss, 14600));
  }
}
