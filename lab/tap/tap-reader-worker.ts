import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { FrameRing } from '../ring/frame-ring.js';
import { PollSet } from './fd-wait.js';
import { completeVnetChecksum } from './vnet-hdr.js';

/**
 * The TAP reader thread: reads frames from the (non-blocking) TAP fd straight into the shared
 * ring, as many as the kernel has queued while the lab is awake, waking the lab's thread when it
 * sleeps (right after the frame that arrives first), and sleeps in poll(2) on the TAP fd and the
 * stop eventfd. When the ring is full it waits for the lab to free
 * space and reads nothing meanwhile, so frames wait in the kernel's queue (bounded by the device's
 * txqueuelen, where the kernel drops and counts). With a virtio-net header (IFF_VNET_HDR) each
 * record is the header then the frame, and a partial checksum the kernel left (NEEDS_CSUM) is
 * completed here, off the lab's thread, unless the lab's receiver takes partial checksums
 * (`partialFlag`), when the lab passes it on or completes it itself. The lab closes both fds once this thread has exited, so an fd
 * is never closed while a read or poll here may still use it.
 */
export interface TapReaderData {
  fd: number;
  stopFd: number;
  sab: SharedArrayBuffer;
  vnetHdrLen: number;
  /** [0]: 1 while the lab's receiver takes partial checksums: leave NEEDS_CSUM records as they are. */
  partialFlag: Int32Array;
}

const { fd, stopFd, sab, vnetHdrLen, partialFlag } = workerData as TapReaderData;
const opened = FrameRing.attach(sab);
if (!opened.ok) throw new Error(opened.error);
const ring = opened.ring;
const poll = new PollSet([fd, stopFd]);
/**
 * Wake the lab's thread when it sleeps: one message per batch, and only then. (With Atomics.waitAsync
 * on the lab's side, a wait stayed pending under load on Node 20 with frames in the ring and the TAP
 * stalled — cause not established; a message is never lost.)
 */
function wake(): boolean {
  if (!ring.wakeConsumer()) return false;
  parentPort!.postMessage(0);
  return true;
}
/** Largest read: a 64 KiB frame and its header. */
const READ_MAX = 65535 + vnetHdrLen;
let errors = 0;

run();
ring.close();
parentPort!.postMessage(0);

function run(): void {
  for (;;) {
    if (ring.closed) return;
    const room = ring.reserve(READ_MAX);
    if (!room) {
      wake();
      ring.waitForSpace(1000);
      continue;
    }
    let n: number;
    try {
      n = readSync(fd, room, 0, READ_MAX, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
        wake();
        const [, stop] = poll.wait(-1);
        if (stop) return;
        continue;
      }
      // EBADFD once the device is gone (its namespace deleted): stop reading.
      if (code === 'EBADF' || code === 'EBADFD' || code === 'EIO' || ++errors > 100) return;
      continue;
    }
    if (n < vnetHdrLen + 14) continue;
    if (vnetHdrLen > 0 && Atomics.load(partialFlag, 0) === 0 && !completeVnetChecksum(room.subarray(0, n), vnetHdrLen)) continue;
    ring.commit(n);
    // A sleeping lab is woken at once, and this thread then sleeps in poll rather than trying
    // another read: a read that fails with EAGAIN builds and throws an exception, and on a busy
    // machine the lab's thread waits for this one to get off the core (a ping's reply came ~40 µs
    // later that way). A lab that is awake is not woken, and reading goes on without a poll.
    if (wake()) {
      const [, stop] = poll.wait(-1);
      if (stop) return;
    }
  }
}
