import type { MessagePort } from 'node:worker_threads';

/**
 * How one side of a shared ring tells the other "there is something for you" when that side sleeps.
 * Rings raise it only when the consumer has said it sleeps (FrameRing.wakeConsumer), so a busy
 * stream rings it once per batch at most, never once per frame.
 */
export interface Doorbell {
  ring(): void;
  /** What to run on this side when the other side rings (at most one handler). */
  onRing(fn: () => void): void;
  close(): void;
}

/**
 * A doorbell between threads: one message on a MessagePort. (A message, not Atomics.waitAsync: a
 * waitAsync was seen to stay pending under load on Node 20 with frames in the ring — then on the
 * TAP's old reader thread; a message is never lost.)
 */
export class PortDoorbell implements Doorbell {
  private handler: (() => void) | null = null;
  private closed = false;

  constructor(private readonly port: MessagePort) {
    port.on('message', () => this.handler?.());
    // The doorbell alone must not keep a finished process alive; the ports it serves decide that.
    port.unref();
  }

  ring(): void {
    if (!this.closed) this.port.postMessage(0);
  }

  onRing(fn: () => void): void {
    this.handler = fn;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.port.close();
  }
}

/** Two doorbells wired to each other in one thread (tests, and ring ports whose ends share a thread). */
export function localDoorbells(): [Doorbell, Doorbell] {
  const handlers: [(() => void) | null, (() => void) | null] = [null, null];
  const make = (self: 0 | 1): Doorbell => {
    let closed = false;
    return {
      ring: () => {
        if (!closed) handlers[self === 0 ? 1 : 0]?.();
      },
      onRing: (fn) => {
        handlers[self] = fn;
      },
      close: () => {
        closed = true;
        handlers[self] = null;
      },
    };
  };
  return [make(0), make(1)];
}
