/**
 * Time, the only way anything in the lab learns it (DESIGN.md: one clock).
 *
 * Times are milliseconds as floating-point numbers. A RealClock follows the host's monotonic clock
 * and Node timers; a VirtualClock moves only when told to, so a whole lab (VMs, links, stacks) can
 * run deterministically and a failing test reproduces from its seed.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Current time in milliseconds. Monotonic. */
  now(): number;
  /** Run `fn` once, `delayMs` from now (0 = as soon as the current work is done, never re-entrantly). */
  setTimer(delayMs: number, fn: () => void): TimerHandle;
}

/** The host's monotonic clock with Node's timers. */
export class RealClock implements Clock {
  private readonly origin = performance.now();

  now(): number {
    return performance.now() - this.origin;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    if (delayMs <= 0) {
      // setImmediate lets I/O callbacks interleave with chains of zero-delay work.
      const h = setImmediate(fn);
      return { cancel: () => clearImmediate(h) };
    }
    const h = setTimeout(fn, delayMs);
    return { cancel: () => clearTimeout(h) };
  }
}

interface VirtualTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * Deterministic virtual time. Timers fire in (time, insertion) order; time jumps straight to the
 * next due timer, so an hour of TCP retransmission timeouts runs in milliseconds.
 */
export class VirtualClock implements Clock {
  private time = 0;
  private seq = 0;
  private heap: VirtualTimer[] = [];

  constructor(startMs = 0) {
    this.time = startMs;
  }

  now(): number {
    return this.time;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const timer: VirtualTimer = { at: this.time + Math.max(0, delayMs), seq: this.seq++, fn, cancelled: false };
    this.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Number of timers still pending (cancelled ones excluded lazily). */
  pending(): number {
    return this.heap.filter((t) => !t.cancelled).length;
  }

  /** Fire the next due timer, advancing time to it. Returns false when none is left. */
  step(): boolean {
    for (;;) {
      const t = this.pop();
      if (!t) return false;
      if (t.cancelled) continue;
      if (t.at > this.time) this.time = t.at;
      t.fn();
      return true;
    }
  }

  /** Run timers until `ms` of virtual time has passed (time ends exactly at now + ms). */
  advance(ms: number): void {
    this.runUntilTime(this.time + ms);
  }

  runUntilTime(endMs: number): void {
    for (;;) {
      const next = this.peek();
      if (!next || next.at > endMs) break;
      this.step();
    }
    if (this.time < endMs) this.time = endMs;
  }

  /**
   * Run until `done()` holds, no timer is left, or `limitMs` of virtual time has passed.
   * Returns whether `done()` held. Bounded, so a stuck simulation fails instead of hanging.
   */
  runUntil(done: () => boolean, limitMs = 3_600_000, maxSteps = 50_000_000): boolean {
    const end = this.time + limitMs;
    let steps = 0;
    while (!done()) {
      const next = this.peek();
      if (!next || next.at > end || steps++ >= maxSteps) return done();
      this.step();
    }
    return true;
  }

  private peek(): VirtualTimer | undefined {
    while (this.heap.length > 0 && this.heap[0]!.cancelled) this.pop();
    return this.heap[0];
  }

  private less(a: VirtualTimer, b: VirtualTimer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(t: VirtualTimer): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): VirtualTimer | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
