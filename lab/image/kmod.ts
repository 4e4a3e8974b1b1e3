/**
 * Kernel module dependencies, read from the modules themselves: every `.ko` carries a `.modinfo`
 * ELF section of NUL-separated `key=value` strings, among them `depends=mii,…` (what depmod turns
 * into modules.dep). Debian's kernel package ships no modules.dep (depmod runs at install time,
 * which `dpkg-deb -x` skips), so the image builder resolves the closure here.
 */
export type KmodResult<T> = { ok: true; value: T } | { ok: false; error: string };

/** The `.modinfo` strings of an ELF (32- or 64-bit, little-endian) kernel module. */
export function readModinfo(ko: Uint8Array): KmodResult<Map<string, string[]>> {
  if (ko.length < 52 || ko[0] !== 0x7f || ko[1] !== 0x45 || ko[2] !== 0x4c || ko[3] !== 0x46) return { ok: false, error: 'not an ELF file' };
  const is64 = ko[4] === 2;
  if (ko[5] !== 1) return { ok: false, error: 'not little-endian ELF' };
  const v = new DataView(ko.buffer, ko.byteOffset, ko.byteLength);
  const shoff = is64 ? Number(v.getBigUint64(0x28, true)) : v.getUint32(0x20, true);
  const shentsize = v.getUint16(is64 ? 0x3a : 0x2e, true);
  const shnum = v.getUint16(is64 ? 0x3c : 0x30, true);
  const shstrndx = v.getUint16(is64 ? 0x3e : 0x32, true);
  if (shnum === 0 || shnum > 4096 || shstrndx >= shnum || shoff + shnum * shentsize > ko.length) return { ok: false, error: 'bad section table' };
  const section = (i: number): { name: number; offset: number; size: number } => {
    const b = shoff + i * shentsize;
    return is64
      ? { name: v.getUint32(b, true), offset: Number(v.getBigUint64(b + 0x18, true)), size: Number(v.getBigUint64(b + 0x20, true)) }
      : { name: v.getUint32(b, true), offset: v.getUint32(b + 0x10, true), size: v.getUint32(b + 0x14, true) };
  };
  const strtab = section(shstrndx);
  if (strtab.offset + strtab.size > ko.length) return { ok: false, error: 'bad section name table' };
  const dec = new TextDecoder();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameStart = strtab.offset + s.name;
    const nameEnd = ko.indexOf(0, nameStart);
    if (nameEnd < 0 || dec.decode(ko.subarray(nameStart, nameEnd)) !== '.modinfo') continue;
    if (s.offset + s.size > ko.length) return { ok: false, error: '.modinfo outside the file' };
    const info = new Map<string, string[]>();
    for (const kv of dec.decode(ko.subarray(s.offset, s.offset + s.size)).split('\0')) {
      const eq = kv.indexOf('=');
      if (eq <= 0) continue;
      const key = kv.slice(0, eq);
      info.set(key, [...(info.get(key) ?? []), kv.slice(eq + 1)]);
    }
    return { ok: true, value: info };
  }
  return { ok: false, error: 'no .modinfo section' };
}

/** Module names compare with '-' and '_' as one (as modprobe does). */
export function moduleKey(name: string): string {
  return name.replace(/\.ko$/, '').replace(/-/g, '_');
}

/**
 * The modules to load, in load order (dependencies first, each once), for `wanted`.
 * `depsOf` gives a module's direct dependencies, or an error for a module that does not exist.
 */
export function moduleClosure(wanted: string[], depsOf: (name: string) => KmodResult<string[]>): KmodResult<string[]> {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, chain: string[]): string | null => {
    const key = moduleKey(name);
    const s = state.get(key);
    if (s === 'done') return null;
    if (s === 'visiting') return `module dependency cycle: ${[...chain, key].join(' -> ')}`;
    if (chain.length > 64) return `module dependencies deeper than 64: ${chain.join(' -> ')}`;
    state.set(key, 'visiting');
    const deps = depsOf(key);
    if (!deps.ok) return `${key}${chain.length ? ` (needed by ${chain[chain.length - 1]})` : ''}: ${deps.error}`;
    for (const d of deps.value) {
      const e = visit(d, [...chain, key]);
      if (e) return e;
    }
    state.set(key, 'done');
    order.push(key);
    return null;
  };
  for (const w of wanted) {
    const e = visit(w, []);
    if (e) return { ok: false, error: e };
  }
  return { ok: true, value: order };
}
