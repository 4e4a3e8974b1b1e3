import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { formatMac, parseMac, randomLocalMac } from '../../net/addr.js';
import { parseKernelArgs } from './kernel-args.js';
import { BACKEND_CLASSES, GUEST_MACHINES, NIC_CLASSES, type GuestMachine, type AppConfig, type BackendClass, type BackendConfig, type DeviceConfig, type VmConfig } from './types.js';
import { MAX_MEMORY_MB, MIN_MEMORY_MB } from '../vmm/memory.js';

/**
 * Palacios-style guest XML → VmConfig. Follows Palacios' vmm_config.c conventions: a value may be
 * an attribute or a child element of the same name (both at once is an error), names match
 * case-insensitively, devices are created in document order, unknown elements are ignored.
 * Known elements with bad values are rejected with the element, the value, what is allowed, and
 * the line.
 */
export interface ConfigError {
  message: string;
  line?: number;
  element?: string;
}

export type ConfigResult = { ok: true; value: VmConfig; warnings: string[] } | { ok: false; errors: ConfigError[] };

export interface ParseOptions {
  /** Device class names the registry knows (frontends and core devices). */
  knownClasses: readonly string[];
  /** Name for messages, e.g. the file path. */
  source?: string;
  random?: () => number;
}

type Node = Record<string, unknown>;

const ARRAY_TAGS = new Set(['device', 'file', 'app', 'redirect', 'frontend']);

export function formatConfigError(e: ConfigError, source?: string): string {
  const where = [source, e.line !== undefined ? `line ${e.line}` : undefined].filter(Boolean).join(':');
  return `${where ? where + ': ' : ''}${e.element ? `<${e.element}> ` : ''}${e.message}`;
}

export function parseVmConfig(xml: string, options: ParseOptions): ConfigResult {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    return { ok: false, errors: [{ message: `malformed XML: ${valid.err.msg}`, line: valid.err.line }] };
  }
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@_',
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: true,
    transformTagName: (t) => t.toLowerCase(),
    transformAttributeName: (a) => a.toLowerCase(),
    isArray: (name) => ARRAY_TAGS.has(name.toLowerCase()),
  });
  let doc: Node;
  try {
    doc = parser.parse(xml) as Node;
  } catch (e) {
    return { ok: false, errors: [{ message: `malformed XML: ${(e as Error).message}` }] };
  }
  const errors: ConfigError[] = [];
  const warnings: string[] = [];
  const lines = elementLines(xml);
  const vm = doc['vm'];
  if (!isNode(vm)) {
    return { ok: false, errors: [{ message: 'the root element must be <vm class="PC">…</vm>', line: 1, element: 'vm' }] };
  }
  const vmClass = attrOrChild(vm, 'class', errors, 'vm', lines.vm);
  if (vmClass !== undefined && vmClass.toUpperCase() !== 'PC') {
    errors.push({ element: 'vm', message: `class="${vmClass}": only class="PC" is supported`, line: lines.vm });
  }
  const name = attrOrChild(vm, 'name', errors, 'vm', lines.vm) ?? 'vm0';
  const machineText = simpleText(vm['machine']);
  let machine: GuestMachine | undefined;
  if (machineText !== undefined) {
    const m = machineText.toLowerCase();
    if ((GUEST_MACHINES as readonly string[]).includes(m)) machine = m as GuestMachine;
    else errors.push({ element: 'machine', message: `"${machineText}": allowed: ${GUEST_MACHINES.join(', ')}` });
  }

  // Memory: MB, a positive integer within what a lab machine can give a guest.
  let memoryMB = 64;
  const memNode = vm['memory'];
  const memText = isNode(memNode) ? (attrOrChild(memNode, 'size', errors, 'memory', lines.memory) ?? textOf(memNode)) : memNode !== undefined ? String(memNode) : undefined;
  if (memText !== undefined) {
    const mb = Number(memText.trim());
    if (!/^\d+$/.test(memText.trim()) || mb < MIN_MEMORY_MB || mb > MAX_MEMORY_MB) {
      errors.push({ element: 'memory', message: `"${memText}": guest memory is a whole number of MB from ${MIN_MEMORY_MB} to ${MAX_MEMORY_MB}`, line: lines.memory });
    } else memoryMB = mb;
  }

  const telemetryText = simpleText(vm['telemetry']);
  let telemetry = true;
  if (telemetryText !== undefined) {
    const t = telemetryText.toLowerCase();
    if (t === 'enable' || t === 'enabled' || t === 'on' || t === '1') telemetry = true;
    else if (t === 'disable' || t === 'disabled' || t === 'off' || t === '0') telemetry = false;
    else errors.push({ element: 'telemetry', message: `"${telemetryText}": use enable or disable`, line: lines.telemetry });
  }

  let scheduleHz: number | undefined;
  const hzText = simpleText(vm['schedule_hz']);
  if (hzText !== undefined) {
    const hz = Number(hzText);
    if (!Number.isInteger(hz) || hz < 1 || hz > 10000) errors.push({ element: 'schedule_hz', message: `"${hzText}": a whole number of Hz from 1 to 10000`, line: lines.schedule_hz });
    else scheduleHz = hz;
  }

  const files: VmConfig['files'] = [];
  const filesNode = vm['files'];
  if (isNode(filesNode)) {
    for (const f of asArray(filesNode['file'])) {
      if (!isNode(f)) continue;
      const id = attrOrChild(f, 'id', errors, 'file');
      const filename = attrOrChild(f, 'filename', errors, 'file');
      if (!id || !filename) errors.push({ element: 'file', message: 'each <file> needs id="…" and filename="…"' });
      else files.push({ id, filename });
    }
  }

  // Devices, in document order.
  const devices: DeviceConfig[] = [];
  const backends: BackendConfig[] = [];
  const ids = new Map<string, number>();
  const known = new Set(options.knownClasses.map((c) => c.toUpperCase()));
  const devicesNode = vm['devices'];
  const deviceList = isNode(devicesNode) ? asArray(devicesNode['device']) : [];
  deviceList.forEach((d, index) => {
    const line = lines.device[index];
    if (!isNode(d)) {
      errors.push({ element: 'device', message: 'a <device> needs class="…" and id="…"', line });
      return;
    }
    const className = attrOrChild(d, 'class', errors, 'device', line);
    const id = attrOrChild(d, 'id', errors, 'device', line);
    if (!className || !id) {
      errors.push({ element: 'device', message: `a <device> needs class="…" and id="…"${id ? ` (id="${id}")` : ''}`, line });
      return;
    }
    if (ids.has(id)) {
      errors.push({ element: 'device', message: `id="${id}" is used twice (first on line ${ids.get(id)}); device ids must be unique`, line });
      return;
    }
    ids.set(id, line ?? 0);
    const upper = className.toUpperCase();
    const params = collectParams(d, ['class', 'id', 'frontend', 'redirect', 'mac', 'bus']);
    if ((BACKEND_CLASSES as readonly string[]).includes(upper)) {
      const fronts = asArray(d['frontend']);
      const tag = fronts.length > 0 && isNode(fronts[0]) ? attrOrChild(fronts[0], 'tag', errors, 'frontend', line) : simpleText(fronts[0]);
      if (!tag) {
        errors.push({ element: 'device', message: `backend "${id}" (class ${upper}) needs <frontend tag="NIC-ID"/> naming the NIC it serves`, line });
        return;
      }
      const redirects = asArray(d['redirect']).map((r) => (isNode(r) ? (attrOrChild(r, 'spec', errors, 'redirect', line) ?? textOf(r) ?? '') : String(r)));
      backends.push({ id, className: upper as BackendClass, line: line ?? 0, frontend: tag, params, redirects });
      return;
    }
    if (!known.has(upper)) {
      errors.push({ element: 'device', message: `class="${className}" (id="${id}") is not a known device class; known: ${[...known].sort().join(', ')}, and backends ${BACKEND_CLASSES.join(', ')}`, line });
      return;
    }
    const dev: DeviceConfig = { id, className: upper, line: line ?? 0, params };
    const bus = attrOrChild(d, 'bus', errors, 'bus', line);
    if (bus !== undefined) dev.bus = bus;
    if (NIC_CLASSES[upper]) {
      const macText = attrOrChild(d, 'mac', errors, 'mac', line);
      if (macText !== undefined) {
        const mac = parseMac(macText);
        if (!mac) errors.push({ element: 'mac', message: `"${macText}" (device "${id}"): a MAC is six hex pairs like 52:54:00:12:34:56`, line });
        else if (mac[0]! & 1) errors.push({ element: 'mac', message: `${macText} (device "${id}") is a multicast address; a NIC needs a unicast MAC (first byte even)`, line });
        else dev.mac = mac;
      } else {
        dev.mac = randomLocalMac(options.random);
        dev.macGenerated = true;
      }
    }
    devices.push(dev);
  });

  // Cross-references: buses exist, backends name NIC frontends, NICs name existing backends.
  const byId = new Map(devices.map((d) => [d.id, d]));
  for (const d of devices) {
    if (d.bus !== undefined) {
      const b = byId.get(d.bus);
      if (!b) errors.push({ element: 'bus', message: `"${d.bus}" (device "${d.id}") is not a device in this config; define <device class="PCI" id="${d.bus}"/> before it`, line: d.line });
      else if (b.className !== 'PCI') errors.push({ element: 'bus', message: `"${d.bus}" (device "${d.id}") is a ${b.className}, not a PCI bus`, line: d.line });
      else if (b.line > d.line) errors.push({ element: 'bus', message: `"${d.bus}" must be defined before device "${d.id}" (devices are created in document order)`, line: d.line });
    }
    const wanted = d.params['backend'];
    if (wanted !== undefined && !backends.some((b) => b.id === wanted)) {
      errors.push({ element: 'backend', message: `"${wanted}" (NIC "${d.id}") names a backend that does not exist; backends here: ${backends.map((b) => b.id).join(', ') || 'none'}`, line: d.line });
    }
  }
  const served = new Set<string>();
  for (const b of backends) {
    const f = byId.get(b.frontend);
    if (!f || !NIC_CLASSES[f.className]) {
      errors.push({ element: 'frontend', message: `tag="${b.frontend}" (backend "${b.id}") is not a NIC in this config; NICs here: ${devices.filter((d) => NIC_CLASSES[d.className]).map((d) => d.id).join(', ') || 'none'}`, line: b.line });
    } else if (served.has(b.frontend)) {
      errors.push({ element: 'frontend', message: `NIC "${b.frontend}" has two backends; a NIC attaches to exactly one`, line: b.line });
    }
    served.add(b.frontend);
  }

  // Guest: kernel command line and apps.
  const guest = vm['guest'];
  let cmdline = '';
  const apps: AppConfig[] = [];
  if (isNode(guest)) {
    cmdline = simpleText(guest['kernel']) ?? simpleText(guest['cmdline']) ?? '';
    const appsNode = guest['apps'];
    if (isNode(appsNode)) {
      for (const a of asArray(appsNode['app'])) {
        const appName = isNode(a) ? (attrOrChild(a, 'name', errors, 'app', lines.apps) ?? textOf(a)) : String(a);
        if (!appName) continue;
        const app: AppConfig = { name: appName.toLowerCase() };
        const portText = isNode(a) ? attrOrChild(a, 'port', errors, 'app', lines.apps) : undefined;
        if (portText !== undefined) {
          const port = Number(portText);
          if (!Number.isInteger(port) || port < 1 || port > 65535) errors.push({ element: 'app', message: `port="${portText}" (app ${appName}): a port is 1..65535`, line: lines.apps });
          else app.port = port;
        }
        apps.push(app);
      }
    }
  }
  const k = parseKernelArgs(cmdline);
  if (!k.ok) errors.push({ element: 'kernel', message: k.error, line: lines.kernel });

  if (errors.length > 0 || !k.ok) return { ok: false, errors };
  const nics = devices.filter((d) => NIC_CLASSES[d.className]);
  if (k.value.net && !nics.some((d) => NIC_CLASSES[d.className] === k.value.net)) {
    warnings.push(`kernel net=${k.value.net} but the config has no such NIC (${nics.map((d) => d.className).join(', ') || 'none'}); the guest binds whatever NIC it finds`);
  }
  for (const d of nics) if (d.macGenerated) warnings.push(`NIC "${d.id}" has no <mac>; using ${formatMac(d.mac!)}`);
  return {
    ok: true,
    value: { name, ...(machine ? { machine } : {}), memoryMB, telemetry, ...(scheduleHz !== undefined ? { scheduleHz } : {}), devices, backends, files, kernel: k.value, apps },
    warnings,
  };
}

function isNode(v: unknown): v is Node {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asArray(v: unknown): unknown[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

function textOf(n: Node): string | undefined {
  const t = n['#text'];
  return t === undefined ? undefined : String(t);
}

function simpleText(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) return simpleText(v[0]);
  if (isNode(v)) return textOf(v);
  return String(v);
}

/** Palacios' rule: an attribute or a child element of the same name, not both. */
function attrOrChild(n: Node, name: string, errors: ConfigError[], element: string, line?: number): string | undefined {
  const attr = n[`@_${name}`];
  const child = n[name];
  if (attr !== undefined && child !== undefined && !isNode(child) && !Array.isArray(child)) {
    errors.push({ element, message: `"${name}" is given both as an attribute and as a child element; give it once`, line });
    return String(attr);
  }
  if (attr !== undefined) return String(attr);
  return simpleText(child);
}

function collectParams(n: Node, skip: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(n)) {
    const key = k.startsWith('@_') ? k.slice(2) : k;
    if (skip.includes(key) || key === '#text') continue;
    const t = simpleText(v);
    if (t !== undefined) out[key] = t;
    // Palacios' <hostnic name="eth0"/> form: an element whose value is its name attribute.
    else if (v !== null && typeof v === 'object' && !Array.isArray(v) && typeof (v as Record<string, unknown>)['@_name'] === 'string') out[key] = (v as Record<string, string>)['@_name']!;
  }
  return out;
}

interface ElementLines {
  vm?: number;
  memory?: number;
  telemetry?: number;
  schedule_hz?: number;
  kernel?: number;
  apps?: number;
  device: number[];
}

/** Lines of the elements we report on (fast-xml-parser gives none), comments blanked first. */
function elementLines(xml: string): ElementLines {
  const blank = xml.replace(/<!--[\s\S]*?-->/g, (c) => c.replace(/[^\n]/g, ' '));
  const lineAt = (pos: number): number => blank.slice(0, pos).split('\n').length;
  const first = (tag: string): number | undefined => {
    const m = new RegExp(`<${tag}[\\s>/]`, 'i').exec(blank);
    return m ? lineAt(m.index) : undefined;
  };
  const device: number[] = [];
  for (const m of blank.matchAll(/<device[\s>/]/gi)) device.push(lineAt(m.index));
  return {
    vm: first('vm'),
    memory: first('memory'),
    telemetry: first('telemetry'),
    schedule_hz: first('schedule_hz'),
    kernel: first('kernel') ?? first('cmdline'),
    apps: first('apps'),
    device,
  };
}
