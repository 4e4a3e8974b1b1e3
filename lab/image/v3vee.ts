/**
 * The single guest-image file of Palacios' `build_vm` (DESIGN.md): the magic `v3vee\0\0\0`, the
 * XML's length, the XML, a file index and the files' bytes, so one file carries a whole guest.
 *
 * Layout (all little-endian, as Palacios reads it on x86):
 *   0   8 bytes  magic "v3vee\0\0\0"
 *   8   u32      XML length L
 *   12  L bytes  the XML (UTF-8)
 *   ..  u64      number of files N
 *   ..  N × { u32 index (position in <files>), u32 size, u64 offset from the start of the image }
 *   ..  the files' bytes, in index order
 */
export const V3VEE_MAGIC = Uint8Array.of(0x76, 0x33, 0x76, 0x65, 0x65, 0, 0, 0);

export interface ImageFile {
  /** The `<file id=…>` this entry belongs to. */
  id: string;
  data: Uint8Array;
}

export function packGuestImage(xml: string, files: ImageFile[]): Uint8Array {
  const x = new TextEncoder().encode(xml);
  const indexAt = 12 + x.length;
  const dataAt = indexAt + 8 + files.length * 16;
  const total = dataAt + files.reduce((n, f) => n + f.data.length, 0);
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  out.set(V3VEE_MAGIC, 0);
  v.setUint32(8, x.length, true);
  out.set(x, 12);
  v.setBigUint64(indexAt, BigInt(files.length), true);
  let off = dataAt;
  files.forEach((f, i) => {
    const e = indexAt + 8 + i * 16;
    v.setUint32(e, i, true);
    v.setUint32(e + 4, f.data.length, true);
    v.setBigUint64(e + 8, BigInt(off), true);
    out.set(f.data, off);
    off += f.data.length;
  });
  return out;
}

export type UnpackResult = { ok: true; xml: string; files: { index: number; data: Uint8Array }[] } | { ok: false; error: string };

/** Read an image back; every length and offset is checked against the file before use. */
export function unpackGuestImage(img: Uint8Array): UnpackResult {
  if (img.length < 12 || !V3VEE_MAGIC.every((b, i) => img[i] === b)) return { ok: false, error: 'not a guest image (no v3vee magic)' };
  const v = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const xmlLen = v.getUint32(8, true);
  const indexAt = 12 + xmlLen;
  if (indexAt + 8 > img.length) return { ok: false, error: `XML length ${xmlLen} runs past the end of the image` };
  const xml = new TextDecoder().decode(img.subarray(12, indexAt));
  const n = v.getBigUint64(indexAt, true);
  if (n > 1024n || indexAt + 8 + Number(n) * 16 > img.length) return { ok: false, error: `file index of ${n} entries does not fit the image` };
  const files: { index: number; data: Uint8Array }[] = [];
  for (let i = 0; i < Number(n); i++) {
    const e = indexAt + 8 + i * 16;
    const size = v.getUint32(e + 4, true);
    const offset = v.getBigUint64(e + 8, true);
    if (offset + BigInt(size) > BigInt(img.length)) return { ok: false, error: `file ${i} (${size} bytes at ${offset}) runs past the end of the image` };
    files.push({ index: v.getUint32(e, true), data: img.subarray(Number(offset), Number(offset) + size) });
  }
  return { ok: true, xml, files };
}
