import { describe, expect, it } from 'vitest';
import { formatIpv4 } from '../../../net/addr.js';
import { parseRedirect } from '../../../lab/usernet/redirect-spec.js';
import { userNetAddressing } from '../../../lab/usernet/addressing.js';

describe('redirect specs', () => {
  it('reads the manual\'s form exactly as typed', () => {
    const r = parseRedirect('tcp:9555:10.10.10.33:80');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value).toMatchObject({ proto: 'tcp', hostPort: 9555, guestPort: 80 });
    expect(formatIpv4(r.value.guestAddr!)).toBe('10.10.10.33');
    expect(r.value.hostAddr).toBeUndefined();
  });

  it('reads udp redirects and an empty guest address (the DHCP guest)', () => {
    const r = parseRedirect('udp:5353::53');
    expect(r).toMatchObject({ ok: true, value: { proto: 'udp', hostPort: 5353, guestPort: 53 } });
    expect(r.ok && r.value.guestAddr).toBeUndefined();
  });

  it('reads QEMU\'s hostfwd form with and without addresses', () => {
    expect(parseRedirect('hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80')).toMatchObject({ ok: true, value: { proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 8080, guestPort: 80 } });
    const r = parseRedirect('hostfwd=tcp::9555-:80');
    expect(r).toMatchObject({ ok: true, value: { hostPort: 9555, guestPort: 80 } });
    expect(r.ok && r.value.hostAddr).toBeUndefined();
    expect(parseRedirect('udp::6000-:7')).toMatchObject({ ok: true, value: { proto: 'udp', hostPort: 6000, guestPort: 7 } });
  });

  it.each([
    ['sctp:9555:10.10.10.33:80', /protocol "sctp" must be tcp or udp/],
    ['tcp:95x5:10.10.10.33:80', /host port "95x5" is not a port number/],
    ['tcp:70000:10.10.10.33:80', /host port 70000 is out of range/],
    ['tcp:9555:10.10.10.333:80', /guest address "10.10.10.333" is not an IPv4 address/],
    ['tcp:9555:10.10.10.33', /expected 4 fields separated by ":", found 3/],
    ['tcp:9555:10.10.10.33:0', /guest port 0 is out of range/],
    ['hostfwd=tcp:9555-:80', /host side "tcp:9555" must be PROTO:\[HOSTADDR\]:HOSTPORT/],
    ['hostfwd=tcp::9555-80', /guest side "80" must be \[GUESTADDR\]:GUESTPORT/],
    ['', /it is empty/],
  ])('says which part of "%s" is wrong and shows the forms', (spec, pattern) => {
    const r = parseRedirect(spec);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toMatch(pattern);
    expect(r.error).toContain('tcp:HOSTPORT:GUESTADDR:GUESTPORT');
  });
});

describe('user-mode network addressing', () => {
  const addr = (spec: string[]) => userNetAddressing(spec.map((s) => { const r = parseRedirect(s); if (!r.ok) throw new Error(r.error); return r.value; }));

  it('uses QEMU\'s defaults when no guest address is given', () => {
    const a = addr(['tcp:9555::80']);
    expect(a.ok).toBe(true);
    if (!a.ok) return;
    expect([a.value.network, a.value.gateway, a.value.dns, a.value.dhcpStart, a.value.guest].map(formatIpv4)).toEqual(['10.0.2.0', '10.0.2.2', '10.0.2.3', '10.0.2.15', '10.0.2.15']);
    expect(a.value.guestStatic).toBe(false);
  });

  it('moves the network to the /24 of the manual\'s 10.10.10.33 with the gateway at .2', () => {
    const a = addr(['tcp:9555:10.10.10.33:80', 'udp:9556:10.10.10.33:7']);
    expect(a.ok).toBe(true);
    if (!a.ok) return;
    expect([a.value.gateway, a.value.dns, a.value.guest].map(formatIpv4)).toEqual(['10.10.10.2', '10.10.10.3', '10.10.10.33']);
    expect(a.value.guestStatic).toBe(true);
  });

  it('refuses two different guests and reserved guest addresses', () => {
    expect(addr(['tcp:1:10.0.2.15:80', 'tcp:2:10.0.2.16:80'])).toMatchObject({ ok: false, error: expect.stringContaining('one guest') });
    expect(addr(['tcp:1:10.0.2.2:80'])).toMatchObject({ ok: false, error: expect.stringContaining('reserved') });
  });
});
