import { describe, expect, it } from 'vitest';
import { normaliseQemuArgv, parseQemuNet } from '../../lab/qemu-args.js';

describe('QEMU-style networking options', () => {
  it('turns QEMU\'s single-dash options into ones the CLI parser reads', () => {
    expect(normaliseQemuArgv(['run', '-net', 'user', '-redir', 'tcp:1:2.3.4.5:6', '-q'])).toEqual(['run', '--net', 'user', '--redir', 'tcp:1:2.3.4.5:6', '-q']);
  });

  it('reads the manual\'s redirection line', () => {
    const r = parseQemuNet({ net: ['user', 'nic,model=rtl8139'], redir: ['tcp:9555:10.10.10.33:80'] });
    expect(r).toEqual({ ok: true, value: { backend: { kind: 'user', hostfwd: [] }, nic: { model: 'rtl8139' }, redirects: ['tcp:9555:10.10.10.33:80'] } });
  });

  it('reads the manual\'s TAP line', () => {
    const r = parseQemuNet({ net: ['tap,ifname=tap2', 'nic,model=rtl8139'] });
    expect(r).toEqual({ ok: true, value: { backend: { kind: 'tap', ifname: 'tap2' }, nic: { model: 'rtl8139' }, redirects: [] } });
  });

  it('reads -netdev user with hostfwd and -device', () => {
    const r = parseQemuNet({ netdev: ['user,id=n0,hostfwd=tcp::9555-:80'], device: ['virtio-net-pci,netdev=n0'] });
    expect(r).toMatchObject({ ok: true, value: { backend: { kind: 'user' }, nic: { model: 'virtio' }, redirects: ['tcp::9555-:80'] } });
  });

  it('rejects unknown models and backends, and a redirect on a TAP', () => {
    expect(parseQemuNet({ net: ['nic,model=e1000'] })).toMatchObject({ ok: false, error: expect.stringContaining('model=rtl8139') });
    expect(parseQemuNet({ net: ['vde'] })).toMatchObject({ ok: false, error: expect.stringContaining('user and tap') });
    expect(parseQemuNet({ net: ['tap'] })).toMatchObject({ ok: false, error: expect.stringContaining('ifname=') });
    expect(parseQemuNet({ net: ['tap,ifname=tap2'], redir: ['tcp:1::2'] })).toMatchObject({ ok: false, error: expect.stringContaining('-net user') });
  });
});
