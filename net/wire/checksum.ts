/**
 * The Internet checksum (RFC 1071), the one implementation in the project.
 *
 * Sums are accumulated unfolded in a float64 (exact below 2^53, i.e. for any frame we handle) and
 * folded once at the end; the loop reads four bytes per step, which is the "wide accumulation" that
 * keeps the per-byte cost low in JS. Incremental update follows RFC 1624 (eqn. 3).
 */

/** Unfolded one's-complement partial sum of `data` (big-endian 16-bit words, odd byte padded). */
export function sumBytes(data: Uint8Array, initial = 0): number {
  let sum = initial;
  const n = data.length;
  let i = 0;
  const end4 = n - (n % 4);
  for (; i < end4; i += 4) {
    sum += ((data[i]! << 8) | data[i + 1]!) + ((data[i + 2]! << 8) | data[i + 3]!);
  }
  if (i + 1 < n) {
    sum += (data[i]! << 8) | data[i + 1]!;
    i += 2;
  }
  if (i < n) sum += data[i]! << 8;
  return sum;
}

/** Fold an unfolded sum to 16 bits (end-around carry). */
export function foldSum(sum: number): number {
  // Split with division: the sum may exceed 32 bits, where JS bit operators would truncate it.
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum field value: one's complement of the folded sum. */
export function finishChecksum(sum: number): number {
  return ~foldSum(sum) & 0xffff;
}

/** Checksum of `data` as it would be written into a header. */
export function internetChecksum(data: Uint8Array, initial = 0): number {
  return finishChecksum(sumBytes(data, initial));
}

/** Partial sum of the IPv4 pseudo-header for TCP/UDP (RFC 793 §3.1, RFC 768). */
export function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  return (
    ((src[0]! << 8) | src[1]!) +
    ((src[2]! << 8) | src[3]!) +
    ((dst[0]! << 8) | dst[1]!) +
    ((dst[2]! << 8) | dst[3]!) +
    protocol +
    length
  );
}

/**
 * RFC 1624 incremental update: the new checksum after one 16-bit field changes from `oldWord`
 * to `newWord`, without re-summing the data. HC' = ~(~HC + ~m + m').
 */
export function updateChecksum(oldChecksum: number, oldWord: number, newWord: number): number {
  const sum = (~oldChecksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~foldSum(sum) & 0xffff;
}

/** Incremental update for a 32-bit field (e.g. an IPv4 address rewritten by NAT). */
export function updateChecksum32(oldChecksum: number, oldValue: number, newValue: number): number {
  const c = updateChecksum(oldChecksum, (oldValue >>> 16) & 0xffff, (newValue >>> 16) & 0xffff);
  return updateChecksum(c, oldValue & 0xffff, newValue & 0xffff);
}
