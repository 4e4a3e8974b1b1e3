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
  challengeAcks: number;
  synQueueDrops: number;
  zeroWindowProbes: number;
  keepaliveProbes: number;
  delayedAcks: number;
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
    challengeAcks: 0,
    synQueueDrops: 0,
    zeroWindowProbes: 0,
    keepaliveProbes: 0,
    delayedAcks: 0,
    outputErrors: 0,
    acceptAnyAccepted: 0,
    acceptAnyRefused: 0,
  };
}
