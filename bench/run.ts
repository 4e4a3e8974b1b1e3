import { benchNicModels, benchTcpStack } from './inprocess.js';
import { benchRedirect, benchTap, cleanupHost } from './host.js';
import { formatResults } from './stats.js';

/**
 * `npm run bench [-- section…]`: sections tcp, nic, redirect, tap (default all). A script, not a
 * timed test: numbers go to stdout, medians of several runs, references measured in the same run.
 */
const all = ['tcp', 'nic', 'redirect', 'tap'];
const want = process.argv.slice(2).filter((a) => all.includes(a));
const sections = want.length ? want : all;
const size = Number(process.env.BENCH_MB ?? '100') * 1024 * 1024;
const runs = Number(process.env.BENCH_RUNS ?? '3');

async function main(): Promise<void> {
  process.on('SIGINT', () => void cleanupHost().then(() => process.exit(130)));
  try {
    if (sections.includes('tcp')) process.stdout.write(formatResults('TCP, stack to stack in one process (virtual time; CPU cost only)', benchTcpStack(runs + 2)) + '\n\n');
    if (sections.includes('nic')) process.stdout.write(formatResults('NIC models with their drivers, in one process', benchNicModels()) + '\n\n');
    if (sections.includes('redirect')) process.stdout.write(formatResults(`lab redirect vs slirp4netns (${size / 1048576} MB transfers, median of ${runs})`, await benchRedirect(size, runs)) + '\n\n');
    if (sections.includes('tap')) process.stdout.write(formatResults(`lab up over a real TAP vs a veth pair (${size / 1048576} MB transfers, median of ${runs})`, await benchTap(size, runs)) + '\n\n');
  } finally {
    await cleanupHost();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
