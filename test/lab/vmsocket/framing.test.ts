import { describe, expect, it } from 'vitest';
import { encodeStreamFrame, QEMU_NET_BUFSIZE, StreamDeframer } from '../../../lab/vmsocket/framing.js';

/** QEMU's -netdev stream framing: a 4-byte big-endian length before each frame, no FCS. */
const frame = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);
const frames = (r: ReturnType<StreamDeframer['push']>): Uint8Array[] => {
  if (!r.ok) throw new Error(r.error);
  return r.events.flatMap((e) => (e.kind === 'frame' ? [e.frame] : []));
};

describe('stream framing', () => {
  it('prefixes each frame with its length, big-endian', () => {
    const b = encodeStreamFrame(frame(60, 0xab));
    expect([...b.subarray(0, 4)]).toEqual([0, 0, 0, 60]);
    expect(b.length).toBe(64);
    expect(encodeStreamFrame(frame(1514, 1)).readUInt32BE(0)).toBe(1514);
  });

  it('returns several frames from one read, in order', () => {
    const d = new StreamDeframer();
    const got = frames(d.push(Buffer.concat([encodeStreamFrame(frame(60, 1)), encodeStreamFrame(frame(70, 2)), encodeStreamFrame(frame(14, 3))])));
    expect(got.map((f) => [f.length, f[0]])).toEqual([[60, 1], [70, 2], [14, 3]]);
    expect(d.buffered).toBe(0);
  });

  it('keeps a frame split across reads, even inside the length header, byte by byte', () => {
    const wire = Buffer.concat([encodeStreamFrame(frame(100, 7)), encodeStreamFrame(frame(61, 8))]);
    const d = new StreamDeframer();
    const got: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i++) got.push(...frames(d.push(wire.subarray(i, i + 1))));
    expect(got.map((f) => [f.length, f[0], f[f.length - 1]])).toEqual([[100, 7, 7], [61, 8, 8]]);
  });

  it('a length under 14 or over 64 KiB + 4 KiB is lost framing: an error, and every later push fails too', () => {
    for (const bad of [0, 13, QEMU_NET_BUFSIZE + 1, 0xffffffff]) {
      const d = new StreamDeframer();
      const h = Buffer.alloc(8);
      h.writeUInt32BE(bad, 0);
      const r = d.push(h);
      expect(r.ok).toBe(false);
      expect(d.push(encodeStreamFrame(frame(60, 1))).ok).toBe(false);
    }
  });

  it('frames after a good one in the same read survive until the bad length; the good one is kept', () => {
    const d = new StreamDeframer();
    const h = Buffer.alloc(4);
    h.writeUInt32BE(5, 0);
    const r = d.push(Buffer.concat([encodeStreamFrame(frame(60, 1)), h]));
    expect(r.ok).toBe(false);
    expect(r.events.map((e) => (e.kind === 'frame' ? e.frame.length : -1))).toEqual([60]);
  });

  it('a frame over 64 KiB but within QEMU\'s limit is skipped (oversize), the stream goes on', () => {
    const d = new StreamDeframer();
    const big = Buffer.alloc(4 + 66000);
    big.writeUInt32BE(66000, 0);
    const r = d.push(Buffer.concat([big, encodeStreamFrame(frame(60, 9))]));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.events.map((e) => e.kind)).toEqual(['oversize', 'frame']);
  });
});
