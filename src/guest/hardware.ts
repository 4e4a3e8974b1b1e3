import type { DebugLog } from '../../net/debug.js';
import type { Clock } from '../../net/clock.js';
import type { AccessSize } from '../vmm/io-bus.js';

/**
 * Everything the guest kernel may touch: what a real OS has on a PC. Port I/O, MMIO, physical
 * memory (for DMA buffers and descriptor rings), the interrupt flag and its IDT, and a timer.
 * Drivers get nothing else — in particular no device model objects.
 */
export interface GuestHardware {
  inb(port: number): number;
  inw(port: number): number;
  inl(port: number): number;
  outb(port: number, value: number): void;
  outw(port: number, value: number): void;
  outl(port: number, value: number): void;
  mmioRead(addr: number, size: AccessSize): number;
  mmioWrite(addr: number, size: AccessSize, value: number): void;
  /** Guest physical memory, as the kernel's direct map sees it. */
  readonly physical: Uint8Array;
  readonly memorySize: number;
  setInterruptHandler(fn: (vector: number) => void): void;
  sti(): void;
  cli(): void;
  /**
   * The timer hardware (PIT/HPET analogue): the kernel's only source of time. Its timers are
   * timer interrupts: a fault in one fail-stops the VM, as a fault in any interrupt handler does.
   */
  readonly clock: Clock;
  /**
   * `fn` as guest code that runs outside an interrupt or a timer (a promise continuation): a
   * fault in it fail-stops the VM like any guest fault; once the VM has stopped it does not run.
   */
  guard<A extends unknown[]>(what: string, fn: (...args: A) => void): (...args: A) => void;
  /**
   * The kernel's dynamic debug (Linux's pr_debug per module): a sink per driver or protocol
   * (`8139too`, `tcp`), on the lab's logger (`--debug`). Absent: all off.
   */
  debugLog?(component: string): DebugLog;
}
