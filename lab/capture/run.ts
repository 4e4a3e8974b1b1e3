import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Clock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import { captureBetween } from './capture-port.js';
import {
  PcapngWriter,
  PcapWriter,
  Timebase,
  type CaptureDirection,
  type CaptureSink,
  type FileCounts,
  type TimestampPrecision,
} from './pcap-writer.js';

/**
 * A capture run: one folder per lab run, `captures/<run-id>/`, with one pcap per hop named after
 * the hop (`tap2.pcap`, `vm0.eth0.pcap`, `vm0.eth0.stack.pcap`, `user.pcap`), a `manifest.json`
 * listing hops, links and counters, and optionally one merged pcapng with an interface per hop
 * (DESIGN.md, Captures).
 *
 * Everything is synchronous so that `closeSync()` works from a signal handler or process 'exit'.
 * The manifest is rewritten periodically (after flushing every pcap, so its counts describe the
 * files on disk) and on close; it is replaced by rename, so a reader never sees half a manifest.
 * A disabled run (`--no-capture`) creates nothing and its `tap()` returns the port untouched, so a
 * lab without captures pays nothing for them.
 */

export const MANIFEST_FILE = 'manifest.json';
export const MERGED_FILE = 'all.pcapng';
export const MANIFEST_FORMAT = 'netlab-captures/1';

export interface CaptureRunOptions {
  /** The lab command this run records (`run`, `up`, `redirect` …); part of the run id. */
  command: string;
  clock: Clock;
  /** Folder holding the runs (default `captures`, the CLI's `--captures`). */
  baseDir?: string;
  /** false for `--no-capture`: nothing is created or recorded. */
  enabled?: boolean;
  /** Override the generated run id (`2026-11-25T05-50-12-run`). */
  runId?: string;
  /** Wall-clock start of the run (default now); names the run and anchors timestamps. */
  startDate?: Date;
  /** Unix ms at clock time 0 (default: the clock's "now" is `startDate`). */
  epochOffsetMs?: number;
  precision?: TimestampPrecision;
  snaplen?: number;
  /** Ring mode per pcap: rotate before a file exceeds this many bytes (0 = unbounded). */
  maxBytes?: number;
  /** Files kept per hop in ring mode, the live one included (default 2). */
  ringFiles?: number;
  flushBytes?: number;
  flushIntervalMs?: number;
  /** Rewrite the manifest this often (real time, ms; 0 = only on close and `writeManifest`). Default 1000. */
  manifestIntervalMs?: number;
  /** Also write `all.pcapng` with one named interface per hop. */
  merged?: boolean;
}

export interface DirectionCount {
  frames: number;
  bytes: number;
  drops: number;
}

export interface ManifestHop {
  name: string;
  /** The live pcap, relative to the run folder. */
  file: string;
  description?: string;
  /** Frames and bytes (original lengths) seen at the hop, both directions. */
  frames: number;
  bytes: number;
  /** Of those, frames the next element refused. */
  drops: number;
  out: DirectionCount;
  in: DirectionCount;
  /** The pcap files on disk, oldest first (more than one only in ring mode), with what each holds. */
  files: FileCounts[];
  rotations: number;
  /** Set when writing the pcap failed; the hop then records nothing more. */
  error?: string;
}

export interface ManifestLink {
  from: string;
  to: string;
  description?: string;
}

export interface CaptureManifest {
  format: string;
  runId: string;
  command: string;
  startTime: string;
  /** null while the run is going (a manifest without endTime after a crash says so). */
  endTime: string | null;
  timestampPrecision: TimestampPrecision;
  snaplen: number;
  linkType: 'ethernet';
  maxBytes: number | null;
  ringFiles: number | null;
  merged: string | null;
  hops: ManifestHop[];
  links: ManifestLink[];
}

/** One hop of a run: a CaptureSink that writes the hop's pcap (and the merged file) and counts. */
export class CaptureHop implements CaptureSink {
  readonly out: DirectionCount = { frames: 0, bytes: 0, drops: 0 };
  readonly in: DirectionCount = { frames: 0, bytes: 0, drops: 0 };

  constructor(
    readonly name: string,
    readonly file: string,
    readonly writer: PcapWriter | null,
    private readonly clock: Clock,
    private readonly merged: PcapngWriter | null,
    private readonly mergedIf: number,
    public description?: string,
  ) {}

  record(frame: Uint8Array, direction: CaptureDirection): void {
    const c = this[direction];
    c.frames++;
    c.bytes += frame.length;
    if (!this.writer) return;
    // One clock reading for both files, so the merged pcapng agrees with the hop's pcap.
    const t = this.clock.now();
    this.writer.writeFrame(frame, t);
    this.merged?.writeFrame(this.mergedIf, frame, direction, t);
  }

  refused(direction: CaptureDirection): void {
    this[direction].drops++;
  }

  get frames(): number {
    return this.out.frames + this.in.frames;
  }
}

export class CaptureRun {
  readonly id: string;
  /** The run folder, or null for a disabled run. */
  readonly dir: string | null;
  readonly enabled: boolean;
  readonly command: string;
  readonly startDate: Date;
  private endDate: Date | null = null;
  private readonly hops = new Map<string, CaptureHop>();
  private readonly links: ManifestLink[] = [];
  private readonly timebase: Timebase;
  private readonly merged: PcapngWriter | null = null;
  private manifestTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private uninstallHandlers: (() => void) | null = null;

  constructor(private readonly options: CaptureRunOptions) {
    this.command = options.command;
    this.enabled = options.enabled ?? true;
    this.startDate = options.startDate ?? new Date();
    const epoch = options.epochOffsetMs ?? this.startDate.getTime() - options.clock.now();
    this.timebase = new Timebase(options.clock, epoch);
    const baseId = options.runId ?? runIdFor(this.startDate, options.command);
    if (!this.enabled) {
      this.id = baseId;
      this.dir = null;
      return;
    }
    const baseDir = options.baseDir ?? 'captures';
    fs.mkdirSync(baseDir, { recursive: true });
    // Two runs started within the same second get -2, -3 … rather than sharing a folder.
    let id = baseId;
    for (let n = 2; ; n++) {
      try {
        fs.mkdirSync(path.join(baseDir, id));
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || n > 1000) throw e;
        id = `${baseId}-${n}`;
      }
    }
    this.id = id;
    this.dir = path.join(baseDir, id);
    if (options.merged) this.merged = new PcapngWriter(path.join(this.dir, MERGED_FILE), this.writerOptions());
    this.writeManifest();
    const every = options.manifestIntervalMs ?? 1000;
    if (every > 0) {
      this.manifestTimer = setInterval(() => this.writeManifest(), every);
      this.manifestTimer.unref();
    }
  }

  /** The hop named `name`, created (with its pcap) on first use. */
  hop(name: string, description?: string): CaptureHop {
    const existing = this.hops.get(name);
    if (existing) {
      if (description && !existing.description) existing.description = description;
      return existing;
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name.includes('..')) {
      throw new Error(`capture hop name "${name}" must be letters, digits, '.', '_' or '-' (it names a file)`);
    }
    const file = `${name}.pcap`;
    let writer: PcapWriter | null = null;
    let mergedIf = -1;
    if (this.dir && !this.closed) {
      writer = new PcapWriter(path.join(this.dir, file), this.writerOptions());
      if (this.merged) mergedIf = this.merged.addInterface(name);
    }
    const hop = new CaptureHop(name, file, writer, this.options.clock, this.merged, mergedIf, description);
    this.hops.set(name, hop);
    return hop;
  }

  /**
   * Insert a capture point named `hop` in front of `port`; use the result wherever `port` would
   * have been used. A disabled run returns `port` itself.
   */
  tap(port: FramePort, hop: string, description?: string): FramePort {
    if (!this.enabled) return port;
    return captureBetween(port, hop, this.hop(hop, description));
  }

  /** Record in the manifest that hop (or element) `from` is wired to `to`. */
  link(from: string, to: string, description?: string): void {
    if (this.links.some((l) => l.from === from && l.to === to)) return;
    this.links.push(description ? { from, to, description } : { from, to });
  }

  /**
   * A `wrapLink` for `assembleLab` (lab/topology.ts): a capture point `<vm>.<ifname>` on the NIC side
   * of each NIC↔backend link, and one on the backend side when `backendHop` names it (`user`, `tap2`).
   */
  wrapLink(backendHop?: (backendId: string) => string | null) {
    return (
      hop: { vm: string; nic: { id: string }; backend: string; ifname?: string },
      nicSide: FramePort,
      backendSide: FramePort,
    ): { nicSide: FramePort; backendSide: FramePort } => {
      const nicHop = `${hop.vm}.${hop.ifname ?? hop.nic.id}`;
      const backName = backendHop?.(hop.backend) ?? null;
      this.link(nicHop, backName ?? hop.backend, 'link');
      return {
        nicSide: this.tap(nicSide, nicHop, `${hop.vm} NIC ${hop.nic.id} (device side)`),
        backendSide: backName ? this.tap(backendSide, backName, `backend ${hop.backend}`) : backendSide,
      };
    };
  }

  /** Flush every pcap now (synchronously). */
  flush(): void {
    for (const h of this.hops.values()) h.writer?.flush();
    this.merged?.flush();
  }

  manifest(): CaptureManifest {
    const o = this.options;
    const hops: ManifestHop[] = [...this.hops.values()].map((h) => {
      const files = h.writer ? h.writer.fileCounts().map((f) => ({ ...f, file: this.relative(f.file) })) : [];
      const entry: ManifestHop = {
        name: h.name,
        file: h.file,
        frames: h.out.frames + h.in.frames,
        bytes: h.out.bytes + h.in.bytes,
        drops: h.out.drops + h.in.drops,
        out: { ...h.out },
        in: { ...h.in },
        files,
        rotations: h.writer?.rotations ?? 0,
      };
      if (h.description) entry.description = h.description;
      if (h.writer?.error) entry.error = h.writer.error.message;
      return entry;
    });
    return {
      format: MANIFEST_FORMAT,
      runId: this.id,
      command: this.command,
      startTime: this.startDate.toISOString(),
      endTime: this.endDate ? this.endDate.toISOString() : null,
      timestampPrecision: o.precision ?? 'us',
      snaplen: o.snaplen ?? 65535,
      linkType: 'ethernet',
      maxBytes: o.maxBytes ? o.maxBytes : null,
      ringFiles: o.maxBytes ? Math.max(1, o.ringFiles ?? 2) : null,
      merged: this.merged ? MERGED_FILE : null,
      hops,
      links: this.links.map((l) => ({ ...l })),
    };
  }

  /**
   * Flush the pcaps, then write `manifest.json` (via a temporary file and rename), so the counts
   * it states are those of the files on disk.
   */
  writeManifest(): void {
    if (!this.dir) return;
    this.flush();
    const file = path.join(this.dir, MANIFEST_FILE);
    const tmp = `${file}.tmp`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(this.manifest(), null, 2) + '\n');
      fs.renameSync(tmp, file);
    } catch {
      // A manifest that cannot be written must not take the lab down; the pcaps stand on their own.
    }
  }

  /** Flush and close every file and write the final manifest. Idempotent; synchronous. */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.manifestTimer) clearInterval(this.manifestTimer);
    this.manifestTimer = null;
    this.uninstallHandlers?.();
    this.endDate = new Date();
    for (const h of this.hops.values()) h.writer?.close();
    this.merged?.close();
    this.writeManifest();
  }

  /**
   * Close the run on process 'exit' and on SIGINT/SIGTERM/SIGHUP. When nothing else listens for
   * the signal, the default action (exit with 128+n) is restored and the signal re-raised after
   * closing, so Ctrl-C behaves as it would without captures. Returns an uninstaller.
   */
  installExitHandlers(signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']): () => void {
    if (this.uninstallHandlers) return this.uninstallHandlers;
    const onExit = (): void => this.closeSync();
    process.on('exit', onExit);
    const handlers = signals.map((sig) => {
      const h = (): void => {
        this.closeSync();
        if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
      };
      process.on(sig, h);
      return [sig, h] as const;
    });
    const uninstall = (): void => {
      process.removeListener('exit', onExit);
      for (const [sig, h] of handlers) process.removeListener(sig, h);
      this.uninstallHandlers = null;
    };
    this.uninstallHandlers = uninstall;
    return uninstall;
  }

  private writerOptions() {
    const o = this.options;
    return {
      clock: o.clock,
      timebase: this.timebase,
      precision: o.precision,
      snaplen: o.snaplen,
      maxBytes: o.maxBytes,
      ringFiles: o.ringFiles,
      flushBytes: o.flushBytes,
      flushIntervalMs: o.flushIntervalMs,
    };
  }

  private relative(p: string): string {
    return this.dir ? path.relative(this.dir, p) : p;
  }
}

/** `2026-11-25T05-50-12-<command>`: UTC start time to the second (no ':' so it is a portable file name). */
export function runIdFor(start: Date, command: string): string {
  const stamp = start.toISOString().slice(0, 19).replace(/:/g, '-');
  const cmd = command.trim().replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'lab';
  return `${stamp}-${cmd}`;
}

/** Start a capture run (`new CaptureRun(options)`). */
export function startCaptureRun(options: CaptureRunOptions): CaptureRun {
  return new CaptureRun(options);
}
