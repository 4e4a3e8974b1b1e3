import { readFileSync } from 'node:fs';
import { DEFAULT_CONFIG_XML } from '../src/config/default-config.js';
import { formatConfigError, parseVmConfig } from '../src/config/parse.js';
import type { VmConfig } from '../src/config/types.js';
import type { DeviceRegistry } from '../src/vmm/device.js';

export type LoadedConfig = { ok: true; config: VmConfig; source: string; warnings: string[] } | { ok: false; messages: string[] };

/** Read and validate a guest config; with no path, the embedded default guest. */
export function loadConfig(path: string | undefined, registry: DeviceRegistry): LoadedConfig {
  let xml = DEFAULT_CONFIG_XML;
  const source = path ?? '(default config)';
  if (path !== undefined) {
    try {
      xml = readFileSync(path, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return { ok: false, messages: [`${path}: cannot read the config (${code ?? (e as Error).message}); give the path of a guest XML such as examples/default.xml`] };
    }
  }
  const r = parseVmConfig(xml, { knownClasses: registry.names(), source });
  if (!r.ok) return { ok: false, messages: r.errors.map((e) => formatConfigError(e, source)) };
  return { ok: true, config: r.value, source, warnings: r.warnings };
}
