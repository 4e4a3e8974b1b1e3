import { workerData } from 'node:worker_threads';
import { FrameRing } from '../../../lab/ring/frame-ring.js';

/**
 * The far thread of the frame-ring test: takes every frame from `inSab` and pushes it unchanged
 * into `outSab`, blocking on both rings, until `count` frames passed.
 */
const { inSab, outSab, count } = workerData as { inSab: SharedArrayBuffer; outSab: SharedArrayBuffer; count: number };
const inR = FrameRing.attach(inSab);
const outR = FrameRing.attach(outSab);
if (!inR.ok || !outR.ok) throw new Error('not rings');
let done = 0;
while (done < count) {
  const f = inR.ring.peek();
  if (!f) {
    outR.ring.wakeConsumer();
    if (inR.ring.closed) break;
    inR.ring.waitForFramesSync(1000);
    continue;
  }
  while (!outR.ring.push(f)) {
    outR.ring.wakeConsumer();
    if (!outR.ring.waitForSpace(1000)) throw new Error('out ring closed');
  }
  inR.ring.release();
  done++;
  if ((done & 63) === 0) outR.ring.wakeConsumer();
}
outR.ring.wakeConsumer();
