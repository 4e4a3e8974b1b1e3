import { spawnSync } from 'node:child_process';
import { launch, stopAll, waitText } from './linux.js';
import type { BenchResult } from './stats.js';

/**
 * `npm run bench -- fair`: N concurrent bulk downloads through `lab redirect --nic virtio` (the
 * built-in guest's /bytes/N, all started together, curl's parallel mode on the host side), each
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
  const lab = launch('', [NODE, CLI, '--no-capture', 'redirect', `tcp:${port}:10.10.10.33:80`, '--nic', 'virtio', '--for', '600']);
  try {
    await waitText(lab, 'ready:', 30_000);
    const url = `http://127.0.0.1:${port}/bytes/${bytesPerFlow}`;
    const args = ['-s', '-Z', '--parallel-max', String(flows), '--parallel-immediate', '-w', '%{size_download} %{speed_download}\\n'];
    for (let i = 0; i < flows; i++) args.push('-o', '/dev/null', url);
    const t0 = process.hrtime.bigint();
    const r = spawnSync('curl', args, { encoding: 'utf8', timeout: 300_000 });
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const rows = r.stdout.trim().split('\n').map((l) => l.split(' ').map(Number));
    const complete = rows.filter((x) => x[0] === bytesPerFlow);
    if (complete.length !== flows) throw new Error(`fairness: ${complete.length} of ${flows} downloads complete (curl exit ${r.status})`);
    const rates = complete.map((x) => x[1]! / 1048576);
    return [
      { name: `${flows} concurrent downloads: Jain's index`, value: jainIndex(rates), unit: `(1 = equal shares)` },
      { name: `${flows} concurrent downloads: per flow`, value: Math.min(...rates), unit: `MB/s lowest, ${Math.max(...rates).toFixed(2)} highest` },
      { name: `${flows} concurrent downloads: aggregate`, value: (flows * bytesPerFlow) / wall / 1048576, unit: 'MB/s' },
    ];
  } finally {
    await stopAll();
  }
}
