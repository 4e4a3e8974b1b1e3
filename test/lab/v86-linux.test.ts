import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatMac, parseIpv4 } from '../../net/addr.js';
import { parseVmConfig } from '../../src/config/parse.js';
import type { VmConfig } from '../../src/config/types.js';
import { linuxFromXml } from '../../lab/linux-commands.js';
import { findLinuxImage, linuxKernelLine } from '../../lab/v86-linux.js';
import { runLab as lab } from './run-lab.js';

/**
 * The host side of `--guest linux` / `<machine>v86</machine>` that needs no emulator: the kernel
 * line the image's init reads, where the image comes from, what an XML says of its Linux guest,
 * and the CLI's errors. Booting Linux on each model is the system tier's (v86-linux-lab.test.ts).
 */
const dir = mkdtempSync(join(tmpdir(), 'netlab-v86linux-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Linux guest on netlab models: host side', () => {
  it('kernel line: the NIC model, a static address with mask and gateway, or DHCP', () => {
    expect(linuxKernelLine('ne2k', { dhcp: false, ip: parseIpv4('172.22.0.2')!, prefixLength: 16, gateway: parseIpv4('172.22.0.1')! })).toBe(
      'console=ttyS0 quiet net=ne2k ip=172.22.0.2 netmask=255.255.0.0 gw=172.22.0.1',
    );
    expect(linuxKernelLine('virtio', { dhcp: true })).toBe('console=ttyS0 quiet net=virtio ip=dhcp');
    expect(linuxKernelLine('rtl8139', { dhcp: false, ip: parseIpv4('10.0.2.15')!, prefixLength: 24 })).toBe('console=ttyS0 quiet net=rtl8139 ip=10.0.2.15 netmask=255.255.255.0');
  });

  it('an --image directory without the kernel and initrd says how to build one', () => {
    const r = findLinuxImage(join(dir, 'nothing-here'), () => {});
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/no Linux image in .*nothing-here.*lab image build --out/);
    const img = join(dir, 'img');
    mkdirSync(img, { recursive: true });
    writeFileSync(join(img, 'vmlinuz-6.1.0-test-686'), 'k');
    writeFileSync(join(img, 'initrd.img'), 'i');
    const ok = findLinuxImage(img, () => {});
    expect(ok.ok && ok.value.kernel.endsWith('vmlinuz-6.1.0-test-686') && ok.value.initrd.endsWith('initrd.img')).toBe(true);
  });

  it('an XML gives the model (its NIC class), MAC, memory, name, and the files relative to it', () => {
    writeFileSync(join(dir, 'k'), 'k');
    writeFileSync(join(dir, 'i'), 'i');
    const config = v86Xml('NE2000', '52:54:00:8a:13:9f', '<files><file id="kernel" filename="k"/><file id="initrd" filename="i"/></files>');
    const r = linuxFromXml(join(dir, 'g.xml'), config);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.nic).toBe('ne2k');
    expect(formatMac(r.value.mac!)).toBe('52:54:00:8a:13:9f');
    expect(r.value.memoryMB).toBe(96);
    expect(r.value.name).toBe('lx');
    expect(r.value.imageFiles).toEqual({ dir, kernel: join(dir, 'k'), initrd: join(dir, 'i') });
    // --nic typed on the command line wins over the class; --image over <files>.
    const o = linuxFromXml(join(dir, 'g.xml'), config, 'virtio', true);
    expect(o.ok && o.value.nic === 'virtio' && o.value.imageFiles === undefined).toBe(true);
  });

  it('an XML naming a missing kernel says which file and how to build it', () => {
    const config = v86Xml('RTL8139', '52:54:00:00:00:01', '<files><file id="kernel" filename="gone"/><file id="initrd" filename="i"/></files>');
    const r = linuxFromXml(join(dir, 'g.xml'), config);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain(`${join(dir, 'gone')} (named in ${join(dir, 'g.xml')}) is missing: run "lab image build --out ${dir}"`);
  });

  it('<machine> accepts v86 and lists it when the value is wrong', () => {
    expect(v86Xml('RTL8139', '52:54:00:00:00:01', '').machine).toBe('v86');
    const bad = parseVmConfig('<vm class="PC" name="x"><machine>bochs</machine><devices/></vm>', { knownClasses: ['RTL8139', 'PCI'] });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(JSON.stringify(bad.errors)).toContain('allowed: builtin, qemu, v86');
  });

  it('CLI: a missing image is exit 4 naming the build command; --vms with --guest linux is a usage error', async () => {
    const r = await lab(['--no-capture', 'redirect', 'tcp:9555:10.10.10.33:80', '--guest', 'linux', '--image', join(dir, 'none')]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('lab image build --out');
    const v = await lab(['up', 'tap2', '--guest', 'linux', '--vms', '2']);
    expect(v.code).toBe(2);
    expect(v.stderr).toContain('--guest linux runs one Linux guest');
    const h = await lab(['up', '--help']);
    expect(h.stdout).toContain('--guest <kind>');
    expect(h.stdout).toContain('lab up tap2 --guest linux');
  });

  it('CLI: config check names a v86 machine', async () => {
    const p = join(dir, 'v86.xml');
    writeFileSync(p, '<vm class="PC" name="lx"><memory>96</memory><machine>v86</machine><devices><device class="PCI" id="pci0"/><device class="RTL8139" id="net0"><bus>pci0</bus></device></devices></vm>');
    const r = await lab(['config', 'check', p]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('machine v86');
  });
});


function v86Xml(cls: string, mac: string, files: string): VmConfig {
  const r = parseVmConfig(`<vm class="PC" name="lx"><memory>96</memory><machine>v86</machine>${files}<devices><device class="PCI" id="pci0"/><device class="${cls}" id="net0"><bus>pci0</bus><mac>${mac}</mac></device></devices></vm>`, {
    knownClasses: ['RTL8139', 'NE2000', 'LNX_VIRTIO_NIC', 'PCI'],
  });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.value;
}
