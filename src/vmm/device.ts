import type { FramePort } from '../../net/frame-port.js';
import type { Clock } from '../../net/clock.js';
import type { ComponentLog } from '../log.js';
import type { GuestMemory } from './memory.js';
import type { IoHandler, RegisterResult } from './io-bus.js';
import type { FailStopScope } from './fail-stop.js';
import type { PciBus, PciAddress } from './pci.js';
import type { Telemetry } from './telemetry.js';
import type { DeviceConfig } from '../config/types.js';

/**
 * Where a device claims port I/O and MMIO directly (ISA devices; PCI BARs go through the PciBus).
 * The VMM core's IoBus implements it; so can an adapter onto another emulator's I/O space.
 */
export interface IoSpace {
  registerPorts(owner: string, base: number, length: number, handler: IoHandler): RegisterResult;
  unregisterPorts(owner: string, base: number): boolean;
  registerMmio(owner: string, base: number, length: number, handler: IoHandler): RegisterResult;
  unregisterMmio(owner: string, base: number): boolean;
}

/** Interrupt lines by number (ISA IRQ 0–15): the PicPair, or an adapter onto another emulator's. */
export interface IrqController {
  /** Drive IRQ `irq` high or low; a number the controller lacks is a RangeError (the caller's bug). */
  setIrq(irq: number, high: boolean): void;
}

/**
 * What a device model is given to reach the machine: nothing else. Every member is an interface,
 * so the same model runs on the VMM core or on another emulator through one adapter (issue 12).
 */
export interface DeviceContext {
  readonly vmName: string;
  readonly memory: GuestMemory;
  readonly io: IoSpace;
  readonly pic: IrqController;
  /** Undefined when the config has no PCI bus (ISA-only machine). */
  readonly pci: PciBus | undefined;
  readonly clock: Clock;
  readonly telemetry: Telemetry;
  readonly log: ComponentLog;
  /** Fail-stop: report the fault; the VM stops this device and records why. */
  fail(deviceId: string, message: string): void;
  /**
   * This device's fail-stop scope (fail-stop.ts), for a callback the device hands to something
   * that is not the machine. The VM already guards register accesses, the port a NIC is attached
   * to, `clock` timers and `start`.
   */
  readonly scope: FailStopScope;
  /** Core 'PCI' class only: create the machine's PCI bus (the VM supplies this). */
  createPciBus?(id: string): PciBus | { error: string };
}

export type DeviceState = 'running' | 'failed' | 'stopped';

export interface DeviceDescription {
  id: string;
  className: string;
  state: DeviceState;
  pci?: { address: PciAddress; vendorId: number; deviceId: number };
  ports: { base: number; length: number }[];
  mmio: { base: number; length: number }[];
  irq: number | null;
  mac?: string;
  failure?: string;
}

export interface Device {
  readonly id: string;
  readonly className: string;
  readonly state: DeviceState;
  /** Whatever counters the device keeps (frames, bytes, drops by cause, exits by register…). */
  counters(): Record<string, number>;
  /** Called by the VM once after firmware has run, before the guest boots. */
  start?(): void;
  /** Stop: no more DMA, no more interrupts, no more frames. */
  stop(reason?: string): void;
}

/** A network card frontend: its wire side is a FramePort owned by a backend. */
export interface NicDevice extends Device {
  readonly mac: Uint8Array;
  readonly model: string;
  attach(port: FramePort): void;
}

export function isNic(d: Device): d is NicDevice {
  return typeof (d as Partial<NicDevice>).attach === 'function' && (d as Partial<NicDevice>).mac instanceof Uint8Array;
}

export type DeviceFactory = (ctx: DeviceContext, config: DeviceConfig) => Device | { error: string };

/** Device classes register by name (Palacios' device manager); the XML names the class. */
export class DeviceRegistry {
  private readonly classes = new Map<string, DeviceFactory>();

  register(className: string, factory: DeviceFactory): void {
    this.classes.set(className.toUpperCase(), factory);
  }

  get(className: string): DeviceFactory | undefined {
    return this.classes.get(className.toUpperCase());
  }

  has(className: string): boolean {
    return this.classes.has(className.toUpperCase());
  }

  names(): string[] {
    return [...this.classes.keys()].sort();
  }
}
