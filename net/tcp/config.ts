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
  /** Lower bound of the RTO; RFC 6298 §2.4 says 1 s, LAN labs and tests may want less. */
  minRtoMs: number;
  /** Upper bound of the RTO (RFC 6298 §2.5: at least 60 s). */
  maxRtoMs: number;
  /** RTO before the first RTT sample (RFC 6298 §2.1). */
  initialRtoMs: number;
  /** Delayed ACK timeout (RFC 9293 §3.8.6.3: less than 0.5 s; RFC 1122 suggests 200 ms). */
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
  /** Out-of-order chunks kept per connection (besides the window bound). */
  maxOutOfOrderSegments: number;
  /** FIN-WAIT-2 lifetime after the application closed fully (Linux tcp_fin_timeout). */
  finWait2TimeoutMs: number;
  /** Challenge ACKs per second for the whole layer (RFC 5961 §7). */
  challengeAckLimit: number;
  /** Ephemeral ports for active opens (RFC 6335 §6: 49152–65535). */
  ephemeralPortMin: number;
  ephemeralPortMax: number;
  /** Randomness for ISN secrets and ephemeral ports; pass a seeded PRNG for reproducible runs. */
  random: () => number;
}

export const DEFAULT_TCP_CONFIG: Readonly<TcpConfig> = {
  sendBufferSize: 256 * 1024,
  recvBufferSize: 256 * 1024,
  windowScaling: true,
  timestamps: true,
  sack: true,
  noDelay: false,
  minRtoMs: 1000,
  maxRtoMs: 60_000,
  initialRtoMs: 1000,
  delayedAckMs: 200,
  mslMs: 30_000,
  synRetries: 6,
  maxRetries: 15,
  keepAlive: false,
  keepIdleMs: 2 * 3600_000,
  keepIntervalMs: 75_000,
  keepCount: 9,
  synQueueLimit: 128,
  maxOutOfOrderSegments: 512,
  finWait2TimeoutMs: 60_000,
  challengeAckLimit: 1000,
  ephemeralPortMin: 49152,
  ephemeralPortMax: 65535,
  random: Math.random,
};

/** Per-connection overrides a caller may give to connect() or listen(). */
export type TcpConnectionOptions = Partial<
  Pick<
    TcpConfig,
    'sendBufferSize' | 'recvBufferSize' | 'noDelay' | 'keepAlive' | 'keepIdleMs' | 'keepIntervalMs' | 'keepCount' | 'windowScaling' | 'timestamps' | 'sack'
  >
>;
