import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * netlab's version from package.json, found by walking up from this file (it runs from `lab/`
 * under vitest and from `dist/lab/` when built). Captures name it in shb_userappl.
 */
function readVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'netlab' && pkg.version) return pkg.version;
    } catch {
      // Not here; look one folder up.
    }
    dir = path.dirname(dir);
  }
  return 'unknown';
}

export const NETLAB_VERSION = readVersion();
