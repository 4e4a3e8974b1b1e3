import type { Clock } from '../../net/clock.js';
import type { ComponentLog, Logger } from '../log.js';
import type { VmConfig } from '../config/types.js';
import { Cpu } from './cpu.js';
import { isNic, type Device, type DeviceContext, type DeviceDescription, type DeviceRegistry, type NicDevice } from './device.js';
import { firmwarePciInit, type FirmwareAssignment } from './firmware.js';
import { IoBus } from './io-bus.js';
import { GuestMemory } from './memory.js';
import { formatPciAddress, PciBus } from './pci.js';
import { PicPair } from './pic.js';
import { Telemetry } from './telemetry.js';
import { formatMac } from '../../net/addr.js';

/**
 * One virtual machine: memory, I/O bus, PIC, PCI, devices created in document order from the
 * config, firmware PCI setup, and the CPU's interrupt pin. A device fault stops that device;
 * a guest fault stops this VM; neither throws into the lab.
 */
export interface VmOptions {
  clock: Clock;
  logger: Logger;
  registry: DeviceRegistry;
}

export type VmState = 'created' | 'running' | 'failed' | 'stopped';

export class Vm {
  readonly memory: GuestMemory;
  readonly telemetry: Telemetry;
  readonly io: IoBus;
  readonly pic = new PicPair();
  readonly cpu: Cpu;
  pci: PciBus | undefined;
  readonly devices: Device[] = [];
  readonly failures = new Map<string, string>();
  firmware: FirmwareAssignment[] = [];
  state: VmState = 'created';
  failure: string | undefined;
  readonly log: ComponentLog;
  /** Listeners told when a device or the whole VM fail-stops. */
  onFailure: (what: string, message: string) => void = () => {};

  private constructor(
    readonly config: VmConfig,
    readonly clock: Clock,
    readonly logger: Logger,
  ) {
    this.log = logger.child(config.name);
    this.memory = new GuestMemory(config.memoryMB * 1024 * 1024);
    this.telemetry = new Telemetry(config.telemetry);
    this.io = new IoBus(this.telemetry);
    this.io.onFault = (owner, e) => this.failDevice(owner, `device model error: ${(e as Error)?.stack ?? String(e)}`);
    this.cpu = new Cpu(this.pic, clock, this.telemetry);
    this.cpu.onGuestFault = (e) => this.failVm(`guest fault: ${(e as Error)?.stack ?? String(e)}`);
  }

  /** Build the machine from a validated config. Configuration conflicts come back as errors. */
  static create(config: VmConfig, options: VmOptions): { ok: true; vm: Vm } | { ok: false; errors: string[] } {
    const vm = new Vm(config, options.clock, options.logger);
    const errors = vm.pic.register(vm.io, 'pic');
    const ctx = vm.context();
    for (const dc of config.devices) {
      const factory = options.registry.get(dc.className);
      if (!factory) {
        errors.push(`line ${dc.line}: device "${dc.id}": no device class ${dc.className} is registered`);
        continue;
      }
      let made: Device | { error: string };
      try {
        made = factory(ctx, dc);
      } catch (e) {
        made = { error: (e as Error).message };
      }
      if ('error' in made) errors.push(`line ${dc.line}: device "${dc.id}" (${dc.className}): ${made.error}`);
      else vm.devices.push(made);
    }
    if (vm.pci) vm.pci.onConflict = (owner, err) => vm.failDevice(owner, `BAR placed over another device: ${err}`);
    if (errors.length > 0) return { ok: false, errors };
    if (vm.pci) vm.firmware = firmwarePciInit(vm.io, vm.pic);
    for (const d of vm.devices) d.start?.();
    vm.state = 'running';
    return { ok: true, vm };
  }

  /** The bus that the core 'PCI' device class creates. */
  createPciBus(id: string): PciBus | { error: string } {
    if (this.pci) return { error: `a second PCI bus ("${id}"): this machine has one PCI bus` };
    this.pci = new PciBus(this.io, this.pic);
    const errs = this.pci.register(id);
    if (errs.length > 0) return { error: errs.join('; ') };
    return this.pci;
  }

  context(): DeviceContext {
    const vm = this as Vm;
    return {
      vmName: this.config.name,
      memory: this.memory,
      io: this.io,
      pic: this.pic,
      get pci() {
        return vm.pci;
      },
      clock: this.clock,
      telemetry: this.telemetry,
      log: this.log,
      fail: (id, message) => this.failDevice(id, message),
      createPciBus: (id) => this.createPciBus(id),
    };
  }

  nics(): NicDevice[] {
    return this.devices.filter(isNic);
  }

  device(id: string): Device | undefined {
    return this.devices.find((d) => d.id === id);
  }

  /** Fail-stop one device (Palacios: PrintError and stop); the VM and the lab go on. */
  failDevice(id: string, message: string): void {
    if (this.failures.has(id)) return;
    this.failures.set(id, message);
    this.log.error(`device ${id} stopped: ${message}`);
    const d = this.device(id);
    try {
      d?.stop(message);
    } catch {
      // A device that cannot even stop cleanly is already stopped as far as we are concerned.
    }
    this.onFailure(id, message);
  }

  /** Fail-stop the whole VM: devices stop, the CPU halts; other VMs and the lab go on. */
  failVm(message: string): void {
    if (this.state === 'failed') return;
    this.state = 'failed';
    this.failure = message;
    this.log.error(`VM ${this.config.name} stopped: ${message}`);
    this.haltAll(message);
    this.onFailure(this.config.name, message);
  }

  stop(reason = 'stopped'): void {
    if (this.state === 'stopped' || this.state === 'failed') return;
    this.state = 'stopped';
    this.haltAll(reason);
  }

  private haltAll(reason: string): void {
    this.cpu.halt();
    for (const d of this.devices) {
      try {
        d.stop(reason);
      } catch {
        // see failDevice
      }
    }
  }

  /** The resolved machine: what `lab config check` and `lab run` print. */
  describe(): DeviceDescription[] {
    const pciFns = this.pci?.list() ?? [];
    const portRegions = this.io.portRegionsList();
    const mmioRegions = this.io.mmioRegionsList();
    return this.devices.map((d) => {
      const fn = pciFns.find((f) => f.owner === d.id);
      const desc: DeviceDescription = {
        id: d.id,
        className: d.className,
        state: this.failures.has(d.id) ? 'failed' : d.state,
        ports: portRegions.filter((r) => r.owner === d.id).map((r) => ({ base: r.base, length: r.length })),
        mmio: mmioRegions.filter((r) => r.owner === d.id).map((r) => ({ base: r.base, length: r.length })),
        irq: null,
      };
      if (fn) {
        desc.pci = { address: fn.address, vendorId: fn.readConfig(0, 2), deviceId: fn.readConfig(2, 2) };
        desc.irq = fn.interruptLine <= 15 ? fn.interruptLine : null;
        // BARs are not decoded until the guest driver enables them: report what firmware assigned.
        const fw = this.firmware.find((a) => a.slot === fn.address.slot);
        if (fw) {
          desc.ports = fw.bars.filter((b) => b.kind === 'io').map((b) => ({ base: b.base, length: b.size }));
          desc.mmio = fw.bars.filter((b) => b.kind === 'mem').map((b) => ({ base: b.base, length: b.size }));
        }
      } else if (typeof (d as { irq?: unknown }).irq === 'number') {
        desc.irq = (d as unknown as { irq: number }).irq;
      }
      if (isNic(d)) desc.mac = formatMac(d.mac);
      const f = this.failures.get(d.id);
      if (f) desc.failure = f;
      return desc;
    });
  }

  /** Text device tree, as `lab config check` prints it. */
  deviceTree(): string {
    const hex = (n: number, w = 4): string => `0x${n.toString(16).padStart(w, '0')}`;
    const lines = [`vm ${this.config.name}: ${this.config.memoryMB} MB, ${this.devices.length} devices`];
    for (const d of this.describe()) {
      const parts = [`  ${d.id.padEnd(10)} ${d.className.padEnd(15)}`];
      if (d.pci) parts.push(`pci ${formatPciAddress(d.pci.address)} [${hex(d.pci.vendorId)}:${hex(d.pci.deviceId)}]`);
      if (d.ports.length) parts.push(`io ${d.ports.map((p) => `${hex(p.base)}-${hex(p.base + p.length - 1)}`).join(',')}`);
      if (d.mmio.length) parts.push(`mmio ${d.mmio.map((p) => `${hex(p.base, 8)}+${hex(p.length)}`).join(',')}`);
      if (d.irq !== null) parts.push(`irq ${d.irq}`);
      if (d.mac) parts.push(`mac ${d.mac}`);
      if (d.state !== 'running') parts.push(`[${d.state}${d.failure ? `: ${d.failure}` : ''}]`);
      lines.push(parts.join('  '));
    }
    for (const b of this.config.backends) lines.push(`  ${b.id.padEnd(10)} ${b.className.padEnd(15)}backend of ${b.frontend}${b.redirects.length ? `  redirects ${b.redirects.join(', ')}` : ''}`);
    return lines.join('\n');
  }
}
