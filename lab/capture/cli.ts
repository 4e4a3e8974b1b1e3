import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import type { Clock } from '../../net/clock.js';
import type { DebugLog } from '../../net/debug.js';
import { extcapMain, installExtcap, personalExtcapDirs } from './extcap.js';
import { formatFollow, followPacket } from './follow.js';
import { findLiveLabs, LiveServer, streamHops } from './live.js';
import { DEFAULT_KEEP, DEFAULT_RING, defaultCaptureDir, startCaptureRun, type CaptureFormat, type CaptureRun } from './run.js';
import { formatSummary, summarizeRun } from './summary.js';

/**
 * The capture side of the `lab` command line: the global capture options every lab command takes,
 * starting a run from them, and `lab captures`. Options follow dumpcap where it has one
 * (`-b filesize:KB`, `-b files:N`, `-b duration:S`, `-s snaplen`).
 */

export interface CaptureCliOptions {
  captures: string;
  capture: boolean;
  captureFormat: CaptureFormat;
  snaplen?: number;
  captureRing: string[];
  captureKeepRuns: number;
  captureKeepMb: number;
  mergedCapture?: boolean;
}

export interface RingSpec {
  maxBytes: number;
  maxDurationMs: number;
  ringFiles: number;
}

/** Parse dumpcap-style ring options (`filesize:KB`, `files:N`, `duration:S`, or `off`). */
export function parseRing(specs: string[]): { ok: true; value: RingSpec } | { ok: false; error: string } {
  if (specs.length === 0) return { ok: true, value: { maxBytes: DEFAULT_RING.maxBytes, maxDurationMs: 0, ringFiles: DEFAULT_RING.ringFiles } };
  const r: RingSpec = { maxBytes: 0, maxDurationMs: 0, ringFiles: DEFAULT_RING.ringFiles };
  for (const spec of specs.flatMap((s) => s.split(','))) {
    if (spec === 'off') return { ok: true, value: { maxBytes: 0, maxDurationMs: 0, ringFiles: 1 } };
    const m = /^(filesize|files|duration):(\d+(?:\.\d+)?)$/.exec(spec.trim());
    if (!m) return { ok: false, error: `--capture-ring "${spec}": use filesize:KB, files:N, duration:SECONDS (as dumpcap -b) or off` };
    const v = Number(m[2]);
    if (m[1] === 'filesize') r.maxBytes = Math.round(v * 1024);
    else if (m[1] === 'duration') r.maxDurationMs = Math.round(v * 1000);
    else if (!Number.isInteger(v) || v < 1) return { ok: false, error: `--capture-ring files:${m[2]}: at least 1 file` };
    else r.ringFiles = v;
  }
  // files:N alone means dumpcap's default size trigger still applies.
  if (r.maxBytes === 0 && r.maxDurationMs === 0) r.maxBytes = DEFAULT_RING.maxBytes;
  return { ok: true, value: r };
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} takes a whole number, got "${v}"`);
    return n;
  };
}

/** Add the global capture options to the program. */
export function addCaptureOptions(program: Command): Command {
  return program
    .addOption(new Option('--captures <dir>', 'where runs write their captures ($NETLAB_CAPTURES sets the default)').default(defaultCaptureDir()))
    .option('--no-capture', 'write no captures for this run')
    .addOption(new Option('--capture-format <format>', 'per-hop file format').choices(['pcapng', 'pcap']).default('pcapng'))
    .addOption(new Option('--snaplen <bytes>', 'bytes of each frame kept').argParser(positiveInt('--snaplen')).default(undefined, '65535'))
    .addOption(
      new Option('--capture-ring <spec>', 'ring per hop as dumpcap -b: filesize:KB, files:N, duration:S (repeat or comma-separate), or off')
        .argParser(collect)
        .default([], `filesize:${DEFAULT_RING.maxBytes / 1024},files:${DEFAULT_RING.ringFiles}`),
    )
    .option('--capture-keep-runs <n>', `prune older runs beyond this many (0 keeps all)`, positiveInt('--capture-keep-runs'), DEFAULT_KEEP.runs)
    .option('--capture-keep-mb <mb>', `prune older runs while all runs take more than this (0 = no limit)`, positiveInt('--capture-keep-mb'), DEFAULT_KEEP.bytes / 1024 / 1024)
    .option('--merged-capture', 'also write all.pcapng with one named interface per hop');
}

/** Start the capture run of a lab command, or fail with what to do. */
export function captureRunFor(command: string, clock: Clock, g: CaptureCliOptions, fail: (message: string, code: number) => never, debug?: DebugLog): CaptureRun {
  const ring = parseRing(g.captureRing ?? []);
  if (!ring.ok) fail(ring.error, 2);
  let run: CaptureRun;
  try {
    run = startCaptureRun({
      command,
      clock,
      baseDir: g.captures,
      enabled: g.capture,
      format: g.captureFormat ?? 'pcapng',
      ...(g.snaplen ? { snaplen: g.snaplen } : {}),
      maxBytes: ring.value.maxBytes,
      maxDurationMs: ring.value.maxDurationMs,
      ringFiles: ring.value.ringFiles,
      keepRuns: g.captureKeepRuns ?? DEFAULT_KEEP.runs,
      keepBytes: (g.captureKeepMb ?? DEFAULT_KEEP.bytes / 1024 / 1024) * 1024 * 1024,
      merged: g.mergedCapture ?? false,
      ...(debug ? { debug } : {}),
    });
  } catch (e) {
    fail(`cannot create a capture folder under ${g.captures}/ (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): pass --captures DIR with a writable folder, or --no-capture`, 1);
  }
  // Files and the manifest are closed on exit and on signals, so they are valid after Ctrl-C.
  run.installExitHandlers([]);
  if (run.enabled) {
    // Live captures (lab capture, the extcap program) are a convenience: a lab that cannot serve
    // them says so and runs on.
    LiveServer.start(run).then(
      (live) => process.once('exit', () => live.closeSync()),
      (e: Error) => process.stderr.write(`lab: live capture unavailable (${e.message}); the capture files are written as usual\n`),
    );
  }
  return run;
}

const mib = (b: number): string => `${Math.round((b / 1024 / 1024) * 10) / 10} MiB`;

/** What a run will write and how it is bounded: printed when a lab starts. */
export function captureStartLine(run: CaptureRun, g: CaptureCliOptions): string {
  if (!run.dir) return 'captures: off (--no-capture)';
  const ring = run.ring();
  const bound = ring
    ? `ring per hop: ${ring.files} file${ring.files === 1 ? '' : 's'}${ring.maxBytes ? ` of ${mib(ring.maxBytes)}` : ''}${ring.maxDurationMs ? ` / ${ring.maxDurationMs / 1000} s` : ''}${ring.maxBytes ? ` (at most ${mib(ring.maxBytes * ring.files)} a hop)` : ''}`
    : 'unbounded (--capture-ring off)';
  const keep = [g.captureKeepRuns ? `${g.captureKeepRuns} runs` : '', g.captureKeepMb ? `${g.captureKeepMb} MiB` : ''].filter(Boolean).join(' / ');
  const pruned = run.pruned && run.pruned.removed.length > 0 ? `; pruned ${run.pruned.removed.length} old run${run.pruned.removed.length === 1 ? '' : 's'}` : '';
  return `captures: ${run.dir}/ (${run.format}, ${bound}; keeping ${keep || 'every run'}${pruned})`;
}

/** What a run wrote: printed when a lab stops. */
export function captureLine(run: CaptureRun): string {
  if (!run.dir) return 'captures: off (--no-capture)';
  const m = run.manifest();
  return `captures: ${run.dir}/ (${m.hops.map((h) => `${h.name} ${h.frames}`).join(', ')} frames) — open in Wireshark, or "lab captures ${run.dir}"`;
}

/** The capture runs under `base`, oldest first. */
export function runFolders(base: string): string[] {
  return existsSync(base) ? readdirSync(base).filter((d) => statSync(join(base, d)).isDirectory()).sort() : [];
}

/** A run folder from what a user typed: a path, a run id under `base`, or `last`. */
export function resolveRun(which: string, base: string): string | null {
  const runs = runFolders(base);
  const dir = which === 'last' ? (runs.length ? join(base, runs[runs.length - 1]!) : '') : existsSync(which) ? which : join(base, which);
  return dir && existsSync(dir) ? dir : null;
}

/** `lab captures [RUN] [--follow ID]`. */
export async function capturesCommand(which: string | undefined, follow: number | undefined, g: CaptureCliOptions, fail: (message: string, code: number) => never): Promise<void> {
  const base = g.captures;
  if (which === undefined && follow === undefined) {
    const runs = runFolders(base);
    if (runs.length === 0) {
      process.stdout.write(`no capture runs under ${base}/ yet (every lab run writes one)\n`);
      return;
    }
    for (const r of runs) process.stdout.write(`${join(base, r)}\n`);
    return;
  }
  const dir = resolveRun(which ?? 'last', base);
  if (!dir) fail(`no capture run "${which ?? 'last'}" (runs: lab captures)`, 2);
  if (follow !== undefined) {
    process.stdout.write(formatFollow(followPacket(dir, follow)));
    return;
  }
  process.stdout.write(`${formatSummary(await summarizeRun(dir))}\n`);
}

/** `lab capture [HOP…] [--pid PID]`: list the running labs' hops, or stream hops as pcapng to stdout. */
export async function liveCaptureCommand(hops: string[], o: { pid?: number }, fail: (message: string, code: number) => never): Promise<void> {
  const labs = await findLiveLabs();
  if (hops.length === 0) {
    if (labs.length === 0) {
      process.stdout.write('no lab is running (start one: lab redirect tcp:9555:10.10.10.33:80)\n');
      return;
    }
    for (const l of labs) {
      process.stdout.write(`pid ${l.pid}  ${l.command}  run ${l.runId}\n`);
      for (const h of l.hops) process.stdout.write(`  ${h.name}${h.description ? `  (${h.description})` : ''}\n`);
    }
    return;
  }
  const lab = o.pid !== undefined ? labs.find((l) => l.pid === o.pid) : labs.length === 1 ? labs[0] : undefined;
  if (!lab) {
    if (labs.length === 0) fail('no lab is running here to capture from (captures must be on: no --no-capture)', 1);
    if (o.pid !== undefined) fail(`no running lab with pid ${o.pid} (running: ${labs.map((l) => l.pid).join(', ')})`, 1);
    fail(`several labs are running (${labs.map((l) => l.pid).join(', ')}): choose one with --pid`, 2);
  }
  const unknown = hops.filter((h) => !lab.hops.some((x) => x.name === h));
  if (unknown.length > 0) process.stderr.write(`lab capture: waiting for hop ${unknown.join(', ')} (lab ${lab.pid} has ${lab.hops.map((h) => h.name).join(', ') || 'none yet'})\n`);
  if (process.stdout.isTTY) fail('lab capture writes pcapng: pipe it, e.g. "lab capture tap2 | wireshark -k -i -" or "| tshark -i -"', 2);
  const stop = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort());
  const why = await streamHops(lab.pid, hops, process.stdout, stop.signal);
  if (why === 'lab stopped') process.stderr.write(`lab capture: lab ${lab.pid} stopped\n`);
}

/** `lab extcap`: Wireshark's calls, or `--install [DIR]`. */
export async function extcapCommand(argv: string[], cliPath: string): Promise<number> {
  const i = argv.indexOf('--install');
  if (i >= 0) {
    const dir = argv[i + 1] && !argv[i + 1]!.startsWith('--') ? [argv[i + 1]!] : personalExtcapDirs();
    for (const f of installExtcap(cliPath, dir)) process.stdout.write(`installed ${f}\n`);
    process.stdout.write('restart Wireshark (or run "tshark -D"): running labs\' hops are listed as netlab-<pid>-<hop>\n');
    return 0;
  }
  return extcapMain(argv);
}
