import type { Socket } from 'node:net';

/** Write `n` bytes of `block` repeated to `s`, honouring backpressure ('drain'), then end it. */
export function writeBlocks(s: Socket, n: number, block: Buffer): void {
  let left = n;
  const pump = (): void => {
    while (left > 0) {
      const chunk = left >= block.length ? block : block.subarray(0, left);
      left -= chunk.length;
      if (!s.write(chunk)) {
        s.once('drain', pump);
        return;
      }
    }
    s.end();
  };
  pump();
}
