import type { Clock } from '../../net/clock.js';
import { BatchFile, Timebase, type BatchFileOptions } from './batch-file.js';
import type { CaptureDirection, CaptureSink, TimestampPrecision } from './sink.js';

export { Timebase, type BatchFileOptions, type FileCounts } from './batch-file.js';
export type { CaptureDirection, CaptureSink, TimestampPrecision } from './sink.js';

/**
 * Classic pcap files (the libpcap format QEMU's filter-dump and passt write: global header, then
 * 16-byte record headers each followed by the captured bytes), for `--capture-format pcap`; the
 * default per hop is pcapng (pcapng-writer.ts), which carries hop names, directions, packet ids
 * and drop statistics that classic pcap has no room for.
 *
 * Decisions:
 * - Little-endian, as libpcap writes on x86; readers detect byte order from the magic.
 * - Magic 0xa1b2c3d4 (microseconds) or 0xa1b23c4d (nanoseconds), version 2.4, linktype 1
 *   (LINKTYPE_ETHERNET), snaplen 65535 by default.
 * - Batching, flushing and ring files are batch-file.ts's.
 */

export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;
export const LINKTYPE_ETHERNET = 1;
export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;
export const DEFAULT_SNAPLEN = 65535;

/** The snaplen (checked) and the timebase a writer stamps with, from its options. */
export function writerBasics(options: PcapWriterOptions): { snaplen: number; timebase: Timebase } {
  const snaplen = options.snaplen ?? DEFAULT_SNAPLEN;
  if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > 0x7fffffff) throw new RangeError(`snaplen must be a positive integer, got ${snaplen}`);
  return { snaplen, timebase: options.timebase ?? new Timebase(options.clock, options.epochOffsetMs) };
}

export interface PcapWriterOptions extends BatchFileOptions {
  clock: Clock;
  /** Shared timebase so several files of one run stamp frames on the same axis. */
  timebase?: Timebase;
  /** Unix time in ms at clock time 0, when no timebase is given (default: the clock's now is now). */
  epochOffsetMs?: number;
  precision?: TimestampPrecision;
  /** Bytes of each frame kept (the rest is counted in the record's original length). Default 65535. */
  snaplen?: number;
}

/** One classic pcap file (see the file comment for the format and flushing decisions). */
export class PcapWriter extends BatchFile implements CaptureSink {
  readonly snaplen: number;
  readonly precision: TimestampPrecision;
  private readonly unitsPerSec: number;
  /** Frames and original bytes recorded since the writer opened (across rotations). */
  frames = 0;
  bytes = 0;

  constructor(filePath: string, options: PcapWriterOptions) {
    const { snaplen, timebase } = writerBasics(options);
    super(filePath, options, PCAP_RECORD_HEADER_LEN + snaplen, timebase);
    this.snaplen = snaplen;
    this.precision = options.precision ?? 'us';
    this.unitsPerSec = this.precision === 'ns' ? 1e9 : 1e6;
    this.open();
  }

  protected fileHeader(): Uint8Array {
    const h = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN);
    h.writeUInt32LE(this.precision === 'ns' ? PCAP_MAGIC_NS : PCAP_MAGIC_US, 0);
    h.writeUInt16LE(PCAP_VERSION_MAJOR, 4);
    h.writeUInt16LE(PCAP_VERSION_MINOR, 6);
    // thiszone and sigfigs: 0, as every modern writer does.
    h.writeUInt32LE(this.snaplen, 16);
    h.writeUInt32LE(LINKTYPE_ETHERNET, 20);
    return h;
  }

  /** Record a frame stamped with the clock's current time (CaptureSink; pcap has no direction). */
  record(frame: Uint8Array, _direction?: CaptureDirection): void {
    this.writeFrame(frame, this.timebase.clock.now());
  }

  /** Record a frame stamped at clock time `clockMs`. The frame is copied; the caller keeps it. */
  writeFrame(frame: Uint8Array, clockMs: number): void {
    const caplen = Math.min(frame.length, this.snaplen);
    const length = PCAP_RECORD_HEADER_LEN + caplen;
    const r = this.reserve(length);
    if (!r) return;
    this.timebase.split(clockMs, this.unitsPerSec);
    const { buf, at } = r;
    buf.writeUInt32LE(this.timebase.sec >>> 0, at);
    buf.writeUInt32LE(this.timebase.sub, at + 4);
    buf.writeUInt32LE(caplen, at + 8);
    buf.writeUInt32LE(frame.length, at + 12);
    // The one copy a capture makes: straight from the frame into the file's batch.
    buf.set(caplen === frame.length ? frame : frame.subarray(0, caplen), at + PCAP_RECORD_HEADER_LEN);
    this.commit(length, frame.length);
    this.frames++;
    this.bytes += frame.length;
  }
}
