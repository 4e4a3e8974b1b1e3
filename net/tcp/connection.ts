/**
 * One TCP connection (RFC 9293 §3.3.2 state machine, event processing per §3.10) and the raw
 * callback API on it (lwIP's raw API analogue): `write` returns how much the send buffer took,
 * `onData` hands over received bytes, `recved(n)` reopens the receive window once the application
 * has consumed them, `onSent` reports acknowledged bytes (room to write again), `shutdown`
 * half-closes, `abort` resets.
 *
 * The protocol machinery is layered as lwIP splits tcp_in/tcp_out, one class per file, each
 * extending the one below: tcb.ts (the control block: variables, options, timers, state changes),
 * output.ts (what to send and how), timeouts.ts (timer expiry), ack.ts (ACK processing and loss
 * recovery), input.ts (segment arrival checks); this file adds the user calls (OPEN, SEND, CLOSE,
 * ABORT, STATUS) and the end of a connection.
 *
 * Time comes only from the host's Clock. Application callbacks are invoked synchronously; calls the
 * application makes from inside them (write, shutdown, abort, recved) are safe.
 */
import type { TcpRepr } from '../wire/tcp.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqLt } from './seq.js';
import { TCP_IP_HEADERS, type TcpErrorCode, type TcpInfo } from './tcb.js';

/** RFC 1191 §7 table 7-1 plateaus below Ethernet's 1500, for routers that report no MTU. */
const MTU_PLATEAUS = [1492, 1006, 576];
/** The smallest path MTU believed (Linux's min_pmtu 552 rounded to the plateau RFC 1191 names). */
const MIN_PATH_MTU = 576;
import { TcpInput } from './input.js';

export {
  PAWS_IDLE_LIMIT_MS,
  TCP_DEFAULT_MSS,
  TCP_IP_HEADERS,
  DUPTHRESH,
  type ConnectionHost,
  type PayloadFill,
  type TcpErrorCode,
  type TcpInfo,
  type TcpState,
} from './tcb.js';

export class TcpConnection extends TcpInput {
  /** Bytes `write` would take now. */
  get sendSpace(): number {
    return this.canWrite() ? this.sendBuf.free : 0;
  }

  /** Bytes written and not yet acknowledged. */
  get sendQueued(): number {
    return this.sendBuf.length;
  }

  /**
   * Queue bytes for sending (RFC 9293 §3.10.2 SEND). Returns how many the send buffer took, 0 when
   * it is full or the connection can no longer send. Data written before the handshake completes
   * waits for it.
   */
  write(data: Uint8Array): number {
    if (!this.canWrite()) return 0;
    const n = this.sendBuf.write(data);
    if (n > 0) this.scheduleOutput();
    return n;
  }

  /**
   * Queue bytes as urgent data (RFC 9293 §3.10.2 SEND with the URGENT flag; MUST-30): the urgent
   * pointer moves to the octet after the last byte taken, and segments carry it until the peer
   * has acknowledged that far. Returns how many bytes the send buffer took.
   */
  writeUrgent(data: Uint8Array): number {
    const n = this.write(data);
    if (n > 0) this.sndUp = this.finSeq();
    return n;
  }

  protected canWrite(): boolean {
    if (this.finQueued) return false;
    const s = this.state;
    return s === 'SYN_SENT' || s === 'SYN_RECEIVED' || s === 'ESTABLISHED' || s === 'CLOSE_WAIT';
  }

  /** The application consumed `n` bytes it was given: reopen the receive window by that much. */
  recved(n: number): void {
    if (n <= 0) return;
    this.unconsumed = Math.max(0, this.unconsumed - n);
    if (!this.isSynchronized() || this.state === 'TIME_WAIT') return;
    // RFC 9293 §3.8.6.2.2 (receiver SWS avoidance): announce only a significant window increase.
    // And only at once when the window the sender knows has fallen to half the buffer or less and
    // would at least double (Linux's rule). An application that keeps up would otherwise turn
    // every segment into an immediate window-update ACK, defeating delayed ACKs (RFC 5681 §4.2);
    // a larger window simply rides on the next regular ACK.
    const space = this.receiveSpace();
    const right = seqAdd(this.rcvNxt, space);
    const advertised = Math.max(0, seqDiff(this.rcvAdvRight, this.rcvNxt));
    if (
      seqDiff(right, this.rcvAdvRight) >= Math.min(this.rcvBufSize / 2, this.effectiveMss()) &&
      2 * advertised <= this.rcvBufSize &&
      space >= 2 * advertised
    ) {
      this.ackNow = true;
      this.scheduleOutput();
    }
  }

  /**
   * Half-close (RFC 9293 §3.10.4 CLOSE): no more writes; a FIN follows the queued data. Reading
   * continues until the peer closes.
   */
  shutdown(): void {
    switch (this.state) {
      case 'SYN_SENT':
        if (this.sendBuf.length === 0) {
          this.finish(null);
          return;
        }
        this.finQueued = true;
        return;
      case 'SYN_RECEIVED':
        this.finQueued = true; // the FIN goes out once established
        return;
      case 'ESTABLISHED':
        this.finQueued = true;
        this.setState('FIN_WAIT_1');
        break;
      case 'CLOSE_WAIT':
        this.finQueued = true;
        this.setState('LAST_ACK');
        break;
      default:
        return;
    }
    this.scheduleOutput();
  }

  /** Close both directions: shutdown, and refuse (RST) data that arrives afterwards. */
  close(): void {
    this.rxClosed = true;
    this.shutdown();
    if (this.state === 'FIN_WAIT_2') this.lifeTimer.set(this.config.finWait2TimeoutMs);
  }

  /** Reset the connection (RFC 9293 §3.10.5 ABORT): RST to the peer, everything dropped. */
  abort(): void {
    if (this.isClosed()) return;
    if (this.state !== 'SYN_SENT' && this.state !== 'TIME_WAIT') this.sendRst(this.sndMax);
    this.finish(null);
  }

  /** Turn keepalives on or off (SO_KEEPALIVE). */
  setKeepAlive(on: boolean): void {
    this.keepAlive = on;
    if (on && this.isSynchronized()) this.keepTimer.set(this.keepIdleMs);
    else this.keepTimer.cancel();
  }

  info(): TcpInfo {
    return {
      state: this.state,
      iss: this.iss,
      irs: this.irs,
      srttMs: this.rtoEst.srtt,
      rttvarMs: this.rtoEst.rttvar,
      rtoMs: this.rtoEst.rto,
      cwnd: this.cc.cwnd,
      ssthresh: this.cc.ssthresh,
      sendMss: this.effectiveMss(),
      sndWnd: this.sndWnd,
      rcvWnd: Math.max(0, seqDiff(this.rcvAdvRight, this.rcvNxt)),
      sndWscale: this.sndWscale,
      rcvWscale: this.rcvWscale,
      timestamps: this.tsEnabled,
      sack: this.sackEnabled,
      inRecovery: this.inRecovery,
      unacked: seqDiff(this.sndMax, this.sndUna),
      ...this.counters,
    };
  }

  /** Active open (RFC 9293 §3.10.1 OPEN, active): send SYN, enter SYN-SENT. */
  openActive(): void {
    this.setState('SYN_SENT');
    this.sendSyn(false);
    this.rtxTimer.set(this.rtoEst.rto);
  }

  /** Passive open from LISTEN (RFC 9293 §3.10.7.2, third check): a SYN arrived. */
  openPassive(seg: TcpRepr): void {
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    // The right edge starts at RCV.NXT; the SYN-ACK then moves it to what it offers. Left at its
    // initial 0 it would compare as ahead of RCV.NXT for half of all peer ISNs (modular
    // comparison), and the window would be taken as up to 2^31 bytes.
    this.rcvAdvRight = this.rcvNxt;
    this.lastAckSent = this.rcvNxt;
    this.negotiate(seg.options);
    if (this.tsEnabled && seg.options.timestamp) this.updateTsRecent(seg.options.timestamp.tsVal);
    this.sndWnd = seg.window; // RFC 7323 §2.2: the window in a SYN is never scaled
    this.sndWl1 = seg.seq;
    this.sndWl2 = this.iss;
    this.maxSndWnd = this.sndWnd;
    this.setState('SYN_RECEIVED');
    this.sendSyn(true);
    this.rtxTimer.set(this.rtoEst.rto);
  }

  /**
   * A SYN cookie came back valid (RFC 4987 §3.6): rebuild the SYN-RECEIVED state the listener kept
   * no record of, as if `openPassive(syn)` had run and our SYN-ACK (ISS = the cookie, offering the
   * options `syn` asks for and an unscaled window of min(64 KiB − 1, the buffer)) had gone out,
   * without sending anything or arming a timer. `syn` is the SYN the cookie describes: the peer's
   * ISN and the options the cookie encoded. The layer then gives the ACK to `input`, which
   * completes the handshake the usual way (data and FIN in it included). Timestamps: TSval's
   * offset is the ISS (tcb.ts), as the cookie's SYN-ACK stamped it.
   */
  openFromCookie(syn: TcpRepr): void {
    this.irs = syn.seq;
    this.rcvNxt = seqAdd(syn.seq, 1);
    this.rcvAdvRight = seqAdd(this.rcvNxt, Math.min(0xffff, this.receiveSpace()));
    this.lastAckSent = this.rcvNxt;
    this.negotiate(syn.options);
    if (this.tsEnabled && syn.options.timestamp) this.updateTsRecent(syn.options.timestamp.tsVal);
    this.sndWnd = syn.window;
    this.sndWl1 = syn.seq;
    this.sndWl2 = this.iss;
    this.maxSndWnd = this.sndWnd;
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.setState('SYN_RECEIVED');
  }

  /** Whether a new SYN may end this TIME-WAIT early (RFC 9293 §3.10.7.4 note / RFC 6191). */
  acceptsNewSyn(seg: TcpRepr): boolean {
    if (this.state !== 'TIME_WAIT') return false;
    const ts = seg.options.timestamp;
    if (this.tsEnabled && ts && this.tsRecentValid) return seqGt(ts.tsVal, this.tsRecent);
    return seqGt(seg.seq, this.rcvNxt);
  }

  protected fail(code: TcpErrorCode): void {
    const wasOpening = this.state === 'SYN_SENT' || this.state === 'SYN_RECEIVED';
    if (wasOpening) this.host.stats.attemptFails++;
    this.error = code;
    // A half-open passive connection is invisible to the application: nobody to tell.
    const tell = !(this.passive && this.state === 'SYN_RECEIVED');
    this.finish(tell ? code : null);
  }

  /** Enter CLOSED: stop timers, leave the layer's tables, tell the application. */
  finish(code: TcpErrorCode | null): void {
    if (this.isClosed()) return;
    const wasHalfOpenPassive = this.passive && this.state === 'SYN_RECEIVED';
    this.setState('CLOSED');
    this.rtxTimer.dispose();
    this.persistTimer.dispose();
    this.delackTimer.dispose();
    this.tlpTimer.dispose();
    this.reoTimer.dispose();
    this.keepTimer.dispose();
    this.mtuProbeTimer.dispose();
    this.lifeTimer.dispose();
    this.ooo.clear();
    this.host.detach(this);
    if (wasHalfOpenPassive) return;
    if (code) this.onError?.(code);
    this.notifyClose();
  }

  /**
   * ICMP "fragmentation needed" (RFC 1191 §6.1) about a segment starting at `seq`. Acted on only
   * when that sequence number is in flight, SND.UNA ≤ seq < SND.NXT (RFC 5927 §4.1): a forged
   * message cannot then shrink segments at will. A router that reports no MTU (0) gets the next
   * lower plateau of RFC 1191 §7.
   */
  icmpFragNeeded(nextHopMtu: number, seq: number): void {
    if (!this.isSynchronized() || this.state === 'TIME_WAIT') return;
    if (!(seqGe(seq, this.sndUna) && seqLt(seq, this.sndMax))) {
      this.host.stats.pmtuIgnored++;
      return;
    }
    const current = this.sendMss + TCP_IP_HEADERS;
    const probe = this.mtuProbe;
    if (probe !== null && this.mtuProbeMss !== null && nextHopMtu > current && seqGe(seq, probe.start) && seqLt(seq, probe.end)) {
      // About our MSS probe, from a router that takes more than we send now but less than the
      // probe: the probe is lost (and found so as any loss); the next one tries what it reported.
      if (nextHopMtu - TCP_IP_HEADERS < this.mtuProbeMss) this.mtuProbeMss = nextHopMtu - TCP_IP_HEADERS;
      return;
    }
    // A report at or above what we send now is stale (about a segment sent before an earlier
    // reduction): the estimate only ever goes down (RFC 1191 §6.3).
    if (nextHopMtu >= current) return;
    const mtu = Math.max(nextHopMtu === 0 ? (MTU_PLATEAUS.find((p) => p < current) ?? MIN_PATH_MTU) : nextHopMtu, MIN_PATH_MTU);
    if (mtu >= current) return;
    this.host.stats.pmtuUpdates++;
    this.lowerMss(mtu - TCP_IP_HEADERS);
  }

  /** ICMP said the peer cannot be reached (RFC 1122 §4.2.3.9: hard errors abort an opening). */
  icmpUnreachable(hard: boolean): void {
    if (hard && this.state === 'SYN_SENT') this.fail('ECONNREFUSED');
  }
}
