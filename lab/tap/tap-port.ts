import { NO_DEBUG, type DebugLog } from '../../net/debug.js';
import { closeSync, writeSync } from 'node:fs';
import { CHECKSUM_PARTIAL, emptyStats, MAX_FRAME, MIN_FRAME, type FramePort, type FramePortStats, type FrameReceiver, type RxInfo, type TxInfo } from '../../net/frame-port.js';
import { TcpCoalescer } from '../../src/devices/tcp-gro.js';
import { finishPartialTcpv4, segmentTcpv4, tcpv4Layout } from '../../src/devices/tcp-gso.js';
import { readFd, type FdReader } from './fd-reader.js';
import { openTap, setPersist, TUN_F_CSUM, TUN_F_TSO4 } from './tun-ioctl.js';
import { completeVnetChecksum, encodeVnetFrame, partialIsTcpv4, readVnetHeader, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_HDR_LEN } from './vnet-hdr.js';
import { copyBytes, SLAB_MAX_ALLOC } from '../../net/byte-slab.js';
import { LendPool, settleFrame } from '../../net/lend-pool.js';

/** Counters beyond the FramePort's: what the offloads did. */
export interface TapOffloadStats {
  /** Frames larger than the MTU (GSO) the kernel handed over. */
  rxGsoFrames: number;
  /** …of which went whole to a receiver that takes GSO frames. */
  rxGsoWhole: number;
  /** MTU-sized segments cut from kernel GSO frames for a receiver that does not. */
  rxGsoSegments: number;
  /** GSO frames written to the kernel whole (it takes TSO4), the guest's own and merged ones. */
  txGsoFrames: number;
  /** Frames merged into another before the write (GRO toward the kernel, see `send`). */
  txCoalesced: number;
}

/**
 * A Linux TAP device as a FramePort. The lab's own thread reads the fd (fd-reader.ts: it sits in the
 * event loop's epoll set, so the kernel wakes the lab straight away, one frame per read into one
 * reused buffer); writes are synchronous write(2)s, which the kernel takes or refuses at once (a
 * refused frame is a counted drop, as on a real link).
 *
 * Offloads (default on): the device is opened with IFF_VNET_HDR, a 12-byte header and TUN_F_CSUM |
 * TUN_F_TSO4, so the kernel hands over TCP segments of up to 64 KiB whole, with checksums left
 * partial, and takes ours whole (and partial: `gsoChecksumPartial`). A partial TCP checksum goes
 * on as it is to a receiver that offered to take them (RxInfo.checksumPartial: the switch, for a
 * virtio-net guest), is left to the cut when a GSO frame is cut, and is completed otherwise. A
 * kernel GSO frame goes whole to a receiver that said `offerGso(true)`, and is cut into MTU-sized
 * segments with the shared segmenter for any other, so the FramePort contract (frames over the MTU
 * only where taken) holds.
 *
 * Flow control: the port holds (FramePort `holds`): a receiver's 'busy' keeps that frame here and
 * stops reading until `ready()`; meanwhile frames wait in the kernel's device queue, which is
 * bounded by its txqueuelen (where the kernel drops and counts).
 */
export class TapPort implements FramePort {
  readonly stats: FramePortStats = emptyStats();
  readonly offloadStats: TapOffloadStats = { rxGsoFrames: 0, rxGsoWhole: 0, rxGsoSegments: 0, txGsoFrames: 0, txCoalesced: 0 };
  readonly holds = true;
  readErrors = 0;
  /** Records longer than the largest frame (cannot come from a TAP whose MTU fits 64 KiB): dropped. */
  oversize = 0;
  /** Receiver calls that threw: the frame is dropped and counted, reading goes on. */
  receiverErrors = 0;
  private receiver: FrameReceiver | null = null;
  private closed = false;
  /** The record a busy receiver did not take (header and frame), offered again on `ready()`; reading waits meanwhile. */
  private held: Uint8Array | null = null;
  private takesGso = false;
  /** The receiver takes partial TCP checksums: NEEDS_CSUM TCP frames go on as they are. */
  private takesPartial = false;
  /**
   * Read buffers (a 64 KiB frame and its header). A GSO frame travels on in the buffer it was read
   * into, lent (lend-pool.ts), and comes back once its way ended; smaller frames are copied out.
   */
  private readonly lendPool: LendPool;
  private readonly txBuf: Buffer;
  /** Where the next read(2) goes. */
  private rxBuf: Uint8Array;
  private reader: FdReader | null = null;
  /** With offloads: the guest's TCP segments sent in one turn, merged before they are written. */
  private readonly coalescer: TcpCoalescer | null;
  private flushQueued = false;

  private constructor(
    readonly name: string,
    private readonly fd: number,
    /** Bytes of virtio-net header on every read and write (0: offloads off). */
    private readonly vnetHdrLen: number,
    /** `--debug tap`: opened, each drop with its reason, read errors. */
    private readonly debug: DebugLog = NO_DEBUG,
  ) {
    this.txBuf = Buffer.allocUnsafe(MAX_FRAME + vnetHdrLen);
    this.lendPool = new LendPool(32, MAX_FRAME + vnetHdrLen);
    this.rxBuf = this.lendPool.lend(MAX_FRAME + vnetHdrLen);
    this.coalescer = vnetHdrLen > 0 ? new TcpCoalescer((f, gsoSize, segments, bytesIn) => this.write(f, gsoSize, segments, bytesIn)) : null;
  }

  static open(name: string, options: { persist?: boolean; offload?: boolean; debug?: DebugLog } = {}): { ok: true; port: TapPort } | { ok: false; code: string; message: string } {
    const offload = options.offload ?? true;
    const vnetHdrLen = offload ? VNET_HDR_LEN : 0;
    const r = openTap(name, offload ? { vnetHdr: VNET_HDR_LEN, offload: TUN_F_CSUM | TUN_F_TSO4 } : {});
    if (!r.ok) return r;
    if (options.persist) setPersist(r.fd, true);
    const port = new TapPort(r.name, r.fd, vnetHdrLen, options.debug);
    const reading = readFd(r.fd, () => port.rxBuf, (n, buf) => port.onRead(n, buf), (code) => port.onReadError(code));
    if (!reading.ok) {
      closeSync(r.fd);
      return { ok: false, code: 'ENOTSUP', message: reading.message };
    }
    port.reader = reading.reader;
    if (port.debug.on) port.debug.debug(`${r.name}: opened (fd ${r.fd}${options.persist ? ', persistent' : ''}${offload ? ', offloads csum+tso4' : ''})`);
    return { ok: true, port };
  }

  /** True when the kernel side takes GSO frames (offloads on). */
  get gso(): boolean {
    return this.vnetHdrLen > 0;
  }

  /** The kernel takes TCP checksums left partial, said in the header (NEEDS_CSUM). */
  get gsoChecksumPartial(): boolean {
    return this.vnetHdrLen > 0;
  }

  offerGso(on: boolean, partialChecksums = false): void {
    this.takesGso = on;
    this.takesPartial = on && partialChecksums && this.vnetHdrLen > 0;
  }

  /** A read of `n` bytes (header and frame) into `buf` (rxBuf); false stops reading (the receiver is busy). */
  private onRead(n: number, buf: Uint8Array): boolean {
    if (this.closed) return false;
    if (n < this.vnetHdrLen) {
      this.stats.rxDrops++;
      return true;
    }
    const record = buf.subarray(0, n);
    if (this.deliver(record)) return true;
    this.held = record.slice();
    return false;
  }

  /**
   * EBADFD once the device is gone (its namespace deleted): nothing more is read, and nothing is
   * written either — the handle closes the fd, and its number may soon name another file.
   */
  private onReadError(code: string): void {
    this.readErrors++;
    this.closed = true;
    if (this.debug.on) this.debug.debug(`${this.name}: read error ${code}; reading stops`);
  }

  /** One record to the receiver; false when the receiver is busy (the caller keeps the record). */
  private deliver(record: Uint8Array): boolean {
    const hdr = this.vnetHdrLen;
    const frameLen = record.length - hdr;
    let partial = false;
    if (hdr > 0) {
      const info = readVnetHeader(record);
      if (record[0]! & VNET_F_NEEDS_CSUM) {
        // A TCP one goes on partial to a receiver that takes them; a GSO frame about to be cut
        // needs nothing (the cut sums each segment); anything else is completed here.
        if (this.takesPartial && partialIsTcpv4(record, hdr)) partial = true;
        else if ((info.gsoType === VNET_GSO_NONE || this.takesGso) && !completeVnetChecksum(record, hdr)) {
          this.stats.rxDrops++;
          if (this.debug.on) this.debug.debug(`${this.name}: rx drop (checksum offsets outside the frame)`);
          return true;
        }
      }
      if (info.gsoType !== VNET_GSO_NONE) {
        this.offloadStats.rxGsoFrames++;
        if (!this.takesGso) return this.deliverCut(record.subarray(hdr), info.gsoType, info.gsoSize);
        this.offloadStats.rxGsoWhole++;
      }
    }
    if (frameLen < MIN_FRAME || frameLen > MAX_FRAME) {
      if (frameLen > MAX_FRAME) this.oversize++;
      this.stats.rxDrops++;
      if (this.debug.on) this.debug.debug(`${this.name}: rx drop (${frameLen < MIN_FRAME ? 'runt' : 'oversize'}, ${frameLen} bytes)`);
      return true;
    }
    // A large frame travels on where it was read, and the next read goes into another lent buffer
    // (the same one, if this frame's came back by then); a small frame is copied out, and its
    // buffer read into again. (A record held for a busy receiver is a copy of its own.)
    let frame: Uint8Array;
    if (frameLen > SLAB_MAX_ALLOC) {
      frame = record.subarray(hdr);
      if (record.buffer === this.rxBuf.buffer) this.rxBuf = this.lendPool.lend(MAX_FRAME + hdr);
    } else frame = copyBytes(record, hdr);
    const r = this.offer(frame, partial ? CHECKSUM_PARTIAL : undefined);
    return r !== 'busy';
  }

  /**
   * One frame to the receiver, counted as the FramePort contract says: rxFrames only for frames
   * taken, rxDrops for refused ones; 'busy' counts nothing (the frame is offered again). A receiver
   * that throws is counted and its frame dropped; reading goes on.
   */
  private offer(frame: Uint8Array, info?: RxInfo): boolean | 'busy' {
    let r: ReturnType<FrameReceiver>;
    try {
      r = this.receiver ? this.receiver(frame, info) : false;
    } catch (e) {
      this.receiverErrors++;
      this.stats.rxDrops++;
      if (this.debug.on) this.debug.debug(`${this.name}: rx drop (receiver threw: ${e instanceof Error ? e.message : String(e)})`);
      return false;
    }
    // Busy (offered again on ready()), refused or copied: nothing holds this frame now.
    if (r === 'busy' || r === false || r === 'copied') settleFrame(frame);
    if (r === 'busy') return 'busy';
    if (r === false) {
      this.stats.rxDrops++;
      if (this.debug.on) this.debug.debug(`${this.name}: rx drop (${this.receiver ? 'receiver refused' : 'no receiver'}, ${frame.length} bytes)`);
      return false;
    }
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    return true;
  }

  /**
   * A kernel GSO frame for a receiver that takes only MTU-sized frames: cut with the segmenter the
   * NIC models use. Segments the receiver refuses are dropped (a busy receiver mid-frame cannot be
   * resumed without re-cutting, and TCP recovers the loss).
   */
  private deliverCut(frame: Uint8Array, gsoType: number, gsoSize: number): boolean {
    const l = gsoType === VNET_GSO_TCPV4 ? tcpv4Layout(frame) : null;
    if (!l || gsoSize === 0) {
      this.stats.rxDrops++;
      if (this.debug.on) this.debug.debug(`${this.name}: rx drop (GSO frame of type ${gsoType} that cannot be cut)`);
      return true;
    }
    for (const piece of segmentTcpv4(frame, l, gsoSize)) {
      this.offloadStats.rxGsoSegments++;
      // A busy receiver mid-frame cannot resume a cut: the segment is lost (TCP recovers it).
      if (this.offer(piece) === 'busy') {
        this.stats.rxDrops++;
        if (this.debug.on) this.debug.debug(`${this.name}: rx drop (receiver busy in the middle of a cut GSO frame)`);
      }
    }
    return true;
  }

  ready(): void {
    const held = this.held;
    if (!held || this.closed) return;
    if (!this.deliver(held)) return;
    this.held = null;
    this.reader?.resume();
  }

  /**
   * Write a frame to the kernel. With offloads, TCP segments the guest sends in one turn are
   * merged first where GRO would merge them (tcp-gro.ts), and the merge goes to the kernel as one
   * GSO frame: one write(2) and one trip through the kernel's stack instead of one per segment, as
   * Linux's own NIC drivers hand it a burst. The turn's end (a microtask) writes what is held; a
   * frame that cannot be merged writes it first, so order is kept. A held frame counts as sent
   * when its write succeeds, and as a drop when that write fails.
   */
  send(frame: Uint8Array, info?: TxInfo): boolean {
    if (this.closed || frame.length < MIN_FRAME || frame.length > MAX_FRAME) {
      this.stats.txDrops++;
      if (this.debug.on) this.debug.debug(`${this.name}: tx drop (${this.closed ? 'closed' : `${frame.length} bytes, outside ${MIN_FRAME}..${MAX_FRAME}`})`);
      return false;
    }
    // A GSO frame goes out NEEDS_CSUM with the pseudo-header sum in any case (encodeVnetFrame); a
    // partial one of wire size (nobody sends those yet) is finished, as it goes out without a header word.
    if (info?.checksumPartial && frame.length <= 1514) finishPartialTcpv4(frame);
    const c = this.coalescer;
    if (!c) return this.write(frame, 0, 1, frame.length);
    // A held frame is taken; one written at once reports its own write (a failed write of what
    // was held before it is counted there, not charged to this frame).
    const taken = c.push(frame);
    if (c.holding && !this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        c.flush();
      });
    }
    return taken;
  }

  /** One write(2) of a frame (a merge of `segments` frames of `bytesIn` bytes when `gsoSize` > 0). */
  private write(frame: Uint8Array, gsoSize: number, segments: number, bytesIn: number): boolean {
    const ok = this.writeOut(frame, gsoSize, segments);
    // Written (copied into the kernel) or lost: the frame's way ends here (a lent buffer goes back, lend-pool.ts).
    settleFrame(frame);
    if (!ok) {
      this.stats.txDrops += segments;
      return false;
    }
    this.stats.txFrames += segments;
    this.stats.txBytes += bytesIn;
    this.offloadStats.txCoalesced += segments - 1;
    return true;
  }

  /** Encode and write; false when the frame could not be encoded or the kernel refused it. */
  private writeOut(frame: Uint8Array, gsoSize: number, segments: number): boolean {
    let out: Uint8Array = frame;
    if (this.vnetHdrLen > 0) {
      const n = encodeVnetFrame(frame, this.txBuf, gsoSize);
      if (n === 0) return false;
      out = this.txBuf.subarray(0, n);
      if (frame.length > 1514 || gsoSize > 0) this.offloadStats.txGsoFrames++;
    }
    try {
      writeSync(this.fd, out);
      return true;
    } catch (e) {
      // EIO while the interface is down, EINVAL over the MTU, ENOBUFS: the frame is lost.
      if (this.debug.on) this.debug.debug(`${this.name}: tx drop (write: ${(e as NodeJS.ErrnoException).code ?? String(e)}, ${frame.length} bytes${segments > 1 ? `, ${segments} frames merged` : ''})`);
      return false;
    }
  }


  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
    this.ready();
  }

  /**
   * Stop reading and close the fd (a non-persistent device disappears with it); `whenClosed`
   * resolves once it is closed.
   */
  close(): void {
    if (this.closed) return;
    this.coalescer?.flush();
    this.closed = true;
    this.held = null;
    this.reader?.close();
  }

  whenClosed(): Promise<void> {
    return this.reader?.closed ?? Promise.resolve();
  }
}
