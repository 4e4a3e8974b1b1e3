/** TCP counters for the whole layer (lwIP's `stats.tcp` and Linux's TcpExt, the useful subset). */
export interface TcpStats {
  segmentsIn: number;
  segmentsOut: number;
  /** Segments sent again (timeouts, fast retransmits, SACK hole fills). */
  retransmits: number;
  badChecksums: number;
  /** Segments too short, with a bad data offset or unparsable options. */
  malformed: number;
  /** Broadcast/multicast segments and other refused input. */
  dropped: number;
  resetsIn: number;
  resetsOut: number;
  activeOpens: number;
  passiveOpens: number;
  /** Active or passive opens that never reached ESTABLISHED. */
  attemptFails: number;
  /** Connections reset from ESTABLISHED or CLOSE-WAIT (RFC 1213 tcpEstabResets). */
  establishedResets: number;
  /** Segments to a port nobody listens on (answered with RST). */
  noListener: number;
  rtoTimeouts: number;
  fastRetransmits: number;
  dupAcksIn: number;
  outOfOrderSegments: number;
  /** Out-of-order segments dropped because the queue was full. */
  outOfOrderDrops: number;
  /** Segments outside the receive window (answered with an ACK). */
  outOfWindow: number;
  pawsDrops: number;
  /** Non-RST segments without a timestamp on a connection that uses them (RFC 7323 §3.2). */
  missingTimestampDrops: number;
  challengeAcks: number;
  synQueueDrops: number;
  /** Half-open entries dropped early to keep a full SYN queue useful (young/old rule, eviction). */
  synQueuePruned: number;
  /** SYN-ACKs sent with a SYN cookie instead of a queue entry (Linux SyncookiesSent). */
  synCookiesSent: number;
  /** ACKs whose cookie checked out and became a connection (Linux SyncookiesRecv). */
  synCookiesValidated: number;
  /** ACKs whose cookie was expired, forged or carried impossible options (Linux SyncookiesFailed). */
  synCookiesFailed: number;
  zeroWindowProbes: number;
  keepaliveProbes: number;
  delayedAcks: number;
  /** ACKs for two or more segments sent at the end of the burst that brought them (one per burst). */
  burstAcks: number;
  /** ACKs that reported a duplicate segment with a D-SACK block (RFC 2883). */
  dsacksOut: number;
  /** ACKs that carried a D-SACK block. */
  dsacksIn: number;
  /** Loss episodes found spurious by D-SACK and their window reduction undone. */
  spuriousRetransmitsUndone: number;
  /** Tail loss probes sent (RFC 8985 §7). */
  lossProbes: number;
  /** Probes that repaired a real loss. */
  lossProbeRecoveries: number;
  /** ICMP "fragmentation needed" that lowered a connection's MSS (RFC 1191). */
  pmtuUpdates: number;
  /** ICMP "fragmentation needed" ignored: the quoted segment was not in flight (RFC 5927 §4.1). */
  pmtuIgnored: number;
  /** MSS lowered after repeated timeouts of full-sized segments (black-hole detection). */
  mtuBlackHoles: number;
  /** Full-sized probes at the MSS from before a black-hole reduction (Linux TCPMTUPFail + TCPMTUPSuccess). */
  mtuProbes: number;
  /** Probes acknowledged: the MSS went back up (Linux TCPMTUPSuccess). */
  mtuProbesSucceeded: number;
  /** Segments the IP layer refused (no route, unreachable, dropped). */
  outputErrors: number;
  acceptAnyAccepted: number;
  acceptAnyRefused: number;
}

export function emptyTcpStats(): TcpStats {
  return {
    segmentsIn: 0,
    segmentsOut: 0,
    retransmits: 0,
    badChecksums: 0,
    malformed: 0,
    dropped: 0,
    resetsIn: 0,
    resetsOut: 0,
    activeOpens: 0,
    passiveOpens: 0,
    attemptFails: 0,
    establishedResets: 0,
    noListener: 0,
    rtoTimeouts: 0,
    fastRetransmits: 0,
    dupAcksIn: 0,
    outOfOrderSegments: 0,
    outOfOrderDrops: 0,
    outOfWindow: 0,
    pawsDrops: 0,
    missingTimestampDrops: 0,
    challengeAcks: 0,
    synQueueDrops: 0,
    synQueuePruned: 0,
    synCookiesSent: 0,
    synCookiesValidated: 0,
    synCookiesFailed: 0,
    zeroWindowProbes: 0,
    keepaliveProbes: 0,
    delayedAcks: 0,
    burstAcks: 0,
    dsacksOut: 0,
    dsacksIn: 0,
    spuriousRetransmitsUndone: 0,
    lossProbes: 0,
    lossProbeRecoveries: 0,
    pmtuUpdates: 0,
    pmtuIgnored: 0,
    mtuBlackHoles: 0,
    mtuProbes: 0,
    mtuProbesSucceeded: 0,
    outputErrors: 0,
    acceptAnyAccepted: 0,
    acceptAnyRefused: 0,
  };
}
