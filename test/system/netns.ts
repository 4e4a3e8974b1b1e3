import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterEach, beforeAll } from 'vitest';
import { patternBlock } from '../../src/guest/apps/http.js';

/**
 * System-test plumbing: every test gets its own network namespace (created here, deleted in
 * `cleanup`), so TAP devices and traffic never touch the machine's own namespace.
 */
let counter = 0;

export function requireTool(cmd: string, pkg: string): void {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`]);
  if (r.status !== 0) throw new Error(`${cmd} is missing: apt-get install -y ${pkg}`);
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('system tests need root (network namespaces and TAP devices): run "sudo npm test" or "bash .ci/run"');
}

export class Netns {
  readonly name: string;
  private readonly children: ChildProcess[] = [];

  constructor() {
    this.name = `nl-${process.pid}-${++counter}`;
    const r = spawnSync('ip', ['netns', 'add', this.name], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip netns add ${this.name}: ${r.stderr}`);
    spawnSync('ip', ['netns', 'exec', this.name, 'ip', 'link', 'set', 'lo', 'up']);
  }

  /** Run a command inside the namespace and wait for it. */
  run(cmd: string[], options: { input?: Buffer | string; timeoutMs?: number } = {}): { status: number; stdout: Buffer; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', this.name, ...cmd], { input: options.input, timeout: options.timeoutMs ?? 60_000, maxBuffer: 256 * 1024 * 1024 });
    return { status: r.status ?? -1, stdout: r.stdout ?? Buffer.alloc(0), stderr: String(r.stderr ?? '') };
  }

  sh(script: string, timeoutMs = 60_000): { status: number; stdout: string; stderr: string } {
    const r = this.run(['sh', '-c', script], { timeoutMs });
    return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr };
  }

  /** Start a long-running command inside the namespace; resolves when `ready` shows on stdout. */
  start(cmd: string[], ready: string, timeoutMs = 20_000): Promise<{ child: ChildProcess; out: () => string; err: () => string; exit: Promise<number> }> {
    const child = spawn('ip', ['netns', 'exec', this.name, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    let out = '';
    let err = '';
    const exit = new Promise<number>((r) => child.on('exit', (code, sig) => r(code ?? (sig ? 128 : 1))));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms:\n${out}\n${err}`)), timeoutMs);
      child.stdout!.on('data', (b) => {
        out += b;
        if (out.includes(ready)) {
          clearTimeout(timer);
          resolve({ child, out: () => out, err: () => err, exit });
        }
      });
      child.stderr!.on('data', (b) => (err += b));
      void exit.then((code) => {
        clearTimeout(timer);
        if (!out.includes(ready)) reject(new Error(`exited ${code} before ready:\n${out}\n${err}`));
      });
    });
  }

  cleanup(): void {
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', this.name]);
  }
}

/** The built `lab`, as the system tests run it (test/setup/build.ts builds it first). */
export const LAB_CLI = ['node', 'dist/lab/cli.js'];

export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** `n` bytes of the guests' /bytes/N pattern (what curl must receive from a guest, byte for byte). */
export function bytesPattern(n: number): Uint8Array {
  const out = new Uint8Array(n);
  const block = patternBlock(65536);
  for (let off = 0; off < n; off += block.length) out.set(block.subarray(0, Math.min(block.length, n - off)), off);
  return out;
}

/**
 * The system tier's common frame for a test file: root and the tools it drives checked once (a
 * missing one fails with the apt-get line), and `cleanup` (the test's namespace) after each test.
 */
export function systemSuite(tools: readonly (readonly [string, string])[], cleanup: () => void): void {
  beforeAll(() => {
    requireRoot();
    for (const [cmd, pkg] of tools) requireTool(cmd, pkg);
  });
  afterEach(cleanup);
}
