import type { Ipv4Addr } from './addr.js';
import type { Clock } from './clock.js';

/**
 * The seam between the IP layer (net/ip, owned by the Stack) and transport protocols (net/tcp,
 * net/udp). Transports never touch Ethernet or ARP; the IP layer never parses TCP.
 */

/** What the IP layer tells a transport about a datagram it delivers. */
export interface IpDatagramInfo {
  src: Ipv4Addr;
  dst: Ipv4Addr;
  protocol: number;
  ttl: number;
  /** Name of the interface it arrived on. */
  netif: string;
  /** True when the destination was not one of the stack's addresses (accept-any / router mode). */
  foreignDestination: boolean;
  /** True for link-layer or IP broadcast. */
  broadcast: boolean;
  /** The NIC vouched for the TCP/UDP checksum (RxInfo.checksumValid): the layer need not sum it. */
  checksumValid?: boolean;
}

export interface IpOutput {
  src: Ipv4Addr;
  dst: Ipv4Addr;
  protocol: number;
  /** Transport header + data, with the transport checksum already filled in. */
  payload: Uint8Array;
  ttl?: number;
  tos?: number;
  /** Set the IPv4 DF bit (TCP does, for path MTU reasons). */
  dontFragment?: boolean;
  /**
   * The buffer `payload` ends, when the transport built it with IP_HEADROOM bytes free in front
   * (`framed.length === IP_HEADROOM + payload.length`): the IP layer then writes the IPv4 and
   * Ethernet headers there instead of copying the datagram.
   */
  framed?: Uint8Array;
  /** The transport left its checksum partial, as `gsoChecksumPartialFor` allowed: said to the port with the frame. */
  checksumPartial?: boolean;
}

export type IpSendResult = 'sent' | 'queued' | 'no-route' | 'unreachable' | 'dropped';

/** What the IP layer offers transports. */
export interface IpLayer {
  readonly clock: Clock;
  /**
   * Send a datagram. `src` may be any address: a user-mode NAT answers as the remote host
   * (the IP layer does not insist the source is its own). Fragments when larger than the MTU
   * unless `dontFragment`.
   */
  output(datagram: IpOutput): IpSendResult;
  /** The source address the stack would use to reach `dst`, or null when there is no route. */
  sourceFor(dst: Ipv4Addr): Ipv4Addr | null;
  /** MTU of the interface the route to `dst` uses (for MSS: mtu − 40). */
  mtuFor(dst: Ipv4Addr): number;
  /**
   * Largest TCP/IPv4 datagram that may go to `dst` in one frame (GSO: the link's far end takes
   * segments beyond the MTU), or 0 when datagrams must fit the MTU. Asked per segment: it changes
   * when the far end's driver negotiates or resets.
   */
  gsoFor?(dst: Ipv4Addr): number;
  /**
   * Whether a TCP datagram of `datagramLength` bytes to `dst` is a GSO one (beyond the MTU) that
   * may leave its checksum partial (FramePort.gsoChecksumPartial): only when the very next `output`
   * hands it to the port (a packet kept for ARP or looped back would lose the word).
   */
  gsoChecksumPartialFor?(dst: Ipv4Addr, datagramLength: number): boolean;
  /**
   * A buffer of IP_HEADROOM + `payloadLength` bytes to build a `protocol` datagram to `dst` in, handed back as
   * `IpOutput.framed` in the very next `output` call: memory the interface's port lends
   * (FramePort.lendTx) when the datagram will leave at once, or fresh bytes. Its contents are not
   * zeroed: the transport writes every byte after the headroom.
   */
  datagramBuffer?(dst: Ipv4Addr, protocol: number, payloadLength: number): Uint8Array;
  /** Whether `addr` is one of the stack's own addresses. */
  isLocal(addr: Ipv4Addr): boolean;
  /** Report an ICMP error for a datagram a transport could not deliver (e.g. UDP port unreachable). */
  icmpUnreachable(info: IpDatagramInfo, code: number, offendingIpPacket: Uint8Array | null): void;
}

/** A transport protocol plugged into the IP layer. */
export interface TransportProtocol {
  readonly protocol: number;
  /** A datagram for this protocol; `payload` is the transport header + data, `raw` the whole IP packet. */
  input(info: IpDatagramInfo, payload: Uint8Array, raw: Uint8Array): void;
  /**
   * An ICMP error arrived about a datagram this protocol sent (the quoted header). For
   * "fragmentation needed" (type 3 code 4) `nextHopMtu` is the MTU the router reported (RFC 1191
   * §4; 0 from a router that predates it).
   */
  icmpError?(type: number, code: number, quoted: { src: Ipv4Addr; dst: Ipv4Addr; transportHeader: Uint8Array; nextHopMtu?: number }): void;
}

/**
 * Bytes a transport may leave free in front of its payload (Ethernet 14 + IPv4 20), handing the
 * whole buffer over as `IpOutput.framed`: the IP layer writes its headers in place instead of
 * copying the datagram.
 */
export const IP_HEADROOM = 34;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
