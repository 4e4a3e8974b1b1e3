import { formatIpv4, parseIpv4 } from '../net/addr.js';
import type { KernelConfig } from '../src/config/types.js';

/**
 * Where `lab up`'s guests get their addresses, in order of precedence:
 * 1. `--guest-ip A.B.C.D[/P]` (and `--gateway`): what the user typed last wins; guest i gets A+i.
 * 2. The user's own XML (`--config`): its kernel line, static (`ip=` … guest i gets ip+i) or DHCP.
 * 3. The manual's rule for tap0..tap9: 172.2N.0.2 + i on 172.2N.0.0/16, gateway 172.2N.0.1.
 * 4. Otherwise (a TAP bridged to a LAN, or addressed by an ifup script): DHCP, as a QEMU guest on
 *    that bridge would — the network it joins decides.
 * Never is an address the user gave overwritten by the rule.
 */

export interface UpAddressingInput {
  /** `--guest-ip`, `A.B.C.D` or `A.B.C.D/P`. */
  guestIp?: string;
  /** `--gateway`. */
  gateway?: string;
  /** The kernel line of a config the user gave (`--config`); undefined for the embedded default. */
  userKernel?: KernelConfig;
  /** The manual's rule for this TAP (tap0..tap9), if it has one. */
  rule: { host: string; guestBase: number; prefix: number } | null;
}

export type GuestAddressing =
  | { kind: 'static'; base: number; prefix: number; gateway: number; source: string }
  | { kind: 'dhcp'; source: string };

export function upGuestAddressing(o: UpAddressingInput): { ok: true; value: GuestAddressing } | { ok: false; error: string } {
  const gw = o.gateway !== undefined ? parseIpv4(o.gateway) : undefined;
  if (o.gateway !== undefined && gw === null) return { ok: false, error: `--gateway "${o.gateway}" is not an IPv4 address` };
  if (o.guestIp !== undefined) {
    const m = /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?$/.exec(o.guestIp.trim());
    const ip = m ? parseIpv4(m[1]!) : null;
    const prefix = m?.[2] !== undefined ? Number(m[2]) : (o.rule?.prefix ?? 24);
    if (ip === null || ip === undefined || prefix < 1 || prefix > 30) return { ok: false, error: `--guest-ip "${o.guestIp}": give A.B.C.D or A.B.C.D/P (P 1..30)` };
    return { ok: true, value: { kind: 'static', base: ip, prefix, gateway: gw ?? (o.rule ? parseIpv4(o.rule.host)! : 0), source: '--guest-ip' } };
  }
  const k = o.userKernel;
  if (k?.dhcp) return { ok: true, value: { kind: 'dhcp', source: 'the config\'s kernel line (ip=dhcp)' } };
  if (k?.ip !== undefined) {
    return { ok: true, value: { kind: 'static', base: k.ip, prefix: k.prefixLength ?? o.rule?.prefix ?? 24, gateway: gw ?? k.gateway ?? 0, source: `the config's kernel line (ip=${formatIpv4(k.ip)})` } };
  }
  if (o.rule) return { ok: true, value: { kind: 'static', base: o.rule.guestBase, prefix: o.rule.prefix, gateway: gw ?? parseIpv4(o.rule.host)!, source: 'the tapN rule' } };
  return { ok: true, value: { kind: 'dhcp', source: 'no address given (--guest-ip A.B.C.D/P sets one): DHCP from the network the TAP joins' } };
}

/** Guest `i`'s kernel addressing under `a`. */
export function guestKernelFor(a: GuestAddressing, i: number, base: KernelConfig): KernelConfig {
  if (a.kind === 'dhcp') return { ...base, dhcp: true, ip: undefined, prefixLength: undefined, gateway: undefined };
  return { ...base, dhcp: false, ip: (a.base + i) >>> 0, prefixLength: a.prefix, gateway: a.gateway };
}
