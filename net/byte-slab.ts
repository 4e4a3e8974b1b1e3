/**
 * Byte buffers for frames and segments, carved from shared slabs.
 *
 * `new Uint8Array(n)` for n over V8's on-heap limit (64 bytes) makes a new ArrayBuffer with its own
 * zeroed backing store and GC bookkeeping: ~1.5 µs for a 1514-byte frame on the lab's machines,
 * which the profiles showed as 8–14% of a lab's thread moving MTU-sized TCP (every segment built,
 * every frame copied out of guest memory or a ring). A view into a slab costs a few hundred ns, as
 * Node's Buffer pool does for its own small buffers. Slabs are never reused: each allocation is
 * fresh, zeroed memory, exactly like `new Uint8Array(n)`, and a slab is freed by the GC once no
 * view into it is left.
 *
 * What a caller gives up: a view's `buffer` is the slab, shared with other views. Code must address
 * its bytes through `byteOffset`/`byteLength` (as every DataView over a frame here does), and must
 * never transfer or detach the buffer.
 */

/** Allocations up to this size come from a slab; larger ones (GSO frames) get their own buffer. */
export const SLAB_MAX_ALLOC = 16 << 10;
const SLAB_BYTES = 256 << 10;

let slab = new ArrayBuffer(SLAB_BYTES);
let used = 0;

/** `length` zeroed bytes that no other allocation shares. */
export function allocBytes(length: number): Uint8Array {
  if (length > SLAB_MAX_ALLOC) return new Uint8Array(length);
  if (used + length > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    used = 0;
  }
  const view = new Uint8Array(slab, used, length);
  // 8-byte alignment, so a view's start suits any typed-array width.
  used = (used + length + 7) & ~7;
  return view;
}

/** A copy of `bytes` that no other allocation shares (`Uint8Array.prototype.slice` without its own buffer). */
export function copyBytes(bytes: Uint8Array, start = 0, end = bytes.length): Uint8Array {
  const length = Math.max(0, end - start);
  // A buffer of its own is better made by slice, which copies without zeroing first.
  if (length > SLAB_MAX_ALLOC) return bytes.slice(start, end);
  const out = allocBytes(length);
  out.set(bytes.subarray(start, end));
  return out;
}

/** Whether `view` starts `at` bytes into `region`'s memory: bytes already in place, which a copy would move onto themselves. */
export function startsAt(view: Uint8Array, region: Uint8Array, at = 0): boolean {
  return view.buffer === region.buffer && view.byteOffset === region.byteOffset + at;
}
