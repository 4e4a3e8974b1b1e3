import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runLab } from './run-lab.js';

const lab = (args: string[], timeoutMs?: number): ReturnType<typeof runLab> => runLab(args, { timeoutMs });

const dir = mkdtempSync(join(tmpdir(), 'netlab-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('lab CLI', () => {
  it('--help lists the subcommands with examples', async () => {
    const r = await lab(['--help']);
    expect(r.code).toBe(0);
    for (const word of ['run', 'config', 'up', 'redirect', 'Examples:', 'lab redirect tcp:9555:10.10.10.33:80', '--debug']) expect(r.stdout).toContain(word);
  });

  it('config check accepts the default and prints devices, PCI addresses, ports and IRQs', async () => {
    const r = await lab(['config', 'check']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/net0\s+RTL8139\s+pci 00:01\.0 \[0x10ec:0x8139\]\s+io 0xc000-0xc0ff\s+mmio 0xe0000000\+0x0100\s+irq 1[01]\s+mac 52:54:00:12:34:56/);
    expect(r.stdout).toMatch(/com1\s+SERIAL\s+io 0x03f8-0x03ff\s+irq 4/);
    expect(r.stdout).toContain('net0-back  USER_NET');
  });

  it('config check accepts examples/default.xml', async () => {
    const r = await lab(['config', 'check', 'examples/default.xml']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('examples/default.xml: ok');
  });

  it('config check rejects a bad config with the element, value and line, exit 2', async () => {
    const p = file('bad.xml', '<vm class="PC">\n<memory>64</memory>\n<devices>\n<device class="PCI" id="pci0"/>\n<device class="RTL8139" id="n"><bus>pci0</bus><mac>zz</mac></device>\n</devices>\n</vm>\n');
    const r = await lab(['config', 'check', p]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${p}:line 5: <mac> "zz" (device "n"): a MAC is six hex pairs like 52:54:00:12:34:56`);
  });

  it('config check says what to do about a missing file', async () => {
    const r = await lab(['config', 'check', join(dir, 'nope.xml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read the config \(ENOENT\)/);
  });

  it('run boots the default guest, shows the guest console and prints telemetry', async () => {
    const r = await lab(['run', '--for', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('vm vm0: 64 MB');
    expect(r.stdout).toContain('netlab kernel: booting');
    expect(r.stdout).toMatch(/pci 00:01\.0 \[10ec:8139\] class 020000/);
    expect(r.stdout).toMatch(/telemetry vm0: \d+ exits/);
    expect(r.stdout).toMatch(/io-out\s+\d+/);
  });

  it('--stats prints live counter lines during a run, and telemetry names the busiest registers', async () => {
    const r = await lab(['--no-capture', '--stats', '0.4', 'run', '--for', '1.5']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\[\d\d:\d\d:\d\d\] net0 rx \d+/m);
    expect(r.stdout).toMatch(/top registers: 0x[0-9a-f]{2} io-/);
  });
});
