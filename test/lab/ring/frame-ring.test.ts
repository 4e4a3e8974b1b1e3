import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FrameRing, RING_MAX_FRAME } from '../../../lab/ring/frame-ring.js';
import { startWorker } from '../../../lab/ring/worker-start.js';

const MIN_CAP = 256 * 1024;

function ring(capacity = MIN_CAP): FrameRing {
  const r = FrameRing.create(capacity);
  if (!r.ok) throw new Error(r.error);
  return r.ring;
}

function frame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (seed * 31 + i * 7) & 0xff;
  return f;
}

/** Byte-exact comparison (vitest's deep equality walks 64 KiB arrays element by element, slowly). */
function same(got: Uint8Array | null, want: Uint8Array): void {
  expect(got).not.toBeNull();
  expect(got!.length).toBe(want.length);
  expect(Buffer.from(got!.buffer, got!.byteOffset, got!.length).equals(Buffer.from(want.buffer, want.byteOffset, want.length))).toBe(true);
}

describe('FrameRing', () => {
  it('refuses capacities that are not powers of two or cannot hold two largest frames', () => {
    expect(FrameRing.create(100_000).ok).toBe(false);
    expect(FrameRing.create(128 * 1024).ok).toBe(false);
    expect(FrameRing.create(MIN_CAP).ok).toBe(true);
    expect(FrameRing.attach(new SharedArrayBuffer(1000)).ok).toBe(false);
  });

  it('is empty at first and gives frames back in order, byte-exact', () => {
    const r = ring();
    expect(r.shift()).toBeNull();
    for (let i = 0; i < 10; i++) expect(r.push(frame(60 + i, i))).toBe(true);
    for (let i = 0; i < 10; i++) same(r.shift(), frame(60 + i, i));
    expect(r.shift()).toBeNull();
    expect(r.used).toBe(0);
  });

  it('carries frames of 0 bytes and of the largest size, and refuses larger ones', () => {
    const r = ring();
    expect(r.push(new Uint8Array(0))).toBe(true);
    expect(r.push(frame(RING_MAX_FRAME, 3))).toBe(true);
    expect(r.push(new Uint8Array(RING_MAX_FRAME + 1))).toBe(false);
    same(r.shift(), new Uint8Array(0));
    same(r.shift(), frame(RING_MAX_FRAME, 3));
  });

  it('fills up exactly: a frame that does not fit is refused until the consumer frees space', () => {
    const r = ring();
    // 1020-byte frames take 1024-byte records: exactly capacity / 1024 fit.
    let n = 0;
    while (r.push(frame(1020, n))) n++;
    expect(n).toBe(MIN_CAP / 1024);
    expect(r.used).toBe(MIN_CAP);
    expect(r.push(new Uint8Array(0))).toBe(false);
    same(r.shift(), frame(1020, 0));
    expect(r.push(frame(1020, n))).toBe(true);
    for (let i = 1; i <= n; i++) same(r.shift(), frame(1020, i));
    expect(r.shift()).toBeNull();
  });

  it('wraps around: a record that does not fit before the end starts again at 0, byte-exact', () => {
    const r = ring();
    // Sizes that leave odd remainders at the end so the wrap marker path runs many times.
    let sent = 0;
    let got = 0;
    const sizes = [60, 1514, 65536, 9000, 4093, 14, 32768, 65535];
    for (let round = 0; round < 2000; round++) {
      const len = sizes[round % sizes.length]!;
      if (!r.push(frame(len, sent))) {
        const f = r.shift();
        same(f, frame(sizes[got % sizes.length]!, got));
        got++;
        round--;
        continue;
      }
      sent++;
    }
    for (let f = r.shift(); f; f = r.shift()) {
      same(f, frame(sizes[got % sizes.length]!, got));
      got++;
    }
    expect(got).toBe(sent);
    expect(r.used).toBe(0);
  });

  it('keeps working across the 32-bit wrap of its byte counters', () => {
    const r = ring();
    // 2^32 bytes of traffic is too slow to send in a test: move both counters close to the edge.
    const ctl = new Int32Array(r.sab, 0, 2);
    ctl[0] = -4096;
    ctl[1] = -4096;
    for (let i = 0; i < 200; i++) {
      expect(r.push(frame(1000 + i, i))).toBe(true);
      same(r.shift(), frame(1000 + i, i));
    }
    expect(Atomics.load(ctl, 0)).toBeGreaterThan(0);
  });

  it('reserve/commit fills a frame in place and may publish fewer bytes than reserved', () => {
    const r = ring();
    const room = r.reserve(2000)!;
    room.set(frame(100, 9));
    r.commit(100);
    same(r.shift(), frame(100, 9));
    expect(() => r.commit(10)).toThrow(RangeError);
  });

  it('closes the ring when a record length is corrupt instead of reading past the data', () => {
    const r = ring();
    r.push(frame(100, 1));
    new DataView(r.sab, 64).setInt32(0, 1 << 20, true);
    expect(r.peek()).toBeNull();
    expect(r.closed).toBe(true);
    expect(r.push(frame(10, 1))).toBe(false);
  });

  it('a main-thread consumer waiting with waitForFrames wakes when frames arrive, and on close', async () => {
    const r = ring();
    const waiting = r.waitForFrames(5000);
    setTimeout(() => {
      r.push(frame(64, 1));
      r.wakeConsumer();
    }, 5);
    await waiting;
    same(r.shift(), frame(64, 1));
    const closing = r.waitForFrames(5000);
    setTimeout(() => r.close(), 5);
    const t0 = Date.now();
    await closing;
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('two threads exchange 100k frames of mixed sizes byte-exact, with the producer blocking on a full ring', async () => {
    const toWorker = ring(MIN_CAP);
    const fromWorker = ring(MIN_CAP);
    const count = 100_000;
    const sizes = [60, 1514, 128, 65536, 1000, 54, 9014];
    const w = startWorker(import.meta.url, 'ring-echo-worker', { workerData: { inSab: toWorker.sab, outSab: fromWorker.sab, count } });
    let failed: Error | null = null;
    const exited = new Promise<number>((res) => {
      w.on('exit', res);
      w.on('error', (e) => (failed = e));
    });
    const sentHash = createHash('sha256');
    const gotHash = createHash('sha256');
    let sent = 0;
    let got = 0;
    let sentBytes = 0;
    while (got < count) {
      if (failed) throw failed;
      // Produce until full, consume what came back, and sleep on the ring when nothing moved.
      let moved = false;
      while (sent < count) {
        const f = frame(sizes[sent % sizes.length]!, sent);
        if (!toWorker.push(f)) break;
        sentHash.update(f);
        sentBytes += f.length;
        sent++;
        moved = true;
      }
      toWorker.wakeConsumer();
      for (let f = fromWorker.shift(); f; f = fromWorker.shift()) {
        expect(f.length).toBe(sizes[got % sizes.length]);
        gotHash.update(f);
        got++;
        moved = true;
      }
      if (!moved) await fromWorker.waitForFrames(1000);
    }
    expect(await exited).toBe(0);
    expect(gotHash.digest('hex')).toBe(sentHash.digest('hex'));
    expect(sentBytes).toBeGreaterThan(count * 10_000);
  }, 120_000);
});
