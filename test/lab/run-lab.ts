import { execFile } from 'node:child_process';

/** Run the built CLI (dist/lab/cli.js) as a user would; resolves with exit code and output. */
export function runLab(args: string[], o: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['dist/lab/cli.js', ...args], { timeout: o.timeoutMs ?? 30_000, env: o.env ?? process.env }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
