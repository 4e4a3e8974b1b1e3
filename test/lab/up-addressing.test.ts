import { describe, expect, it } from 'vitest';
import { parseIpv4 } from '../../net/addr.js';
import { guestKernelFor, upGuestAddressing } from '../../lab/up-addressing.js';
import { upHostAddressing } from '../../lab/up.js';
import type { KernelConfig } from '../../src/config/types.js';

const kernel = (k: Partial<KernelConfig>): KernelConfig => ({ cmdline: '', dhcp: false, ...k });
const ip = (s: string): number => parseIpv4(s)!;

describe('lab up: where guests get their addresses', () => {
  it('tap2 with the embedded guest: the manual\'s rule, 172.22.0.2 + i, gateway 172.22.0.1', () => {
    const a = upGuestAddressing({ rule: upHostAddressing('tap2') });
    expect(a).toMatchObject({ ok: true, value: { kind: 'static', base: ip('172.22.0.2'), prefix: 16, gateway: ip('172.22.0.1') } });
    if (!a.ok) return;
    expect(guestKernelFor(a.value, 2, kernel({ dhcp: true })).ip).toBe(ip('172.22.0.4'));
  });

  it('the user\'s XML keeps its static address on tapN; it is not overwritten by the rule', () => {
    const a = upGuestAddressing({ rule: upHostAddressing('tap2'), userKernel: kernel({ ip: ip('172.22.5.9'), prefixLength: 16, gateway: ip('172.22.0.1') }) });
    expect(a).toMatchObject({ ok: true, value: { kind: 'static', base: ip('172.22.5.9') } });
  });

  it('the user\'s XML with ip=dhcp keeps DHCP', () => {
    expect(upGuestAddressing({ rule: upHostAddressing('tap3'), userKernel: kernel({ dhcp: true }) })).toMatchObject({ ok: true, value: { kind: 'dhcp' } });
  });

  it('--guest-ip wins over XML and rule, on tap10, a bridge or a script alike', () => {
    const a = upGuestAddressing({ guestIp: '192.168.77.20/24', gateway: '192.168.77.1', rule: upHostAddressing('tap10'), userKernel: kernel({ ip: ip('10.0.0.5') }) });
    expect(a).toMatchObject({ ok: true, value: { kind: 'static', base: ip('192.168.77.20'), prefix: 24, gateway: ip('192.168.77.1') } });
  });

  it('a bridged or scripted TAP with no address given: DHCP from the network it joins (not 172.20.0.2)', () => {
    const a = upGuestAddressing({ rule: upHostAddressing('tap10') });
    expect(a).toMatchObject({ ok: true, value: { kind: 'dhcp' } });
    if (!a.ok) return;
    const k = guestKernelFor(a.value, 0, kernel({ ip: ip('172.20.0.2') }));
    expect(k.dhcp).toBe(true);
    expect(k.ip).toBeUndefined();
  });

  it('bad --guest-ip and --gateway are errors that say the form', () => {
    expect(upGuestAddressing({ guestIp: '10.1.2', rule: null })).toMatchObject({ ok: false, error: expect.stringContaining('A.B.C.D/P') });
    expect(upGuestAddressing({ guestIp: '10.1.2.3/31', rule: null })).toMatchObject({ ok: false });
    expect(upGuestAddressing({ gateway: 'x', rule: null })).toMatchObject({ ok: false, error: expect.stringContaining('--gateway') });
  });
});
