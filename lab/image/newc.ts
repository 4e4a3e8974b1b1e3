/**
 * The initramfs archive format: cpio "newc" (SVR4 without CRC), as the kernel's
 * `Documentation/driver-api/early-userspace/buffer-format.rst` describes it. Each entry is a
 * 110-byte ASCII header (magic `070701` and thirteen 8-digit hex fields), the NUL-terminated name,
 * padding to a multiple of 4, the data, and padding to a multiple of 4 again; the archive ends
 * with an entry named `TRAILER!!!`. Pure: entries in, bytes out (the caller gzips).
 */
export type NewcEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Uint8Array; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  /** A character device node (e.g. /dev/console 5:1, which the kernel opens before init runs). */
  | { kind: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
export const NEWC_MAGIC = '070701';
export const NEWC_TRAILER = 'TRAILER!!!';
const HEADER_LEN = 110;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`newc field ${n} does not fit 32 bits`);
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Serialise entries (in the given order; parents before children) into one newc archive. */
export function writeNewc(entries: NewcEntry[], mtime = 0): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  let total = 0;
  let ino = 1;
  const push = (b: Uint8Array): void => {
    parts.push(b);
    total += b.length;
  };
  const entry = (name: string, mode: number, data: Uint8Array, nlink: number, rdev: [number, number]): void => {
    const nameBytes = enc.encode(name + '\0');
    const fields = [ino++, mode, 0, 0, nlink, mtime, data.length, 0, 0, rdev[0], rdev[1], nameBytes.length, 0];
    const header = enc.encode(NEWC_MAGIC + fields.map(hex8).join(''));
    push(header);
    push(nameBytes);
    push(new Uint8Array(pad4(HEADER_LEN + nameBytes.length)));
    push(data);
    push(new Uint8Array(pad4(data.length)));
  };
  for (const e of entries) {
    // The kernel unpacks names relative to its root; a leading slash is dropped as cpio does.
    const name = e.path.replace(/^\/+/, '');
    if (name.length === 0 || name.split('/').includes('..')) throw new Error(`newc: bad path "${e.path}"`);
    switch (e.kind) {
      case 'dir':
        entry(name, S_IFDIR | (e.mode ?? 0o755), new Uint8Array(0), 2, [0, 0]);
        break;
      case 'file':
        entry(name, S_IFREG | (e.mode ?? 0o644), e.data, 1, [0, 0]);
        break;
      case 'symlink':
        entry(name, S_IFLNK | 0o777, enc.encode(e.target), 1, [0, 0]);
        break;
      case 'chardev':
        entry(name, S_IFCHR | (e.mode ?? 0o600), new Uint8Array(0), 1, [e.major, e.minor]);
        break;
    }
  }
  entry(NEWC_TRAILER, 0, new Uint8Array(0), 1, [0, 0]);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export interface NewcRecord {
  name: string;
  mode: number;
  nlink: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Uint8Array;
}

/** Read a newc archive back (tests, `lab image` checks); an error value names the bad offset. */
export function readNewc(bytes: Uint8Array): { ok: true; records: NewcRecord[] } | { ok: false; error: string } {
  const dec = new TextDecoder();
  const records: NewcRecord[] = [];
  let off = 0;
  for (let guard = 0; guard < 1_000_000; guard++) {
    if (off + HEADER_LEN > bytes.length) return { ok: false, error: `truncated header at ${off}` };
    const h = dec.decode(bytes.subarray(off, off + HEADER_LEN));
    if (!h.startsWith(NEWC_MAGIC)) return { ok: false, error: `bad magic at ${off}` };
    const f = (i: number): number => parseInt(h.slice(6 + i * 8, 14 + i * 8), 16);
    const mode = f(1);
    const nlink = f(4);
    const size = f(6);
    const namesize = f(11);
    const nameStart = off + HEADER_LEN;
    if (namesize < 1 || nameStart + namesize > bytes.length) return { ok: false, error: `bad name size at ${off}` };
    const name = dec.decode(bytes.subarray(nameStart, nameStart + namesize - 1));
    const dataStart = nameStart + namesize + pad4(HEADER_LEN + namesize);
    if (dataStart + size > bytes.length) return { ok: false, error: `truncated data of ${name}` };
    if (name === NEWC_TRAILER) return { ok: true, records };
    records.push({ name, mode, nlink, rdevMajor: f(9), rdevMinor: f(10), data: bytes.subarray(dataStart, dataStart + size) });
    off = dataStart + size + pad4(size);
  }
  return { ok: false, error: 'too many entries' };
}
