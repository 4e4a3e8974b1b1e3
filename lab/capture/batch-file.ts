import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Clock } from '../../net/clock.js';

/**
 * The file machinery shared by the pcap and pcapng writers: synchronous batched writes, so the
 * file on disk is valid after every flush (a Ctrl-C, SIGTERM or even SIGKILL between flushes
 * loses at most the records still buffered, never the file), and dumpcap-style ring files.
 *
 * Decisions:
 * - Records go into one in-memory batch and reach the file with a single synchronous `writeSync`
 *   per flush: a flush is one write(2) of whole records, so a killed process leaves whole records.
 *   Synchronous on purpose: `close()` must work inside a signal handler or process 'exit', where
 *   no asynchronous I/O completes.
 * - The flush timer is a real Node timer (unref'd), not the lab's Clock: a VirtualClock only moves
 *   when the simulation steps it, and capture housekeeping must neither add timers to the
 *   simulation (a `runUntil` would keep stepping them) nor keep the process alive.
 * - Ring mode is dumpcap's `-b filesize:`/`-b duration:`/`-b files:`: files are named
 *   `<hop>_<nnnnn>_<YYYYMMDDhhmmss>.<ext>` (the pattern Wireshark's File Set dialog groups), a new
 *   one starts before a record would take the live file past `maxBytes` or once it has been open
 *   `maxDurationMs` of lab time, and only the newest `ringFiles` are kept. Rotation rather than
 *   truncation keeps the most recent traffic — what a user stops to look at — and every file
 *   stands on its own. A single record larger than `maxBytes` still gets a file of its own (a
 *   capture never silently loses a frame it was shown). Without a ring the file is `<hop>.<ext>`.
 */

export const DEFAULT_FLUSH_BYTES = 256 * 1024;
export const DEFAULT_FLUSH_INTERVAL_MS = 200;

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

  /** Clock time `clockMs` as one integer in units of 1/`unitsPerSec` (pcapng's 64-bit stamps). */
  ticks(clockMs: number, unitsPerSec: bigint): bigint {
    this.split(clockMs, Number(unitsPerSec));
    return BigInt(this.sec) * unitsPerSec + BigInt(this.sub);
  }

  /** Unix milliseconds at clock time `clockMs`. */
  unixMs(clockMs: number): number {
    return this.offsetSec * 1000 + this.offsetFracMs + clockMs;
  }
}

export interface BatchFileOptions {
  /** Flush when the batch holds at least this many bytes (default 256 KiB). */
  flushBytes?: number;
  /** Flush this long after the first buffered record (real time; 0 = only on size and close). */
  flushIntervalMs?: number;
  /** Ring: start a new file before one would exceed this size (bytes, headers included). 0 = no limit. */
  maxBytes?: number;
  /** Ring: start a new file once the live one has been open this long (lab clock ms). 0 = no limit. */
  maxDurationMs?: number;
  /** Ring: files kept, the live one included (default 2, at least 1). */
  ringFiles?: number;
}

export interface FileCounts {
  /** Path of the file. */
  file: string;
  frames: number;
  bytes: number;
}

interface FileEntry {
  path: string;
  frames: number;
  bytes: number;
  flushedFrames: number;
  flushedBytes: number;
}

/**
 * A file written in synchronous batches with optional ring rotation. Subclasses say what starts a
 * fresh file (`fileHeader`) and what closes one (`fileTrailer`), and append records with
 * `reserve` + `commit`.
 */
export abstract class BatchFile {
  /** The name the writer was given (`dir/hop.pcapng`); ring files are derived from it. */
  readonly path: string;
  private fd: number | null = null;
  private batch: Buffer;
  private used = 0;
  private readonly flushBytes: number;
  private readonly flushIntervalMs: number;
  private readonly maxBytes: number;
  private readonly maxDurationMs: number;
  private readonly ringFiles: number;
  private timer: NodeJS.Timeout | null = null;
  /** Bytes in the live file on disk plus those batched for it. */
  private fileBytes = 0;
  /** Length of the live file's header: a file no longer than this holds no records yet. */
  private headerBytes = 0;
  /** Lab clock time the live file was opened (for `maxDurationMs`). */
  private openedAt = 0;
  private files: FileEntry[] = [];
  private sequence = 0;
  private closed = false;
  /** Where the last record starts in the batch, or -1 once it has been flushed (see `amendLast`). */
  private lastAt = -1;
  /** First I/O error; after one the writer stops (fail-stop) and records nothing more. */
  error: Error | null = null;
  rotations = 0;

  protected constructor(
    filePath: string,
    options: BatchFileOptions,
    recordCapacity: number,
    /** The lab clock (ms) and its mapping to Unix time, for duration rotation and ring names. */
    protected readonly timebase: Timebase,
  ) {
    this.path = filePath;
    this.flushBytes = Math.max(1, options.flushBytes ?? DEFAULT_FLUSH_BYTES);
    this.flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
    this.maxBytes = options.maxBytes ?? 0;
    this.maxDurationMs = options.maxDurationMs ?? 0;
    this.ringFiles = Math.max(1, Math.floor(options.ringFiles ?? 2));
    // One record always fits after a flush, so the batch never has to grow.
    this.batch = Buffer.allocUnsafe(this.flushBytes + recordCapacity);
  }

  /** True when files rotate (dumpcap's ring buffer). */
  get ring(): boolean {
    return this.maxBytes > 0 || this.maxDurationMs > 0;
  }

  /** The bytes that begin every file (global header; for pcapng the SHB and the IDBs). */
  protected abstract fileHeader(): Uint8Array;

  /** Bytes written when a file is finished (pcapng statistics); none by default. */
  protected fileTrailer(): Uint8Array | null {
    return null;
  }

  /** The live file's path. */
  get livePath(): string {
    return this.files.at(-1)?.path ?? this.path;
  }

  /** Create the next file and write its header straight away, so even an empty capture is valid. */
  protected open(): void {
    const now = this.timebase.clock.now();
    const file = this.ring ? ringFileName(this.path, ++this.sequence, this.timebase.unixMs(now)) : this.path;
    try {
      this.fd = fs.openSync(file, 'w');
      this.files.push({ path: file, frames: 0, bytes: 0, flushedFrames: 0, flushedBytes: 0 });
      this.openedAt = now;
      const header = this.fileHeader();
      this.writeAll(header, header.length);
      this.fileBytes = header.length;
      this.headerBytes = header.length;
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
    if (this.fileBytes > this.headerBytes) {
      const full = this.maxBytes > 0 && this.fileBytes + length > this.maxBytes;
      const old = this.maxDurationMs > 0 && this.timebase.clock.now() - this.openedAt >= this.maxDurationMs;
      if (full || old) {
        this.rotate();
        if (!this.isOpen) return null;
      }
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
    this.lastAt = this.used;
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

  /**
   * The last record, if it is still in the batch (not yet flushed) and nothing came after it:
   * `rewrite` gets its bytes and returns their replacement (e.g. with a comment added). Returns
   * false when the record has already reached the disk, which a writer then leaves as it is.
   */
  protected amendLast(rewrite: (record: Buffer) => Buffer): boolean {
    if (this.lastAt < 0 || !this.isOpen) return false;
    const old = this.batch.subarray(this.lastAt, this.used);
    const replacement = rewrite(old);
    if (this.lastAt + replacement.length > this.batch.length) return false;
    const delta = replacement.length - old.length;
    this.batch.set(replacement, this.lastAt);
    this.used += delta;
    this.fileBytes += delta;
    return true;
  }

  /** Append raw bytes outside of a record (pcapng IDBs added mid-file). */
  protected appendRaw(bytes: Uint8Array): void {
    const r = this.reserve(bytes.length);
    if (!r) return;
    r.buf.set(bytes, r.at);
    this.used += bytes.length;
    this.fileBytes += bytes.length;
    this.lastAt = -1;
  }

  /** Write everything batched to the file now (synchronously). */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.lastAt = -1;
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

  /** Flush, finish and close; safe to call more than once and from a signal handler or process 'exit'. */
  close(): void {
    if (this.closed) return;
    this.finishFile();
    this.closed = true;
    this.closeFd();
  }

  /**
   * Per-file counts, oldest first, live file last. `flushedOnly` reports what is on disk now
   * (what a manifest written mid-run must say so that it matches the files after a crash).
   */
  fileCounts(flushedOnly = false): FileCounts[] {
    return this.files.map((f) => ({
      file: f.path,
      frames: flushedOnly ? f.flushedFrames : f.frames,
      bytes: flushedOnly ? f.flushedBytes : f.bytes,
    }));
  }

  /** Append the trailer (if any) to the live file and flush it. */
  private finishFile(): void {
    const trailer = this.isOpen ? this.fileTrailer() : null;
    if (trailer) {
      // Not through `reserve`: a trailer belongs to the file it closes, full or not.
      if (this.used + trailer.length > this.batch.length) this.flush();
      if (trailer.length > this.batch.length) this.batch = Buffer.allocUnsafe(trailer.length);
      this.batch.set(trailer, this.used);
      this.used += trailer.length;
      this.fileBytes += trailer.length;
    }
    this.flush();
  }

  private rotate(): void {
    this.finishFile();
    if (this.error) return;
    this.closeFd();
    try {
      while (this.files.length >= this.ringFiles) fs.rmSync(this.files.shift()!.path, { force: true });
      this.rotations++;
    } catch (e) {
      this.fail(e);
      return;
    }
    this.open();
  }

  private closeFd(): void {
    if (this.fd === null) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // Already gone (e.g. closed by a failing write path); nothing left to save.
    }
    this.fd = null;
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
    this.closeFd();
  }
}

/** dumpcap's ring file name: `dir/hop_00001_20261203062310.pcapng` (UTC, to the second). */
export function ringFileName(base: string, n: number, unixMs: number): string {
  const ext = path.extname(base);
  const stem = base.slice(0, base.length - ext.length);
  const d = new Date(Math.max(0, unixMs));
  const p2 = (v: number): string => String(v).padStart(2, '0');
  const stamp = `${d.getUTCFullYear()}${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}`;
  return `${stem}_${String(n).padStart(5, '0')}_${stamp}${ext}`;
}

/** The files of one ring (or the single file) in `dir` for `base` (`hop.pcapng`), oldest first. */
export function ringFilesIn(dir: string, base: string): string[] {
  const ext = path.extname(base);
  const stem = base.slice(0, base.length - ext.length);
  const re = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_(\\d{5,})_\\d{14}${ext.replace('.', '\\.')}$`);
  const names = fs.readdirSync(dir);
  const ring = names.filter((n) => re.test(n)).sort((a, b) => Number(re.exec(a)![1]) - Number(re.exec(b)![1]));
  if (ring.length > 0) return ring;
  return names.includes(base) ? [base] : [];
}
