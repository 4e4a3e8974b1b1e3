/**
 * The transmission control block (RFC 9293 §3.3.1): send and receive sequence variables, the
 * negotiated options, RTT and retransmission state, congestion control and the SACK scoreboard,
 * the connection's timers, and the state transitions every layer above uses. The bottom of the
 * TcpConnection class stack (see connection.ts).
 */
import type { DebugLog } from '../debug.js';
import { TCP_MAX_WINSHIFT, type SackBlock, type TcpRepr } from '../wire/tcp.js';
import { seqAdd } from './seq.js';
import type { Clock } from '../clock.js';
import type { Ipv4Addr } from '../addr.js';
import { formatIpv4 } from '../addr.js';
import type { TcpConnection } from './connection.js';
import type { TcpConfig } from './config.js';
import { NewReno, type CongestionControl } from './congestion.js';
import { Cubic } from './cubic.js';
import { ReassemblyQueue } from './reassembly.js';
import { RtoEstimator, RTO_MAX_MS } from './rto.js';
import { Rack } from './rack.js';
import { SackScoreboard } from './sack.js';
import { SendBuffer } from './send-buffer.js';
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
/**
 * Segments ACKed at once in quick-ACK mode (Linux's TCP_MAX_QUICKACKS): after the connection starts
 * and after the receive side was idle for an RTO, the sender is in slow start (or restarting from
 * the restart window) and every ACK opens its window.
 */
export const QUICKACK_SEGMENTS = 16;
/** RFC 7323 §5.5: TS.Recent is invalid after 24 days of idleness. */
export const PAWS_IDLE_LIMIT_MS = 24 * 24 * 3600_000;
/** Bytes the timestamp option takes, with its NOP padding (RFC 7323 Appendix A layout). */
export const TS_OPTION_BYTES = 12;
/** Persist-timer bounds (BSD TCPTV_PERSMIN / TCPTV_PERSMAX). */
export const PERSIST_MIN_MS = 200;
export const PERSIST_MAX_MS = RTO_MAX_MS;

/** What a connection needs from the layer that owns it. */
/** A segment's payload still in the send buffer: `length` bytes that `copyTo` writes into a frame. */
/** Shared by segments whose payload comes through a PayloadFill (never written to). */
export const EMPTY_PAYLOAD = new Uint8Array(0);

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
  /** `--debug tcp` (the layer's); absent in hosts that do not log. */
  readonly debug?: DebugLog;
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

export abstract class TcpControlBlock {
  state: TcpState = 'CLOSED';
  readonly passive: boolean;

  // --- application callbacks (raw API) ---
  /** Active open completed (ESTABLISHED). */
  onConnected: (() => void) | null = null;
  /**
   * In-order data; the window reopens only when the application calls `recved`. The bytes are
   * valid for the call only (they may be a driver's lent receive buffer, RxInfo.lent): an
   * application copies what it keeps, as every one here does.
   */
  onData: ((data: Uint8Array) => void) | null = null;
  /** `n` bytes were acknowledged and left the send buffer: there is room to write. */
  onSent: ((n: number) => void) | null = null;
  /** The peer half-closed (its FIN arrived, all data before it delivered). */
  onEnd: (() => void) | null = null;
  /** The connection failed: reset by the peer, refused, or timed out. Followed by onClose. */
  onError: ((code: TcpErrorCode) => void) | null = null;
  /** The connection is finished from the application's view (CLOSED or TIME-WAIT). Once. */
  onClose: (() => void) | null = null;
  /**
   * The peer marked urgent data (RFC 9293 §3.8.5 MUST-31): it ends before stream offset
   * `endOffset` (bytes since the connection began, counting what is delivered through onData).
   * Called when a pointer first arrives and whenever it advances; the data itself stays in line.
   */
  onUrgent: ((endOffset: number) => void) | null = null;
  /** Every state transition (RFC 9293 Figure 5), for tracing and tests. */
  onStateChange: ((from: TcpState, to: TcpState) => void) | null = null;

  /** Disable Nagle (TCP_NODELAY). */
  noDelay: boolean;
  error: TcpErrorCode | null = null;

  // --- send sequence variables (RFC 9293 §3.3.1) ---
  protected iss = 0;
  protected sndUna = 0;
  /** Next sequence number to send; moves back to SND.UNA on a timeout (go-back-N). */
  protected sndNxt = 0;
  /** Highest sequence number sent (BSD snd_max). */
  protected sndMax = 0;
  protected sndWnd = 0;
  protected sndWl1 = 0;
  protected sndWl2 = 0;
  protected maxSndWnd = 0;
  /** Shift applied to windows the peer sends (RFC 7323 Snd.Wind.Shift). */
  protected sndWscale = 0;
  /** Shift applied to windows we send (RFC 7323 Rcv.Wind.Shift). */
  protected rcvWscale = 0;
  protected readonly sendBuf: SendBuffer;
  /** Sequence number of the send buffer's first byte. */
  protected bufSeq = 0;
  protected finQueued = false;
  /** SND.UP: the octet following the urgent data we sent, while it is unacknowledged. */
  protected sndUp: number | null = null;
  /** RCV.UP: the octet following the urgent data the peer marked, once it did. */
  protected rcvUp: number | null = null;
  protected finSent = false;

  // --- receive sequence variables ---
  protected irs = 0;
  protected rcvNxt = 0;
  /** Right edge of the window last advertised (never moves left: RFC 9293 §3.8.6.2.2). */
  protected rcvAdvRight = 0;
  protected readonly rcvBufSize: number;
  /** Bytes delivered to the application and not yet released with `recved`. */
  protected unconsumed = 0;
  protected readonly ooo: ReassemblyQueue;
  protected oooFinSeq: number | null = null;
  protected finReceived = false;
  /** The application closed fully: data arriving now is answered with RST (RFC 1122 §4.2.2.13). */
  protected rxClosed = false;

  // --- options ---
  protected ourMss = TCP_DEFAULT_MSS;
  /** Largest segment (data + options) the peer accepts (RFC 9293 SendMSS). */
  protected sendMss = TCP_DEFAULT_MSS;
  protected offerWscale: boolean;
  protected offerTs: boolean;
  protected offerSack: boolean;
  protected tsEnabled = false;
  protected sackEnabled = false;
  protected tsRecent = 0;
  protected tsRecentAge = 0;
  protected tsRecentValid = false;
  protected readonly tsOffset: number;
  protected lastAckSent = 0;

  // --- timing ---
  protected readonly rtoEst: RtoEstimator;
  protected rttSeq: number | null = null;
  protected rttStart = 0;
  protected retries = 0;
  protected synRetransmitted = false;
  protected persistShift = 0;
  /** When the zero-window persist began (for persistTimeoutMs), or null. */
  protected persistSince: number | null = null;
  protected readonly rtxTimer: TcpTimer;
  protected readonly persistTimer: TcpTimer;
  protected readonly delackTimer: TcpTimer;
  /** RFC 8985 §7 tail loss probe timeout (PTO). */
  protected readonly tlpTimer: TcpTimer;
  /** RFC 8985 §6.2 step 5 reordering timer: when a segment's RACK time will be up. */
  protected readonly reoTimer: TcpTimer;
  protected readonly keepTimer: TcpTimer;
  /** Black-hole detection lowered the MSS: when to try the larger one again (mtuProbeIntervalMs). */
  protected readonly mtuProbeTimer: TcpTimer;
  /** TIME-WAIT and FIN-WAIT-2 lifetime. */
  protected readonly lifeTimer: TcpTimer;
  protected keepProbesSent = 0;
  protected lastSendTime = 0;
  protected keepAlive: boolean;
  protected readonly keepIdleMs: number;
  protected readonly keepIntervalMs: number;
  protected readonly keepCount: number;

  // --- congestion control and loss recovery ---
  protected readonly cc: CongestionControl;
  protected inRecovery = false;
  /** RFC 6582 "recover". */
  protected recover = 0;
  /** RFC 6675 HighRxt: retransmitted holes end here. */
  protected highRxt = 0;
  protected dupAcks = 0;
  protected readonly scoreboard = new SackScoreboard();
  protected readonly rack: Rack;
  /** After an RTO until SND.UNA passes `recover` (Linux's Loss state): lost segments go first. */
  protected lossRecovery = false;
  /** RFC 8985 §7: SND.NXT when the outstanding loss probe went, or null; and whether it resent. */
  protected tlpEnd: number | null = null;
  protected tlpRetrans = false;
  /** RFC 6937 PRR state for the current recovery. */
  protected prrDelivered = 0;
  protected prrOut = 0;
  protected recoverFs = 0;
  /** RFC 6675 RescueRxt: one rescue retransmission per recovery. */
  protected rescueRxt: number | null = null;
  /**
   * Undo state of the last loss episode (RFC 2883 §5 / Linux's undo_marker): cwnd and ssthresh
   * before it, and the ranges retransmitted in it not yet reported as received twice. When D-SACK
   * has reported every one, nothing was lost and the reduction is undone.
   */
  protected undo: { cwnd: number; ssthresh: number; ranges: { start: number; end: number }[] } | null = null;

  // --- probing the MSS back up after black-hole detection (RFC 4821's idea, Linux tcp_mtu_probe) ---
  /** SendMSS before black-hole detection first lowered it: what a probe tries; null when not lowered. */
  protected mtuProbeMss: number | null = null;
  /** The probe interval ran out: output sends the probe as soon as data and windows allow. */
  protected mtuProbeDue = false;
  /** The sequence range of the probe in flight, or null. */
  protected mtuProbe: { start: number; end: number } | null = null;

  // --- ACK policy ---
  protected ackNow = false;
  /** In-order bytes received since our last ACK. */
  protected bytesSinceAck = 0;
  /**
   * Largest segment payload the peer has sent, capped at what our MSS allows (Linux's rcv_mss):
   * "more than one full-sized segment pending" is measured against it.
   */
  protected rcvMss = TCP_DEFAULT_MSS;
  /** The delayed-ACK timer is set to fire at the end of the current burst (see ackPolicy). */
  protected ackAtBurstEnd = false;
  /** Segments still to be ACKed at once (Linux's quick-ACK mode, after the start and after idle). */
  protected quickAcks = 0;
  /** When in-order data last arrived, or null before any. */
  protected lastDataReceived: number | null = null;
  /** RFC 2883: the duplicate range the next ACK reports as its first SACK block. */
  protected dsack: SackBlock | null = null;
  protected outputScheduled = false;
  /** The SWS override timer fired: send a short segment the window allows. */
  protected swsOverride = false;
  protected closeNotified = false;

  // --- per-connection counters ---
  protected readonly counters = { retransmits: 0, rtoTimeouts: 0, fastRetransmits: 0, segmentsIn: 0, segmentsOut: 0, bytesAcked: 0, bytesReceived: 0 };

  /** The listener (or accept-any hook) that owns this half-open passive connection. */
  owner: unknown = null;

  constructor(
    protected readonly host: ConnectionHost,
    protected readonly config: Readonly<TcpConfig>,
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
    this.rack = new Rack(config.rackAdaptiveReoWnd);
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
    this.tlpTimer = new TcpTimer(clock, () => this.onTlpExpired());
    this.reoTimer = new TcpTimer(clock, () => this.onReorderExpired());
    this.keepTimer = new TcpTimer(clock, () => this.onKeepalive());
    this.mtuProbeTimer = new TcpTimer(clock, () => this.onMtuProbeExpired());
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
    this.cc = config.congestionControl === 'cubic' ? new Cubic(TCP_DEFAULT_MSS) : new NewReno(TCP_DEFAULT_MSS);
    // RFC 7323 §2.3: the smallest shift that lets the receive buffer be advertised.
    let shift = 0;
    while (shift < TCP_MAX_WINSHIFT && this.rcvBufSize >> shift > 0xffff) shift++;
    this.rcvWscale = shift;
  }

  toString(): string {
    return `${formatIpv4(this.localAddr)}:${this.localPort} ↔ ${formatIpv4(this.remoteAddr)}:${this.remotePort} ${this.state}`;
  }

  /** Largest payload in a segment without SACK blocks (RFC 9293 §3.7.1 Eff.snd.MSS). */
  protected effectiveMss(): number {
    return this.sendMss - (this.tsEnabled ? TS_OPTION_BYTES : 0);
  }

  protected isClosed(): boolean {
    return this.state === 'CLOSED';
  }

  protected isSynchronized(): boolean {
    return this.state !== 'CLOSED' && this.state !== 'LISTEN' && this.state !== 'SYN_SENT';
  }

  protected finSeq(): number {
    return seqAdd(this.bufSeq, this.sendBuf.length);
  }

  /** Receive buffer space not held by data the application has not released. */
  protected receiveSpace(): number {
    return Math.max(0, this.rcvBufSize - this.unconsumed);
  }

  /** Our timestamp clock: milliseconds plus a per-connection offset (RFC 7323 §5.4). */
  protected tsNow(): number {
    return (Math.floor(this.host.clock.now()) + this.tsOffset) >>> 0;
  }

  protected tsDiff(tsEcr: number): number {
    const d = (this.tsNow() - tsEcr) >>> 0;
    return d < 0x80000000 ? d : 0;
  }

  protected setState(s: TcpState): void {
    const from = this.state;
    if (from === s) return;
    this.state = s;
    if (this.host.debug?.on) this.host.debug.debug(`${formatIpv4(this.localAddr)}:${this.localPort} ↔ ${formatIpv4(this.remoteAddr)}:${this.remotePort}: ${from} → ${s}`);
    this.onStateChange?.(from, s);
  }

  protected canSendData(): boolean {
    const s = this.state;
    return s === 'ESTABLISHED' || s === 'CLOSE_WAIT' || s === 'FIN_WAIT_1' || s === 'CLOSING' || s === 'LAST_ACK';
  }

  protected updateTsRecent(tsVal: number): void {
    this.tsRecent = tsVal;
    this.tsRecentAge = this.host.clock.now();
    this.tsRecentValid = true;
  }

  protected becameEstablished(): void {
    if (this.keepAlive) this.keepTimer.set(this.keepIdleMs);
    if (this.passive) this.host.accepted(this.asConnection);
    else this.onConnected?.();
    if (this.finQueued && this.state === 'ESTABLISHED') this.setState('FIN_WAIT_1');
  }

  protected enterTimeWait(): void {
    this.setState('TIME_WAIT');
    this.rtxTimer.cancel();
    this.tlpTimer.cancel();
    this.reoTimer.cancel();
    this.persistTimer.cancel();
    this.keepTimer.cancel();
    this.mtuProbeTimer.cancel();
    this.delackTimer.cancel();
    this.lifeTimer.set(2 * this.config.mslMs);
    this.notifyClose();
  }

  protected notifyClose(): void {
    if (this.closeNotified) return;
    this.closeNotified = true;
    this.onClose?.();
  }

  /**
   * The path takes smaller segments (ICMP or black-hole detection): send at most `mss` bytes
   * (data + options) from now, and resend what is in flight in the new size at once. Not a
   * congestion signal (RFC 1191 §6.5): cwnd keeps its bytes.
   */
  protected lowerMss(mss: number): void {
    if (mss >= this.sendMss) return;
    // The path answers with ICMP after all: RFC 1191 is in charge, and a probe above what it
    // reported is known to be too big.
    this.stopMtuProbing();
    this.sendMss = mss;
    this.cc.mss = this.effectiveMss();
    this.rttSeq = null;
    if (this.sackEnabled) this.scoreboard.markAllLost();
    else this.sndNxt = this.sndUna;
    this.output(false);
  }

  /** Black-hole detection lowered SendMSS: remember the size before (once) and probe it after the interval. */
  protected startMtuProbing(previousMss: number): void {
    if (this.mtuProbeMss === null) this.mtuProbeMss = previousMss;
    this.mtuProbeDue = false;
    this.mtuProbe = null;
    if (this.config.mtuProbeIntervalMs > 0) this.mtuProbeTimer.set(this.config.mtuProbeIntervalMs);
  }

  protected stopMtuProbing(): void {
    this.mtuProbeMss = null;
    this.mtuProbeDue = false;
    this.mtuProbe = null;
    this.mtuProbeTimer.cancel();
  }

  /** The probe went unacknowledged and its bytes are being resent: stay low, try again after the interval. */
  protected mtuProbeFailed(): void {
    this.mtuProbe = null;
    if (this.host.debug?.on) this.host.debug.debug(`${this.toString()}: MSS probe of ${this.mtuProbeMss} lost, staying at ${this.sendMss}`);
    if (this.config.mtuProbeIntervalMs > 0) this.mtuProbeTimer.set(this.config.mtuProbeIntervalMs);
  }

  /** The probe arrived whole: the path takes the larger segments again. */
  protected mtuProbeSucceeded(): void {
    const mss = this.mtuProbeMss!;
    this.host.stats.mtuProbesSucceeded++;
    if (this.host.debug?.on) this.host.debug.debug(`${this.toString()}: MSS probe of ${mss} acknowledged, MSS back up from ${this.sendMss}`);
    this.stopMtuProbing();
    // As in lowerMss, cwnd keeps its bytes: a larger segment is no reason to send more.
    this.sendMss = mss;
    this.cc.mss = this.effectiveMss();
  }

  /** This control block as the connection the host knows (TcpConnection is the only concrete class). */
  protected get asConnection(): TcpConnection {
    return this as unknown as TcpConnection;
  }

  // Implemented by the layers above (output.ts, timers.ts, connection.ts): the timers created here
  // and the state changes below call into them.
  protected abstract output(force: boolean): void;
  protected abstract onRtoExpired(): void;
  protected abstract onPersistExpired(): void;
  protected abstract onDelayedAck(): void;
  protected abstract onTlpExpired(): void;
  protected abstract onReorderExpired(): void;
  protected abstract onKeepalive(): void;
  protected abstract onMtuProbeExpired(): void;
  protected abstract onLifeExpired(): void;
  protected abstract fail(code: TcpErrorCode): void;
  abstract finish(code: TcpErrorCode | null): void;
}
