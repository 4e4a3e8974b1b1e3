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
  /** The timer hardware (PIT/HPET analogue): the kernel's only source of time. */
  readonly clock: Clock;
}
