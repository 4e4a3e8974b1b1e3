import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { Logger, memorySink } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { assembleSwitchLab } from '../../lab/switch-lab.js';
import { loadConfig } from '../../lab/config-loader.js';
import { echoExchange, sha256 } from '../net/tcp-io.js';
import { ip } from '../guest/guest-vm.js';
import type { VmConfig } from '../../src/config/types.js';

const xml = (name: string, mac: string, kernel: string, sw: string, count?: number, model = 'RTL8139'): string => `
<vm class="PC" name="${name}">
  <memory>32</memory>
  <devices>
    <device class="PCI" id="pci0"/>
    <device class="${model}" id="net0"><bus>pci0</bus><mac>${mac}</mac></device>
    <device class="SWITCH" id="net0-back"><frontend tag="net0"/><switch name="${sw}"/>${count !== undefined ? `<count>${count}</count>` : ''}</device>
  </devices>
  <guest><kernel>${kernel}</kernel><apps><app name="echo" port="7"/></apps></guest>
</vm>`;

function config(text: string): VmConfig {
  const r = parseVmConfig(text, { knownClasses: createDeviceRegistry().names() });
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.value;
}

describe('SWITCH backends: several VMs on lab switches from XML', () => {
  it('<count>3</count> puts three copies on one switch, addresses and MACs counting up; they reach each other', async () => {
    const clock = new VirtualClock();
    const lines: string[] = [];
    const r = assembleSwitchLab([config(xml('vm0', '52:54:00:12:34:10', 'net=rtl8139 ip=10.5.0.2 netmask=255.255.255.0', 'sw0', 3))], {
      clock,
      logger: new Logger([], memorySink(lines)),
      registry: createDeviceRegistry(),
    });
    if (!r.ok) throw new Error(r.errors.join('\n'));
    const { guests, switches } = r.lab;
    expect(guests.map((g) => [g.guest.vm.config.name, g.addr])).toEqual([
      ['vm0-0', '10.5.0.2'],
      ['vm0-1', '10.5.0.3'],
      ['vm0-2', '10.5.0.4'],
    ]);
    expect(guests.map((g) => g.guest.vm.nics()[0]!.mac[5])).toEqual([0x10, 0x11, 0x12]);
    expect([...switches.keys()]).toEqual(['sw0']);
    const p = guests[0]!.network!.stack.ping(ip('10.5.0.4'), 1);
    clock.runUntil(() => false, 500);
    expect(await p).not.toBeNull();
    const data = new Uint8Array(1 << 20).map((_, i) => (i * 13) & 0xff);
    const back = echoExchange(clock, guests[2]!.network!.stack, ip('10.5.0.3'), data, 600_000, 50_000_000);
    expect(sha256(back.bytes())).toBe(sha256(data));
    r.lab.close();
  }, 60_000);

  it('two XML files naming the same switch share it; another name is another switch', async () => {
    const clock = new VirtualClock();
    const r = assembleSwitchLab(
      [
        config(xml('a', '52:54:00:00:00:0a', 'net=virtio ip=10.6.0.2 netmask=255.255.255.0', 'lan', undefined, 'LNX_VIRTIO_NIC')),
        config(xml('b', '52:54:00:00:00:0b', 'net=ne2k ip=10.6.0.3 netmask=255.255.255.0', 'lan', undefined, 'NE2000')),
        config(xml('c', '52:54:00:00:00:0c', 'net=rtl8139 ip=10.6.0.4 netmask=255.255.255.0', 'other')),
      ],
      { clock, logger: new Logger(), registry: createDeviceRegistry() },
    );
    if (!r.ok) throw new Error(r.errors.join('\n'));
    expect([...r.lab.switches.keys()]).toEqual(['lan', 'other']);
    const [a] = r.lab.guests;
    const same = a!.network!.stack.ping(ip('10.6.0.3'), 1);
    const across = a!.network!.stack.ping(ip('10.6.0.4'), 2);
    clock.runUntil(() => false, 5_000);
    expect(await same).not.toBeNull();
    // c is on another switch: no answer.
    expect(await across).toBeNull();
    r.lab.close();
  }, 60_000);

  it('errors name the line and say what to write', () => {
    const bad = config(xml('vm0', '52:54:00:12:34:10', 'net=rtl8139 ip=10.5.0.2 netmask=255.255.255.0', 'sw0', 0));
    const r = assembleSwitchLab([bad], { clock: new VirtualClock(), logger: new Logger(), registry: createDeviceRegistry() });
    expect(r).toMatchObject({ ok: false, exitCode: 2 });
    if (!r.ok) expect(r.errors.join('\n')).toMatch(/line \d+: <count>0<\/count> of backend net0-back: a whole number from 1 to 64/);
    const twice = assembleSwitchLab([config(xml('vm0', '52:54:00:12:34:10', 'net=rtl8139 ip=10.5.0.2', 'sw0')), config(xml('vm0', '52:54:00:12:34:11', 'net=rtl8139 ip=10.5.0.3', 'sw0'))], {
      clock: new VirtualClock(),
      logger: new Logger(),
      registry: createDeviceRegistry(),
    });
    if (!twice.ok) expect(twice.errors.join('\n')).toContain('two VMs are named vm0');
    else throw new Error('accepted two VMs with one name');
  });

  it('lab run examples/switch.xml boots three guests on sw0 with a capture at every hop', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netlab-sw-'));
    try {
      expect(loadConfig('examples/switch.xml', createDeviceRegistry()).ok).toBe(true);
      const r = spawnSync(process.execPath, ['dist/lab/cli.js', '--captures', dir, 'run', 'examples/switch.xml', '--for', '2'], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('ready: 3 VMs on sw0');
      for (const n of ['vm0-0', 'vm0-1', 'vm0-2']) expect(r.stdout).toMatch(new RegExp(`${n}: RTL8139 on switch sw0 at 10\\.5\\.0\\.\\d`));
      const hops = /captures: \S+ \(([^)]*) frames\)/.exec(r.stdout)?.[1] ?? '';
      expect(hops.split(', ').map((h) => h.split(' ')[0]).sort()).toEqual(
        ['sw0.vm0-0', 'sw0.vm0-1', 'sw0.vm0-2', 'vm0-0.eth0', 'vm0-0.eth0.stack', 'vm0-1.eth0', 'vm0-1.eth0.stack', 'vm0-2.eth0', 'vm0-2.eth0.stack'],
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
