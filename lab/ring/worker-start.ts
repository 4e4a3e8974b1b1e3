import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start a worker thread from a module beside the caller. Built (dist/…/x.js) it is the compiled
 * sibling file. Run from TypeScript sources (vitest), Node 20 cannot load a .ts file in a worker,
 * so the entry is bundled once with esbuild (a dev dependency, present wherever sources run) into
 * node_modules/.cache/netlab-workers/, named by its content (one file per version of the entry, so
 * test runs leave nothing in /tmp and reuse what an earlier run built); packages stay external and
 * resolve from this repository's node_modules.
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
    const text = r.outputFiles![0]!.text;
    // Bare specifiers made absolute, so the bundle resolves them wherever it sits.
    const code = text.replace(/from "([a-z@][^"./][^"]*)"/g, (m, spec: string) => (isBuiltin(spec) ? m : `from ${JSON.stringify(pathToFileURL(require.resolve(spec)).href)}`));
    const dir = join(dirname(require.resolve('esbuild/package.json')), '..', '.cache', 'netlab-workers');
    mkdirSync(dir, { recursive: true });
    out = join(dir, `${entry}-${createHash('sha256').update(code).digest('hex').slice(0, 16)}.mjs`);
    if (!existsSync(out)) {
      // Written aside and renamed: test files in parallel may bundle the same entry at once.
      const part = `${out}.${process.pid}.${Math.random().toString(36).slice(2)}`;
      writeFileSync(part, code);
      renameSync(part, out);
      // Older versions of this entry go after a day (a process still running one has loaded it).
      for (const f of readdirSync(dir)) {
        const p = join(dir, f);
        if (f.startsWith(`${entry}-`) && p !== out && Date.now() - statSync(p).mtimeMs > 86_400_000) rmSync(p, { force: true });
      }
    }
    bundled.set(src, out);
  }
  return new Worker(out, options);
}
