import type { AppConn } from '../../../src/guest/apps/app-conn.js';

/** An AppConn whose send buffer takes at most `window` bytes until `drain()` — a slow peer. */
export class SlowConn implements AppConn {
  readonly remote = '10.0.0.1:1234';
  sent: Uint8Array[] = [];
  ended = false;
  aborted = false;
  room: number;
  onData: (d: Uint8Array) => boolean | void = () => {};
  onEnd: () => void = () => {};
  onWritable: () => void = () => {};
  onClose: () => void = () => {};

  constructor(private readonly window = Infinity) {
    this.room = window;
  }
  write(data: Uint8Array): number {
    if (this.ended) throw new Error('write after end');
    const n = Math.min(this.room, data.length);
    this.room -= n;
    if (n > 0) this.sent.push(data.slice(0, n));
    return n;
  }
  end(): void {
    this.ended = true;
  }
  abort(): void {
    this.aborted = true;
  }
  drain(): void {
    this.room = this.window;
    this.onWritable();
  }
  text(): string {
    return Buffer.concat(this.sent).toString('latin1');
  }
  bytes(): Buffer {
    return Buffer.concat(this.sent);
  }
}
