/**
 * The fuzz harness (issue 10, DESIGN.md testing tier 4): seeded random guest behaviour against each
 * NIC model, and seeded random and mutated frames against each model and against the net/ Stack.
 *
 * Everything goes through the interfaces a guest or a peer has — port I/O of every width on the
 * device's BARs, MMIO, PCI configuration mechanism #1 (0xCF8/0xCFC), guest memory (descriptors and
 * rings live there), and the FramePort the model's cable ends in — never a model's internals.
 *
 * A run is a series of episodes. Each episode builds a fresh machine and draws its operations from
 * mulberry32(episode seed): first, usually, the driver's bring-up (so the random part starts from a
 * receiving, transmitting device), then random operations, some of them structured like a driver's
 * (a remote-DMA burst, a transmit descriptor, a virtqueue chain) with "interesting" values (0, 1,
 * ~0, ring ends, frame-size edges, addresses just inside and just past guest memory). Each
 * executed operation is recorded, so a finding comes with the exact list that reproduces it
 * (`replay`).
 *
 * Invariants (a violation is a finding):
 * - no exception escapes into the lab (`throw`);
 * - no device is stopped by an exception the I/O bus had to catch (`model-exception`): a model
 *   must fail-stop deliberately, with a message; a deliberate fail-stop is fine and only counted;
 * - every operation finishes within a time budget (`slow`), and a clock run within a step budget
 *   (`timer-storm`: a device re-arming zero-delay timers forever);
 * - no frame longer than 1518 bytes leaves a NIC onto a cable that did not offer GSO
 *   (`oversize-tx`: the frame a guest sends to kill a neighbour's NIC);
 * - a NIC never answers `'busy'` to a frame over 1518 bytes it did not ask for with GSO
 *   (`held-giant`): no amount of waiting makes it fit, so the link would hold it, and every frame
 *   behind it, for good;
 * - the heap stays bounded (`heap`);
 * - an operation returns at all (`hang`: detected by the CLI's watchdog around a worker thread).
 */
import { mulberry32 } from '../../net/random.js';
import { DEFAULT_OPS_PER_EPISODE, episodeOps } from './generate.js';
import type { Op, Target } from './ops.js';
import { makeWorld, MAX_STEPS_PER_RUN, type World } from './worlds.js';

export { TARGETS, type Op, type Target } from './ops.js';

export type FindingKind = 'throw' | 'model-exception' | 'slow' | 'timer-storm' | 'oversize-tx' | 'held-giant' | 'heap' | 'hang';

export interface Finding {
  kind: FindingKind;
  target: Target;
  /** The episode's seed: `replay(target, ops)` with the ops below reproduces it. */
  episodeSeed: number;
  message: string;
  ops: Op[];
}

export interface RunStats {
  episodes: number;
  ops: number;
  /** Deliberate fail-stops by device id (allowed; counted so a run shows what it reached). */
  failStops: Record<string, number>;
  /** The same by message, numbers blanked, so a run shows which checks the fuzzer reaches. */
  failReasons: Record<string, number>;
  framesIn: number;
  framesOut: number;
  /** Slow operations that were not slow again on replay (a GC pause, a busy machine). */
  slowUnconfirmed: number;
}

export interface RunOptions {
  target: Target;
  seed: number;
  /** Stop after this many operations or this much wall time, whichever comes first. */
  maxOps?: number;
  seconds?: number;
  opsPerEpisode?: number;
  /** An operation taking longer than this (wall ms) is a `slow` finding. */
  opBudgetMs?: number;
  /** Stop at the first finding (the CLI's default) or collect them all. */
  stopAtFirst?: boolean;
  onProgress?: (stats: RunStats) => void;
  /**
   * Known findings to look past, so a long run reaches what is behind them: a kind
   * ("oversize-tx"), or a model exception of one device ("model-exception:pci0").
   */
  ignore?: string[];
  /** Told each episode's seed before it runs: a watchdog can name the episode that hangs. */
  onEpisode?: (episodeSeed: number) => void;
}

const HEAP_LIMIT = 1.5 * 1024 ** 3;

/** Execute one op against a world and judge it; a finding kind and message, or null. */
function step(world: World, op: Op, budgetMs: number, ignore: ReadonlySet<string> = new Set()): { kind: FindingKind; message: string } | null {
  const t0 = performance.now();
  try {
    world.exec(op);
  } catch (e) {
    return { kind: 'throw', message: `exception escaped: ${(e as Error)?.stack ?? String(e)}` };
  }
  const ms = performance.now() - t0;
  for (const [id, msg] of world.failures()) {
    if (ignore.has('model-exception') || ignore.has(`model-exception:${id}`)) continue;
    if (/^device model error/.test(msg)) return { kind: 'model-exception', message: `${id}: ${msg.split('\n').slice(0, 3).join(' | ')}` };
  }
  if (world.timerStorm) return { kind: 'timer-storm', message: `over ${MAX_STEPS_PER_RUN} timer steps in one run` };
  if (world.oversize && !ignore.has('oversize-tx')) return { kind: 'oversize-tx', message: world.oversize };
  if (world.heldGiant && !ignore.has('held-giant')) return { kind: 'held-giant', message: world.heldGiant };
  if (ms > budgetMs && !ignore.has('slow')) return { kind: 'slow', message: `one operation took ${ms.toFixed(0)} ms (budget ${budgetMs} ms)` };
  return null;
}

/**
 * The op list of one episode, drawn without executing it: what a watchdog prints when the episode
 * hung (replaying the list reproduces the hang at whichever op it was).
 */
export function episodeOpList(target: Target, episodeSeed: number, opsPerEpisode = DEFAULT_OPS_PER_EPISODE): Op[] {
  return [...episodeOps(target, episodeSeed, makeWorld(target), opsPerEpisode)];
}

/** Replay a recorded op list; the first finding it reproduces, or null. */
export function replay(target: Target, ops: Op[], budgetMs = 1000): { kind: FindingKind; message: string } | null {
  const world = makeWorld(target);
  for (const op of ops) {
    const found = step(world, op, budgetMs);
    if (found) return found;
    if (world.failures().size > 0) return null;
  }
  return null;
}

/**
 * Shrink an op list while it still reproduces a finding of the same kind (delta debugging: drop
 * chunks, halving the chunk size down to single ops). Bounded by `maxReplays`.
 */
export function minimize(target: Target, ops: Op[], kind: FindingKind, maxReplays = 2000): Op[] {
  let best = ops;
  let replays = 0;
  const reproduces = (candidate: Op[]): boolean => {
    replays++;
    return replay(target, candidate)?.kind === kind;
  };
  for (let chunk = Math.max(1, best.length >> 1); chunk >= 1 && replays < maxReplays; chunk = chunk === 1 ? 0 : Math.max(1, chunk >> 1)) {
    for (let at = 0; at < best.length && replays < maxReplays; ) {
      const candidate = [...best.slice(0, at), ...best.slice(at + chunk)];
      if (candidate.length > 0 && reproduces(candidate)) best = candidate;
      else at += chunk;
    }
  }
  return best;
}

export function run(o: RunOptions): { stats: RunStats; findings: Finding[] } {
  const stats: RunStats = { episodes: 0, ops: 0, failStops: {}, failReasons: {}, framesIn: 0, framesOut: 0, slowUnconfirmed: 0 };
  const findings: Finding[] = [];
  const seeds = mulberry32(o.seed);
  const deadline = o.seconds === undefined ? Infinity : performance.now() + o.seconds * 1000;
  const maxOps = o.maxOps ?? Infinity;
  const perEpisode = o.opsPerEpisode ?? DEFAULT_OPS_PER_EPISODE;
  const budget = o.opBudgetMs ?? 250;
  const ignore = new Set(o.ignore ?? []);
  let lastProgress = performance.now();
  while (stats.ops < maxOps && performance.now() < deadline) {
    const episodeSeed = Math.floor(seeds() * 2 ** 31);
    stats.episodes++;
    o.onEpisode?.(episodeSeed);
    const world = makeWorld(o.target);
    const done: Op[] = [];
    for (const op of episodeOps(o.target, episodeSeed, world, perEpisode)) {
      done.push(op);
      stats.ops++;
      if (op.k === 'frame') stats.framesIn++;
      const found = step(world, op, budget, ignore);
      if (found?.kind === 'slow' && replay(o.target, done, budget)?.kind !== 'slow') {
        stats.slowUnconfirmed++;
      } else if (found) {
        findings.push({ ...found, target: o.target, episodeSeed, ops: done.slice() });
        break;
      }
      const failed = [...world.failures().keys()];
      if (failed.length > 0) {
        for (const [id, msg] of world.failures()) {
          stats.failStops[id] = (stats.failStops[id] ?? 0) + 1;
          const reason = `${id}: ${msg.split('\n')[0]!.replace(/0x[0-9a-f]+|\d+/gi, '#').slice(0, 90)}`;
          stats.failReasons[reason] = (stats.failReasons[reason] ?? 0) + 1;
        }
        break; // a fail-stopped device is done for this episode
      }
      if (stats.ops >= maxOps || performance.now() >= deadline) break;
    }
    stats.framesOut += world.framesOut;
    if (o.stopAtFirst && findings.length > 0) break;
    if (stats.episodes % 50 === 0 && process.memoryUsage().heapUsed > HEAP_LIMIT) {
      findings.push({ kind: 'heap', target: o.target, episodeSeed, message: `heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB`, ops: [] });
      break;
    }
    if (o.onProgress && performance.now() - lastProgress > 1000) {
      lastProgress = performance.now();
      o.onProgress(stats);
    }
  }
  return { stats, findings };
}
