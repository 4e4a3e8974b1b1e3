import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Clock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import { NO_DEBUG, type DebugLog } from '../../net/debug.js';
import { NETLAB_VERSION } from '../version.js';
import { Timebase, type FileCounts } from './batch-file.js';
import { captureBetween } from './capture-port.js';
import { PacketIds } from './packet-ids.js';
import { PcapWriter } from './pcap-writer.js';
import { PcapngWriter } from './pcapng-writer.js';
import type { SectionInfo } from './pcapng-blocks.js';
import { pruneRuns, type PruneResult } from './prune.js';
import type { CaptureDirection, CaptureSink, TimestampPrecision } from './sink.js';

/**
 * A capture run: one folder per lab run, `captures/<run-id>/`, with one pcapng per hop named after
 * the hop (`tap2.pcapng`, `vm0.eth0.pcapng`, `vm0.eth0.stack.pcapng`, `user.pcapng`; classic pcap
 * with `format: 'pcap'`), a `manifest.json` listing hops, links and counters, and optionally one
 * merged pcapng with an interface per hop (DESIGN.md, Captures).
 *
 * Every frame recorded gets a lab-wide packet id (packet-ids.ts) written as its epb_packetid in
 * every file, so one frame can be followed across hops (`lab captures RUN --follow ID`).
 *
 * Bounded by default: each hop is a ring of files (dumpcap's `-b`), and starting a run prunes the
 * oldest finished runs beyond a kept count and total size (prune.ts).
 *
 * Everything is synchronous so that `closeSync()` works from a signal handler or process 'exit'.
 * The manifest is rewritten periodically (after flushing every file, so its counts describe the
 * files on disk) and on close; it is replaced by rename, so a reader never sees half a manifest.
 * A disabled run (`--no-capture`) creates nothing and its `tap()` returns the port untouched, so a
 * lab without captures pays nothing for them.
 */

export const MANIFEST_FILE = 'manifest.json';
export const MERGED_FILE = 'all.pcapng';
export const MANIFEST_FORMAT = 'netlab-captures/2';

export type CaptureFormat = 'pcapng' | 'pcap';

/** A hop's ring by default: 4 files of 16 MiB, so one hop never holds more than 64 MiB. */
export const DEFAULT_RING = { maxBytes: 16 * 1024 * 1024, ringFiles: 4 } as const;
/** Old runs kept by default when a new one starts. */
export const DEFAULT_KEEP = { runs: 20, bytes: 2 * 1024 * 1024 * 1024 } as const;

/** Where runs go unless told: `$NETLAB_CAPTURES` (tests point it at a temporary folder), else `captures`. */
export function defaultCaptureDir(): string {
  return process.env['NETLAB_CAPTURES'] || 'captures';
}

export interface CaptureRunOptions {
  /** The lab command this run records (`run`, `up`, `redirect` …); part of the run id. */
  command: string;
  clock: Clock;
  /** Folder holding the runs (default `defaultCaptureDir()`, the CLI's `--captures`). */
  baseDir?: string;
  /** false for `--no-capture`: nothing is created or recorded. */
  enabled?: boolean;
  /** Override the generated run id (`2026-11-25T05-50-12-run`). */
  runId?: string;
  /** Wall-clock start of the run (default now); names the run and anchors timestamps. */
  startDate?: Date;
  /** Unix ms at clock time 0 (default: the clock's "now" is `startDate`). */
  epochOffsetMs?: number;
  /** Per-hop file format (default pcapng). */
  format?: CaptureFormat;
  precision?: TimestampPrecision;
  snaplen?: number;
  /** Ring per hop: start a new file before one exceeds this many bytes (0 = no size limit). */
  maxBytes?: number;
  /** Ring per hop: start a new file after this much lab time (ms; 0 = no time limit). */
  maxDurationMs?: number;
  /** Ring per hop: files kept, the live one included. */
  ringFiles?: number;
  /** Prune older runs beyond this many (0 = keep all). Only the CLI prunes; default off here. */
  keepRuns?: number;
  /** Prune older runs while all runs together exceed this many bytes (0 = no limit). */
  keepBytes?: number;
  flushBytes?: number;
  flushIntervalMs?: number;
  /** Rewrite the manifest this often (real time, ms; 0 = only on close and `writeManifest`). Default 1000. */
  manifestIntervalMs?: number;
  /** Also write `all.pcapng` with one named interface per hop. */
  merged?: boolean;
  /** `--debug capture`: hops, files, rotations, drops, pruning. */
  debug?: DebugLog;
}

export interface DirectionCount {
  frames: number;
  bytes: number;
  drops: number;
}

export interface ManifestHop {
  name: string;
  /** The live file, relative to the run folder. */
  file: string;
  description?: string;
  /** Frames and bytes (original lengths) seen at the hop, both directions. */
  frames: number;
  bytes: number;
  /** Of those, frames the next element refused. */
  drops: number;
  out: DirectionCount;
  in: DirectionCount;
  /** The files on disk, oldest first (more than one only in ring mode), with what each holds. */
  files: FileCounts[];
  rotations: number;
  /** Lab-wide packet ids (epb_packetid) of the first and last frame recorded here. */
  packetIds: { first: number; last: number } | null;
  /** Set when writing the file failed; the hop then records nothing more. */
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
  /** The lab process writing this run (for `lab capture` to find a live one). */
  pid: number;
  fileFormat: CaptureFormat;
  timestampPrecision: TimestampPrecision;
  snaplen: number;
  linkType: 'ethernet';
  /** The ring per hop, or null when files grow without bound. */
  ring: { maxBytes: number | null; maxDurationMs: number | null; files: number } | null;
  /** How packet ids are assigned (the same id for one frame at every hop). */
  packetIds: string;
  merged: string | null;
  hops: ManifestHop[];
  links: ManifestLink[];
}

/** Something that wants every frame a hop records as it happens (a live capture client). */
export interface HopListener {
  frame(frame: Uint8Array, direction: CaptureDirection, clockMs: number, packetId: number): void;
}

type HopWriter = { kind: 'pcapng'; w: PcapngWriter } | { kind: 'pcap'; w: PcapWriter };

/** One hop of a run: a CaptureSink that writes the hop's file (and the merged file) and counts. */
export class CaptureHop implements CaptureSink {
  readonly out: DirectionCount = { frames: 0, bytes: 0, drops: 0 };
  readonly in: DirectionCount = { frames: 0, bytes: 0, drops: 0 };
  firstId = 0;
  lastId = 0;
  /** Packet id of the frame last recorded in each direction (what `refused` refers to). */
  private lastIn = 0;
  private lastOut = 0;
  private readonly listeners = new Set<HopListener>();

  constructor(
    readonly name: string,
    readonly writer: HopWriter | null,
    private readonly clock: Clock,
    private readonly ids: PacketIds,
    private readonly merged: PcapngWriter | null,
    private readonly mergedIf: number,
    public description?: string,
    private readonly dbg: DebugLog = NO_DEBUG,
  ) {}

  /** The live file's name, relative to the run folder. */
  get file(): string {
    return this.writer ? path.basename(this.writer.w.livePath) : `${this.name}.pcapng`;
  }

  record(frame: Uint8Array, direction: CaptureDirection): void {
    const c = this[direction];
    c.frames++;
    c.bytes += frame.length;
    if (!this.writer && this.listeners.size === 0) return;
    // One clock reading for every file, so the hop's file and the merged one agree.
    const t = this.clock.now();
    const id = this.ids.idFor(frame, this.name, t);
    if (this.firstId === 0) this.firstId = id;
    this.lastId = id;
    if (direction === 'in') this.lastIn = id;
    else this.lastOut = id;
    if (this.writer?.kind === 'pcapng') this.writer.w.writeFrame(0, frame, direction, t, id);
    else this.writer?.w.writeFrame(frame, t);
    this.merged?.writeFrame(this.mergedIf, frame, direction, t, id);
    for (const l of this.listeners) l.frame(frame, direction, t, id);
  }

  refused(direction: CaptureDirection, reason = 'refused by the next element'): void {
    this[direction].drops++;
    if (this.dbg.on) this.dbg.debug(`${this.name}: drop ${direction} packet ${direction === 'in' ? this.lastIn : this.lastOut}: ${reason}`);
    this.ids.retire(direction === 'in' ? this.lastIn : this.lastOut);
    if (this.writer?.kind === 'pcapng') this.writer.w.noteDrop(0, reason);
    this.merged?.noteDrop(this.mergedIf, `${this.name}: ${reason}`);
  }

  get frames(): number {
    return this.out.frames + this.in.frames;
  }

  /** Stream this hop's frames to `l` from now on; returns the unsubscriber. */
  listen(l: HopListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Learn a description after the hop was made (files started from now on carry it). */
  describe(description: string): void {
    if (this.description) return;
    this.description = description;
    if (this.writer?.kind === 'pcapng') this.writer.w.describe(0, description);
  }
}

export class CaptureRun {
  readonly id: string;
  /** The run folder, or null for a disabled run. */
  readonly dir: string | null;
  readonly enabled: boolean;
  readonly command: string;
  readonly startDate: Date;
  /** What starting this run pruned (null when nothing was looked at). */
  readonly pruned: PruneResult | null = null;
  private endDate: Date | null = null;
  private readonly hops = new Map<string, CaptureHop>();
  private readonly links: ManifestLink[] = [];
  private readonly timebase: Timebase;
  private readonly ids = new PacketIds();
  private readonly merged: PcapngWriter | null = null;
  private readonly section: SectionInfo;
  private manifestTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private uninstallHandlers: (() => void) | null = null;
  private readonly hopListeners = new Set<(hop: CaptureHop) => void>();

  constructor(private readonly options: CaptureRunOptions) {
    this.command = options.command;
    this.enabled = options.enabled ?? true;
    this.startDate = options.startDate ?? new Date();
    const epoch = options.epochOffsetMs ?? this.startDate.getTime() - options.clock.now();
    this.timebase = new Timebase(options.clock, epoch);
    this.section = { userAppl: `netlab ${NETLAB_VERSION}`, os: `${os.type()} ${os.release()} ${os.arch()}` };
    const baseId = options.runId ?? runIdFor(this.startDate, options.command);
    if (!this.enabled) {
      this.id = baseId;
      this.dir = null;
      return;
    }
    const baseDir = options.baseDir ?? defaultCaptureDir();
    fs.mkdirSync(baseDir, { recursive: true });
    if ((options.keepRuns ?? 0) > 0 || (options.keepBytes ?? 0) > 0) {
      // Before this run's folder exists, so the new run is never a candidate; a kept count of N
      // means N runs including this one.
      this.pruned = pruneRuns(baseDir, { keepRuns: Math.max(0, (options.keepRuns ?? 0) - 1), keepBytes: options.keepBytes ?? 0 });
      const d = options.debug;
      if (d?.on) d.debug(`prune ${baseDir}: removed ${this.pruned.removed.length ? this.pruned.removed.join(', ') : 'nothing'}; ${this.pruned.kept} runs, ${this.pruned.bytesKept} bytes kept`);
    }
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
    if (options.merged) this.merged = new PcapngWriter(path.join(this.dir, MERGED_FILE), { ...this.writerOptions(), maxBytes: 0, maxDurationMs: 0, section: this.section });
    this.writeManifest();
    const every = options.manifestIntervalMs ?? 1000;
    if (every > 0) {
      this.manifestTimer = setInterval(() => this.writeManifest(), every);
      this.manifestTimer.unref();
    }
  }

  get format(): CaptureFormat {
    return this.options.format ?? 'pcapng';
  }

  /** The hop named `name`, created (with its file) on first use. */
  hop(name: string, description?: string): CaptureHop {
    const existing = this.hops.get(name);
    if (existing) {
      if (description) existing.describe(description);
      return existing;
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name.includes('..')) {
      throw new Error(`capture hop name "${name}" must be letters, digits, '.', '_' or '-' (it names a file)`);
    }
    let writer: HopWriter | null = null;
    let mergedIf = -1;
    if (this.dir && !this.closed) {
      const file = path.join(this.dir, `${name}.${this.format}`);
      if (this.format === 'pcap') writer = { kind: 'pcap', w: new PcapWriter(file, this.writerOptions()) };
      else {
        const w = new PcapngWriter(file, { ...this.writerOptions(), section: this.section });
        w.addInterface(name, description);
        writer = { kind: 'pcapng', w };
      }
      if (this.merged) mergedIf = this.merged.addInterface(name, description);
    }
    const dbg = this.options.debug ?? NO_DEBUG;
    const hop = new CaptureHop(name, writer, this.options.clock, this.ids, this.merged, mergedIf, description, dbg);
    if (dbg.on) dbg.debug(`hop ${name}${description ? ` (${description})` : ''}: ${writer ? writer.w.livePath : 'not written (run closed or disabled)'}`);
    this.hops.set(name, hop);
    for (const l of this.hopListeners) l(hop);
    return hop;
  }

  /** The hops so far. */
  hopList(): CaptureHop[] {
    return [...this.hops.values()];
  }

  /** Be told of every hop, those there now and those made later; returns the unsubscriber. */
  onHop(l: (hop: CaptureHop) => void): () => void {
    for (const h of this.hops.values()) l(h);
    this.hopListeners.add(l);
    return () => this.hopListeners.delete(l);
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

  /** Flush every file now (synchronously). */
  flush(): void {
    for (const h of this.hops.values()) h.writer?.w.flush();
    this.merged?.flush();
  }

  /** What the ring per hop is, in the manifest's terms (null: unbounded). */
  ring(): CaptureManifest['ring'] {
    const o = this.options;
    if (!o.maxBytes && !o.maxDurationMs) return null;
    return { maxBytes: o.maxBytes || null, maxDurationMs: o.maxDurationMs || null, files: Math.max(1, o.ringFiles ?? 2) };
  }

  manifest(): CaptureManifest {
    const o = this.options;
    const hops: ManifestHop[] = [...this.hops.values()].map((h) => {
      const files = h.writer ? h.writer.w.fileCounts().map((f) => ({ ...f, file: this.relative(f.file) })) : [];
      const entry: ManifestHop = {
        name: h.name,
        file: h.file,
        frames: h.out.frames + h.in.frames,
        bytes: h.out.bytes + h.in.bytes,
        drops: h.out.drops + h.in.drops,
        out: { ...h.out },
        in: { ...h.in },
        files,
        rotations: h.writer?.w.rotations ?? 0,
        packetIds: h.firstId ? { first: h.firstId, last: h.lastId } : null,
      };
      if (h.description) entry.description = h.description;
      if (h.writer?.w.error) entry.error = h.writer.w.error.message;
      return entry;
    });
    return {
      format: MANIFEST_FORMAT,
      runId: this.id,
      command: this.command,
      startTime: this.startDate.toISOString(),
      endTime: this.endDate ? this.endDate.toISOString() : null,
      pid: process.pid,
      fileFormat: this.format,
      timestampPrecision: o.precision ?? 'us',
      snaplen: o.snaplen ?? 65535,
      linkType: 'ethernet',
      ring: this.ring(),
      packetIds: this.format === 'pcapng' ? 'epb_packetid: one lab-wide id per frame, the same at every hop it crossed' : 'none (classic pcap has no packet ids; see all.pcapng if merged)',
      merged: this.merged ? MERGED_FILE : null,
      hops,
      links: this.links.map((l) => ({ ...l })),
    };
  }

  /**
   * Flush the files, then write `manifest.json` (via a temporary file and rename), so the counts
   * it states are those of the files on disk.
   */
  writeManifest(): void {
    if (!this.dir) return;
    this.flush();
    const d = this.options.debug;
    if (d?.on) d.debug(`manifest ${this.dir}: ${[...this.hops.values()].map((h) => `${h.name} ${h.frames}${h.writer && h.writer.w.rotations ? ` (${h.writer.w.rotations} rotations)` : ''}`).join(', ') || 'no hops yet'}`);
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
    for (const h of this.hops.values()) h.writer?.w.close();
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

  /** The run's clock, timebase and section info, for a live stream of its hops (live.ts). */
  streamContext(): { clock: Clock; timebase: Timebase; section: SectionInfo; snaplen: number; precision: TimestampPrecision } {
    return { clock: this.options.clock, timebase: this.timebase, section: this.section, snaplen: this.options.snaplen ?? 65535, precision: this.options.precision ?? 'us' };
  }

  private writerOptions() {
    const o = this.options;
    return {
      clock: o.clock,
      timebase: this.timebase,
      precision: o.precision,
      snaplen: o.snaplen,
      maxBytes: o.maxBytes,
      maxDurationMs: o.maxDurationMs,
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
