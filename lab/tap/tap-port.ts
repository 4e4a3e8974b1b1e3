import { closeSync, readSync, writeSync } from 'node:fs';
import { emptyStats, MAX_FRAME, MIN_FRAME, type FramePort, type FramePortStats, type FrameReceiver } from '../../net/frame-port.js';
import { FdPoller, openTap, setPersist } from './tun-ioctl.js';

/**
 * A Linux TAP device as a FramePort. The fd is non-blocking: reads drain it on the event loop and
 * poll(2) on a worker thread waits when it is empty (a TAP fd is a character device, which Node's
 * sockets cannot watch), each read delivering one frame; writes are
 * synchronous single write(2)s, which the kernel takes or refuses at once (a full device queue is a
 * counted drop, as on a real link). Frames longer than the device's MTU are refused by the kernel.
 */
export class TapPort implements FramePort {
  readonly stats: FramePortStats = emptyStats();
  private receiver: FrameReceiver | null = null;
  private closed = false;
  private readonly buf = Buffer.allocUnsafe(MAX_FRAME + 4);
  readErrors = 0;
  private readonly poller: FdPoller;

  private constructor(
    readonly name: string,
    private readonly fd: number,
  ) {
    this.poller = new FdPoller(fd);
  }

  static open(name: string, options: { persist?: boolean } = {}): { ok: true; port: TapPort } | { ok: false; code: string; message: string } {
    const r = openTap(name);
    if (!r.ok) return r;
    if (options.persist) setPersist(r.fd, true);
    const p = new TapPort(r.name, r.fd);
    p.readLoop();
    return { ok: true, port: p };
  }

  /**
   * Drain what the kernel has queued (up to a batch, then yield to the event loop), and when the
   * device is empty wait for it with poll(2) on a worker thread. Each read(2) returns one frame.
   */
  private readLoop(): void {
    for (let i = 0; i < 256; i++) {
      if (this.closed) return;
      let n: number;
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          this.poller.wait(100, () => this.readLoop());
          return;
        }
        // EBADFD once the device is gone (its namespace deleted): stop reading.
        this.readErrors++;
        if (this.readErrors > 100 || code === 'EBADF' || code === 'EBADFD' || code === 'EIO') return;
        continue;
      }
      if (n >= MIN_FRAME) {
        const frame = new Uint8Array(n);
        frame.set(this.buf.subarray(0, n));
        this.stats.rxFrames++;
        this.stats.rxBytes += n;
        if (!this.receiver || this.receiver(frame) === false) this.stats.rxDrops++;
      }
    }
    setImmediate(() => this.readLoop());
  }

  send(frame: Uint8Array): boolean {
    if (this.closed || frame.length < MIN_FRAME || frame.length > MAX_FRAME) {
      this.stats.txDrops++;
      return false;
    }
    try {
      writeSync(this.fd, frame);
    } catch {
      // EIO while the interface is down, EINVAL over the MTU, ENOBUFS: the frame is lost.
      this.stats.txDrops++;
      return false;
    }
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    return true;
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
  }

  /** Close the fd: a non-persistent device disappears with it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}
