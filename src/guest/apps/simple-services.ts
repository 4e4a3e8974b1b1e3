import type { AppConn, AppHandler } from './app-conn.js';

/**
 * The classic small services (RFC 862 echo, RFC 863 discard, RFC 864 chargen) on TCP. Each follows
 * the peer's pace: echo stops reading while its writes are not taken, chargen writes only when
 * the send buffer has room.
 */
export const echoService: AppHandler = (conn: AppConn) => {
  let backlog: Uint8Array[] = [];
  let finished = false;
  const pump = (): void => {
    while (backlog.length > 0) {
      const b = backlog[0]!;
      const n = conn.write(b);
      conn.consumed?.(n);
      if (n < b.length) {
        backlog[0] = b.subarray(n);
        return;
      }
      backlog.shift();
    }
    if (finished) conn.end();
  };
  conn.onData = (d) => {
    // Keep a copy (the stack may reuse its buffer) and hold the window until it is echoed, so the
    // peer can never make us buffer more than one receive window.
    backlog.push(d.slice());
    pump();
    return conn.consumed ? false : undefined;
  };
  conn.onWritable = pump;
  conn.onEnd = () => {
    finished = true;
    pump();
  };
  conn.onClose = () => {
    backlog = [];
  };
};

export interface DiscardCounters {
  bytes: number;
  connections: number;
}

export function discardService(counters: DiscardCounters): AppHandler {
  return (conn) => {
    counters.connections++;
    conn.onData = (d) => {
      counters.bytes += d.length;
    };
    conn.onEnd = () => conn.end();
  };
}

/** RFC 864's rotating 72-character lines of the 95 printable ASCII characters. */
export function chargenLine(index: number): Uint8Array {
  const line = new Uint8Array(74);
  for (let i = 0; i < 72; i++) line[i] = 32 + ((index + i) % 95);
  line[72] = 13;
  line[73] = 10;
  return line;
}

export const chargenService: AppHandler = (conn) => {
  let index = 0;
  let partial: Uint8Array | null = null;
  let open = true;
  const pump = (): void => {
    // Bounded per call: the next round comes with onWritable.
    for (let i = 0; open && i < 1024; i++) {
      const chunk = partial ?? chargenLine(index++);
      const n = conn.write(chunk);
      if (n < chunk.length) {
        partial = chunk.subarray(n);
        return;
      }
      partial = null;
    }
  };
  conn.onWritable = pump;
  conn.onData = () => {}; // input is discarded, per RFC 864
  conn.onEnd = () => {
    open = false;
    conn.end();
  };
  conn.onClose = () => {
    open = false;
  };
  pump();
};
