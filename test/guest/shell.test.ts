import { describe, expect, it } from 'vitest';
import { Shell, telnetShellService, type ShellContext } from '../../src/guest/shell.js';
import { SlowConn } from './apps/conn-double.js';

function ctx(): ShellContext & { pings: string[] } {
  const pings: string[] = [];
  return {
    pings,
    ifconfig: () => 'eth0  inet 10.0.2.15/24',
    arp: () => '10.0.2.2 at 52:55:0a:00:02:02',
    route: () => 'default via 10.0.2.2',
    netstat: () => 'tcp LISTEN *:80',
    stats: () => 'ip rx 1',
    ping: (t, n, line, done) => {
      pings.push(`${t}x${n}`);
      line(`reply from ${t}`);
      done('1 packets transmitted');
    },
  };
}

describe('guest shell', () => {
  it('runs each command and prompts again', () => {
    let out = '';
    const sh = new Shell(ctx(), (t) => (out += t));
    sh.line('ifconfig');
    sh.line('arp');
    sh.line('bogus');
    expect(out).toBe('eth0  inet 10.0.2.15/24\nnetlab$ 10.0.2.2 at 52:55:0a:00:02:02\nnetlab$ bogus: command not found (try help)\nnetlab$ ');
  });

  it('parses ping with a count and refuses nonsense counts', () => {
    const c = ctx();
    let out = '';
    const sh = new Shell(c, (t) => (out += t));
    sh.line('ping 10.0.2.2 -c 3');
    sh.line('ping -c 0 10.0.2.2');
    expect(c.pings).toEqual(['10.0.2.2x3']);
    expect(out).toContain('reply from 10.0.2.2');
    expect(out).toContain('usage: ping ADDR [-c N]');
  });

  it('over telnet: refuses option negotiation, handles CR LF and CR NUL, and exits', () => {
    const conn = new SlowConn();
    telnetShellService(ctx(), 'netlab guest\n')(conn);
    // A typical client opening: IAC DO SUPPRESS-GO-AHEAD, IAC WILL TERMINAL-TYPE
    conn.onData(Uint8Array.of(255, 253, 3, 255, 251, 24));
    conn.onData(new TextEncoder().encode('route\r\n'));
    conn.onData(new TextEncoder().encode('netstat\r\0'));
    conn.onData(new TextEncoder().encode('exit\r\n'));
    const bytes = conn.bytes();
    expect([...bytes.subarray(bytes.indexOf(255), bytes.indexOf(255) + 6)]).toEqual([255, 252, 3, 255, 254, 24]);
    const text = conn.text();
    expect(text).toContain('netlab guest\r\nnetlab$ ');
    expect(text).toContain('default via 10.0.2.2\r\nnetlab$ ');
    expect(text).toContain('tcp LISTEN *:80\r\n');
    expect(conn.ended).toBe(true);
  });
});
