/**
 * QEMU's networking options as the manual types them, so users can paste them into `lab run`:
 *   -net user -net nic,model=rtl8139 -redir tcp:9555:10.10.10.33:80
 *   -net tap,ifname=tap2 -net nic,model=rtl8139
 * plus the modern `-netdev user,id=n0,hostfwd=tcp::9555-:80 -device rtl8139,netdev=n0`.
 */
import type { NicModel } from '../src/config/types.js';

export interface QemuNetSetup {
  backend?: { kind: 'user'; hostfwd: string[]; restrict?: boolean } | { kind: 'tap'; ifname: string; script?: string };
  nic?: { model: NicModel; mac?: string };
  redirects: string[];
}

const MODELS: Record<string, NicModel> = { rtl8139: 'rtl8139', ne2k_pci: 'ne2k', ne2000: 'ne2k', ne2k: 'ne2k', 'virtio-net-pci': 'virtio', 'virtio-net': 'virtio', virtio: 'virtio' };

/** Single-dash long options commander cannot read, rewritten to their `--` form. */
const QEMU_OPTS = new Set(['-net', '-netdev', '-redir', '-device', '-nic']);

export function normaliseQemuArgv(argv: string[]): string[] {
  return argv.map((a) => (QEMU_OPTS.has(a) ? `-${a}` : a));
}

function kv(text: string): { head: string; opts: Map<string, string[]> } {
  const [head, ...rest] = text.split(',');
  const opts = new Map<string, string[]>();
  for (const r of rest) {
    const eq = r.indexOf('=');
    const k = (eq < 0 ? r : r.slice(0, eq)).toLowerCase();
    const v = eq < 0 ? '' : r.slice(eq + 1);
    opts.set(k, [...(opts.get(k) ?? []), v]);
  }
  return { head: (head ?? '').toLowerCase(), opts };
}

export function parseQemuNet(opts: { net?: string[]; netdev?: string[]; redir?: string[]; device?: string[]; nic?: string[] }): { ok: true; value: QemuNetSetup } | { ok: false; error: string } {
  const setup: QemuNetSetup = { redirects: [...(opts.redir ?? [])] };
  const nicFrom = (modelText: string | undefined, mac: string | undefined): string | null => {
    const model = MODELS[(modelText ?? 'rtl8139').toLowerCase()];
    if (!model) return `NIC model "${modelText}" is not one netlab has; use model=rtl8139, ne2k_pci or virtio-net-pci`;
    setup.nic = { model, ...(mac ? { mac } : {}) };
    return null;
  };
  const backendFrom = (kind: string, o: Map<string, string[]>, what: string): string | null => {
    if (kind === 'user') {
      setup.backend = { kind: 'user', hostfwd: o.get('hostfwd') ?? [], ...(o.get('restrict')?.[0] === 'on' || o.get('restrict')?.[0] === 'yes' ? { restrict: true } : {}) };
      setup.redirects.push(...(o.get('hostfwd') ?? []));
      return null;
    }
    if (kind === 'tap') {
      const ifname = o.get('ifname')?.[0];
      if (!ifname) return `${what} tap needs ifname=, e.g. -net tap,ifname=tap2`;
      const script = o.get('script')?.[0];
      setup.backend = { kind: 'tap', ifname, ...(script && script !== 'no' ? { script } : {}) };
      return null;
    }
    return `${what} ${kind}: netlab has user and tap backends`;
  };
  for (const n of opts.net ?? []) {
    const { head, opts: o } = kv(n);
    const err = head === 'nic' ? nicFrom(o.get('model')?.[0], o.get('macaddr')?.[0]) : backendFrom(head, o, '-net');
    if (err) return { ok: false, error: err };
  }
  for (const n of opts.netdev ?? []) {
    const { head, opts: o } = kv(n);
    const err = backendFrom(head, o, '-netdev');
    if (err) return { ok: false, error: err };
  }
  for (const n of opts.nic ?? []) {
    const { head, opts: o } = kv(n);
    const err = backendFrom(head, o, '-nic') ?? nicFrom(o.get('model')?.[0], o.get('mac')?.[0]);
    if (err) return { ok: false, error: err };
  }
  for (const d of opts.device ?? []) {
    const { head, opts: o } = kv(d);
    const err = nicFrom(head, o.get('mac')?.[0]);
    if (err) return { ok: false, error: err };
  }
  if (setup.redirects.length > 0 && setup.backend?.kind === 'tap') return { ok: false, error: '-redir needs -net user, not a tap backend' };
  if (setup.redirects.length > 0 && !setup.backend) setup.backend = { kind: 'user', hostfwd: [] };
  return { ok: true, value: setup };
}
