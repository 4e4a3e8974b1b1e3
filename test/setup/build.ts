import { execFileSync } from 'node:child_process';

/**
 * CLI tests run the built `lab` the way users do (node dist/lab/cli.js), so the build must be
 * current: compile once before any test file runs.
 */
export default function setup(): void {
  // For quick inner-loop runs of suites that do not spawn the CLI.
  if (process.env['NETLAB_SKIP_BUILD'] === '1') return;
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
