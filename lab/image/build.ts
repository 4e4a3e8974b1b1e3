import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { moduleClosure, moduleKey, readModinfo, type KmodResult } from './kmod.js';
import { writeNewc, type NewcEntry } from './newc.js';
import { NIC_DRIVER_MODULES, type NicModelKey } from './nic-modules.js';
import { bytesPattern, DISCARD_SCRIPT, DMESG_SCRIPT, HTTPD_SCRIPT, initScript, PATTERN_FILE_BYTES, UDHCPC_SCRIPT } from './guest-files.js';
import { packGuestImage } from './v3vee.js';
import { linuxGuestXml } from './image-xml.js';

/**
 * `lab image build`: the lab's `build_vm` (Palacios manual §6). A small Linux guest from Debian
 * packages, fetched with `apt-get download` and unpacked with `dpkg-deb -x` (nothing installed):
 * the i386 686 kernel (the same image boots in QEMU and in the 32-bit v86 emulator) and
 * busybox-static:i386, packed into a gzip newc initramfs with the NIC modules and an init
 * (guest-files.ts). Out: the kernel, `initrd.img`, `linux.xml` naming both in `<files>`, and
 * `linux.v3vee`, the single guest-image file.
 */
export const KERNEL_META_PACKAGE = 'linux-image-686:i386';
export const BUSYBOX_PACKAGE = 'busybox-static:i386';
export const APT_SETUP_LINE = 'dpkg --add-architecture i386 && apt-get update';

export interface BuildOptions {
  outDir: string;
  /** Where downloaded .debs and their unpacked trees are kept between builds. */
  cacheDir: string;
  log?: (line: string) => void;
  /** A kernel package name instead of what linux-image-686:i386 depends on now. */
  kernelPackage?: string;
}

export interface BuiltImage {
  outDir: string;
  xmlPath: string;
  /** The same guest with `<machine>v86</machine>`: Linux's drivers on netlab's NIC models. */
  v86XmlPath: string;
  kernelPath: string;
  initrdPath: string;
  imagePath: string;
  kernelVersion: string;
  kernelPackage: string;
  /** Modules per NIC model, in load order. */
  modules: Record<NicModelKey, string[]>;
  initrdBytes: number;
}

export type BuildResult = { ok: true; value: BuiltImage } | { ok: false; error: string };

export function defaultCacheDir(): string {
  return join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'netlab', 'debs');
}

function tool(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function run(cmd: string, args: string[], cwd?: string): { ok: true; stdout: string } | { ok: false; error: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) return { ok: false, error: `${cmd}: ${r.error.message}` };
  if (r.status !== 0) return { ok: false, error: `${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.split('\n').filter((l) => l && !l.includes('unsandboxed')).slice(-3).join(' | ')}` };
  return { ok: true, stdout: r.stdout };
}

/** The versioned kernel package linux-image-686:i386 points at now (e.g. linux-image-6.1.0-57-686). */
export function resolveKernelPackage(): KmodResult<string> {
  const r = run('apt-cache', ['depends', KERNEL_META_PACKAGE]);
  if (!r.ok) return r;
  const m = /Depends:\s*(linux-image-[^\s:]+)/.exec(r.stdout);
  if (!m) return { ok: false, error: `apt-cache knows no ${KERNEL_META_PACKAGE}: run "${APT_SETUP_LINE}"` };
  return { ok: true, value: m[1]! };
}

function cachedDeb(cacheDir: string, pkg: string): string | null {
  if (!existsSync(cacheDir)) return null;
  const prefix = pkg.replace(/:i386$/, '') + '_';
  const hits = readdirSync(cacheDir).filter((f) => f.startsWith(prefix) && f.endsWith('_i386.deb')).sort();
  return hits.length ? join(cacheDir, hits[hits.length - 1]!) : null;
}

/** Download (once) and unpack a package; returns the unpacked tree. */
function fetchPackage(cacheDir: string, pkg: string, log: (l: string) => void): KmodResult<string> {
  let deb = cachedDeb(cacheDir, pkg);
  if (!deb) {
    log(`apt-get download ${pkg}`);
    const r = run('apt-get', ['download', '-q', pkg], cacheDir);
    if (!r.ok) return { ok: false, error: `${r.error}\n  the i386 packages need: ${APT_SETUP_LINE}` };
    deb = cachedDeb(cacheDir, pkg);
    if (!deb) return { ok: false, error: `apt-get download ${pkg} left no .deb in ${cacheDir}` };
  }
  const tree = deb.replace(/\.deb$/, '.d');
  if (!existsSync(join(tree, '.unpacked'))) {
    log(`dpkg-deb -x ${relative(cacheDir, deb)}`);
    const tmp = `${tree}.tmp-${process.pid}`;
    mkdirSync(tmp, { recursive: true });
    const r = run('dpkg-deb', ['-x', deb, tmp]);
    if (!r.ok) return r;
    writeFileSync(join(tmp, '.unpacked'), '');
    execFileSync('rm', ['-rf', tree]);
    renameSync(tmp, tree);
  }
  return { ok: true, value: tree };
}

function walk(dir: string, out: string[], depth = 0): void {
  if (depth > 12) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out, depth + 1);
    else if (e.name.endsWith('.ko')) out.push(p);
  }
}

export function buildImage(o: BuildOptions): BuildResult {
  const log = o.log ?? (() => {});
  const missing = ['apt-get', 'apt-cache', 'dpkg-deb', 'dpkg'].filter((t) => !tool(t));
  if (missing.length) return { ok: false, error: `${missing.join(', ')} missing: lab image build needs Debian's apt and dpkg (apt-get install -y apt dpkg)` };
  const arches = run('dpkg', ['--print-foreign-architectures']);
  mkdirSync(o.cacheDir, { recursive: true });
  let kernelPkg = o.kernelPackage;
  if (!kernelPkg) {
    const k = resolveKernelPackage();
    if (k.ok) kernelPkg = k.value;
    else {
      // Offline, a kernel already in the cache will do.
      const cached = existsSync(o.cacheDir) ? readdirSync(o.cacheDir).filter((f) => /^linux-image-.*-686(-unsigned)?_.*_i386\.deb$/.test(f)).sort() : [];
      if (!cached.length) {
        const hint = arches.ok && !arches.stdout.split('\n').includes('i386') ? `i386 is not a dpkg architecture here: run "${APT_SETUP_LINE}"` : `run "${APT_SETUP_LINE}"`;
        return { ok: false, error: `cannot find the i386 686 kernel package (${k.error}); ${hint}` };
      }
      kernelPkg = cached[cached.length - 1]!.split('_')[0]!;
    }
  }
  const kernelFull = kernelPkg.includes(':') ? kernelPkg : `${kernelPkg}:i386`;
  const kTree = fetchPackage(o.cacheDir, kernelFull, log);
  if (!kTree.ok) return kTree;
  const bTree = fetchPackage(o.cacheDir, BUSYBOX_PACKAGE, log);
  if (!bTree.ok) return bTree;

  const bootDir = join(kTree.value, 'boot');
  const vmlinuz = existsSync(bootDir) ? readdirSync(bootDir).find((f) => f.startsWith('vmlinuz-')) : undefined;
  if (!vmlinuz) return { ok: false, error: `${kernelFull} has no /boot/vmlinuz-*` };
  const version = vmlinuz.slice('vmlinuz-'.length);
  const modRoot = join(kTree.value, 'lib', 'modules', version);
  const busybox = join(bTree.value, 'bin', 'busybox');
  if (!existsSync(busybox)) return { ok: false, error: `${BUSYBOX_PACKAGE} has no /bin/busybox` };

  const kos: string[] = [];
  if (existsSync(modRoot)) walk(modRoot, kos);
  const byName = new Map(kos.map((p) => [moduleKey(p.slice(p.lastIndexOf('/') + 1)), p]));
  const depsOf = (name: string): KmodResult<string[]> => {
    const p = byName.get(name);
    if (!p) return { ok: false, error: `no ${name}.ko under ${modRoot}` };
    const info = readModinfo(readFileSync(p));
    if (!info.ok) return { ok: false, error: `${p}: ${info.error}` };
    return { ok: true, value: (info.value.get('depends') ?? []).flatMap((d) => d.split(',')).filter((d) => d.length > 0) };
  };
  const modules = {} as Record<NicModelKey, string[]>;
  const allMods = new Set<string>();
  for (const [model, wanted] of Object.entries(NIC_DRIVER_MODULES) as [NicModelKey, string[]][]) {
    const c = moduleClosure(wanted, depsOf);
    if (!c.ok) return { ok: false, error: `modules for net=${model}: ${c.error}` };
    modules[model] = c.value;
    for (const m of c.value) allMods.add(m);
  }

  const exec = 0o755;
  const entries: NewcEntry[] = [
    ...['bin', 'sbin', 'dev', 'etc', 'etc/netlab', 'lib', 'lib/modules', 'proc', 'sys', 'tmp', 'run', 'usr', 'usr/bin', 'usr/sbin', 'usr/share', 'usr/share/netlab', 'root'].map((path) => ({ kind: 'dir' as const, path })),
    // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
    { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'bin/busybox', data: readFileSync(busybox), mode: exec },
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'file', path: 'init', data: enc(initScript(Object.fromEntries(Object.entries(modules).map(([m, l]) => [m, l.map((x) => `${x}.ko`)])) as Record<NicModelKey, string[]>)), mode: exec },
    { kind: 'file', path: 'etc/netlab/udhcpc.script', data: enc(UDHCPC_SCRIPT), mode: exec },
    { kind: 'file', path: 'sbin/netlab-httpd', data: enc(HTTPD_SCRIPT), mode: exec },
    { kind: 'file', path: 'sbin/netlab-discard', data: enc(DISCARD_SCRIPT), mode: exec },
    { kind: 'file', path: 'sbin/netlab-dmesg', data: enc(DMESG_SCRIPT), mode: exec },
    { kind: 'file', path: 'etc/profile', data: enc('PS1="netlab-linux# "\nexport PS1\n') },
    { kind: 'file', path: 'usr/share/netlab/pattern', data: bytesPattern(PATTERN_FILE_BYTES) },
    ...[...allMods].sort().map((m) => ({ kind: 'file' as const, path: `lib/modules/${m}.ko`, data: readFileSync(byName.get(m)!) })),
  ];
  const initrd = gzipSync(writeNewc(entries), { level: 6 });

  mkdirSync(o.outDir, { recursive: true });
  const kernelName = `vmlinuz-${version}`;
  const kernelPath = join(o.outDir, kernelName);
  const initrdPath = join(o.outDir, 'initrd.img');
  const xmlPath = join(o.outDir, 'linux.xml');
  const imagePath = join(o.outDir, 'linux.v3vee');
  const kernelBytes = readFileSync(join(bootDir, vmlinuz));
  writeAtomic(kernelPath, kernelBytes);
  writeAtomic(initrdPath, initrd);
  const xml = linuxGuestXml({ kernelFile: kernelName, initrdFile: 'initrd.img', kernelPackage: kernelPkg.replace(/:i386$/, ''), version });
  writeAtomic(xmlPath, enc(xml));
  const v86XmlPath = join(o.outDir, 'linux-v86.xml');
  writeAtomic(v86XmlPath, enc(linuxGuestXml({ kernelFile: kernelName, initrdFile: 'initrd.img', kernelPackage: kernelPkg.replace(/:i386$/, ''), version, machine: 'v86' })));
  writeAtomic(imagePath, packGuestImage(xml, [{ id: 'kernel', data: kernelBytes }, { id: 'initrd', data: initrd }]));
  log(`kernel ${version}, initramfs ${(initrd.length / 1e6).toFixed(1)} MB (${allMods.size} modules)`);
  return { ok: true, value: { outDir: o.outDir, xmlPath, v86XmlPath, kernelPath, initrdPath, imagePath, kernelVersion: version, kernelPackage: kernelPkg, modules, initrdBytes: initrd.length } };
}

function enc(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

function writeAtomic(path: string, data: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/** Whether an image folder holds a complete build (xml, kernel, initrd). */
export function imageComplete(dir: string): boolean {
  try {
    return statSync(join(dir, 'linux.xml')).isFile() && statSync(join(dir, 'initrd.img')).isFile() && readdirSync(dir).some((f) => f.startsWith('vmlinuz-'));
  } catch {
    return false;
  }
}
