import type { Socket } from 'node:net';
import type { TcpConnection } from '../../net/tcp/connection.js';
import { batchThisTurn } from '../socket-batch.js';

/**
 * Splice a host socket and a stack TCP connection, both ways, with backpressure at each end:
 * - host → guest: what the connection's send buffer does not take is held and the socket paused
 *   until `onSent` says there is room;
 * - guest → host: the receive window reopens (`recved`) only once the socket has flushed, so a slow
 *   host reader slows the guest sender through TCP's own flow control, never through buffering here.
 * Half-close crosses in both directions (FIN ↔ end()); a reset on either side resets the other.
 */
export interface BridgeStats {
  toGuest: number;
  toHost: number;
}

/** Wraps each host-socket callback (the user-mode network's guard: a throw closes this flow only). */
export type CallbackGuard = <A extends unknown[]>(what: string, fn: (...args: A) => void) => (...args: A) => void;

export function bridgeTcp(socket: Socket, conn: TcpConnection, onDone: (why: string) => void = () => {}, guard: CallbackGuard = (_what, fn) => fn): BridgeStats {
  const stats: BridgeStats = { toGuest: 0, toHost: 0 };
  let pending: Buffer | null = null;
  let hostEnded = false;
  let finished = false;
  let unacked = 0; // bytes handed to the socket but not yet flushed (window still closed for them)

  const finish = (why: string): void => {
    if (finished) return;
    finished = true;
    onDone(why);
  };

  const pushToGuest = (): void => {
    while (pending) {
      const n = conn.write(pending);
      stats.toGuest += n;
      if (n < pending.length) {
        pending = pending.subarray(n);
        if (n === 0 && conn.state !== 'ESTABLISHED' && conn.state !== 'CLOSE_WAIT' && conn.state !== 'SYN_SENT' && conn.state !== 'SYN_RECEIVED') {
          pending = null; // the connection can no longer send: drop what is left, the reset/close follows
          break;
        }
        socket.pause();
        return;
      }
      pending = null;
    }
    if (hostEnded) {
      conn.shutdown();
      return;
    }
    socket.resume();
  };

  socket.on('data', guard('tcp bridge data', (d: Buffer) => {
    pending = pending ? Buffer.concat([pending, d]) : d;
    pushToGuest();
  }));
  socket.on('end', guard('tcp bridge end', () => {
    hostEnded = true;
    if (!pending) conn.shutdown();
  }));
  socket.on('error', guard('tcp bridge error', () => {
    conn.abort();
    finish('host socket error');
  }));
  socket.on('close', guard('tcp bridge close', () => {
    // The host side is gone entirely: if the guest side is still open, close it (FIN if we can).
    if (!hostEnded) conn.abort();
    finish('host closed');
  }));

  conn.onSent = () => pushToGuest();
  conn.onData = (d) => {
    stats.toHost += d.length;
    // What the guest's segments deliver in one turn leaves in one writev, not a write(2) each.
    batchThisTurn(socket);
    // Copy: the stack may reuse its buffers; the socket keeps ours until written.
    const flushed = socket.write(Buffer.from(d), guard('tcp bridge written', () => {
      // Written to the kernel: the window may reopen by that much.
      unacked -= d.length;
      conn.recved(d.length);
    }));
    unacked += d.length;
    void flushed;
  };
  conn.onEnd = () => {
    socket.end();
  };
  conn.onError = (code) => {
    // A reset or refusal on the guest side: the host client sees a reset, promptly.
    if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy();
    else socket.destroy();
    finish(`guest ${code}`);
  };
  conn.onClose = () => {
    if (!socket.destroyed && socket.writableEnded === false && conn.error === null) socket.end();
    finish('guest closed');
  };
  return stats;
}
