import { benchNicModels, benchTcpStack } from './inprocess.js';
import { benchIdle, benchRedirect, benchTap, benchThreads, cleanupHost } from './host.js';
import { benchLoss, benchTapLoss, formatLoss, formatTapLoss } from './loss.js';
import { formatResults } from './stats.js';
import { benchLinux } from './linux.js';
import { benchV86 } from './v86.js';
import { benchFairness } from './fairness.js';
import { benchUserNetRefs } from './usernet-refs.js';

/**
 * `npm run bench [-- section…]`: sections tcp, nic, redirect, tap, idle (default), and loss, linux,
 * v86, fair, usernet, threads on request. A script, not a timed test: numbers go to stdout, medians of several runs, references
 * measured in the same run.
 */
const all = ['tcp', 'nic', 'redirect', 'tap', 'idle'];
// `loss` (the deterministic loss matrix) and `linux` (QEMU Linux guests behind libslirp, passt and
// the lab; slow under TCG) and `v86` (Linux's drivers on netlab's models, beside the built-in
// guest's) run on request only.
const onRequest = ['loss', 'linux', 'v86', 'fair', 'usernet', 'threads'];
const want = process.argv.slice(2).filter((a) => all.includes(a) || onRequest.includes(a));
const sections = want.length ? want : all;
const size = Number(process.env.BENCH_MB ?? '100') * 1024 * 1024;
const runs = Number(process.env.BENCH_RUNS ?? '3');

async function main(): Promise<void> {
  process.on('SIGINT', () => void cleanupHost().then(() => process.exit(130)));
  try {
    if (sections.includes('tcp')) process.stdout.write(formatResults('TCP, stack to stack in one process (virtual time; CPU cost only)', benchTcpStack(runs + 2)) + '\n\n');
    if (sections.includes('nic')) process.stdout.write(formatResults('NIC models with their drivers, in one process', benchNicModels()) + '\n\n');
    if (sections.includes('redirect')) process.stdout.write(formatResults(`lab redirect vs slirp4netns (${size / 1048576} MB transfers, median of ${runs})`, await benchRedirect(size, runs)) + '\n\n');
    if (sections.includes('loss')) {
      const lossSize = Number(process.env.BENCH_LOSS_MB ?? '4') * 1024 * 1024;
      // BENCH_LOSS_MB=0 leaves the virtual-time matrix out (minutes of CPU) for the TAP row alone.
      if (lossSize > 0) process.stdout.write(formatLoss(benchLoss(lossSize), lossSize) + '\n\n');
      // The real-TAP row: our guest as sender beside Linux as sender on one lossy link.
      const tapSize = Number(process.env.BENCH_MB ?? '10') * 1e6;
      process.stdout.write(formatTapLoss(await benchTapLoss(tapSize, runs, 2, process.env.BENCH_CAPTURES), tapSize, runs) + '\n\n');
    }
    if (sections.includes('tap')) process.stdout.write(formatResults(`lab up over a real TAP vs a veth pair (${size / 1048576} MB transfers, median of ${runs})`, await benchTap(size, runs)) + '\n\n');
    if (sections.includes('linux')) {
      const mb = Number(process.env.BENCH_LINUX_MB ?? '20');
      process.stdout.write(formatResults(`Linux guest in QEMU (TCG) behind the lab's user-mode network vs libslirp and passt (${mb} MB transfers, median of ${runs}; ratio = lab / reference)`, await benchLinux(mb * 1_000_000, runs)) + '\n\n');
    }
    if (sections.includes('v86')) {
      const mb = Number(process.env.BENCH_V86_MB ?? '10');
      process.stdout.write(formatResults(`Linux's drivers on netlab's NIC models (v86) beside the built-in guest's, same model, same run (${mb} MB transfers, NE2000 half; median of ${runs}; MB/s = MiB/s)`, await benchV86(mb * 1_000_000, runs)) + '\n\n');
    }
    if (sections.includes('usernet')) process.stdout.write(formatResults(`lab redirect (virtio) beside slirp4netns at MTU 1500 and 65520 and pasta, C tools on the host side (${size / 1048576} MB, median of ${runs}; ratio = lab / reference)`, await benchUserNetRefs(size, runs)) + '\n\n');
    if (sections.includes('fair')) {
      const flows = Number(process.env.BENCH_FLOWS ?? '50');
      process.stdout.write(formatResults(`fairness: ${flows} concurrent bulk downloads, then uploads, through lab redirect --nic virtio (4 MB each)`, await benchFairness(flows, 4_000_000)) + '\n\n');
    }
    if (sections.includes('threads')) process.stdout.write(formatResults(`lab up --vm-threads beside one thread, virtio over a real TAP, C tools, runs interleaved (${size / 1048576} MB, median of ${runs})`, await benchThreads(size, runs)) + '\n\n');
    if (sections.includes('idle')) process.stdout.write(formatResults('idle VMs on one switch (lab up tap2 --vms 10)', await benchIdle(10)) + '\n\n');
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
