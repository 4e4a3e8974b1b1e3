import type { Clock, TimerHandle } from '../../net/clock.js';
import type { FramePort, FrameReceiver } from '../../net/frame-port.js';
import type { ComponentLog } from '../log.js';

/**
 * Fail-stop (Palacios: PrintError, then stop that device or VM), one mechanism for every path by
 * which the lab calls into a device model or a guest: register accesses, interrupt delivery, frame
 * delivery, timers, host callbacks. A throw on such a path is a bug in what was called, never in
 * the lab: it stops that scope with a message naming the path and the error (no stack trace as the
 * message; the stack goes to the scope's debug log), the call completes with a neutral result, and
 * the lab and its other VMs go on. A stopped scope is not called again.
 *
 * Usage (lab/ too): give whatever can fail its own scope, and wrap each entry into it once,
 * where the callback is installed, not inside the callee:
 *
 *     const scope: FailStopScope = { name: 'net0-back', get stopped() { … }, fail: (m) => …, log };
 *     socket.on('data', guard(scope, 'host socket data', (d) => userNet.fromHost(d), undefined));
 *     const clock = guardedClock(lab.clock, scope);   // every timer set through it is guarded
 */
export interface FailStopScope {
  /** What the scope is, as messages name it: `vm0.net0`, `vm0`, `net0-back`. */
  readonly name: string;
  /** True once the scope has failed or stopped: guarded entries into it are skipped. */
  readonly stopped: boolean;
  /** Stop the scope for `message` (which names the path and the fault). Called at most once per fault. */
  fail(message: string): void;
  /** Where the stack trace of a fault goes, at debug level. */
  readonly log?: ComponentLog;
}

/** One line naming the error: `TypeError: x is not a function`, never a stack trace. */
export function describeFault(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  if (typeof error === 'string') return error;
  try {
    return `thrown ${typeof error}: ${String(error)}`;
  } catch {
    return `thrown ${typeof error}`;
  }
}

/** Report `error`, thrown on path `what`, to `scope`: stack at debug level, then fail-stop. */
export function failStop(scope: FailStopScope, what: string, error: unknown): void {
  const stack = error instanceof Error ? error.stack : undefined;
  if (stack && scope.log?.on) scope.log.debug(`${what}: ${stack}`);
  try {
    scope.fail(`${what}: ${describeFault(error)}`);
  } catch {
    // A scope that cannot even record its failure is already as stopped as we can make it.
  }
}

/**
 * `fn` as an entry into `scope`: skipped (returning `fallback`) once the scope has stopped; a
 * throw fail-stops the scope and returns `fallback`.
 */
export function guard<A extends unknown[], R, F>(scope: FailStopScope, what: string, fn: (...args: A) => R, fallback: F): (...args: A) => R | F {
  return (...args: A): R | F => {
    if (scope.stopped) return fallback;
    try {
      return fn(...args);
    } catch (e) {
      failStop(scope, what, e);
      return fallback;
    }
  };
}

/**
 * A clock whose timers are entries into `scope`: a timer of a stopped scope does not fire, and a
 * throwing one fail-stops the scope. Time itself is the underlying clock's.
 */
export function guardedClock(clock: Clock, scope: FailStopScope, what = 'timer'): Clock {
  return {
    now: () => clock.now(),
    setTimer: (delayMs: number, fn: () => void): TimerHandle => clock.setTimer(delayMs, guard(scope, what, fn, undefined)),
  };
}

/** A frame receiver as an entry into `scope`: refuses (`false`, a counted drop) once stopped. */
export function guardedReceiver(scope: FailStopScope, receiver: FrameReceiver, what = 'frame delivery'): FrameReceiver {
  return guard(scope, what, receiver, false);
}

/**
 * `port` with every receiver set on it guarded for `scope`: hand this to whatever calls
 * `setReceiver` (a NIC model's `attach`). Everything else passes straight through, so the
 * FramePort contract (stats, holds/ready, GSO) is the wrapped port's.
 */
export function guardedPort(port: FramePort, scope: FailStopScope, what = 'frame delivery'): FramePort {
  const wrapped: FramePort = {
    get name() {
      return port.name;
    },
    get stats() {
      return port.stats;
    },
    get holds() {
      return port.holds;
    },
    get gso() {
      return port.gso;
    },
    get gsoChecksumPartial() {
      return port.gsoChecksumPartial;
    },
    send: (frame, info) => port.send(frame, info),
    setReceiver: (receiver) => port.setReceiver(receiver ? guardedReceiver(scope, receiver, what) : null),
  };
  // Optional members stay absent when the port lacks them (callers test for them).
  if (port.ready) wrapped.ready = () => port.ready!();
  if (port.offerGso) wrapped.offerGso = (on, partialChecksums) => port.offerGso!(on, partialChecksums);
  if (port.lendTx) wrapped.lendTx = (length) => port.lendTx!(length);
  return wrapped;
}
