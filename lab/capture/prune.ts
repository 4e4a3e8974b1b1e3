import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Pruning old capture runs, so a lab used every day keeps a bounded `captures/` (dumpcap bounds a
 * capture; nothing bounds the runs of a lab but this). Only folders that hold a netlab manifest are
 * ever touched, oldest first (run ids start with their UTC start time, so names sort by age), and
 * never a run that is still being written: its manifest has no end time and was rewritten within
 * the last minute (a running lab rewrites it every second). A run that crashed — no end time, a
 * stale manifest — is finished as far as pruning goes.
 */

export interface PruneOptions {
  /** Keep at most this many runs (0 = no count limit). */
  keepRuns: number;
  /** Remove oldest runs while all runs together take more than this many bytes (0 = no limit). */
  keepBytes: number;
  /** A manifest rewritten within this long (ms) with no end time marks a live run. Default 60 s. */
  liveWindowMs?: number;
}

export interface PruneResult {
  removed: string[];
  kept: number;
  bytesKept: number;
}

interface RunDir {
  name: string;
  dir: string;
  bytes: number;
  live: boolean;
}

function folderBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += folderBytes(p);
    else if (e.isFile()) n += fs.statSync(p).size;
  }
  return n;
}

/** The capture runs under `baseDir`, oldest first. */
export function listRuns(baseDir: string, liveWindowMs = 60_000): RunDir[] {
  let names: string[];
  try {
    names = fs.readdirSync(baseDir).sort();
  } catch {
    return [];
  }
  const runs: RunDir[] = [];
  for (const name of names) {
    const dir = path.join(baseDir, name);
    const manifest = path.join(dir, 'manifest.json');
    let m: { format?: string; endTime?: string | null };
    let mtime: number;
    try {
      m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as typeof m;
      mtime = fs.statSync(manifest).mtimeMs;
    } catch {
      continue;
    }
    if (typeof m.format !== 'string' || !m.format.startsWith('netlab-captures/')) continue;
    const live = !m.endTime && Date.now() - mtime < liveWindowMs;
    runs.push({ name, dir, bytes: folderBytes(dir), live });
  }
  return runs;
}

export function pruneRuns(baseDir: string, o: PruneOptions): PruneResult {
  const runs = listRuns(baseDir, o.liveWindowMs);
  let total = runs.reduce((n, r) => n + r.bytes, 0);
  let count = runs.length;
  const removed: string[] = [];
  for (const r of runs) {
    const tooMany = o.keepRuns > 0 && count > o.keepRuns;
    const tooBig = o.keepBytes > 0 && total > o.keepBytes;
    if (!tooMany && !tooBig) break;
    if (r.live) continue;
    try {
      fs.rmSync(r.dir, { recursive: true, force: true });
    } catch {
      continue;
    }
    removed.push(r.name);
    total -= r.bytes;
    count--;
  }
  return { removed, kept: count, bytesKept: total };
}
