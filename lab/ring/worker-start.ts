import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start a worker thread from a module beside the caller. Built (dist/…/x.js) it is the compiled
 * sibling file. Run from TypeScript sources (vitest), Node 20 cannot load a .ts file in a worker,
 * so the entry is bundled once with esbuild (a dev dependency, present wherever sources run) into a
 * temporary .mjs; packages stay external and resolve from this repository's node_modules.
 */
const bundled = new Map<string, string>();

export function startWorker(callerUrl: string, entry: string, options: WorkerOptions): Worker {
  if (callerUrl.endsWith('.js')) return new Worker(new URL(`./${entry}.js`, callerUrl), options);
  const src = fileURLToPath(new URL(`./${entry}.ts`, callerUrl));
  let out = bundled.get(src);
  if (!out) {
    const require = createRequire(import.meta.url);
    // Loaded only when running from sources; typed loosely because esbuild is not a runtime dependency.
    const esbuild = require('esbuild') as { buildSync(o: Record<string, unknown>): { outputFiles?: { text: string }[] } };
    const r = esbuild.buildSync({ entryPoints: [src], bundle: true, platform: 'node', format: 'esm', packages: 'external', write: false, logLevel: 'silent' });
    // Next to the sources so bare imports (koffi) resolve from the repository's node_modules.
    const dir = mkdtempSync(join(tmpdir(), 'netlab-worker-'));
    // The worker has loaded it by then; a test run leaves no temporary folder behind.
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    out = join(dir, `${entry}.mjs`);
    const text = r.outputFiles![0]!.text;
    // Bare specifiers from a file under /tmp would not find node_modules: make them absolute.
    writeFileSync(out, text.replace(/from "([a-z@][^"./][^"]*)"/g, (m, spec: string) => (isBuiltin(spec) ? m : `from ${JSON.stringify(pathToFileURL(require.resolve(spec)).href)}`)));
    bundled.set(src, out);
  }
  return new Worker(out, options);
}
