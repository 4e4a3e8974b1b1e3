import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { isLent, LendPool, settleFrame } from '../../net/lend-pool.js';
import { LearningSwitch } from '../../lab/switch.js';

describe('lend pool (buffers for large frames, back when the frame\'s way ended)', () => {
  it('a buffer comes back once when its frame\'s last holder is done, and not while it is held', () => {
    const pool = new LendPool(2);
    const a = pool.lend(40_000);
    expect(a.length).toBe(40_000);
    expect(isLent(a)).toBe(true);
    settleFrame(a);
    expect(isLent(a)).toBe(false);
    expect(pool.available).toBe(1);
    // Settling twice (two holders both thinking they were last) cannot put it back twice.
    settleFrame(a);
    expect(pool.available).toBe(1);
    const b = pool.lend(30_000);
    expect(b.buffer).toBe(a.buffer);
    // Never settled (its holder kept it): the pool lends other memory.
    expect(pool.lend(20_000).buffer).not.toBe(a.buffer);
    // Small frames and foreign buffers are not the pool's business.
    settleFrame(new Uint8Array(40_000));
    expect(isLent(new Uint8Array(40_000))).toBe(false);
    expect(pool.available).toBe(0);
  });

  it('a switch flooding a lent frame gives every port its own copy, and the buffer goes back', () => {
    const clock = new VirtualClock();
    const sw = new LearningSwitch(clock);
    const got: Uint8Array[][] = [[], [], []];
    const stations = [0, 1, 2].map((i) => {
      const [station, swSide] = createLink(clock, [`h${i}`, `sw${i}`]);
      sw.attach(swSide, `p${i}`);
      station.offerGso!(true);
      station.setReceiver((f) => {
        got[i]!.push(f);
        return true;
      });
      return station;
    });
    const pool = new LendPool();
    const frame = pool.lend(20_054);
    frame.fill(0xff, 0, 6); // broadcast
    frame.set([0x02, 0, 0, 0, 0, 1, 0x08, 0x00], 6);
    const total = 20_040;
    frame.set([0x45, 0, total >> 8, total & 0xff, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
    frame[46] = 0x50;
    frame.fill(7, 54);
    stations[0]!.send(frame);
    clock.runUntil(() => false, 1);
    expect(got[1]!.length).toBe(1);
    expect(got[2]!.length).toBe(1);
    expect(pool.available).toBe(1); // the flooded original came back at the switch
    // What the ports received (and may keep: they answered true) are copies of their own.
    expect(got[1]![0]!.buffer).not.toBe(frame.buffer);
    expect(got[2]![0]!.buffer).not.toBe(frame.buffer);
    expect(got[1]![0]!.buffer).not.toBe(got[2]![0]!.buffer);
    pool.lend(20_054).fill(0);
    expect(got[1]![0]![100]).toBe(7);
    expect(got[2]![0]![100]).toBe(7);
  });
});
