import type { Clock, TimerHandle } from '../../net/clock.js';
import type { PicPair } from './pic.js';
import type { Telemetry } from './telemetry.js';

/**
 * The guest's view of the processor's interrupt pin: when the PIC asserts INTR and interrupts are
 * enabled, the CPU runs an interrupt-acknowledge cycle and calls the guest's handler for the
 * vector (its IDT). Delivery is scheduled on the clock, never inside the device access that raised
 * the line, just as a real CPU takes the interrupt at the next instruction boundary.
 */
export class Cpu {
  private handler: ((vector: number) => void) | null = null;
  private interruptsEnabled = false;
  private scheduled: TimerHandle | null = null;
  private halted = false;
  /** Fault in guest code: the VM is fail-stopped with this message. */
  onGuestFault: (error: unknown) => void = () => {};

  constructor(
    private readonly pic: PicPair,
    private readonly clock: Clock,
    private readonly telemetry: Telemetry,
  ) {
    pic.onInterrupt = () => this.kick();
  }

  /** The guest installs its interrupt dispatcher (IDT). */
  setInterruptHandler(fn: (vector: number) => void): void {
    this.handler = fn;
  }

  sti(): void {
    this.interruptsEnabled = true;
    this.kick();
  }

  cli(): void {
    this.interruptsEnabled = false;
  }

  halt(): void {
    this.halted = true;
    this.scheduled?.cancel();
    this.scheduled = null;
  }

  get isHalted(): boolean {
    return this.halted;
  }

  private kick(): void {
    if (this.halted || this.scheduled || !this.interruptsEnabled) return;
    this.scheduled = this.clock.setTimer(0, () => this.deliver());
  }

  private deliver(): void {
    this.scheduled = null;
    // Bounded: an interrupt storm yields to other work (timers, the other VMs) between rounds.
    for (let i = 0; i < 64 && !this.halted && this.interruptsEnabled && this.pic.intr(); i++) {
      const vector = this.pic.acknowledge();
      if (vector < 0) break;
      this.telemetry.record('irq', `vector-${vector}`);
      // Interrupt gate semantics: IF is clear while the handler runs.
      this.interruptsEnabled = false;
      try {
        this.handler?.(vector);
      } catch (e) {
        this.onGuestFault(e);
        return;
      } finally {
        if (!this.halted) this.interruptsEnabled = true;
      }
    }
    if (!this.halted && this.interruptsEnabled && this.pic.intr()) this.kick();
  }
}
