/**
 * The FramePort contract: one end of a full-duplex Ethernet link. Everything that carries frames
 * (NIC models, switch ports, TAP, the user-mode network, impairments, capture points) meets at it.
 *
 * The contract, exactly once (DESIGN.md, after Palacios' backends disagreed on it):
 * - `send(frame)` offers a frame to travel to the other end. It returns `true` when the frame was
 *   accepted (delivered or queued for delivery) and `false` when it was dropped; a dropped frame
 *   has been counted in `stats.txDrops` by the port that refused it, so callers never count it again.
 * - Ownership of `frame` passes to the port on `send`; the sender must not modify it afterwards.
 * - Frames arriving from the other end are handed to the receiver set with `setReceiver`. The
 *   receiver returns `false` when it could not take the frame (e.g. a NIC's ring is full); the
 *   port then counts it in `stats.rxDrops`. Delivery never happens re-entrantly inside `send`.
 *   A receiver that took the frame and kept no reference to it (a NIC model that DMA'd it into
 *   guest memory) may say so with `'copied'`: a port that lent the frame's memory (`lendTx`) may
 *   then use it again. Anything that cannot vouch for that (a switch, a queue) answers `true`.
 * - Each frame is counted once by the port that carried or refused it: `txFrames`/`txBytes` for
 *   frames accepted by `send`, `txDrops` for those refused; `rxFrames`/`rxBytes` for frames the
 *   receiver took, `rxDrops` for those it refused (or that found no receiver). A pass-through
 *   (capture point, impairment) counts only what it accepted, delivered or dropped itself.
 * - Flow control (QEMU's `can_receive`, Ethernet's PAUSE): a port whose `holds` is true keeps a
 *   frame its receiver answers with `'busy'`, stops delivering, and offers that frame again once
 *   the receiver calls `ready()`. A receiver returns `'busy'` only to a port that holds; anywhere
 *   else it refuses with `false`, so the sender's queue, not the NIC, is where a slow guest waits.
 * - Frames are Ethernet II frames without preamble or FCS, 14..65535 bytes. Frames longer than the
 *   link's MTU are sent only through a port whose `gso` is true: the far end's receiver said
 *   (`offerGso(true)`) that it takes TCP/IPv4 segments of up to GSO_MAX_IP bytes in one frame,
 *   as a virtio-net guest with GUEST_TSO4 does. Everywhere else frames respect the MTU.
 * - A receiver may be told more about a frame (`RxInfo`) by the port that hands it over. Only a NIC
 *   driver and the pass-throughs between it and its stack (capture points) say anything; every other
 *   port passes nothing, which is always safe (the stack then checks everything itself).
 */
export type FrameReceiver = (frame: Uint8Array, info?: RxInfo) => boolean | 'busy' | 'copied' | void;

/** What a NIC told its driver about a received frame, as Linux's skb->ip_summed does. */
export interface RxInfo {
  /**
   * The device vouches for the frame's TCP/UDP checksum (virtio-net's DATA_VALID: Linux's
   * CHECKSUM_UNNECESSARY), so the stack need not sum the payload again.
   */
  checksumValid?: boolean;
  /**
   * The frame's TCP checksum is unfinished (TxInfo.checksumPartial), as it left a sender inside
   * this host: a receiver trusts it as Linux trusts a CHECKSUM_PARTIAL skb, and whoever records or
   * forwards the frame beyond the host finishes it first (FramePort.gsoChecksumPartial).
   */
  checksumPartial?: boolean;
  /**
   * The frame's memory is the driver's and is used again once the receiver returns (a driver's
   * receive buffers, lent instead of copied out): a receiver copies whatever it keeps. A stack
   * keeps nothing of a frame past the call anyway except what it copies (TCP's out-of-order
   * queue, UDP datagrams, IP fragments), and its applications take TCP data as valid for the
   * call; a capture point records a copy.
   */
  lent?: boolean;
}

/**
 * The word for a frame whose TCP checksum is left partial, said by its sender (TxInfo) and told
 * its receiver (RxInfo): one shared object, which nobody writes.
 */
export const CHECKSUM_PARTIAL: Readonly<RxInfo & TxInfo> = Object.freeze({ checksumPartial: true });

/** What a sender says about a frame it sends, travelling with it as Linux's skb->ip_summed does. */
export interface TxInfo {
  /**
   * The TCP/IPv4 checksum field holds only the folded pseudo-header sum (Linux's
   * CHECKSUM_PARTIAL): summing from the TCP header to the end of the datagram and complementing
   * finishes it. Sent only to a port whose `gsoChecksumPartial` is true.
   */
  checksumPartial?: boolean;
}

export interface FramePortStats {
  txFrames: number;
  txBytes: number;
  txDrops: number;
  rxFrames: number;
  rxBytes: number;
  rxDrops: number;
}

export interface FramePort {
  readonly name: string;
  readonly stats: FramePortStats;
  /** `info` travels with the frame to the far end's receiver (links and wrappers that carry it). */
  send(frame: Uint8Array, info?: TxInfo): boolean;
  setReceiver(receiver: FrameReceiver | null): void;
  /** True when this port keeps a frame its receiver calls `'busy'` (see the contract above). */
  readonly holds?: boolean;
  /** The receiver can take frames again: offer the held one. A no-op when nothing is held. */
  ready?(): void;
  /** True when the far end takes TCP/IPv4 segments larger than the MTU (GSO) in one frame. */
  readonly gso?: boolean;
  /**
   * Say whether this end's receiver takes GSO frames (the far end's `gso` then reads true), and
   * with `partialChecksums` whether it takes them with unfinished TCP checksums (RxInfo.checksumPartial;
   * the far end's `gsoChecksumPartial` then reads true).
   */
  offerGso?(on: boolean, partialChecksums?: boolean): void;
  /**
   * True when a GSO frame may be sent here with an unfinished TCP checksum, said per frame with
   * `send(frame, { checksumPartial: true })` (the pseudo-header sum, as Linux leaves a
   * CHECKSUM_PARTIAL skb): what is behind this port trusts it or finishes it, so nobody sums 64 KiB
   * for nothing. A virtio-net driver with HOST_TSO4 writes its own partial sum there; a link
   * carries the word to a receiver that offered partial checksums (a virtio-net device whose guest
   * took GUEST_CSUM passes it on as NEEDS_CSUM; a stack trusts it). Never passed on by a port that
   * records frames (a capture point): those see finished checksums.
   */
  readonly gsoChecksumPartial?: boolean;
  /**
   * Lend `length` bytes of this port's own transmit memory (a driver's DMA buffer) for the caller to
   * build a frame in and pass straight to `send`, which then posts it without copying: the frame is
   * built where the device will read it, as a Linux driver maps an skb's data for DMA. Null when
   * nothing is free or the size does not fit. The loan ends at the next `lendTx` or `send`: a caller
   * that cannot send the frame at once must not lend (a frame kept for later would be overwritten).
   * Never offered by a port that wraps another (a capture point).
   */
  lendTx?(length: number): Uint8Array | null;
}

/** Largest IPv4 datagram sent as one GSO frame: its Ethernet frame stays within 64 KiB snaplen. */
export const GSO_MAX_IP = 65535 - 14 - 21;

export function emptyStats(): FramePortStats {
  return { txFrames: 0, txBytes: 0, txDrops: 0, rxFrames: 0, rxBytes: 0, rxDrops: 0 };
}

/** Smallest and largest frame a port accepts (no FCS; largest covers 64 KiB GSO segments). */
export const MIN_FRAME = 14;
export const MAX_FRAME = 65535;
