import type { RealClock } from '../net/clock.js';
import { Logger } from '../src/log.js';
import { captureLine, captureRunFor, captureStartLine, type CaptureCliOptions } from './capture/cli.js';
import type { CaptureRun } from './capture/run.js';

/**
 * How every `lab` command starts and ends a run, in one place: the global options, the capture
 * run, live counters, the exit on error, and the stop (--for, Ctrl-C, SIGTERM) that closes the lab
 * and leaves valid captures.
 */
export interface GlobalOptions extends CaptureCliOptions {
  debug?: string;
  stats?: number;
  quiet?: boolean;
}

export function fail(message: string, code: number): never {
  process.stderr.write(`lab: ${message}\n`);
  process.exit(code);
}

/** Live counters every `g.stats` seconds (a long run says how it is doing); returns a stopper. */
export function liveStats(g: GlobalOptions, line: () => string): () => void {
  if (!g.stats || g.stats <= 0) return () => {};
  const t = setInterval(() => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line()}\n`), g.stats * 1000);
  return () => clearInterval(t);
}

export function captureRun(command: string, clock: RealClock, g: GlobalOptions): CaptureRun {
  const run = captureRunFor(command, clock, g, fail, Logger.fromSpec(g.debug).child('capture'));
  if (!g.quiet) process.stdout.write(`${captureStartLine(run, g)}\n`);
  return run;
}

/** Resolves after `seconds` (when given) or at the first Ctrl-C / SIGTERM, whichever comes first. */
export function untilStopped(seconds: number | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => resolve();
    if (seconds !== undefined) setTimeout(done, seconds * 1000);
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

/**
 * The end of every lab run, one way: wait for `until` (untilStopped), stop the live counters,
 * close the lab, print its counters, close the captures (files valid), say where they are, exit.
 */
export async function stopRun(
  until: Promise<void>,
  o: { stopStats: () => void; close: () => void | Promise<void>; report: () => void; run: CaptureRun; say: (t: string) => void; exitCode: () => number },
): Promise<never> {
  await until;
  o.stopStats();
  await o.close();
  o.report();
  o.run.closeSync();
  o.say(`${captureLine(o.run)}\n`);
  process.exit(o.exitCode());
}
