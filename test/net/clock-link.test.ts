import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';

describe('VirtualClock', () => {
  it('fires timers in time order, then insertion order, jumping time', () => {
    const c = new VirtualClock();
    const seen: string[] = [];
    c.setTimer(30, () => seen.push(`c@${c.now()}`));
    c.setTimer(10, () => seen.push(`a@${c.now()}`));
    c.setTimer(10, () => seen.push(`b@${c.now()}`));
    const cancelled = c.setTimer(20, () => seen.push('never'));
    cancelled.cancel();
    c.advance(25);
    expect(seen).toEqual(['a@10', 'b@10']);
    expect(c.now()).toBe(25);
    c.runUntil(() => false, 100);
    expect(seen).toEqual(['a@10', 'b@10', 'c@30']);
  });

  it('stops a runaway simulation at its limit', () => {
    const c = new VirtualClock();
    const tick = (): void => void c.setTimer(1, tick);
    tick();
    expect(c.runUntil(() => false, 1000)).toBe(false);
    expect(c.now()).toBeLessThanOrEqual(1001);
  });
});

describe('createLink (the FramePort contract)', () => {
  const frame = (n: number): Uint8Array => new Uint8Array(60).fill(n);

  it('delivers in order to the other end, never inside send', () => {
    const c = new VirtualClock();
    const [a, b] = createLink(c, ['a', 'b']);
    const got: number[] = [];
    b.setReceiver((f) => void got.push(f[0]!));
    expect(a.send(frame(1))).toBe(true);
    expect(a.send(frame(2))).toBe(true);
    expect(got).toEqual([]);
    c.advance(0);
    expect(got).toEqual([1, 2]);
    expect(a.stats).toMatchObject({ txFrames: 2, txBytes: 120, txDrops: 0 });
    expect(b.stats).toMatchObject({ rxFrames: 2, rxBytes: 120, rxDrops: 0 });
  });

  it('returns false and counts a drop when the queue is full, never grows without bound', () => {
    const c = new VirtualClock();
    const [a, b] = createLink(c, ['a', 'b'], { queueLimit: 4 });
    b.setReceiver(() => true);
    const results = [1, 2, 3, 4, 5, 6].map((n) => a.send(frame(n)));
    expect(results).toEqual([true, true, true, true, false, false]);
    expect(a.stats.txDrops).toBe(2);
    c.advance(0);
    expect(b.stats.rxFrames).toBe(4);
  });

  it('counts a frame the receiver refuses as an rx drop', () => {
    const c = new VirtualClock();
    const [a, b] = createLink(c);
    b.setReceiver(() => false);
    a.send(frame(1));
    c.advance(0);
    expect(b.stats.rxDrops).toBe(1);
  });

  it('holds a frame its receiver calls busy, with all behind it, until ready(); in order, none lost', () => {
    const c = new VirtualClock();
    const [a, b] = createLink(c);
    expect(b.holds).toBe(true);
    const got: number[] = [];
    let room = 2;
    b.setReceiver((f) => {
      if (room === 0) return 'busy';
      room--;
      got.push(f[0]!);
      return true;
    });
    for (let n = 1; n <= 5; n++) a.send(frame(n));
    c.advance(10);
    expect(got).toEqual([1, 2]);
    expect(b.stats).toMatchObject({ rxFrames: 2, rxDrops: 0 });
    room = 1;
    b.ready!();
    c.advance(10);
    expect(got).toEqual([1, 2, 3]);
    // ready() with nothing held is harmless; frames sent meanwhile queue behind the held one.
    a.send(frame(6));
    room = 10;
    b.ready!();
    b.ready!();
    c.advance(10);
    expect(got).toEqual([1, 2, 3, 4, 5, 6]);
    expect(b.stats).toMatchObject({ rxFrames: 6, rxDrops: 0 });
  });

  it('carries a partial-checksum word with its frame, through a hold, only to a receiver that offered partial checksums', () => {
    const c = new VirtualClock();
    const [a, b] = createLink(c);
    expect(a.gsoChecksumPartial).toBe(false);
    b.offerGso!(true, true);
    expect(a.gso && a.gsoChecksumPartial).toBe(true);
    const got: [number, boolean][] = [];
    let busy = true;
    b.setReceiver((f, info) => {
      if (busy && f[0] === 2) return 'busy';
      got.push([f[0]!, info?.checksumPartial === true]);
      return true;
    });
    a.send(frame(1), { checksumPartial: true });
    a.send(frame(2), { checksumPartial: true });
    a.send(frame(3));
    c.advance(10);
    busy = false;
    b.ready!();
    c.advance(10);
    expect(got).toEqual([[1, true], [2, true], [3, false]]);
    // Withdrawn with GSO, and never without it.
    b.offerGso!(false, true);
    expect(a.gsoChecksumPartial).toBe(false);
    b.offerGso!(true);
    expect(a.gsoChecksumPartial).toBe(false);
  });

  it('lends large buffers for frames it sends, and takes one back only when the receiver copied (or refused) its frame', () => {
    const c = new VirtualClock();
    const [a, b] = createLink(c);
    expect(a.lendTx!(1514)).toBeNull(); // small frames come from the byte slabs
    let answer: 'copied' | boolean = 'copied';
    const got: number[] = [];
    b.setReceiver((f) => (got.push(f[20]!), answer));
    const lentFrame = (tag: number): Uint8Array => {
      const f = a.lendTx!(40_000)!;
      expect(f.length).toBe(40_000);
      f.fill(tag);
      return f;
    };
    const first = lentFrame(1);
    // Not sent: the next loan is the same memory.
    expect(lentFrame(2).buffer).toBe(first.buffer);
    expect(a.send(first)).toBe(true);
    const second = lentFrame(3); // the first is in flight: other memory
    expect(second.buffer).not.toBe(first.buffer);
    expect(a.send(second)).toBe(true);
    c.advance(1);
    expect(got).toEqual([2, 3]);
    // Both came back ('copied'): lent again, the last returned first.
    const third = lentFrame(4);
    expect(third.buffer).toBe(second.buffer);
    answer = true; // this one the receiver may keep: never lent again
    a.send(third);
    c.advance(1);
    expect(got).toEqual([2, 3, 4]);
    const fourth = lentFrame(5);
    expect(fourth.buffer).toBe(first.buffer);
    a.send(fourth);
    c.advance(1);
    const fifth = lentFrame(6); // the pool is empty now (one kept, one in the receiver's hands): new memory
    expect(fifth.buffer).not.toBe(second.buffer);
    expect(fifth.buffer).not.toBe(first.buffer);
    expect(got).toEqual([2, 3, 4, 5]);
    // A refused frame's buffer comes back too.
    b.setReceiver(() => false);
    a.send(fifth);
    c.advance(1);
    expect(lentFrame(7).buffer).toBe(fifth.buffer);
  });

  it('a held queue still has its bound: the sender sees drops once it is full', () => {
    const c = new VirtualClock();
    const [a, b] = createLink(c, ['a', 'b'], { queueLimit: 3 });
    b.setReceiver(() => 'busy');
    const results = [1, 2, 3, 4].map((n) => a.send(frame(n)));
    c.advance(10);
    expect(results).toEqual([true, true, true, false]);
    expect(a.stats.txDrops).toBe(1);
    expect(b.stats.rxFrames).toBe(0);
  });

  it('without flow control, busy is a refusal counted as a drop', () => {
    const c = new VirtualClock();
    const [a, b] = createLink(c, ['a', 'b'], { flowControl: false });
    expect(b.holds).toBe(false);
    b.setReceiver(() => 'busy');
    a.send(frame(1));
    a.send(frame(2));
    c.advance(0);
    expect(b.stats).toMatchObject({ rxFrames: 0, rxDrops: 2 });
  });

  it('refuses runt frames', () => {
    const c = new VirtualClock();
    const [a] = createLink(c);
    expect(a.send(new Uint8Array(10))).toBe(false);
    expect(a.stats.txDrops).toBe(1);
  });
});

describe('createLink when a receiver throws', () => {
  it('counts the frame as refused and moves past it: the exception goes up, the link does not wedge', () => {
    const c = new VirtualClock();
    const [a, b] = createLink(c, ['a', 'b']);
    const got: number[] = [];
    b.setReceiver((f) => {
      if (f[0] === 2) throw new Error('model fault');
      got.push(f[0]!);
      return true;
    });
    for (const n of [1, 2, 3]) a.send(new Uint8Array(60).fill(n));
    expect(() => c.advance(0)).toThrow('model fault');
    c.advance(1);
    expect(got).toEqual([1, 3]);
    expect(b.stats).toMatchObject({ rxFrames: 2, rxDrops: 1 });
  });
});
