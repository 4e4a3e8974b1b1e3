import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../../net/clock.js';
import { localDoorbells } from '../../../lab/vmthread/doorbell.js';
import { RingPort, ringPortSpecs } from '../../../lab/vmthread/ring-port.js';
import { FrameRing } from '../../../lab/ring/frame-ring.js';
import { MirrorReader, MirrorWriter } from '../../../lab/vmthread/capture-mirror.js';
import { carrierContract } from '../../contract/frame-port-contract.js';
import type { CaptureDirection } from '../../../lab/capture/sink.js';

const STATION_A = new Uint8Array([0x02, 0, 0, 0, 0, 0x0a]);
const STATION_B = new Uint8Array([0x02, 0, 0, 0, 0, 0x0b]);

/** Both ends of a ring port pair in one thread, scheduled by a virtual clock. */
function pair(capacity?: number): { clock: VirtualClock; a: RingPort; b: RingPort } {
  const clock = new VirtualClock();
  const [sa, sb] = ringPortSpecs(capacity);
  const [ba, bb] = localDoorbells();
  return { clock, a: new RingPort('a', sa, clock, ba), b: new RingPort('b', sb, clock, bb) };
}

describe('FramePort contract: ring port (a VM thread\'s wire)', () =>
  carrierContract(() => {
    const { clock, a, b } = pair();
    return { clock, port: a, far: b, chain: [a], maxPlain: 65535, gsoPassThrough: true, address: { toFar: STATION_B, fromFar: STATION_A }, settle: () => void clock.runUntil(() => false, 1000) };
  }));

describe('ring port', () => {
  it('a full ring refuses and counts; a busy receiver fills it, and ready() delivers everything in order', () => {
    const { clock, a, b } = pair(1 << 18);
    const got: number[] = [];
    let busy = true;
    b.setReceiver((f) => {
      if (busy) return 'busy';
      got.push(f[14]!);
      return true;
    });
    let accepted = 0;
    for (let i = 0; i < 400; i++) {
      const f = new Uint8Array(1514);
      f[14] = i & 0xff;
      if (a.send(f)) accepted++;
    }
    clock.runUntil(() => false, 100);
    // 256 KiB holds 170 records of 1514 bytes (+4 header, aligned): the rest are refused.
    expect(accepted).toBe(Math.floor((1 << 18) / 1520));
    expect(a.stats.txDrops).toBe(400 - accepted);
    expect(got).toEqual([]);
    busy = false;
    b.ready();
    clock.runUntil(() => false, 100);
    expect(got).toEqual(Array.from({ length: accepted }, (_, i) => i & 0xff));
    expect(b.stats.rxFrames).toBe(accepted);
    // Room again: sends are taken.
    expect(a.send(new Uint8Array(60))).toBe(true);
  });

  it('after close, sends on either side are refused and nothing is delivered', () => {
    const { clock, a, b } = pair();
    const got: Uint8Array[] = [];
    b.setReceiver((f) => void got.push(f));
    a.close();
    expect(a.send(new Uint8Array(60))).toBe(false);
    expect(b.isClosed).toBe(true);
    clock.runUntil(() => false, 10);
    expect(got).toEqual([]);
  });
});

describe('capture mirror', () => {
  it('records cross to the right hop with their direction; refusals keep their reason; a full ring loses records, counted', () => {
    const clock = new VirtualClock();
    const made = FrameRing.create(1 << 18);
    if (!made.ok) throw new Error(made.error);
    const [w, r] = localDoorbells();
    const writer = new MirrorWriter(made.ring, w);
    const seen: string[] = [];
    const sink = (name: string) => ({
      record: (f: Uint8Array, d: CaptureDirection) => void seen.push(`${name} ${d} ${f.length} ${f[0]}`),
      refused: (d: CaptureDirection, why?: string) => void seen.push(`${name} refused ${d} ${why}`),
    });
    new MirrorReader(made.ring, clock, r, [sink('h0'), sink('h1')]);
    writer.sink(1).record(new Uint8Array([7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]), 'out');
    writer.sink(0).record(new Uint8Array(60).fill(9), 'in');
    writer.sink(0).refused!('in', 'ring full');
    clock.runUntil(() => false, 10);
    expect(seen).toEqual(['h1 out 14 7', 'h0 in 60 9', 'h0 refused in ring full']);
    for (let i = 0; i < 10; i++) writer.sink(0).record(new Uint8Array(65535), 'out');
    expect(writer.lost).toBeGreaterThan(0);
  });
});
