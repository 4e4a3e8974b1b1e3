/**
 * The guest apps' view of a TCP connection (a thin face over the stack's raw API): write returns
 * how much the send buffer took, `onWritable` says there is room again, so an app that streams
 * (chargen, `/bytes/N`) follows the peer's pace and never buffers without bound.
 */
export interface AppConn {
  readonly remote: string;
  /** Bytes accepted into the send buffer (possibly fewer than offered). */
  write(data: Uint8Array): number;
  /** Half-close once everything written has been sent. */
  end(): void;
  /** Abort (RST). */
  abort(): void;
  /**
   * In-order data, valid for the call only (it may sit in the driver's lent receive buffer): an
   * app copies what it keeps. Return `false` to hold the receive window shut for these bytes until
   * the app calls `consumed(n)`: that is how a slow app slows its peer down.
   */
  onData: (data: Uint8Array) => boolean | void;
  /** The app is done with `n` bytes it held (only after returning false from onData). */
  consumed?(n: number): void;
  onEnd: () => void;
  onWritable: () => void;
  onClose: () => void;
}

export type AppHandler = (conn: AppConn) => void;

const encoder = new TextEncoder();

/** Write text, queueing what the send buffer does not take until it has room. */
export class TextWriter {
  private pending: Uint8Array[] = [];
  private ended = false;

  constructor(private readonly conn: AppConn) {
    conn.onWritable = () => this.flush();
  }

  write(text: string | Uint8Array): void {
    this.pending.push(typeof text === 'string' ? encoder.encode(text) : text);
    this.flush();
  }

  end(): void {
    this.ended = true;
    this.flush();
  }

  get backlog(): number {
    return this.pending.reduce((n, b) => n + b.length, 0);
  }

  flush(): void {
    while (this.pending.length > 0) {
      const head = this.pending[0]!;
      const n = this.conn.write(head);
      if (n < head.length) {
        this.pending[0] = head.subarray(n);
        return;
      }
      this.pending.shift();
    }
    if (this.ended) {
      this.ended = false;
      this.conn.end();
    }
  }
}
