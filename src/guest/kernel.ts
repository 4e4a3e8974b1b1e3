import { NO_DEBUG, type DebugLog } from '../../net/debug.js';
import type { KernelConfig, AppConfig } from '../config/types.js';
import type { GuestHardware } from './hardware.js';
import { GuestPic, IRQ_VECTOR_BASE } from './pic.js';
import { GuestPciAccess, type PciDeviceInfo } from './pci.js';
import { SerialConsole } from './console.js';
import { DmaAllocator } from './dma.js';
import type { NetDriverPort } from './net-driver.js';

/**
 * The lightweight guest kernel (the Kitten analogue). Boot: program the PIC, bring up the serial
 * console, enumerate PCI through configuration space, bind drivers by vendor/device ID, install
 * the interrupt dispatcher, enable interrupts. Networking (netif, stack, apps) is layered on the
 * bound NIC driver by the network bring-up code.
 */
export interface BoundDriver {
  readonly name: string;
  readonly irq: number | null;
  /** Called with interrupts disabled; acknowledge the device, the kernel sends the PIC EOI. */
  handleInterrupt(): void;
}

export interface GuestDriver {
  readonly name: string;
  matches(dev: PciDeviceInfo): boolean;
  attach(kernel: GuestKernel, dev: PciDeviceInfo): BoundDriver | { error: string };
}

export interface BootReport {
  pci: PciDeviceInfo[];
  bound: { name: string; slot: number; irq: number | null }[];
  unbound: PciDeviceInfo[];
  errors: string[];
}

export class GuestKernel {
  readonly pic: GuestPic;
  readonly pciAccess: GuestPciAccess;
  readonly console: SerialConsole;
  private readonly irqHandlers = new Map<number, (() => void)[]>();
  readonly bound: BoundDriver[] = [];
  /** dma_alloc_coherent: physically contiguous guest memory for rings and buffers. */
  readonly dma: DmaAllocator;
  /** Network devices drivers registered (eth0, eth1, … in probe order). */
  readonly netDevices: NetDriverPort[] = [];
  private consoleLog: string[] = [];
  bootReport: BootReport | null = null;
  spuriousInterrupts = 0;

  constructor(
    readonly hw: GuestHardware,
    readonly kernelConfig: KernelConfig,
    readonly apps: AppConfig[],
    private readonly drivers: GuestDriver[] = [],
  ) {
    this.pic = new GuestPic(hw);
    this.pciAccess = new GuestPciAccess(hw);
    this.console = new SerialConsole(hw);
    this.dma = new DmaAllocator(hw.physical);
  }

  /** A NIC driver's register_netdev: the device becomes eth<N>. Returns the name. */
  registerNetDevice(port: NetDriverPort): string {
    this.netDevices.push(port);
    return `eth${this.netDevices.length - 1}`;
  }

  /** The debug sink of one driver or protocol (`8139too`, `tcp`): the hardware's, or off. */
  debug(component: string): DebugLog {
    return this.hw.debugLog?.(component) ?? NO_DEBUG;
  }

  /** printk: to the serial console (and kept, so a run can show the boot log without one). */
  printk(text: string): void {
    this.consoleLog.push(text);
    if (this.consoleLog.length > 1000) this.consoleLog.shift();
    this.console.write(text.endsWith('\n') ? text : text + '\n');
  }

  get log(): readonly string[] {
    return this.consoleLog;
  }

  requestIrq(irq: number, handler: () => void): void {
    const list = this.irqHandlers.get(irq) ?? [];
    list.push(handler);
    this.irqHandlers.set(irq, list);
    this.pic.unmask(irq);
  }

  boot(): BootReport {
    const hw = this.hw;
    hw.cli();
    this.pic.init();
    hw.setInterruptHandler((v) => this.dispatch(v));
    if (this.console.init()) this.requestIrq(this.console.irq, () => this.console.handleInterrupt());
    this.printk(`netlab kernel: booting, ${Math.round(hw.memorySize / (1024 * 1024))} MB, cmdline "${this.kernelConfig.cmdline}"`);
    const report: BootReport = { pci: [], bound: [], unbound: [], errors: [] };
    report.pci = this.pciAccess.enumerate();
    for (const dev of report.pci) {
      const id = `${hex(dev.vendorId)}:${hex(dev.deviceId)}`;
      this.printk(`pci 00:${dev.slot.toString(16).padStart(2, '0')}.${dev.fn} [${id}] class ${dev.classCode.toString(16).padStart(6, '0')}${dev.irq !== null ? ` irq ${dev.irq}` : ''}`);
      const drv = this.drivers.find((d) => d.matches(dev));
      if (!drv) {
        if (dev.classCode >> 16 !== 0x06) report.unbound.push(dev); // bridges need no driver
        continue;
      }
      const r = drv.attach(this, dev);
      if ('error' in r) {
        report.errors.push(`${drv.name}: ${r.error}`);
        this.printk(`${drv.name}: probe of 00:${dev.slot.toString(16).padStart(2, '0')}.0 failed: ${r.error}`);
        continue;
      }
      this.bound.push(r);
      report.bound.push({ name: r.name, slot: dev.slot, irq: r.irq });
      if (r.irq !== null) this.requestIrq(r.irq, () => r.handleInterrupt());
    }
    hw.sti();
    this.bootReport = report;
    return report;
  }

  /** The IDT: vectors 0x20–0x2F are the PIC's IRQs; each shared line runs all its handlers. */
  private dispatch(vector: number): void {
    const irq = vector - IRQ_VECTOR_BASE;
    const handlers = irq >= 0 && irq < 16 ? this.irqHandlers.get(irq) : undefined;
    if (!handlers) {
      this.spuriousInterrupts++;
    } else {
      for (const h of handlers) h();
    }
    if (irq >= 0 && irq < 16) this.pic.eoi(irq);
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(4, '0');
}
