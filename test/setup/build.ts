import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Before any test file runs: compile once (CLI tests run the built `lab` the way users do, so the
 * build must be current), and point every lab run of the suite at one temporary captures folder
 * (`$NETLAB_CAPTURES`, inherited by test workers and the labs they spawn), removed at the end, so
 * `npm test` leaves nothing under captures/.
 */
export default function setup(): () => void {
  const captures = fs.mkdtempSync(path.join(os.tmpdir(), 'netlab-test-captures-'));
  process.env['NETLAB_CAPTURES'] = captures;
  // For quick inner-loop runs of suites that do not spawn the CLI.
  if (process.env['NETLAB_SKIP_BUILD'] !== '1') {
    execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
  }
  return () => {
    fs.rmSync(captures, { recursive: true, force: true });
    if (process.getuid?.() !== 0) {
      const skipped = fs.readdirSync('test/system').filter((f) => f.endsWith('.test.ts'));
      process.stdout.write(
        `\nskipped (not root): ${skipped.map((f) => `test/system/${f}`).join(', ')} — the system tier makes network namespaces and TAP devices.\n` +
          'Run everything as root: "sudo npm test", or "sudo bash .ci/run" (installs the tools it drives, as CI does).\n',
      );
    }
  };
}
