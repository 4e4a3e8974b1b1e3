import type { Socket } from 'node:net';

/**
 * One writev per burst instead of one write(2) per frame or segment: the first write to a socket
 * in a turn of the event loop corks it, and the turn's end (setImmediate) uncorks it, so
 * everything written meanwhile reaches the kernel together. Call before each write. Shared by the
 * user-mode network's host sockets and the VM sockets to QEMU.
 */
const corked = new WeakSet<Socket>();

export function batchThisTurn(socket: Socket): void {
  if (corked.has(socket) || socket.destroyed) return;
  corked.add(socket);
  socket.cork();
  setImmediate(() => {
    corked.delete(socket);
    // end() has flushed a socket that ended meanwhile; uncork() on it is harmless.
    if (!socket.destroyed) socket.uncork();
  });
}
