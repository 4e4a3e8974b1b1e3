import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Clock } from '../../net/clock.js';

/**
 * Classic pcap files (the libpcap format Wireshark, tshark and tcpdump read: global header, then
 * 16-byte record headers each followed by the captured bytes), written so that the file on disk is
 * valid after every flush — a Ctrl-C, SIGTERM or even SIGKILL between flushes loses at most the
 * records still buffered, never the file.
 *
 * Decisions:
 * - Little-endian, as libpcap writes on x86; readers detect byte order from the magic.
 * - Magic 0xa1b2c3d4 (microseconds, what QEMU's filter-dump and passt write) or 0xa1b23c4d
 *   (nanoseconds), version 2.4, linktype 1 (LINKTYPE_ETHERNET), snaplen 65535 by default.
 * - Records go into one in-memory batch and reach the file with a single synchronous `writeSync`
 *   per flush: a flush is one write(2) of whole records, so a killed process leaves whole records.
 *   Synchronous on purpose: `close()` must work inside a signal handler or process 'exit', where
 *   no asynchronous I/O completes.
 * - The flush timer is a real Node timer (unref'd), not the lab's Clock: a VirtualClock only moves
 *   when the simulation steps it, and capture housekeeping must neither add timers to the
 *   simulation (a `runUntil` would keep stepping them) nor keep the process alive.
 * - Ring mode rotates rather than truncating: when writing a record would take the file past
 *   `maxBytes`, `name.pcap` becomes `name.1.pcap` (older ones shift to `.2`, `.3` …) and a fresh
 *   `name.pcap` starts; `ringFiles` files are kept in all, the oldest deleted. Truncate-and-restart
 *   would throw away everything just before the moment a user stops to look; rotation always keeps
 *   at least `maxBytes × (ringFiles − 1)` of the most recent traffic, every file stays a valid pcap
 *   on its own, and `mergecap` joins them. A single record larger than `maxBytes` still gets a file
 *   of its own (a capture never silently loses a frame it was shown).
 */

export type TimestampPrecision = 'us' | 'ns';

export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;
export const LINKTYPE_ETHERNET = 1;
export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;
export const DEFAULT_SNAPLEN = 65535;
export const DEFAULT_FLUSH_BYTES = 256 * 1024;
export const DEFAULT_FLUSH_INTERVAL_MS = 200;

/** Which way a frame crossed a capture point, seen from the side that holds the capture port. */
export type CaptureDirection = 'in' | 'out';

/** Anything a capture point can record into (a pcap writer, a run's hop, a test double). */
export interface CaptureSink {
  /** Record `frame` now. Must not keep a reference to `frame` (the caller hands it on). */
  record(frame: Uint8Array, direction: CaptureDirection): void;
  /** The frame last recorded in `direction` was refused by the next element (a drop at this hop). */
  refused?(direction: CaptureDirection): void;
}

/**
 * Maps the lab's Clock (milliseconds, arbitrary origin, float) to Unix time split into whole
 * seconds and sub-second units. The offset is kept as integer seconds plus a fraction so the
 * arithmetic stays exact to well below a nanosecond's worth of float error for a run of any
 * length (a float of Unix milliseconds alone only resolves ~0.2 µs).
 */
export class Timebase {
  private readonly offsetSec: number;
  private readonly offsetFracMs: number;
  /** Results of the last `split`, kept as fields so the per-frame path allocates nothing. */
  sec = 0;
  sub = 0;

  /**
   * @param clock the lab's clock
   * @param epochOffsetMs Unix time in ms at clock time 0; by default "clock.now() is now", so a
   *   VirtualClock starting at 0 stamps frames from the moment the capture began.
   */
  constructor(
    readonly clock: Clock,
    epochOffsetMs: number = Date.now() - clock.now(),
  ) {
    this.offsetSec = Math.floor(epochOffsetMs / 1000);
    this.offsetFracMs = epochOffsetMs - this.offsetSec * 1000;
  }

  /** Split clock time `clockMs` into `sec` and `sub` (units of 1/`unitsPerSec`). */
  split(clockMs: number, unitsPerSec: number): void {
    const ms = this.offsetFracMs + clockMs;
    const whole = Math.floor(ms / 1000);
    let sec = this.offsetSec + whole;
    let sub = Math.round((ms - whole * 1000) * (unitsPerSec / 1000));
    if (sub >= unitsPerSec) {
      sec += 1;
      sub -= unitsPerSec;
    }
    // Times before 1970 cannot be written; a clock that far off is a lab bug, clamp rather than crash.
    if (sec < 0) {
      sec = 0;
      sub = 0;
    }
    this.sec = sec;
    this.sub = sub;
  }
}

export interface BatchFileOptions {
  /** Flush when the batch holds at least this many bytes (default 256 KiB). */
  flushBytes?: number;
  /** Flush this long after the first buffered record (real time; 0 = only on size and close). */
  flushIntervalMs?: number;
  /** Rotate before a file would exceed this size (bytes, headers included). 0/undefined = unbounded. */
  maxBytes?: number;
  /** Files kept in ring mode, the live one included (default 2, at least 1). */
  ringFiles?: number;
}

export interface FileCounts {
  /** Path of the file (the live one is always the first name; rotated ones carry `.N`). */
  file: string;
  frames: number;
  bytes: number;
}

/**
 * A file written in synchronous batches with optional size-bounded rotation: the shared machinery
 * of the pcap and pcapng writers. Subclasses say what starts a fresh file (`fileHeader`) and append
 * records with `reserve` + `commit`.
 */
export abstract class BatchFile {
  readonly path: string;
  private fd: number | null = null;
  private batch: Buffer;
  private used = 0;
  private readonly flushBytes: number;
  private readonly flushIntervalMs: number;
  private readonly maxBytes: number;
  private readonly ringFiles: number;
  private timer: NodeJS.Timeout | null = null;
  /** Bytes in the live file on disk plus those batched for it. */
  private fileBytes = 0;
  /** Length of the live file's header: a file no longer than this holds no records yet. */
  private headerBytes = 0;
  /** Frames/bytes per file, live file last; rotated entries shift as files are renamed. */
  private files: { frames: number; bytes: number; flushedFrames: number; flushedBytes: number }[] = [];
  private closed = false;
  /** First I/O error; after one the writer stops (fail-stop) and records nothing more. */
  error: Error | null = null;
  rotations = 0;

  protected constructor(filePath: string, options: BatchFileOptions, recordCapacity: number) {
    this.path = filePath;
    this.flushBytes = Math.max(1, options.flushBytes ?? DEFAULT_FLUSH_BYTES);
    this.flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
    this.maxBytes = options.maxBytes ?? 0;
    this.ringFiles = Math.max(1, Math.floor(options.ringFiles ?? 2));
    // One record always fits after a flush, so the batch never has to grow.
    this.batch = Buffer.allocUnsafe(this.flushBytes + recordCapacity);
  }

  /** The bytes that begin every file (global header; for pcapng the SHB and the IDBs). */
  protected abstract fileHeader(): Uint8Array;

  /** Create the live file and write its header straight away, so even an empty capture is valid. */
  protected open(): void {
    try {
      this.fd = fs.openSync(this.path, 'w');
      const header = this.fileHeader();
      this.writeAll(header, header.length);
      this.fileBytes = header.length;
      this.headerBytes = header.length;
      this.files.push({ frames: 0, bytes: 0, flushedFrames: 0, flushedBytes: 0 });
    } catch (e) {
      this.fail(e);
    }
  }

  get isOpen(): boolean {
    return this.fd !== null && !this.closed && this.error === null;
  }

  /**
   * Make room for a record of `length` bytes and return the batch and the offset to write it at.
   * Returns null when the writer is closed or failed. Rotation happens here, before the record,
   * so a record never straddles two files.
   */
  protected reserve(length: number): { buf: Buffer; at: number } | null {
    if (!this.isOpen) return null;
    if (this.maxBytes > 0 && this.fileBytes + length > this.maxBytes && this.fileBytes > this.headerBytes) {
      this.rotate();
      if (!this.isOpen) return null;
    }
    if (this.used + length > this.batch.length) {
      this.flush();
      if (!this.isOpen) return null;
      // Only a record bigger than flushBytes + recordCapacity gets here; grow once for it.
      if (length > this.batch.length) this.batch = Buffer.allocUnsafe(length);
    }
    return { buf: this.batch, at: this.used };
  }

  /** Account a record written at the reserved offset; `frameBytes` is the original frame length. */
  protected commit(length: number, frameBytes: number): void {
    this.used += length;
    this.fileBytes += length;
    const f = this.files[this.files.length - 1]!;
    f.frames++;
    f.bytes += frameBytes;
    if (this.used >= this.flushBytes) this.flush();
    else if (this.timer === null && this.flushIntervalMs > 0) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flush();
      }, this.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Append raw bytes outside of a record (pcapng IDBs added mid-file). */
  protected appendRaw(bytes: Uint8Array): void {
    const r = this.reserve(bytes.length);
    if (!r) return;
    r.buf.set(bytes, r.at);
    this.used += bytes.length;
    this.fileBytes += bytes.length;
  }

  /** Write everything batched to the file now (synchronously). */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.fd === null || this.error !== null || this.used === 0) return;
    try {
      this.writeAll(this.batch, this.used);
      this.used = 0;
      const f = this.files[this.files.length - 1]!;
      f.flushedFrames = f.frames;
      f.flushedBytes = f.bytes;
    } catch (e) {
      this.fail(e);
    }
  }

  /** Flush and close; safe to call more than once and from a signal handler or process 'exit'. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // Already gone (e.g. closed by a failing write path); nothing left to save.
      }
      this.fd = null;
    }
  }

  /**
   * Per-file counts, oldest first, live file last. `flushedOnly` reports what is on disk now
   * (what a manifest written mid-run must say so that it matches the files after a crash).
   */
  fileCounts(flushedOnly = false): FileCounts[] {
    const n = this.files.length;
    return this.files.map((f, i) => ({
      file: this.rotatedPath(n - 1 - i),
      frames: flushedOnly ? f.flushedFrames : f.frames,
      bytes: flushedOnly ? f.flushedBytes : f.bytes,
    }));
  }

  /** Path of the file `k` rotations old (0 = the live file). */
  rotatedPath(k: number): string {
    if (k === 0) return this.path;
    const ext = path.extname(this.path);
    return `${this.path.slice(0, this.path.length - ext.length)}.${k}${ext}`;
  }

  private rotate(): void {
    this.flush();
    if (this.error) return;
    try {
      fs.closeSync(this.fd!);
      this.fd = null;
      // Shift name.(k).ext → name.(k+1).ext from the oldest down, dropping what falls off the ring.
      const keepOld = this.ringFiles - 1;
      if (keepOld === 0) {
        fs.rmSync(this.path, { force: true });
        this.files = [];
      } else {
        fs.rmSync(this.rotatedPath(keepOld), { force: true });
        for (let k = keepOld - 1; k >= 0; k--) {
          if (fs.existsSync(this.rotatedPath(k))) fs.renameSync(this.rotatedPath(k), this.rotatedPath(k + 1));
        }
        if (this.files.length > keepOld) this.files = this.files.slice(this.files.length - keepOld);
      }
      this.rotations++;
    } catch (e) {
      this.fail(e);
      return;
    }
    this.open();
  }

  private writeAll(buf: Uint8Array, length: number): void {
    let off = 0;
    while (off < length) off += fs.writeSync(this.fd!, buf, off, length - off);
  }

  private fail(e: unknown): void {
    this.error = e instanceof Error ? e : new Error(String(e));
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // The error that matters is the one already recorded.
      }
      this.fd = null;
    }
  }
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
  private readonly timebase: Timebase;
  private readonly unitsPerSec: number;
  /** Frames and original bytes recorded since the writer opened (across rotations). */
  frames = 0;
  bytes = 0;

  constructor(filePath: string, options: PcapWriterOptions) {
    const snaplen = options.snaplen ?? DEFAULT_SNAPLEN;
    if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > 0x7fffffff) throw new RangeError(`snaplen must be a positive integer, got ${snaplen}`);
    super(filePath, options, PCAP_RECORD_HEADER_LEN + snaplen);
    this.snaplen = snaplen;
    this.precision = options.precision ?? 'us';
    this.unitsPerSec = this.precision === 'ns' ? 1e9 : 1e6;
    this.timebase = options.timebase ?? new Timebase(options.clock, options.epochOffsetMs);
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

/** pcapng block types and options used (draft-ietf-opsawg-pcapng). */
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_IDB = 0x00000001;
const PCAPNG_EPB = 0x00000006;
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const OPT_ENDOFOPT = 0;
const IF_NAME = 2;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;
/** epb_flags bits 0-1: 01 inbound, 10 outbound. */
const EPB_FLAG_INBOUND = 1;
const EPB_FLAG_OUTBOUND = 2;
/** EPB without data: header 28, epb_flags option 8, end of options 4, trailing length 4. */
const EPB_OVERHEAD = 28 + 8 + 4 + 4;

const pad4 = (n: number): number => (n + 3) & ~3;

/**
 * One pcapng file holding every hop of a run, one interface (IDB with `if_name` = the hop) per hop,
 * with each packet's direction in `epb_flags` — what Wireshark shows as "Interface name" and
 * "Direction". Interfaces may be added while the capture runs (an IDB may appear anywhere before
 * its first packet); a rotated file starts with all IDBs again so it stands on its own.
 */
export class PcapngWriter extends BatchFile {
  readonly snaplen: number;
  readonly precision: TimestampPrecision;
  private readonly timebase: Timebase;
  private readonly unitsPerSec: bigint;
  private readonly interfaces: string[] = [];
  frames = 0;
  bytes = 0;

  constructor(filePath: string, options: PcapWriterOptions) {
    const snaplen = options.snaplen ?? DEFAULT_SNAPLEN;
    super(filePath, options, EPB_OVERHEAD + pad4(snaplen));
    this.snaplen = snaplen;
    this.precision = options.precision ?? 'us';
    this.unitsPerSec = this.precision === 'ns' ? 1_000_000_000n : 1_000_000n;
    this.timebase = options.timebase ?? new Timebase(options.clock, options.epochOffsetMs);
    this.open();
  }

  /** Add an interface named `name`; returns its interface id for `writeFrame`. */
  addInterface(name: string): number {
    // Append before registering: if the append rotates, the fresh file's header must not already
    // hold this interface, or it would appear twice and shift the interface ids.
    this.appendRaw(this.idb(name));
    this.interfaces.push(name);
    return this.interfaces.length - 1;
  }

  protected fileHeader(): Uint8Array {
    const shb = Buffer.alloc(28);
    shb.writeUInt32LE(PCAPNG_SHB, 0);
    shb.writeUInt32LE(28, 4);
    shb.writeUInt32LE(PCAPNG_BYTE_ORDER_MAGIC, 8);
    shb.writeUInt16LE(1, 12);
    shb.writeUInt16LE(0, 14);
    // Section length unknown (-1): the file is written as it goes.
    shb.writeInt32LE(-1, 16);
    shb.writeInt32LE(-1, 20);
    shb.writeUInt32LE(28, 24);
    return Buffer.concat([shb, ...this.interfaces.map((n) => this.idb(n))]);
  }

  private idb(name: string): Buffer {
    const nameBytes = Buffer.from(name, 'utf8');
    const len = 16 + 4 + pad4(nameBytes.length) + 8 + 4 + 4;
    const b = Buffer.alloc(len);
    b.writeUInt32LE(PCAPNG_IDB, 0);
    b.writeUInt32LE(len, 4);
    b.writeUInt16LE(LINKTYPE_ETHERNET, 8);
    b.writeUInt32LE(this.snaplen, 12);
    let o = 16;
    b.writeUInt16LE(IF_NAME, o);
    b.writeUInt16LE(nameBytes.length, o + 2);
    nameBytes.copy(b, o + 4);
    o += 4 + pad4(nameBytes.length);
    b.writeUInt16LE(IF_TSRESOL, o);
    b.writeUInt16LE(1, o + 2);
    b.writeUInt8(this.precision === 'ns' ? 9 : 6, o + 4);
    o += 8;
    b.writeUInt16LE(OPT_ENDOFOPT, o);
    b.writeUInt16LE(0, o + 2);
    b.writeUInt32LE(len, len - 4);
    return b;
  }

  /** Record `frame` on interface `ifId` at clock time `clockMs`, with its direction. */
  writeFrame(ifId: number, frame: Uint8Array, direction: CaptureDirection, clockMs: number): void {
    const caplen = Math.min(frame.length, this.snaplen);
    const len = EPB_OVERHEAD + pad4(caplen);
    const r = this.reserve(len);
    if (!r) return;
    this.timebase.split(clockMs, Number(this.unitsPerSec));
    // 64-bit timestamp in if_tsresol units exceeds 2^53 in nanoseconds: BigInt for exactness.
    const ts = BigInt(this.timebase.sec) * this.unitsPerSec + BigInt(this.timebase.sub);
    const { buf, at } = r;
    buf.writeUInt32LE(PCAPNG_EPB, at);
    buf.writeUInt32LE(len, at + 4);
    buf.writeUInt32LE(ifId, at + 8);
    buf.writeUInt32LE(Number(ts >> 32n), at + 12);
    buf.writeUInt32LE(Number(ts & 0xffffffffn), at + 16);
    buf.writeUInt32LE(caplen, at + 20);
    buf.writeUInt32LE(frame.length, at + 24);
    buf.set(caplen === frame.length ? frame : frame.subarray(0, caplen), at + 28);
    let o = at + 28 + caplen;
    // Padding must be zero; the batch is reused, so clear it.
    buf.fill(0, o, at + 28 + pad4(caplen));
    o = at + 28 + pad4(caplen);
    buf.writeUInt16LE(EPB_FLAGS, o);
    buf.writeUInt16LE(4, o + 2);
    buf.writeUInt32LE(direction === 'in' ? EPB_FLAG_INBOUND : EPB_FLAG_OUTBOUND, o + 4);
    buf.writeUInt16LE(OPT_ENDOFOPT, o + 8);
    buf.writeUInt16LE(0, o + 10);
    buf.writeUInt32LE(len, o + 12);
    this.commit(len, frame.length);
    this.frames++;
    this.bytes += frame.length;
  }
}
