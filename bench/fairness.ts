import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, stopAll, waitText } from './linux.js';
import type { BenchResult } from './stats.js';

/**
 * `npm run bench -- fair`: N concurrent bulk downloads through `lab redirect --nic virtio` (the
 * built-in guest's /bytes/N, all started together, curl's parallel mode on the host side), then N
 * concurrent uploads to its discard port (socat per flow, held at one start line); for each, every
 * flow's rate, the aggregate, and Jain's fairness index (Σx)² / (n·Σx²): 1 when every flow got the
 * same share, 1/n when one flow took everything. Equal sizes started together: a flow that is
 * favoured finishes early, so unequal shares show as unequal average rates.
 */
const NODE = process.execPath;
const CLI = 'dist/lab/cli.js';

export function jainIndex(rates: number[]): number {
  const sum = rates.reduce((a, b) => a + b, 0);
  const sq = rates.reduce((a, b) => a + b * b, 0);
  return rates.length === 0 || sq === 0 ? NaN : (sum * sum) / (rates.length * sq);
}

export async function benchFairness(flows: number, bytesPerFlow: number): Promise<BenchResult[]> {
  const port = 19000 + (process.pid % 1000);
  // Loopback only: no namespace is needed for a redirect.
  const lab = launch('', [NODE, CLI, '--no-capture', 'redirect', `tcp:${port}:10.10.10.33:80`, `tcp:${port + 1}:10.10.10.33:9`, '--nic', 'virtio', '--for', '600']);
  try {
    await waitText(lab, 'ready:', 30_000);
    return [...downloads(port, flows, bytesPerFlow), ...uploads(port + 1, flows, bytesPerFlow)];
  } finally {
    await stopAll();
  }
}

function rows(what: string, flows: number, bytesPerFlow: number, rates: number[], wall: number): BenchResult[] {
  return [
    { name: `${flows} concurrent ${what}: Jain's index`, value: jainIndex(rates), unit: `(1 = equal shares)` },
    { name: `${flows} concurrent ${what}: per flow`, value: Math.min(...rates), unit: `MB/s lowest, ${Math.max(...rates).toFixed(2)} highest` },
    { name: `${flows} concurrent ${what}: aggregate`, value: (flows * bytesPerFlow) / wall / 1048576, unit: 'MB/s' },
  ];
}

/** Downloads of the guest's /bytes/N, started together by one curl in parallel mode. */
function downloads(port: number, flows: number, bytesPerFlow: number): BenchResult[] {
  const url = `http://127.0.0.1:${port}/bytes/${bytesPerFlow}`;
  const args = ['-s', '-Z', '--parallel-max', String(flows), '--parallel-immediate', '-w', '%{size_download} %{speed_download}\\n'];
  for (let i = 0; i < flows; i++) args.push('-o', '/dev/null', url);
  const t0 = process.hrtime.bigint();
  const r = spawnSync('curl', args, { encoding: 'utf8', timeout: 300_000 });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const complete = r.stdout.trim().split('\n').map((l) => l.split(' ').map(Number)).filter((x) => x[0] === bytesPerFlow);
  if (complete.length !== flows) throw new Error(`fairness: ${complete.length} of ${flows} downloads complete (curl exit ${r.status})`);
  return rows('downloads', flows, bytesPerFlow, complete.map((x) => x[1]! / 1048576), wall);
}

/**
 * Uploads to the guest's discard port: one socat per flow, each started and then held at a shared
 * start line (a file the script creates once all are waiting), each timed from the start line to
 * its exit. socat exits once the kernel has taken its last bytes, so each socket's send buffer is
 * pinned at 64 KiB (`sndbuf`, which turns off autotuning): a flow's end is then within 128 KiB of
 * the bytes having left for the lab, not several MB early.
 */
function uploads(port: number, flows: number, bytesPerFlow: number): BenchResult[] {
  const dir = mkdtempSync(join(tmpdir(), 'netlab-fair-'));
  try {
    const file = join(dir, 'data');
    writeFileSync(file, Buffer.alloc(bytesPerFlow, 0x5a));
    const go = join(dir, 'go');
    const script = [
      `for i in $(seq ${flows}); do`,
      `  ( while [ ! -e ${go} ]; do sleep 0.01; done; s=$(date +%s%N);`,
      `    socat -u -t 0 OPEN:${file} TCP:127.0.0.1:${port},sndbuf=65536 && echo "$s $(date +%s%N)" ) &`,
      'done',
      'sleep 1',
      `touch ${go}`,
      'wait',
    ].join('\n');
    const t0 = process.hrtime.bigint();
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 300_000 });
    const wall = Number(process.hrtime.bigint() - t0) / 1e9 - 1;
    const spans = r.stdout.trim().split('\n').map((l) => l.split(' ').map(Number)).filter((x) => x.length === 2 && x[1]! > x[0]!);
    if (spans.length !== flows) throw new Error(`fairness: ${spans.length} of ${flows} uploads complete:\n${r.stderr.slice(-2000)}`);
    return rows('uploads', flows, bytesPerFlow, spans.map(([s, e]) => bytesPerFlow / ((e! - s!) / 1e9) / 1048576), wall);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
