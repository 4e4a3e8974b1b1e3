import { Socket } from 'node:net';

/**
 * A character device's fd (a TAP) read on the lab's own thread through libuv: the fd joins the
 * event loop's epoll set, so a frame from the kernel wakes the lab directly. There is no reader
 * thread to hand frames over from, and no second wake-up: on this 2-core VM a thread waking another
 * that sleeps costs ~100 µs, and a ping over the TAP went from 0.31 to 0.23 ms without it.
 *
 * Node's public `net.Socket({ fd })` takes only sockets and pipes (a TAP is a character device);
 * libuv's pipe handle takes any pollable fd, and `process.binding('pipe_wrap')` — one of the
 * bindings Node keeps for userland, deprecated in documentation only (DEP0111) — makes one. A
 * read(2) of a TAP returns one whole frame, and libuv calls back once per read, into the buffer
 * the owner names before each read (net.Socket's `onread` with a buffer function): the same one
 * while frames are copied out of it, a fresh one once a frame read into it travels on. libuv reads once per
 * event-loop turn when a read comes back shorter than the buffer (every frame does), so other
 * work (timers, links draining) runs between frames.
 */
export interface FdReader {
  /** Read again after `onRead` returned false (meanwhile frames wait in the kernel's queue, bounded by its txqueuelen). */
  resume(): void;
  /** Stop and close the fd (the handle owns it from now on). */
  close(): void;
  /** Resolves once the fd is closed. */
  readonly closed: Promise<void>;
}

interface PipeWrap {
  Pipe: new (type: number) => { open(fd: number): number; close(): void };
  constants: { SOCKET: number };
}

/**
 * Start reading `fd`. `buffer()` names where the next read goes (asked before the first read and
 * after each); `onRead(n, buf)` sees that read's `n` bytes at the start of `buf`; returning false
 * stops reading until `resume()`. `onError` hears a read error (EBADFD once the device is gone),
 * after which nothing more is read.
 */
export function readFd(fd: number, buffer: () => Uint8Array, onRead: (n: number, buf: Uint8Array) => boolean, onError: (code: string) => void): { ok: true; reader: FdReader } | { ok: false; message: string } {
  let pipeWrap: PipeWrap;
  try {
    pipeWrap = (process as unknown as { binding(name: string): PipeWrap }).binding('pipe_wrap');
  } catch (e) {
    return { ok: false, message: `this Node cannot poll a TAP on its event loop (process.binding('pipe_wrap'): ${e instanceof Error ? e.message : String(e)}); run without --permission` };
  }
  const handle = new pipeWrap.Pipe(pipeWrap.constants.SOCKET);
  const err = handle.open(fd);
  if (err !== 0) {
    handle.close();
    return { ok: false, message: `cannot poll the TAP's fd ${fd} (libuv error ${err})` };
  }
  // `handle` is a documented-in-source option of net.Socket that @types/node does not declare.
  const options = { handle, readable: true, writable: false, onread: { buffer, callback: onRead } };
  const socket = new Socket(options as unknown as ConstructorParameters<typeof Socket>[0]);
  socket.on('error', (e: NodeJS.ErrnoException) => onError(e.code ?? e.message));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    ok: true,
    reader: {
      resume: () => socket.resume(),
      close: () => socket.destroy(),
      closed,
    },
  };
}
