/**
 * TCP tunables in one place (lwIP's opt.h in spirit), with defaults a user of a real stack expects.
 * Every time is in milliseconds of the layer's Clock.
 */
export interface TcpConfig {
  /** Send buffer per connection in bytes; bounds the unacknowledged + unsent data. */
  sendBufferSize: number;
  /** Receive buffer per connection in bytes; the receive window never exceeds it. */
  recvBufferSize: number;
  /** Offer window scaling (RFC 7323 §2). */
  windowScaling: boolean;
  /** Offer timestamps (RFC 7323 §3): RTTM and PAWS. */
  timestamps: boolean;
  /** Offer SACK (RFC 2018). */
  sack: boolean;
  /** Disable Nagle's algorithm (RFC 9293 §3.7.4) for new connections (TCP_NODELAY). */
  noDelay: boolean;
  /**
   * Lower bound of the RTO. RFC 6298 §2.4 says 1 s and allows less; 200 ms as Linux (TCP_RTO_MIN),
   * whose peers and paths this stack meets.
   */
  minRtoMs: number;
  /** Upper bound of the RTO (RFC 6298 §2.5: at least 60 s). */
  maxRtoMs: number;
  /** RTO before the first RTT sample (RFC 6298 §2.1). */
  initialRtoMs: number;
  /** Congestion control for new connections: CUBIC (RFC 9438, Linux's default) or NewReno (RFC 5681). */
  congestionControl: 'cubic' | 'newreno';
  /**
   * Black-hole detection (RFC 4821's idea, Linux's tcp_mtu_probing after tcp_retries1): after this many consecutive
   * RTOs of a full-sized segment, lower the MSS (to 1024 bytes, then halving, not below 536) in
   * case a path MTU smaller than ours drops them and its ICMP never arrives. 0 disables it.
   */
  mtuProbeAfterRtos: number;
  /**
   * After black-hole detection lowered the MSS, try the MSS from before again this long after
   * (RFC 4821's probing for a larger PMTU; Linux's tcp_probe_interval, 600 s): one full-sized segment
   * of new data; if it is acknowledged the MSS goes back up, if it is lost the MSS stays low and
   * the probe is tried again after another interval. 0 never tries.
   */
  mtuProbeIntervalMs: number;
  /**
   * RACK's reordering window adapts (RFC 8985 §6.2 step 4): each round trip that brings a D-SACK
   * widens it by a quarter of the minimum RTT, up to SRTT, and 16 recoveries without one narrow it
   * back. Off: a fixed quarter of the minimum RTT (Linux's tcp_recovery & TCP_RACK_STATIC_REO_WND).
   */
  rackAdaptiveReoWnd: boolean;
  /** RACK-TLP (RFC 8985) tail loss probes, with SACK. Off only to study the RTO alone. */
  tailLossProbe: boolean;
  /**
   * What a tail loss probe allows for the peer's delayed ACK when one segment is in flight
   * (RFC 8985 §7.2 WCDelAckT). RFC 8985 suggests 200 ms; 40 ms is Linux's minimum delayed-ACK
   * time and what this stack's receiver uses, so a lone lost tail costs about two RTTs. A probe
   * that was not needed costs one segment and is recognised by the peer's D-SACK.
   */
  lossProbeAckDelayMs: number;
  /**
   * Delayed ACK timeout (RFC 9293 §3.8.6.3: less than 0.5 s). 40 ms as Linux's TCP_DELACK_MIN:
   * a peer's tail loss probe fires after about two RTTs plus its own delayed-ACK allowance, and an
   * ACK held 200 ms makes it take an unacknowledged tail for a loss.
   */
  delayedAckMs: number;
  /** Maximum segment lifetime; TIME-WAIT lasts 2·MSL (RFC 9293 §3.4.2). */
  mslMs: number;
  /** SYN (or SYN-ACK) retransmissions before the open fails with ETIMEDOUT. */
  synRetries: number;
  /** Data retransmissions before the connection fails with ETIMEDOUT (RFC 9293 §3.8.3 R2). */
  maxRetries: number;
  /** Keepalives (RFC 9293 §3.8.4) for new connections; off by default as the RFC requires. */
  keepAlive: boolean;
  keepIdleMs: number;
  keepIntervalMs: number;
  keepCount: number;
  /** SYN queue bound per listener: half-open connections waiting for the handshake's ACK. */
  synQueueLimit: number;
  /**
   * Answer SYNs with a SYN cookie (RFC 4987 §3.6, syn-cookie.ts) when the SYN queue is full, so a
   * flood cannot shut legitimate clients out (Linux tcp_syncookies=1). Off: such SYNs evict the
   * oldest half-open entry that has already had its SYN-ACK retransmitted, or are dropped.
   */
  synCookies: boolean;
  /** Period of the cookie's coarse time counter (Linux: one minute). */
  synCookieTickMs: number;
  /** A cookie is valid while fewer counter ticks than this have passed (Linux MAX_SYNCOOKIE_AGE). */
  synCookieValidTicks: number;
  /** Out-of-order chunks kept per connection (besides the window bound). */
  maxOutOfOrderSegments: number;
  /** FIN-WAIT-2 lifetime after the application closed fully (Linux tcp_fin_timeout). */
  finWait2TimeoutMs: number;
  /**
   * Give up (ETIMEDOUT) when the peer's window has stayed closed this long while data waits, even
   * though it answers the probes; 0 keeps probing forever, as RFC 1122 §4.2.2.17 requires by
   * default. A bound protects against a peer that pins buffers with a zero window (RFC 6429).
   */
  persistTimeoutMs: number;
  /**
   * Challenge ACKs per second for the whole layer (RFC 5961 §7), on average: each second's budget
   * is drawn from [limit/2, 3·limit/2) (the CVE-2016-5696 fix).
   */
  challengeAckLimit: number;
  /** Ephemeral ports for active opens (RFC 6335 §6: 49152–65535). */
  ephemeralPortMin: number;
  ephemeralPortMax: number;
  /** Randomness for ISN secrets and ephemeral ports; pass a seeded PRNG for reproducible runs. */
  random: () => number;
  /**
   * Bytes for secret keys (the SYN-cookie key). Unset: node:crypto's randomBytes, unless `random`
   * was given explicitly (a seeded lab), then bytes from it, so a run reproduces from its seed.
   */
  secretBytes?: (n: number) => Uint8Array;
}

export const DEFAULT_TCP_CONFIG: Readonly<TcpConfig> = {
  sendBufferSize: 256 * 1024,
  recvBufferSize: 256 * 1024,
  windowScaling: true,
  timestamps: true,
  sack: true,
  noDelay: false,
  minRtoMs: 200,
  maxRtoMs: 60_000,
  initialRtoMs: 1000,
  congestionControl: 'cubic',
  mtuProbeAfterRtos: 3,
  mtuProbeIntervalMs: 600_000,
  rackAdaptiveReoWnd: true,
  tailLossProbe: true,
  lossProbeAckDelayMs: 40,
  delayedAckMs: 40,
  mslMs: 30_000,
  synRetries: 6,
  maxRetries: 15,
  keepAlive: false,
  keepIdleMs: 2 * 3600_000,
  keepIntervalMs: 75_000,
  keepCount: 9,
  synQueueLimit: 128,
  synCookies: true,
  synCookieTickMs: 60_000,
  synCookieValidTicks: 2,
  maxOutOfOrderSegments: 512,
  finWait2TimeoutMs: 60_000,
  persistTimeoutMs: 0,
  challengeAckLimit: 1000,
  ephemeralPortMin: 49152,
  ephemeralPortMax: 65535,
  random: Math.random,
};

/** Per-connection overrides a caller may give to connect() or listen(). */
export type TcpConnectionOptions = Partial<
  Pick<
    TcpConfig,
    'sendBufferSize' | 'recvBufferSize' | 'congestionControl' | 'persistTimeoutMs' | 'noDelay' | 'keepAlive' | 'keepIdleMs' | 'keepIntervalMs' | 'keepCount' | 'windowScaling' | 'timestamps' | 'sack'
  >
>;
