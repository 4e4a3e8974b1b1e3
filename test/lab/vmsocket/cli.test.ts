import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { linuxGuestXml } from '../../../lab/image/image-xml.js';
import { runLab } from '../run-lab.js';

/** The CLI faces of the Linux guest and VM sockets, run as a user runs them (dist/lab/cli.js). */
const lab = (args: string[], env?: NodeJS.ProcessEnv): ReturnType<typeof runLab> => runLab(['--no-capture', ...args], { env });

/** A port the kernel just handed out (bind 0), free again for the lab to take. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'netlab-vmsock-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('lab CLI: Linux guests and VM sockets', () => {
  it('--help shows the QEMU-like commands: image build, --vm-socket with the QEMU line that pairs with it', async () => {
    const top = await lab(['--help']);
    expect(top.stdout).toContain('lab image build');
    expect(top.stdout).toContain('-netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/netlab.sock');
    const r = await lab(['redirect', '--help']);
    expect(r.stdout).toContain('--vm-socket');
    const up = await lab(['up', '--help']);
    expect(up.stdout).toContain('--vm-socket');
    const img = await lab(['image', 'build', '--help']);
    expect(img.stdout).toContain('--out');
  });

  it('lab redirect --vm-socket prints the matching -netdev, and says when a VM connects', async () => {
    const sock = join(dir, 'r.sock');
    const port = await freePort();
    const r = await lab(['redirect', `tcp:${port}:10.10.10.33:80`, '--vm-socket', sock, '--for', '0.5']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`-netdev stream,id=n0,server=off,addr.type=unix,addr.path=${sock}`);
    expect(r.stdout).toContain('DHCP gives the VM 10.10.10.33');
  });

  it('a bad --vm-socket is a usage error that lists the forms', async () => {
    const r = await lab(['redirect', 'tcp:0:10.10.10.33:80', '--vm-socket', 'bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unix:PATH.*tcp:\[HOST:\]PORT/);
  });

  it('lab run of a QEMU machine without QEMU installed says which apt-get line installs it', async () => {
    const bin = mkdtempSync(join(dir, 'bin-'));
    symlinkSync('/bin/sh', join(bin, 'sh'));
    const xml = join(dir, 'linux.xml');
    writeFileSync(xml, linuxGuestXml({ kernelFile: 'vmlinuz', initrdFile: 'initrd.img', kernelPackage: 'k', version: 'v' }));
    const r = await lab(['run', xml, '--for', '1'], { ...process.env, PATH: bin });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('apt-get install -y qemu-system-x86');
  });

  it('lab run of a QEMU machine whose image files are missing says to build them', async () => {
    const xml = join(dir, 'nofiles.xml');
    writeFileSync(xml, linuxGuestXml({ kernelFile: 'vmlinuz-missing', initrdFile: 'initrd.img', kernelPackage: 'k', version: 'v' }));
    const r = await lab(['run', xml, '--for', '1']);
    if (r.stderr.includes('QEMU is not installed')) return;
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/vmlinuz-missing is missing: run "lab image build --out/);
  });
});
