import { maskToPrefix, parseIpv4, prefixMask } from '../../net/addr.js';
import { NIC_CLASSES, type KernelConfig, type NicModel } from './types.js';

/**
 * The guest kernel command line, Kitten style: `net=rtl8139 ip=172.22.0.2 netmask=255.255.0.0
 * gw=172.22.0.1`, `ip=dhcp`, or `ip=172.22.0.2/16`. Also `dns=` and `hostname=`.
 */
const NET_NAMES: Record<string, NicModel> = {
  rtl8139: 'rtl8139',
  // The manual's own typo ("net=rtl819") is accepted, since users paste it.
  rtl819: 'rtl8139',
  ne2k: 'ne2k',
  ne2000: 'ne2k',
  virtio: 'virtio',
  'virtio-net': 'virtio',
  vmnet: 'virtio',
};

export type KernelArgsResult = { ok: true; value: KernelConfig } | { ok: false; error: string };

export function parseKernelArgs(cmdline: string): KernelArgsResult {
  const k: KernelConfig = { cmdline: cmdline.trim(), dhcp: false };
  let netmask: number | undefined;
  for (const word of cmdline.trim().split(/\s+/).filter((w) => w.length > 0)) {
    const eq = word.indexOf('=');
    if (eq < 0) continue; // bare flags (e.g. "quiet") are the kernel's business, not ours
    const key = word.slice(0, eq).toLowerCase();
    const value = word.slice(eq + 1);
    switch (key) {
      case 'net': {
        const m = NET_NAMES[value.toLowerCase()];
        if (!m) return { ok: false, error: `net=${value}: unknown NIC driver; allowed: rtl8139, ne2k, virtio` };
        k.net = m;
        break;
      }
      case 'ip': {
        if (value.toLowerCase() === 'dhcp') {
          k.dhcp = true;
          break;
        }
        const [addr, prefix] = value.split('/');
        const ip = parseIpv4(addr ?? '');
        if (ip === null) return { ok: false, error: `ip=${value}: not an IPv4 address; use ip=A.B.C.D, ip=A.B.C.D/N or ip=dhcp` };
        k.ip = ip;
        if (prefix !== undefined) {
          const p = Number(prefix);
          if (!Number.isInteger(p) || p < 0 || p > 32) return { ok: false, error: `ip=${value}: prefix length must be 0..32` };
          k.prefixLength = p;
        }
        break;
      }
      case 'netmask': {
        const m = parseIpv4(value);
        const p = m === null ? null : maskToPrefix(m);
        if (p === null) return { ok: false, error: `netmask=${value}: not a contiguous IPv4 netmask (e.g. 255.255.0.0)` };
        netmask = p;
        break;
      }
      case 'gw':
      case 'gateway': {
        const g = parseIpv4(value);
        if (g === null) return { ok: false, error: `${key}=${value}: not an IPv4 address` };
        k.gateway = g;
        break;
      }
      case 'dns': {
        const d = parseIpv4(value);
        if (d === null) return { ok: false, error: `dns=${value}: not an IPv4 address` };
        k.dns = d;
        break;
      }
      case 'hostname':
        k.hostname = value;
        break;
      default:
        break;
    }
  }
  if (netmask !== undefined) k.prefixLength = netmask;
  if (k.ip !== undefined && k.prefixLength === undefined) k.prefixLength = 24;
  if (k.ip !== undefined && k.gateway !== undefined && k.prefixLength !== undefined) {
    const m = prefixMask(k.prefixLength);
    if (((k.ip & m) >>> 0) !== ((k.gateway & m) >>> 0)) {
      return { ok: false, error: `gw: the gateway is not inside ip/${k.prefixLength}; give a gateway on the guest's own subnet` };
    }
  }
  return { ok: true, value: k };
}

export function nicModelForClass(className: string): NicModel | undefined {
  return NIC_CLASSES[className.toUpperCase()];
}
