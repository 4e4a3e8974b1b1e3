import { formatIpv4, parseIpv4, type Ipv4Addr } from '../../net/addr.js';

/**
 * Redirect specs as users type them:
 * - the manual's (QEMU ≤ 3.0) `-redir [tcp|udp]:HOSTPORT:[GUESTADDR]:GUESTPORT`
 * - QEMU's `hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT` (the `hostfwd=` prefix optional)
 * An empty host address means the lab's listen address (127.0.0.1 unless told otherwise); an empty
 * guest address means the guest's DHCP address.
 */
export interface Redirect {
  proto: 'tcp' | 'udp';
  /** Undefined: the listen address given to the lab (default 127.0.0.1). */
  hostAddr?: string;
  hostPort: number;
  /** Undefined: the guest's DHCP address. */
  guestAddr?: Ipv4Addr;
  guestPort: number;
  /** As typed, for messages. */
  spec: string;
}

export const REDIRECT_FORMS = 'tcp:HOSTPORT:GUESTADDR:GUESTPORT (e.g. tcp:9555:10.10.10.33:80; udp: too; GUESTADDR may be empty) or hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT';

export type RedirectResult = { ok: true; value: Redirect } | { ok: false; error: string };

function bad(spec: string, part: string): RedirectResult {
  return { ok: false, error: `redirect "${spec}": ${part}; the forms are ${REDIRECT_FORMS}` };
}

function port(text: string, what: string, spec: string): number | RedirectResult {
  if (!/^\d+$/.test(text)) return bad(spec, `${what} "${text}" is not a port number (1-65535)`);
  const n = Number(text);
  if (n < 1 || n > 65535) return bad(spec, `${what} ${text} is out of range (1-65535)`);
  return n;
}

function proto(text: string, spec: string): 'tcp' | 'udp' | RedirectResult {
  const p = text.toLowerCase();
  if (p === 'tcp' || p === 'udp') return p;
  return bad(spec, `protocol "${text}" must be tcp or udp`);
}

export function parseRedirect(input: string): RedirectResult {
  const spec = input.trim();
  if (spec.length === 0) return bad(spec, 'it is empty');
  let body = spec;
  const isHostfwd = /^hostfwd=/i.test(body);
  if (isHostfwd) body = body.slice('hostfwd='.length);
  if (isHostfwd || body.includes('-')) {
    // hostfwd form: [proto]:[hostaddr]:hostport-[guestaddr]:guestport
    const dash = body.indexOf('-');
    if (dash < 0) return bad(spec, 'the hostfwd form needs "-" between the host side and the guest side');
    const host = body.slice(0, dash).split(':');
    const guest = body.slice(dash + 1).split(':');
    if (host.length !== 3) return bad(spec, `the host side "${body.slice(0, dash)}" must be PROTO:[HOSTADDR]:HOSTPORT`);
    if (guest.length !== 2) return bad(spec, `the guest side "${body.slice(dash + 1)}" must be [GUESTADDR]:GUESTPORT`);
    const pr = proto(host[0] === '' ? 'tcp' : host[0]!, spec);
    if (typeof pr !== 'string') return pr;
    const hp = port(host[2]!, 'host port', spec);
    if (typeof hp !== 'number') return hp;
    const gp = port(guest[1]!, 'guest port', spec);
    if (typeof gp !== 'number') return gp;
    const r: Redirect = { proto: pr, hostPort: hp, guestPort: gp, spec };
    if (host[1] !== '') {
      if (parseIpv4(host[1]!) === null && host[1] !== 'localhost') return bad(spec, `host address "${host[1]}" is not an IPv4 address`);
      r.hostAddr = host[1]!;
    }
    if (guest[0] !== '') {
      const g = parseIpv4(guest[0]!);
      if (g === null) return bad(spec, `guest address "${guest[0]}" is not an IPv4 address`);
      r.guestAddr = g;
    }
    return { ok: true, value: r };
  }
  // -redir form: proto:hostport:[guestaddr]:guestport
  const parts = body.split(':');
  if (parts.length !== 4) return bad(spec, `expected 4 fields separated by ":", found ${parts.length}`);
  const pr = proto(parts[0]!, spec);
  if (typeof pr !== 'string') return pr;
  const hp = port(parts[1]!, 'host port', spec);
  if (typeof hp !== 'number') return hp;
  const gp = port(parts[3]!, 'guest port', spec);
  if (typeof gp !== 'number') return gp;
  const r: Redirect = { proto: pr, hostPort: hp, guestPort: gp, spec };
  if (parts[2] !== '') {
    const g = parseIpv4(parts[2]!);
    if (g === null) return bad(spec, `guest address "${parts[2]}" is not an IPv4 address`);
    r.guestAddr = g;
  }
  return { ok: true, value: r };
}

export function formatRedirect(r: Redirect, listen = '127.0.0.1'): string {
  return `${r.proto} ${r.hostAddr ?? listen}:${r.hostPort} -> ${r.guestAddr !== undefined ? formatIpv4(r.guestAddr) : '(dhcp guest)'}:${r.guestPort}`;
}
