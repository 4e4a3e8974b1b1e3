/**
 * `npm run fuzz -- --seconds N [--seed S] [--target ne2000|rtl8139|virtio|stack] [--all]`
 *
 * Runs the harness (./harness.ts) for N seconds per target (all four unless --target), prints
 * operations per second, deliberate fail-stops, and for each finding the seed, the episode seed
 * and the operation list that reproduces it (also written to fuzz-findings/<target>-<seed>.json;
 * `--replay FILE` runs such a file again). Exit status 1 when anything was found.
 * By default a target stops at its first finding; --all keeps going and collects every one;
 * --ignore oversize-tx,model-exception:pci0 looks past known findings to reach what lies behind.
 *
 * Each target runs in a worker thread watched from here: synchronous code cannot time itself out,
 * so an operation that never returns (an unbounded loop in a model) shows up as a worker that
 * stops reporting. After --hang seconds (default 10) it is terminated and the episode it was in is
 * reported as a `hang` finding, with that episode's op list.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { episodeOpList, minimize, replay, run, TARGETS, type Finding, type Op, type RunStats, type Target } from './harness.js';

interface Job {
  target: Target;
  seed: number;
  seconds: number;
  all: boolean;
  ignore: string[];
}

type Msg = { t: 'episode'; seed: number } | { t: 'progress'; stats: RunStats } | { t: 'done'; stats: RunStats; findings: Finding[] };

if (!isMainThread) {
  const job = workerData as Job;
  const post = (m: Msg): void => parentPort!.postMessage(m);
  const { stats, findings } = run({
    target: job.target,
    seed: job.seed,
    seconds: job.seconds,
    stopAtFirst: !job.all,
    ignore: job.ignore,
    onEpisode: (seed) => post({ t: 'episode', seed }),
    onProgress: (stats) => post({ t: 'progress', stats }),
  });
  post({ t: 'done', stats, findings });
} else {
  await main();
}

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: npm run fuzz -- --seconds N [--seed S] [--target ${TARGETS.join('|')}] [--all] [--reasons] [--hang S] [--ignore KIND[:DEVICE],…] | --replay FILE\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    if (v === undefined) usage(`${name} needs a value`);
    return v;
  };

  const replayFile = opt('--replay');
  if (replayFile !== undefined) {
    const f = JSON.parse(readFileSync(replayFile, 'utf8')) as { target: Target; ops: Op[] };
    const found = replay(f.target, f.ops);
    process.stdout.write(found ? `reproduced: ${found.kind}: ${found.message}\n` : 'not reproduced\n');
    process.exit(found ? 1 : 0);
  }

  const seconds = Number(opt('--seconds') ?? '10');
  if (!Number.isFinite(seconds) || seconds <= 0) usage('--seconds: a positive number');
  const seed = Number(opt('--seed') ?? String(Date.now() % 2 ** 31));
  if (!Number.isInteger(seed)) usage('--seed: an integer');
  const hangSeconds = Number(opt('--hang') ?? '10');
  if (!Number.isFinite(hangSeconds) || hangSeconds <= 0) usage('--hang: a positive number of seconds');
  const targetArg = opt('--target');
  if (targetArg !== undefined && !TARGETS.includes(targetArg as Target)) usage(`--target: one of ${TARGETS.join(', ')}`);
  const targets: Target[] = targetArg ? [targetArg as Target] : [...TARGETS];
  const all = args.includes('--all');
  const ignore = (opt('--ignore') ?? '').split(',').filter((x) => x !== '');

  let total = 0;
  for (const target of targets) {
    const t0 = performance.now();
    const { stats, findings } = await runWatched({ target, seed, seconds, all, ignore }, hangSeconds);
    const secs = (performance.now() - t0) / 1000;
    const fails = Object.entries(stats.failStops).map(([id, n]) => `${id} ${n}`).join(', ') || 'none';
    process.stdout.write(`${target}: seed ${seed}: ${stats.ops} ops in ${secs.toFixed(1)} s = ${Math.round(stats.ops / secs)} ops/s; ${stats.episodes} episodes; frames in ${stats.framesIn}, out ${stats.framesOut}; fail-stops: ${fails}; unconfirmed slow ops: ${stats.slowUnconfirmed}; findings: ${findings.length}\n`);
    if (args.includes('--reasons')) {
      for (const [why, n] of Object.entries(stats.failReasons).sort((a, b) => b[1] - a[1]).slice(0, 25)) process.stdout.write(`    ${String(n).padStart(6)}  ${why}\n`);
    }
    // One report per distinct finding (numbers blanked), with how often it recurred.
    const seen = new Map<string, number>();
    for (const f of findings) {
      const key = `${f.kind} ${f.message.split('\n')[0]!.replace(/0x[0-9a-f]+|\d+/gi, '#').slice(0, 160)}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (seen.get(key) === 1) report(f, seed);
    }
    for (const [key, n] of seen) if (n > 1) process.stdout.write(`  (${n}x) ${key}\n`);
    total += findings.length;
  }
  process.exit(total > 0 ? 1 : 0);
}

/** Run one target in a worker; a worker silent for `hangSeconds` is stopped and its episode reported. */
function runWatched(job: Job, hangSeconds: number): Promise<{ stats: RunStats; findings: Finding[] }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    let stats: RunStats = { episodes: 0, ops: 0, failStops: {}, failReasons: {}, framesIn: 0, framesOut: 0, slowUnconfirmed: 0 };
    let episode: number | null = null;
    let heard = performance.now();
    const watchdog = setInterval(() => {
      if (performance.now() - heard < hangSeconds * 1000) return;
      clearInterval(watchdog);
      void worker.terminate();
      const ops = episode === null ? [] : episodeOpList(job.target, episode);
      resolve({ stats, findings: [{ kind: 'hang', target: job.target, episodeSeed: episode ?? -1, message: `no progress for ${hangSeconds} s: an operation of this episode does not return`, ops }] });
    }, 250);
    worker.on('message', (m: Msg) => {
      heard = performance.now();
      if (m.t === 'episode') episode = m.seed;
      else if (m.t === 'progress') {
        stats = m.stats;
        process.stderr.write(`  ${job.target}: ${m.stats.ops} ops, ${m.stats.episodes} episodes\r`);
      } else {
        clearInterval(watchdog);
        resolve({ stats: m.stats, findings: m.findings });
      }
    });
    worker.on('error', (e) => {
      clearInterval(watchdog);
      reject(e);
    });
  });
}

function report(f: Finding, seed: number): void {
  mkdirSync('fuzz-findings', { recursive: true });
  const file = `fuzz-findings/${f.target}-${seed}-${f.episodeSeed}.json`;
  // A hang cannot be replayed here (it would not return); everything else is shrunk first.
  const ops = f.kind === 'hang' ? f.ops : minimize(f.target, f.ops, f.kind);
  writeFileSync(file, JSON.stringify({ target: f.target, seed, episodeSeed: f.episodeSeed, kind: f.kind, message: f.message, ops, episodeOps: f.ops }, null, 1));
  const shown = ops.slice(-20).map((o) => JSON.stringify(o)).join('\n      ');
  process.stdout.write(`  FINDING ${f.kind} (${f.target}, seed ${seed}, episode seed ${f.episodeSeed}, ${f.ops.length} ops, ${ops.length} after shrinking): ${f.message.split('\n')[0]}\n    ${ops.length > 20 ? 'last 20 ' : ''}ops:\n      ${shown}\n    replay: npm run fuzz -- --replay ${file}\n`);
}
