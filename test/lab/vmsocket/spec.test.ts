import { describe, expect, it } from 'vitest';
import { parseVmSocketSpec, qemuNetdev } from '../../../lab/vmsocket/spec.js';

describe('--vm-socket SPEC', () => {
  it('a path is a unix stream socket the lab listens on; QEMU connects with server=off', () => {
    const r = parseVmSocketSpec('/tmp/netlab.sock');
    expect(r).toEqual({ ok: true, value: { kind: 'stream', role: 'server', addr: { type: 'unix', path: '/tmp/netlab.sock' } } });
    if (!r.ok) return;
    expect(qemuNetdev(r.value, 'n0')).toBe('stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/netlab.sock');
  });

  it('short forms: unix:, unix-connect:, tcp:, tcp-connect:, udp: with remote=', () => {
    expect(parseVmSocketSpec('unix-connect:/run/q.sock')).toMatchObject({ ok: true, value: { kind: 'stream', role: 'client' } });
    expect(parseVmSocketSpec('tcp:9000')).toMatchObject({ ok: true, value: { kind: 'stream', role: 'server', addr: { type: 'inet', host: '127.0.0.1', port: 9000 } } });
    expect(parseVmSocketSpec('tcp-connect:10.0.0.1:5555')).toMatchObject({ ok: true, value: { role: 'client', addr: { host: '10.0.0.1', port: 5555 } } });
    const u = parseVmSocketSpec('udp:127.0.0.1:9600,remote=127.0.0.1:9601');
    expect(u).toMatchObject({ ok: true, value: { kind: 'dgram', local: { port: 9600 }, remote: { port: 9601 } } });
    if (u.ok) expect(qemuNetdev(u.value, 'n0')).toBe('dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=9601,remote.type=inet,remote.host=127.0.0.1,remote.port=9600');
  });

  it('QEMU\'s own words for the lab\'s end: stream, dgram, legacy socket listen/connect/udp', () => {
    expect(parseVmSocketSpec('stream,server=on,addr.type=inet,addr.host=127.0.0.1,addr.port=7000')).toMatchObject({ ok: true, value: { kind: 'stream', role: 'server', addr: { port: 7000 } } });
    expect(parseVmSocketSpec('stream,server=off,addr.type=unix,addr.path=/tmp/p.sock')).toMatchObject({ ok: true, value: { role: 'client' } });
    expect(parseVmSocketSpec('dgram,local.type=inet,local.host=127.0.0.1,local.port=9600')).toMatchObject({ ok: true, value: { kind: 'dgram' } });
    expect(parseVmSocketSpec('socket,listen=:1234')).toMatchObject({ ok: true, value: { kind: 'stream', role: 'server', addr: { host: '127.0.0.1', port: 1234 } } });
    expect(parseVmSocketSpec('socket,connect=127.0.0.1:1234')).toMatchObject({ ok: true, value: { kind: 'stream', role: 'client' } });
    expect(parseVmSocketSpec('socket,udp=127.0.0.1:2000,localaddr=127.0.0.1:2001')).toMatchObject({ ok: true, value: { kind: 'dgram', local: { port: 2001 }, remote: { port: 2000 } } });
  });

  it('name= and loss= ride along on any form', () => {
    expect(parseVmSocketSpec('/tmp/a.sock,name=linux0,loss=2')).toMatchObject({ ok: true, value: { name: 'linux0', lossPct: 2 } });
  });

  it('says what is wrong, and what is allowed', () => {
    const cases: [string, RegExp][] = [
      ['nonsense', /use PATH, unix:PATH/],
      ['tcp:99999', /not 0\.\.65535/],
      ['dgram,local.type=unix,local.path=/tmp/x', /unix datagram sockets are not available/],
      ['socket,mcast=230.0.0.1:1234', /mcast= is not supported/],
      ['socket,listen=:1,connect=a:2', /exactly one of/],
      ['/tmp/a.sock,loss=200', /0\.\.100/],
      ['/tmp/a.sock,name=../x', /names a pcap/],
      ['/tmp/a.sock,frobnicate=1', /unknown option frobnicate/],
    ];
    for (const [text, re] of cases) {
      const r = parseVmSocketSpec(text);
      expect(r.ok, text).toBe(false);
      if (!r.ok) expect(r.error).toMatch(re);
    }
  });
});
