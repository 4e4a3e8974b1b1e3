/**
 * One TCP connection: the transmission control block and its state machine (RFC 9293 §3.3.2,
 * event processing per §3.10), with RFC 5961 RST/SYN/ACK checks, RFC 7323 window scaling,
 * timestamps and PAWS, RFC 2018 SACK, RFC 6298 retransmission timing, RFC 5681/6582/6675
 * congestion control and loss recovery.
 *
 * It is also the raw callback API (lwIP's raw API analogue): `write` returns how much the send
 * buffer took, `onData` hands over received bytes, `recved(n)` reopens the receive window once the
 * application has consumed them, `onSent` reports acknowledged bytes (room to write again),
 * `shutdown` half-closes, `abort` resets.
 *
 * Time comes only from the host's Clock. Application callbacks are invoked synchronously; calls the
 * application makes from inside them (write, shutdown, abort, recved) are safe.
 */
import type { Clock } from '../clock.js';
import type { Ipv4Addr } from '../addr.js';
import { formatIpv4 } from '../addr.js';
import { TH_ACK, TH_FIN, TH_PSH, TH_RST, TH_SYN, TCP_MAX_WINSHIFT, type TcpOptions, type TcpRepr } from '../wire/tcp.js';
import type { TcpConfig } from './config.js';
import { CongestionControl } from './congestion.js';
import { ReassemblyQueue } from './reassembly.js';
import { RtoEstimator, RTO_MAX_MS } from './rto.js';
import { SackScoreboard } from './sack.js';
import { SendBuffer } from './send-buffer.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqInWindow, seqLe, seqLt, seqMax, seqMin } from './seq.js';
import type { TcpStats } from './stats.js';
import { TcpTimer } from './timer.js';

export type TcpState =
  | 'CLOSED'
  | 'LISTEN'
  | 'SYN_SENT'
  | 'SYN_RECEIVED'
  | 'ESTABLISHED'
  | 'FIN_WAIT_1'
  | 'FIN_WAIT_2'
  | 'CLOSE_WAIT'
  | 'CLOSING'
  | 'LAST_ACK'
  | 'TIME_WAIT';

/** Why a connection ended abnormally, named as the socket errors a user knows. */
export type TcpErrorCode = 'ECONNRESET' | 'ECONNREFUSED' | 'ETIMEDOUT' | 'EHOSTUNREACH';

/** RFC 9293 §3.7.1: the MSS assumed when the peer sends no MSS option. */
export const TCP_DEFAULT_MSS = 536;
/** IPv4 header + TCP header without options (RFC 9293 §3.7.1: MSS = MTU − 40). */
export const TCP_IP_HEADERS = 40;
/** RFC 5681 §3.2: duplicate ACKs that trigger fast retransmit. */
export const DUPTHRESH = 3;
/** RFC 7323 §5.5: TS.Recent is invalid after 24 days of idleness. */
export const PAWS_IDLE_LIMIT_MS = 24 * 24 * 3600_000;
/** Bytes the timestamp option takes, with its NOP padding (RFC 7323 Appendix A layout). */
const TS_OPTION_BYTES = 12;
/** Persist-timer bounds (BSD TCPTV_PERSMIN / TCPTV_PERSMAX). */
const PERSIST_MIN_MS = 200;
const PERSIST_MAX_MS = RTO_MAX_MS;

/** What a connection needs from the layer that owns it. */
/** A segment's payload still in the send buffer: `length` bytes that `copyTo` writes into a frame. */
/** Shared by segments whose payload comes through a PayloadFill (never written to). */
const EMPTY_PAYLOAD = new Uint8Array(0);

export interface PayloadFill {
  readonly length: number;
  copyTo(dest: Uint8Array, offset: number): void;
}

export interface ConnectionHost {
  readonly clock: Clock;
  readonly stats: TcpStats;
  /**
   * Hand a finished segment to IP. With `fill`, `repr.payload` is empty and the payload is copied
   * by `fill` straight into the outgoing frame (one copy from the send buffer to the wire).
   */
  transmit(conn: TcpConnection, repr: TcpRepr, fill?: PayloadFill): void;
  /** Most payload bytes one segment to `remote` may carry through GSO, or 0 (MSS-sized only). */
  gsoPayloadFor?(remote: Ipv4Addr): number;
  /** A passive open completed its handshake: give it to the application. */
  accepted(conn: TcpConnection): void;
  /** The connection reached CLOSED: forget it. */
  detach(conn: TcpConnection): void;
  /** RFC 5961 §7: may another challenge ACK go out now? */
  allowChallengeAck(): boolean;
  /** The layer's MSS for a path (MTU − 40). */
  mssFor(remote: Ipv4Addr): number;
}

/** TCP_INFO, the useful subset. */
export interface TcpInfo {
  state: TcpState;
  iss: number;
  irs: number;
  srttMs: number | null;
  rttvarMs: number;
  rtoMs: number;
  cwnd: number;
  ssthresh: number;
  sendMss: number;
  sndWnd: number;
  rcvWnd: number;
  sndWscale: number;
  rcvWscale: number;
  timestamps: boolean;
  sack: boolean;
  inRecovery: boolean;
  unacked: number;
  retransmits: number;
  rtoTimeouts: number;
  fastRetransmits: number;
  segmentsIn: number;
  segmentsOut: number;
  bytesAcked: number;
  bytesReceived: number;
}

export class TcpConnection {
  state: TcpState = 'CLOSED';
  readonly passive: boolean;

  // --- application callbacks (raw API) ---
  /** Active open completed (ESTABLISHED). */
  onConnected: (() => void) | null = null;
  /** In-order data; the window reopens only when the application calls `recved`. */
  onData: ((data: Uint8Array) => void) | null = null;
  /** `n` bytes were acknowledged and left the send buffer: there is room to write. */
  onSent: ((n: number) => void) | null = null;
  /** The peer half-closed (its FIN arrived, all data before it delivered). */
  onEnd: (() => void) | null = null;
  /** The connection failed: reset by the peer, refused, or timed out. Followed by onClose. */
  onError: ((code: TcpErrorCode) => void) | null = null;
  /** The connection is finished from the application's view (CLOSED or TIME-WAIT). Once. */
  onClose: (() => void) | null = null;
  /** Every state transition (RFC 9293 Figure 5), for tracing and tests. */
  onStateChange: ((from: TcpState, to: TcpState) => void) | null = null;

  /** Disable Nagle (TCP_NODELAY). */
  noDelay: boolean;
  error: TcpErrorCode | null = null;

  // --- send sequence variables (RFC 9293 §3.3.1) ---
  private iss = 0;
  private sndUna = 0;
  /** Next sequence number to send; moves back to SND.UNA on a timeout (go-back-N). */
  private sndNxt = 0;
  /** Highest sequence number sent (BSD snd_max). */
  private sndMax = 0;
  private sndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private maxSndWnd = 0;
  /** Shift applied to windows the peer sends (RFC 7323 Snd.Wind.Shift). */
  private sndWscale = 0;
  /** Shift applied to windows we send (RFC 7323 Rcv.Wind.Shift). */
  private rcvWscale = 0;
  private readonly sendBuf: SendBuffer;
  /** Sequence number of the send buffer's first byte. */
  private bufSeq = 0;
  private finQueued = false;
  private finSent = false;

  // --- receive sequence variables ---
  private irs = 0;
  private rcvNxt = 0;
  /** Right edge of the window last advertised (never moves left: RFC 9293 §3.8.6.2.2). */
  private rcvAdvRight = 0;
  private readonly rcvBufSize: number;
  /** Bytes delivered to the application and not yet released with `recved`. */
  private unconsumed = 0;
  private readonly ooo: ReassemblyQueue;
  private oooFinSeq: number | null = null;
  private finReceived = false;
  /** The application closed fully: data arriving now is answered with RST (RFC 1122 §4.2.2.13). */
  private rxClosed = false;

  // --- options ---
  private ourMss = TCP_DEFAULT_MSS;
  /** Largest segment (data + options) the peer accepts (RFC 9293 SendMSS). */
  private sendMss = TCP_DEFAULT_MSS;
  private offerWscale: boolean;
  private offerTs: boolean;
  private offerSack: boolean;
  private tsEnabled = false;
  private sackEnabled = false;
  private tsRecent = 0;
  private tsRecentAge = 0;
  private tsRecentValid = false;
  private readonly tsOffset: number;
  private lastAckSent = 0;

  // --- timing ---
  private readonly rtoEst: RtoEstimator;
  private rttSeq: number | null = null;
  private rttStart = 0;
  private retries = 0;
  private synRetransmitted = false;
  private persistShift = 0;
  private readonly rtxTimer: TcpTimer;
  private readonly persistTimer: TcpTimer;
  private readonly delackTimer: TcpTimer;
  private readonly keepTimer: TcpTimer;
  /** TIME-WAIT and FIN-WAIT-2 lifetime. */
  private readonly lifeTimer: TcpTimer;
  private keepProbesSent = 0;
  private lastSendTime = 0;
  private keepAlive: boolean;
  private readonly keepIdleMs: number;
  private readonly keepIntervalMs: number;
  private readonly keepCount: number;

  // --- congestion control and loss recovery ---
  private readonly cc: CongestionControl;
  private inRecovery = false;
  /** RFC 6582 "recover". */
  private recover = 0;
  /** RFC 6675 HighRxt: retransmitted holes end here. */
  private highRxt = 0;
  private dupAcks = 0;
  private readonly scoreboard = new SackScoreboard();

  // --- ACK policy ---
  private ackNow = false;
  private bytesSinceAck = 0;
  private outputScheduled = false;
  /** The SWS override timer fired: send a short segment the window allows. */
  private swsOverride = false;
  private closeNotified = false;

  // --- per-connection counters ---
  private readonly counters = { retransmits: 0, rtoTimeouts: 0, fastRetransmits: 0, segmentsIn: 0, segmentsOut: 0, bytesAcked: 0, bytesReceived: 0 };

  /** The listener (or accept-any hook) that owns this half-open passive connection. */
  owner: unknown = null;

  constructor(
    private readonly host: ConnectionHost,
    private readonly config: Readonly<TcpConfig>,
    readonly localAddr: Ipv4Addr,
    readonly localPort: number,
    readonly remoteAddr: Ipv4Addr,
    readonly remotePort: number,
    passive: boolean,
    iss: number,
  ) {
    this.passive = passive;
    const clock = host.clock;
    this.sendBuf = new SendBuffer(config.sendBufferSize);
    this.rcvBufSize = config.recvBufferSize;
    this.ooo = new ReassemblyQueue(config.maxOutOfOrderSegments);
    this.noDelay = config.noDelay;
    this.offerWscale = config.windowScaling;
    this.offerTs = config.timestamps;
    this.offerSack = config.sack;
    this.keepAlive = config.keepAlive;
    this.keepIdleMs = config.keepIdleMs;
    this.keepIntervalMs = config.keepIntervalMs;
    this.keepCount = config.keepCount;
    this.rtoEst = new RtoEstimator(config.minRtoMs, config.maxRtoMs, config.initialRtoMs);
    this.rtxTimer = new TcpTimer(clock, () => this.onRtoExpired());
    this.persistTimer = new TcpTimer(clock, () => this.onPersistExpired());
    this.delackTimer = new TcpTimer(clock, () => this.onDelayedAck());
    this.keepTimer = new TcpTimer(clock, () => this.onKeepalive());
    this.lifeTimer = new TcpTimer(clock, () => this.onLifeExpired());
    this.tsOffset = iss; // RFC 7323 §5.4: a per-connection random offset for TSval
    this.iss = iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.bufSeq = seqAdd(this.iss, 1);
    this.recover = this.iss;
    // Every sequence variable starts inside this connection's sequence space: a stray 0 compares
    // as before or after real values depending on the ISN (seq.ts is modular).
    this.highRxt = this.iss;
    this.sndWl2 = this.iss;
    this.ourMss = host.mssFor(remoteAddr);
    this.cc = new CongestionControl(TCP_DEFAULT_MSS);
    // RFC 7323 §2.3: the smallest shift that lets the receive buffer be advertised.
    let shift = 0;
    while (shift < TCP_MAX_WINSHIFT && this.rcvBufSize >> shift > 0xffff) shift++;
    this.rcvWscale = shift;
  }

  toString(): string {
    return `${formatIpv4(this.localAddr)}:${this.localPort} ↔ ${formatIpv4(this.remoteAddr)}:${this.remotePort} ${this.state}`;
  }

  // ===================================================================== application interface

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

  private canWrite(): boolean {
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

  // ===================================================================== opening

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

  /** Option negotiation from the peer's SYN (RFC 9293 §3.7.1, RFC 7323 §2.2/§3.2, RFC 2018 §2). */
  private negotiate(o: TcpOptions): void {
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

  /** Largest payload in a segment without SACK blocks (RFC 9293 §3.7.1 Eff.snd.MSS). */
  private effectiveMss(): number {
    return this.sendMss - (this.tsEnabled ? TS_OPTION_BYTES : 0);
  }

  private isClosed(): boolean {
    return this.state === 'CLOSED';
  }

  private isSynchronized(): boolean {
    return this.state !== 'CLOSED' && this.state !== 'LISTEN' && this.state !== 'SYN_SENT';
  }

  // ===================================================================== input

  /** A segment for this connection (already checksummed and parsed by the layer). */
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
  private inputSynSent(seg: TcpRepr): void {
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

  /**
   * Our SYN (or SYN-ACK) had to be retransmitted: RFC 6298 §5.7 (RTO of 3 s when no RTT sample
   * exists) and RFC 5681 §3.1 ("the initial window used by a sender after a correctly
   * transmitted SYN MUST be one segment").
   */
  private synWasLost(): void {
    this.rtoEst.synTimedOut();
    this.cc.cwnd = this.cc.mss;
  }

  private sampleHandshakeRtt(seg: TcpRepr): void {
    if (this.tsEnabled && seg.options.timestamp && seg.options.timestamp.tsEcr !== 0) {
      this.rtoEst.sample(this.tsDiff(seg.options.timestamp.tsEcr));
    } else if (!this.synRetransmitted && this.rttSeq !== null) {
      // Karn: only a SYN sent once gives a sample.
      this.rtoEst.sample(this.host.clock.now() - this.rttStart);
    }
    this.rttSeq = null;
  }

  /** RFC 9293 §3.10.7.4: every state after SYN-SENT. */
  private inputSynchronized(seg: TcpRepr): void {
    const f = seg.flags;
    const stats = this.host.stats;
    let seq = seg.seq;
    let payload = seg.payload;
    let fin = (f & TH_FIN) !== 0;
    let syn = (f & TH_SYN) !== 0;
    const ts = this.tsEnabled ? seg.options.timestamp : undefined;

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
      payload = payload.subarray(cut);
      seq = seqAdd(seq, cut);
      this.ackNow = true; // a duplicate: tell the sender where we are at once
    }
    const room = seqDiff(wndEnd, seq);
    if (payload.length > room) {
      payload = payload.subarray(0, Math.max(0, room));
      fin = false;
    }

    // RFC 7323 §4.3: TS.Recent follows the segment that covers Last.ACK.sent.
    if (ts && seqGe(ts.tsVal, this.tsRecent) && seqLe(seg.seq, this.lastAckSent)) this.updateTsRecent(ts.tsVal);

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

  /** ACK processing (RFC 9293 §3.10.7.4 fifth check). Returns false when the segment is dropped. */
  private processAck(seg: TcpRepr): boolean {
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
    let sackChanged = false;
    if (this.sackEnabled && seg.options.sackBlocks && seqGt(this.sndMax, this.sndUna)) {
      sackChanged = this.scoreboard.update(seg.options.sackBlocks, this.sndUna, this.sndMax);
    }
    const acked = seqDiff(ack, this.sndUna);
    let finAcked = false;
    if (acked > 0) {
      this.ackAdvanced(seg, ack, acked);
      finAcked = this.finSent && seqGt(ack, this.finSeq());
    } else if (
      acked === 0 &&
      seqGt(this.sndMax, this.sndUna) &&
      seg.payload.length === 0 &&
      !(seg.flags & (TH_SYN | TH_FIN)) &&
      (wnd === this.sndWnd || sackChanged)
    ) {
      // RFC 5681 §2 DUPLICATE ACKNOWLEDGMENT (RFC 6675 §2: or one carrying new SACK information).
      this.host.stats.dupAcksIn++;
      this.dupAcks++;
      this.onDupAck();
    }

    // Window update (RFC 9293: SND.WL1 < SEG.SEQ, or SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK).
    if (seqLt(this.sndWl1, seg.seq) || (this.sndWl1 === seg.seq && seqLe(this.sndWl2, ack))) {
      this.sndWnd = wnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = ack;
      if (wnd > this.maxSndWnd) this.maxSndWnd = wnd;
      if (wnd > 0 && this.persistTimer.armed) {
        this.persistTimer.cancel();
        this.persistShift = 0;
      }
    }

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

  private finSeq(): number {
    return seqAdd(this.bufSeq, this.sendBuf.length);
  }

  /** New data acknowledged: free it, time it, open cwnd, rearm the timer. */
  private ackAdvanced(seg: TcpRepr, ack: number, acked: number): void {
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
    this.scoreboard.ackTo(ack);
    this.retries = 0;

    if (this.inRecovery) {
      if (seqGe(ack, this.recover)) {
        this.inRecovery = false;
        this.cc.exitRecovery(seqDiff(this.sndMax, this.sndUna));
      } else if (!this.sackEnabled) {
        // RFC 6582 §3.2 step 5, partial ACK: retransmit the first unacknowledged segment and
        // deflate cwnd by the amount acknowledged, adding back one SMSS.
        this.retransmitFirst();
        this.cc.cwnd = Math.max(this.cc.mss, this.cc.cwnd - acked + (acked >= this.cc.mss ? this.cc.mss : 0));
      }
    } else {
      // RFC 5681 §3.1 / RFC 7661 spirit: grow cwnd only when the window was in use.
      if (flightBefore + this.cc.mss >= this.cc.cwnd || this.cc.inSlowStart) this.cc.onAck(acked);
    }
    this.dupAcks = 0;

    // RFC 6298 §5.2/§5.3.
    if (this.sndUna === this.sndMax) this.rtxTimer.cancel();
    else this.rtxTimer.set(this.rtoEst.rto);

    if (dataAcked > 0 && this.onSent) {
      this.onSent(dataAcked);
    }
  }

  private onDupAck(): void {
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
  private enterFastRecovery(): void {
    this.host.stats.fastRetransmits++;
    this.counters.fastRetransmits++;
    this.inRecovery = true;
    this.recover = this.sndMax;
    this.cc.enterRecovery(seqDiff(this.sndMax, this.sndUna), this.sackEnabled);
    this.highRxt = this.sndUna;
    this.retransmitFirst();
  }

  /** Retransmit one segment from SND.UNA (or the FIN alone). */
  private retransmitFirst(): void {
    const avail = seqDiff(this.finSeq(), this.sndUna);
    const len = Math.min(this.maxPayload(), Math.max(0, avail));
    const fin = this.finSent && len === avail;
    if (len === 0 && !fin) return;
    this.sendData(this.sndUna, len, fin, true);
    const end = seqAdd(this.sndUna, len + (fin ? 1 : 0));
    if (seqLt(this.highRxt, end)) this.highRxt = end;
  }

  private receiveData(seq: number, data: Uint8Array): void {
    if (this.rxClosed) {
      // RFC 1122 §4.2.2.13: data after a full close is answered with RST.
      this.sendRst(this.sndMax);
      this.finish(null);
      return;
    }
    if (seq === this.rcvNxt) {
      this.deliver(data);
      if (this.isClosed()) return;
      if (!this.ooo.isEmpty) {
        for (const chunk of this.ooo.takeReady(this.rcvNxt)) {
          this.deliver(chunk);
          if (this.isClosed()) return;
        }
        this.ackNow = true; // RFC 5681 §4.2: ACK at once when a gap fills
      } else {
        // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: ACK at least every second full-sized segment.
        this.bytesSinceAck += data.length;
        if (this.bytesSinceAck >= 2 * (this.ourMss - (this.tsEnabled ? TS_OPTION_BYTES : 0))) this.ackNow = true;
        else this.delackTimer.ensure(this.config.delayedAckMs);
      }
      if (this.oooFinSeq !== null && this.oooFinSeq === this.rcvNxt) this.receiveFin(this.rcvNxt);
    } else {
      this.host.stats.outOfOrderSegments++;
      if (!this.ooo.insert(seq, data, this.rcvNxt, this.rcvAdvRight)) this.host.stats.outOfOrderDrops++;
      this.ackNow = true; // RFC 5681 §4.2: out-of-order data is acknowledged at once (with SACK)
    }
  }

  private deliver(data: Uint8Array): void {
    this.rcvNxt = seqAdd(this.rcvNxt, data.length);
    this.unconsumed += data.length;
    this.counters.bytesReceived += data.length;
    this.onData?.(data);
  }

  /** The peer's FIN at sequence `at` (RFC 9293 §3.10.7.4 eighth check). */
  private receiveFin(at: number): void {
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

  private resetByPeer(): void {
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

  /** RFC 5961 §3.2/§4.2/§5.2: answer a suspicious segment with an ACK, rate limited (§7). */
  private challengeAck(): void {
    if (!this.host.allowChallengeAck()) return;
    this.host.stats.challengeAcks++;
    this.sendAck();
  }

  private updateTsRecent(tsVal: number): void {
    this.tsRecent = tsVal;
    this.tsRecentAge = this.host.clock.now();
    this.tsRecentValid = true;
  }

  // ===================================================================== output

  private scheduleOutput(): void {
    if (this.outputScheduled) return;
    this.outputScheduled = true;
    this.host.clock.setTimer(0, () => {
      this.outputScheduled = false;
      this.output(false);
    });
  }

  /** Largest payload for a segment carrying our usual options now (SACK blocks take room). */
  private maxPayload(): number {
    return this.effectiveMss() - this.sackOptionBytes();
  }

  private sackOptionBytes(): number {
    if (!this.sackEnabled || this.ooo.isEmpty) return 0;
    const n = Math.min(this.tsEnabled ? 3 : 4, this.ooo.sackBlocks(4).length);
    return 4 + 8 * n;
  }

  private canSendData(): boolean {
    const s = this.state;
    return s === 'ESTABLISHED' || s === 'CLOSE_WAIT' || s === 'FIN_WAIT_1' || s === 'CLOSING' || s === 'LAST_ACK';
  }

  /**
   * Send what the windows, Nagle and silly-window avoidance allow; then a pure ACK if one is due.
   * `force` sends one segment regardless of the windows (after a retransmission timeout).
   */
  private output(force: boolean): void {
    if (this.isClosed()) return;
    let sent = false;
    if (this.canSendData()) {
      if (this.inRecovery && this.sackEnabled) sent = this.outputSackRecovery();
      for (;;) {
        const r = this.outputOne(force);
        if (!r) break;
        sent = true;
        force = false;
      }
      // Persist (RFC 9293 §3.8.6.1 zero window; §3.8.6.2.1 the SWS override timeout): data waits
      // and nothing is in flight whose ACK would restart sending.
      const pending = seqDiff(this.finSeq(), this.sndNxt) > 0 || (this.finQueued && !this.finSent);
      if (!sent && pending && this.sndMax === this.sndUna && !this.rtxTimer.armed) {
        this.persistTimer.ensure(this.persistInterval());
      }
    }
    if (!sent && this.ackNow && this.state !== 'SYN_SENT') this.sendAck();
  }

  private persistInterval(): number {
    const base = Math.max(PERSIST_MIN_MS, this.rtoEst.rto);
    return Math.min(PERSIST_MAX_MS, base * 2 ** this.persistShift);
  }

  /** RFC 6675 §5 step (C): fill holes while the pipe leaves room in cwnd. */
  private outputSackRecovery(): boolean {
    let sent = false;
    for (;;) {
      const hs = this.scoreboard.highSacked;
      if (hs === null) break;
      const pipe = seqDiff(this.sndMax, hs) + this.scoreboard.holeBytes(this.sndUna, seqMin(seqMax(this.highRxt, this.sndUna), hs));
      if (this.cc.cwnd - pipe < this.cc.mss) break;
      const from = seqMax(this.highRxt, this.sndUna);
      const hole = this.scoreboard.nextHole(from);
      if (!hole || !seqLt(hole.start, hs)) break;
      const len = Math.min(this.maxPayload(), seqDiff(hole.end, hole.start));
      if (len <= 0) break;
      this.sendData(hole.start, len, false, true);
      this.highRxt = seqAdd(hole.start, len);
      sent = true;
    }
    return sent;
  }

  /** Send the next segment from SND.NXT if allowed; returns whether one went out. */
  private outputOne(force: boolean): boolean {
    const dataEnd = this.finSeq();
    const avail = seqDiff(dataEnd, this.sndNxt); // may be −1 once the FIN is sent
    const retransmitting = seqLt(this.sndNxt, this.sndMax);
    let usable: number;
    if (this.inRecovery && this.sackEnabled) {
      const hs = this.scoreboard.highSacked;
      const pipe = hs === null ? seqDiff(this.sndMax, this.sndUna) : seqDiff(this.sndMax, hs) + this.scoreboard.holeBytes(this.sndUna, seqMin(seqMax(this.highRxt, this.sndUna), hs));
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
    const multi = !retransmitting && !this.inRecovery && !force && this.sendMss === this.ourMss && avail > maxPayload && usable > maxPayload;
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

  private advanceSent(n: number, retransmitting: boolean): void {
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
  private sendData(seq: number, len: number, fin: boolean, retransmission: boolean): void {
    if (retransmission) {
      this.host.stats.retransmits++;
      this.counters.retransmits++;
      this.rttSeq = null; // Karn's algorithm
    }
    const from = seqDiff(seq, this.bufSeq);
    const sendBuf = this.sendBuf;
    const fill: PayloadFill | undefined = len > 0 ? { length: len, copyTo: (dest, offset) => sendBuf.copyOut(from, len, dest, offset) } : undefined;
    let flags = TH_ACK;
    if (fin) {
      flags |= TH_FIN;
      this.finSent = true;
    }
    if (len > 0 && seqAdd(seq, len) === this.finSeq()) flags |= TH_PSH;
    // RFC 5681 §4.1: restart from the restart window after an idle period of more than an RTO.
    const now = this.host.clock.now();
    if (this.sndMax === this.sndUna && now - this.lastSendTime > this.rtoEst.rto && this.lastSendTime > 0) this.cc.restartAfterIdle();
    this.emit(flags, seq, EMPTY_PAYLOAD, null, fill);
  }

  /** SYN (active open) or SYN,ACK (passive or simultaneous open) with our options. */
  private sendSyn(withAck: boolean): void {
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

  private sendAck(): void {
    // SND.MAX, not a rewound SND.NXT: the peer may already hold what we are resending, and an ACK
    // below its RCV.NXT would be unacceptable to it.
    this.emit(TH_ACK, this.sndMax, new Uint8Array(0), null);
  }

  /** A segment that elicits an ACK: SEG.SEQ = SND.UNA − 1, no data (RFC 9293 §3.8.4). */
  private sendProbe(): void {
    this.emit(TH_ACK, seqAdd(this.sndUna, -1), new Uint8Array(0), null);
  }

  private sendRst(seq: number): void {
    this.host.stats.resetsOut++;
    this.emit(TH_RST | TH_ACK, seq, new Uint8Array(0), null);
  }

  /** RST for an unacceptable segment (RFC 9293 §3.10.7.3 / SYN-RECEIVED): <SEQ=SEG.ACK><CTL=RST>. */
  private sendRstFor(seg: TcpRepr): void {
    this.host.stats.resetsOut++;
    this.host.transmit(this, {
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

  private emit(flags: number, seq: number, payload: Uint8Array, synOptions: TcpOptions | null, fill?: PayloadFill): void {
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
      if (this.sackEnabled && !this.ooo.isEmpty && flags & TH_ACK) options.sackBlocks = this.ooo.sackBlocks(this.tsEnabled ? 3 : 4);
      window = this.windowField();
    }
    if (flags & TH_ACK) {
      this.lastAckSent = this.rcvNxt;
      this.ackNow = false;
      this.bytesSinceAck = 0;
      this.delackTimer.cancel();
    }
    this.counters.segmentsOut++;
    this.lastSendTime = this.host.clock.now();
    this.host.transmit(this, {
      srcPort: this.localPort,
      dstPort: this.remotePort,
      seq,
      ack: flags & TH_ACK ? this.rcvNxt : 0,
      flags,
      window,
      urgent: 0,
      options,
      payload,
    }, fill);
  }

  /** Receive buffer space not held by data the application has not released. */
  private receiveSpace(): number {
    return Math.max(0, this.rcvBufSize - this.unconsumed);
  }

  /**
   * The window field to send (RFC 9293 §3.8.6.2.2 receiver SWS avoidance; RFC 7323 §2.3 scaling):
   * the right edge advances only by at least min(RCV.BUFF/2, Eff.snd.MSS) and never retreats;
   * the scaled value is rounded up so that it never shrinks the edge already offered.
   */
  private windowField(): number {
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

  /** Our timestamp clock: milliseconds plus a per-connection offset (RFC 7323 §5.4). */
  private tsNow(): number {
    return (Math.floor(this.host.clock.now()) + this.tsOffset) >>> 0;
  }

  private tsDiff(tsEcr: number): number {
    const d = (this.tsNow() - tsEcr) >>> 0;
    return d < 0x80000000 ? d : 0;
  }

  // ===================================================================== timers

  /** RFC 6298 §5.4–5.7. */
  private onRtoExpired(): void {
    if (this.state === 'CLOSED' || this.state === 'TIME_WAIT') return;
    if (this.sndMax === this.sndUna) return;
    this.retries++;
    this.host.stats.rtoTimeouts++;
    this.counters.rtoTimeouts++;
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
    if (this.retries === 1) this.cc.onTimeout(flight);
    else this.cc.cwnd = this.cc.mss;
    this.inRecovery = false;
    this.recover = this.sndMax; // RFC 6582 §3.2 step 7
    this.dupAcks = 0;
    this.scoreboard.clear(); // RFC 2018 §8
    this.sndNxt = this.sndUna; // go back N
    this.highRxt = this.sndUna;
    this.rtxTimer.set(this.rtoEst.rto);
    this.output(true);
  }

  /** RFC 9293 §3.8.6.1: probe a zero window, backing off exponentially. */
  private onPersistExpired(): void {
    if (!this.canSendData()) return;
    if (this.sndWnd > 0) {
      this.swsOverride = true;
      this.output(false);
      this.swsOverride = false;
      return;
    }
    this.host.stats.zeroWindowProbes++;
    this.sendProbe();
    if (this.persistInterval() < PERSIST_MAX_MS) this.persistShift++;
    this.persistTimer.set(this.persistInterval());
  }

  private onDelayedAck(): void {
    if (this.isClosed()) return;
    this.host.stats.delayedAcks++;
    this.sendAck();
  }

  /** RFC 9293 §3.8.4 keepalive. */
  private onKeepalive(): void {
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

  private onLifeExpired(): void {
    // TIME-WAIT's 2·MSL ran out, or FIN-WAIT-2 after a full close waited too long.
    if (this.state === 'TIME_WAIT' || this.state === 'FIN_WAIT_2') this.finish(null);
  }

  // ===================================================================== state changes

  private setState(s: TcpState): void {
    const from = this.state;
    if (from === s) return;
    this.state = s;
    this.onStateChange?.(from, s);
  }

  private becameEstablished(): void {
    if (this.keepAlive) this.keepTimer.set(this.keepIdleMs);
    if (this.passive) this.host.accepted(this);
    else this.onConnected?.();
    if (this.finQueued && this.state === 'ESTABLISHED') this.setState('FIN_WAIT_1');
  }

  private enterTimeWait(): void {
    this.setState('TIME_WAIT');
    this.rtxTimer.cancel();
    this.persistTimer.cancel();
    this.keepTimer.cancel();
    this.delackTimer.cancel();
    this.lifeTimer.set(2 * this.config.mslMs);
    this.notifyClose();
  }

  /** Whether a new SYN may end this TIME-WAIT early (RFC 9293 §3.10.7.4 note / RFC 6191). */
  acceptsNewSyn(seg: TcpRepr): boolean {
    if (this.state !== 'TIME_WAIT') return false;
    const ts = seg.options.timestamp;
    if (this.tsEnabled && ts && this.tsRecentValid) return seqGt(ts.tsVal, this.tsRecent);
    return seqGt(seg.seq, this.rcvNxt);
  }

  private fail(code: TcpErrorCode): void {
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
    this.keepTimer.dispose();
    this.lifeTimer.dispose();
    this.ooo.clear();
    this.host.detach(this);
    if (wasHalfOpenPassive) return;
    if (code) this.onError?.(code);
    this.notifyClose();
  }

  private notifyClose(): void {
    if (this.closeNotified) return;
    this.closeNotified = true;
    this.onClose?.();
  }

  /** ICMP said the peer cannot be reached (RFC 1122 §4.2.3.9: hard errors abort an opening). */
  icmpUnreachable(hard: boolean): void {
    if (hard && this.state === 'SYN_SENT') this.fail('ECONNREFUSED');
  }
}
