import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { buildImage } from '../../../lab/image/build.js';
import { moduleClosure, readModinfo } from '../../../lab/image/kmod.js';
import { readNewc, writeNewc } from '../../../lab/image/newc.js';
import { bytesPattern, HTTPD_SCRIPT, initScript, parseReadyLine, PATTERN_FILE_BYTES } from '../../../lab/image/guest-files.js';
import { linuxGuestXml } from '../../../lab/image/image-xml.js';
import { packGuestImage, unpackGuestImage, V3VEE_MAGIC } from '../../../lab/image/v3vee.js';
import { patternBlock } from '../../../src/guest/apps/http.js';
import { parseVmConfig } from '../../../src/config/parse.js';
import { createDeviceRegistry } from '../../../src/registry.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('newc writer (the initramfs format)', () => {
  it('writes the header fields the kernel reads: magic, mode, size, name size, 4-byte alignment', () => {
    const a = writeNewc([{ kind: 'file', path: '/init', data: enc('#!/bin/sh\n'), mode: 0o755 }]);
    const h = new TextDecoder().decode(a.subarray(0, 110));
    expect(h.slice(0, 6)).toBe('070701');
    expect(parseInt(h.slice(14, 22), 16)).toBe(0o100755); // mode
    expect(parseInt(h.slice(54, 62), 16)).toBe(10); // filesize
    expect(parseInt(h.slice(94, 102), 16)).toBe(5); // namesize "init\0"
    expect(new TextDecoder().decode(a.subarray(110, 114))).toBe('init');
    // 110 + 5 = 115 -> data at 116, 10 bytes -> next header at 128.
    expect(new TextDecoder().decode(a.subarray(128, 134))).toBe('070701');
    expect(a.length % 4).toBe(0);
  });

  it('round-trips directories, files, symlinks and device nodes, ending in TRAILER!!!', () => {
    const a = writeNewc([
      { kind: 'dir', path: 'bin' },
      { kind: 'file', path: 'bin/busybox', data: new Uint8Array([1, 2, 3]), mode: 0o755 },
      { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
      { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    ]);
    const r = readNewc(a);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.records.map((x) => [x.name, x.mode.toString(8)])).toEqual([['bin', '40755'], ['bin/busybox', '100755'], ['bin/sh', '120777'], ['dev/console', '20600']]);
    expect(new TextDecoder().decode(r.records[2]!.data)).toBe('busybox');
    expect([r.records[3]!.rdevMajor, r.records[3]!.rdevMinor]).toEqual([5, 1]);
  });

  it('GNU cpio reads what it writes, when cpio is installed', () => {
    if (spawnSync('sh', ['-c', 'command -v cpio']).status !== 0) return;
    const dir = mkdtempSync(join(tmpdir(), 'newc-'));
    try {
      writeFileSync(join(dir, 'a.cpio'), writeNewc([{ kind: 'dir', path: 'etc' }, { kind: 'file', path: 'etc/x', data: enc('hello') }]));
      const r = spawnSync('cpio', ['-it', '--quiet', '-F', join(dir, 'a.cpio')], { encoding: 'utf8' });
      expect(r.stdout.split('\n').filter(Boolean)).toEqual(['etc', 'etc/x']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses paths that climb out of the archive', () => {
    expect(() => writeNewc([{ kind: 'file', path: '../etc/passwd', data: new Uint8Array() }])).toThrow(/bad path/);
  });
});

/** A minimal ELF32 with a .modinfo section, as a kernel module carries one. */
function elfWithModinfo(modinfo: string): Uint8Array {
  const shstr = enc('\0.modinfo\0.shstrtab\0');
  const info = enc(modinfo);
  const shoff = 52 + shstr.length + info.length;
  const b = new Uint8Array(shoff + 3 * 40);
  const v = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  v.setUint32(0x20, shoff, true);
  v.setUint16(0x2e, 40, true);
  v.setUint16(0x30, 3, true);
  v.setUint16(0x32, 2, true);
  b.set(info, 52);
  b.set(shstr, 52 + info.length);
  const sh = (i: number, name: number, off: number, size: number): void => {
    v.setUint32(shoff + i * 40, name, true);
    v.setUint32(shoff + i * 40 + 0x10, off, true);
    v.setUint32(shoff + i * 40 + 0x14, size, true);
  };
  sh(1, 1, 52, info.length);
  sh(2, 10, 52 + info.length, shstr.length);
  return b;
}

describe('module dependencies from .modinfo', () => {
  it('reads depends= from the .modinfo section', () => {
    const r = readModinfo(elfWithModinfo('license=GPL\0depends=mii\0name=8139too\0'));
    expect(r.ok && r.value.get('depends')).toEqual(['mii']);
    expect(readModinfo(enc('not an elf at all, really not')).ok).toBe(false);
  });

  it('orders the closure dependencies first, each once, and names a missing module', () => {
    const deps: Record<string, string[]> = { virtio_net: ['net_failover', 'virtio', 'virtio_ring'], net_failover: ['failover'], failover: [], virtio: [], virtio_ring: [], virtio_pci: ['virtio_pci_legacy_dev', 'virtio', 'virtio_ring'], virtio_pci_legacy_dev: [] };
    const of = (n: string) => (n in deps ? { ok: true as const, value: deps[n]! } : { ok: false as const, error: 'not found' });
    const r = moduleClosure(['virtio_pci', 'virtio_net'], of);
    expect(r).toEqual({ ok: true, value: ['virtio_pci_legacy_dev', 'virtio', 'virtio_ring', 'virtio_pci', 'failover', 'net_failover', 'virtio_net'] });
    const m = moduleClosure(['8139too'], (n) => (n === '8139too' ? { ok: true, value: ['mii'] } : { ok: false, error: 'no mii.ko' }));
    expect(m).toEqual({ ok: false, error: 'mii (needed by 8139too): no mii.ko' });
    expect(moduleClosure(['a'], (n) => ({ ok: true, value: [n === 'a' ? 'b' : 'a'] }))).toMatchObject({ ok: false, error: expect.stringMatching(/cycle/) });
  });
});

describe('the guest userland', () => {
  it('/bytes/N in the Linux guest is the built-in guest\'s pattern, and the pattern file continues it across loops', () => {
    expect(bytesPattern(65536)).toEqual(patternBlock(65536));
    expect(PATTERN_FILE_BYTES % 65536).toBe(0);
  });

  it('the init loads each model\'s modules in the order given, and the shell scripts parse', () => {
    const init = initScript({ rtl8139: ['mii.ko', '8139too.ko', '8139cp.ko'], ne2k: ['8390.ko', 'ne2k_pci.ko'], virtio: ['virtio.ko'] });
    expect(init).toContain('rtl8139) mods="mii.ko 8139too.ko 8139cp.ko"');
    for (const script of [init, HTTPD_SCRIPT]) expect(spawnSync('sh', ['-n'], { input: script }).status).toBe(0);
  });
});

describe('the ready line on the serial console', () => {
  const line = 'netlab-linux: ready net=virtio driver=virtio_net mac=52:54:00:12:34:56 ip=10.10.10.33/24 kernel=6.1.0-28-686';

  it('reads every field once the line has ended, and nothing before', () => {
    expect(parseReadyLine(`boot noise\r\n${line.slice(0, 60)}`)).toBeNull();
    expect(parseReadyLine(`boot noise\r\n${line}`)).toBeNull();
    expect(parseReadyLine(`boot noise\r\n${line}\r\n~ # `)?.fields).toEqual({
      net: 'virtio', driver: 'virtio_net', mac: '52:54:00:12:34:56', ip: '10.10.10.33/24', kernel: '6.1.0-28-686',
    });
  });

  it('keeps the fields after a kernel log record printed into the middle of the line', () => {
    const cut = line.indexOf(' ip=');
    const text = `${line.slice(0, cut)}[    9.412301] random: crng init done\r\n${line.slice(cut)}\r\n`;
    const r = parseReadyLine(text);
    expect(r?.fields['ip']).toBe('10.10.10.33/24');
    expect(r?.fields['mac']).toBe('52:54:00:12:34:56');
    expect(r?.line).toBe(line);
  });

  it('a guest without an address says ip=none', () => {
    expect(parseReadyLine(`${line.replace('10.10.10.33/24', 'none')}\n`)?.fields['ip']).toBe('none');
  });
});

describe('guest image XML and the v3vee file', () => {
  it('the XML is a valid guest config naming kernel and initrd, with machine qemu', () => {
    const xml = linuxGuestXml({ kernelFile: 'vmlinuz-6.1.0-57-686', initrdFile: 'initrd.img', kernelPackage: 'linux-image-6.1.0-57-686', version: '6.1.0-57-686' });
    const r = parseVmConfig(xml, { knownClasses: createDeviceRegistry().names() });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.machine).toBe('qemu');
    expect(r.value.files).toEqual([{ id: 'kernel', filename: 'vmlinuz-6.1.0-57-686' }, { id: 'initrd', filename: 'initrd.img' }]);
    expect(r.value.kernel).toMatchObject({ net: 'rtl8139', dhcp: true });
  });

  it('the v86 variant is the same guest with machine v86', () => {
    const xml = linuxGuestXml({ kernelFile: 'vmlinuz-6.1.0-57-686', initrdFile: 'initrd.img', kernelPackage: 'linux-image-6.1.0-57-686', version: '6.1.0-57-686', machine: 'v86' });
    const r = parseVmConfig(xml, { knownClasses: createDeviceRegistry().names() });
    expect(r.ok && r.value.machine === 'v86' && r.value.files.length === 2).toBe(true);
    expect(xml).toContain('lab run linux-v86.xml');
  });

  it('a bad <machine> names the element and what is allowed', () => {
    const r = parseVmConfig('<vm class="PC"><machine>bochs</machine></vm>', { knownClasses: createDeviceRegistry().names() });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]!.message).toMatch(/"bochs": allowed: builtin, qemu, v86/);
  });

  it('packs magic, XML length, XML, file index and files, and reads them back', () => {
    const img = packGuestImage('<vm/>', [{ id: 'kernel', data: enc('KERNEL') }, { id: 'initrd', data: enc('RD') }]);
    expect([...img.subarray(0, 8)]).toEqual([...V3VEE_MAGIC]);
    expect(new DataView(img.buffer).getUint32(8, true)).toBe(5);
    const r = unpackGuestImage(img);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.xml).toBe('<vm/>');
    expect(r.files.map((f) => [f.index, new TextDecoder().decode(f.data)])).toEqual([[0, 'KERNEL'], [1, 'RD']]);
  });

  it('a truncated or corrupt image is an error value, never an exception', () => {
    const img = packGuestImage('<vm/>', [{ id: 'kernel', data: new Uint8Array(100) }]);
    expect(unpackGuestImage(img.subarray(0, img.length - 1))).toMatchObject({ ok: false, error: expect.stringMatching(/past the end/) });
    expect(unpackGuestImage(enc('hello world!'))).toMatchObject({ ok: false });
    const bad = img.slice();
    new DataView(bad.buffer).setUint32(8, 0xfffffff0, true);
    expect(unpackGuestImage(bad)).toMatchObject({ ok: false });
  });
});

describe('a built image, when one exists (the system tests build it)', () => {
  it('its initramfs holds init, busybox, the console node and every module the init names', () => {
    const dir = join(process.env['NETLAB_IMAGE_CACHE'] ?? join(process.env['HOME'] ?? '/root', '.cache', 'netlab'), 'linux-image');
    let rd: Buffer;
    try {
      rd = readFileSync(join(dir, 'initrd.img'));
    } catch {
      return;
    }
    const r = readNewc(new Uint8Array(gunzipSync(rd)));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const names = new Set(r.records.map((x) => x.name));
    for (const n of ['init', 'bin/busybox', 'dev/console', 'lib/modules/8139too.ko', 'lib/modules/8139cp.ko', 'lib/modules/mii.ko', 'lib/modules/ne2k_pci.ko', 'lib/modules/8390.ko', 'lib/modules/virtio_net.ko', 'lib/modules/virtio_pci.ko', 'lib/modules/net_failover.ko']) expect(names.has(n), n).toBe(true);
  });
});

describe('lab image build without the packages', () => {
  it('names the apt-get line that makes them available', () => {
    if (spawnSync('sh', ['-c', 'command -v apt-get']).status !== 0) return;
    const dir = mkdtempSync(join(tmpdir(), 'imgbuild-'));
    try {
      // A package apt does not know (resolved locally; nothing is downloaded).
      const r = buildImage({ outDir: join(dir, 'out'), cacheDir: join(dir, 'cache'), kernelPackage: 'linux-image-0.0.0-0-686-netlab-test' });
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toContain('dpkg --add-architecture i386 && apt-get update');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
