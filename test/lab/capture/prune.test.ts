import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '../../../net/clock.js';
import { CaptureRun } from '../../../lab/capture/run.js';
import { pruneRuns } from '../../../lab/capture/prune.js';
import { udpFrame } from './frames.js';

let base: string;
afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

function finishedRun(dir: string, name: string, frames: number): void {
  const run = new CaptureRun({ command: 'run', clock: new VirtualClock(), baseDir: dir, runId: name, manifestIntervalMs: 0 });
  const h = run.hop('tap2');
  for (let i = 0; i < frames; i++) h.record(udpFrame(1000, i), 'out');
  run.closeSync();
}

describe('pruning old capture runs', () => {
  it('keeps the newest runs by count, never touching folders that are not runs', () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'netlab-prune-'));
    for (const n of ['2026-01-01T00-00-01-run', '2026-01-01T00-00-02-run', '2026-01-01T00-00-03-run']) finishedRun(base, n, 1);
    fs.mkdirSync(path.join(base, '0000-not-a-run'));
    const r = pruneRuns(base, { keepRuns: 2, keepBytes: 0 });
    expect(r.removed).toEqual(['2026-01-01T00-00-01-run']);
    expect(fs.readdirSync(base).sort()).toEqual(['0000-not-a-run', '2026-01-01T00-00-02-run', '2026-01-01T00-00-03-run']);
  });

  it('removes the oldest runs while all together exceed the size, but never a run still being written', () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'netlab-prune-'));
    // A live run (no end time, fresh manifest) oldest of all.
    const live = new CaptureRun({ command: 'run', clock: new VirtualClock(), baseDir: base, runId: '2026-01-01T00-00-00-run', manifestIntervalMs: 0 });
    live.hop('tap2').record(udpFrame(1000), 'out');
    live.writeManifest();
    for (const n of ['2026-01-01T00-00-01-run', '2026-01-01T00-00-02-run', '2026-01-01T00-00-03-run']) finishedRun(base, n, 100);
    const r = pruneRuns(base, { keepRuns: 0, keepBytes: 150_000 });
    expect(r.removed).toEqual(['2026-01-01T00-00-01-run', '2026-01-01T00-00-02-run']);
    expect(r.bytesKept).toBeLessThanOrEqual(150_000);
    expect(fs.existsSync(path.join(base, '2026-01-01T00-00-00-run'))).toBe(true);
    live.closeSync();
  });

  it('a new run with keepRuns prunes before it starts, counting itself', () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'netlab-prune-'));
    for (let i = 0; i < 5; i++) finishedRun(base, `2026-01-01T00-00-0${i}-run`, 1);
    const run = new CaptureRun({ command: 'run', clock: new VirtualClock(), baseDir: base, manifestIntervalMs: 0, keepRuns: 3 });
    run.closeSync();
    expect(run.pruned?.removed).toEqual(['2026-01-01T00-00-00-run', '2026-01-01T00-00-01-run', '2026-01-01T00-00-02-run']);
    expect(fs.readdirSync(base)).toHaveLength(3);
  });
});
