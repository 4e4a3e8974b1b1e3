/**
 * Untimed transfers before the timed ones, so a benchmark compares paths at their steady speed.
 *
 * A fresh lab is slow at first, and for longer than one transfer: V8 compiles the hot paths on its
 * background threads, which on a 2-core machine share the cores with the transfer itself (the lab's
 * thread, its TAP reader, the kernel and the client), and re-optimizes code that met a new object
 * shape (the second TCP connection, a sequence number past 2^30). Measured with `lab up --nic
 * virtio` and socat uploads of 100 MB back to back: 350–450 MB/s for the first three or four,
 * 750–900 MB/s from about the fifth on, with the lab's CPU per transfer halving — so warm-up goes
 * by bytes, not by a count of transfers. The first transfer each way is returned: what a user's
 * first transfer through a fresh lab sees, reported beside the steady figures.
 */
/** MB/s each way. */
export interface Rates {
  up: number;
  down: number;
}

/** Warm until this many bytes have crossed each way (BENCH_WARM_MB, default 512 MiB)… */
const WARM_BYTES = Number(process.env.BENCH_WARM_MB ?? '512') * 1024 * 1024;
/** …or this long each way, whichever comes first (a slow NIC such as the NE2000). */
const WARM_MAX_MS = 20_000;

/**
 * Runs `up` and `down` (each a transfer of `size` bytes returning MB/s) until WARM_BYTES have
 * crossed each way or WARM_MAX_MS has passed; returns the first transfer's rate each way.
 */
export function warmUp(up: () => number, down: () => number, size: number): Rates {
  const first = (f: () => number): number => {
    const start = Date.now();
    const cold = f();
    for (let moved = size; moved < WARM_BYTES && Date.now() - start < WARM_MAX_MS; moved += size) f();
    return cold;
  };
  return { up: first(up), down: first(down) };
}
