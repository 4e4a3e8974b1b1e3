import type { Clock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import type { ComponentLog, Logger } from '../log.js';
import type { VmConfig } from '../config/types.js';
import { Cpu } from './cpu.js';
import { isNic, type Device, type DeviceContext, type DeviceDescription, type DeviceRegistry, type NicDevice } from './device.js';
import { firmwarePciInit, type FirmwareAssignment } from './firmware.js';
import { IoBus } from './io-bus.js';
import { GuestRam } from './memory.js';
import { formatPciAddress, PciHostBridge, type PciBus } from './pci.js';
import { failStop, guard, guardedClock, guardedPort, type FailStopScope } from './fail-stop.js';
import { PicPair } from './pic.js';
import { Telemetry } from './telemetry.js';
import { formatMac } from '../../net/addr.js';

/**
 * One virtual machine: memory, I/O bus, PIC, PCI, devices created in document order from the
 * config, firmware PCI setup, and the CPU's interrupt pin. A device fault stops that device;
 * a guest fault stops this VM; neither throws into the lab. Every way into a device (register
 * access, frame delivery on its port, its timers, its start) and into the guest (interrupts,
 * timers, continuations) is entered through one fail-stop scope (fail-stop.ts).
 */
export interface VmOptions {
  clock: Clock;
  logger: Logger;
  registry: DeviceRegistry;
}

export type VmState = 'created' | 'running' | 'failed' | 'stopped';

export class Vm {
  readonly memory: GuestRam;
  readonly telemetry: Telemetry;
  readonly io: IoBus;
  readonly pic = new PicPair();
  readonly cpu: Cpu;
  pci: PciHostBridge | undefined;
  readonly devices: Device[] = [];
  readonly failures = new Map<string, string>();
  firmware: FirmwareAssignment[] = [];
  state: VmState = 'created';
  failure: string | undefined;
  readonly log: ComponentLog;
  /** `--debug vmm`: the machine's life — devices created, firmware's PCI assignment, state changes, fail-stops. */
  private readonly vmmLog: ComponentLog;
  /** Listeners told when a device or the whole VM fail-stops. */
  onFailure: (what: string, message: string) => void = () => {};

  private constructor(
    readonly config: VmConfig,
    readonly clock: Clock,
    readonly logger: Logger,
  ) {
    this.log = logger.child(config.name);
    this.vmmLog = this.log.child('vmm');
    this.pic.debug = this.log.child('irq');
    this.memory = new GuestRam(config.memoryMB * 1024 * 1024);
    this.telemetry = new Telemetry(config.telemetry);
    this.io = new IoBus(this.telemetry, this.log.child('io'));
    this.io.onFault = (owner, e) => failStop(this.deviceScope(owner), 'register access', e);
    this.cpu = new Cpu(this.pic, clock, this.telemetry);
    this.cpu.onGuestFault = (e) => failStop(this.guestScope, 'interrupt handler', e);
    const vm = this as Vm;
    this.guestScope = {
      name: config.name,
      get stopped() {
        return vm.state === 'failed' || vm.state === 'stopped';
      },
      fail: (message) => this.failVm(`guest fault: ${message}`),
      log: this.log.child('guest'),
    };
    this.guestClock = guardedClock(clock, this.guestScope, 'guest timer');
  }

  /** Entries into the guest (its interrupt handlers, timers, continuations) fail-stop this VM. */
  readonly guestScope: FailStopScope;
  /** The guest's timer hardware: the lab's clock, each timer an entry into the guest. */
  readonly guestClock: Clock;
  private readonly deviceScopes = new Map<string, FailStopScope>();

  /** The fail-stop scope of device `id` (also of owners that are not devices, e.g. `pci0`). */
  deviceScope(id: string): FailStopScope {
    let scope = this.deviceScopes.get(id);
    if (!scope) {
      const vm = this as Vm;
      scope = {
        name: `${this.config.name}.${id}`,
        get stopped() {
          return vm.failures.has(id) || vm.state === 'failed' || vm.state === 'stopped';
        },
        fail: (message) => this.failDevice(id, message),
        log: this.log.child(id),
      };
      this.deviceScopes.set(id, scope);
    }
    return scope;
  }

  /** Build the machine from a validated config. Configuration conflicts come back as errors. */
  static create(config: VmConfig, options: VmOptions): { ok: true; vm: Vm } | { ok: false; errors: string[] } {
    const vm = new Vm(config, options.clock, options.logger);
    const errors = vm.pic.register(vm.io, 'pic');
    for (const dc of config.devices) {
      const ctx = vm.context(dc.id);
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
      else {
        if (isNic(made)) vm.guardAttach(made);
        vm.devices.push(made);
        if (vm.vmmLog.on) vm.vmmLog.debug(`device ${dc.id} (${dc.className}) created`);
      }
    }
    if (vm.pci) vm.pci.onConflict = (owner, err) => vm.failDevice(owner, `BAR placed over another device: ${err}`);
    if (errors.length > 0) return { ok: false, errors };
    if (vm.pci) vm.firmware = firmwarePciInit(vm.io, vm.pic);
    if (vm.vmmLog.on) {
      for (const a of vm.firmware) vm.vmmLog.debug(`firmware: slot ${a.slot} ${a.bars.map((b) => `${b.kind} 0x${b.base.toString(16)}+0x${b.size.toString(16)}`).join(', ')}`);
    }
    for (const d of vm.devices) if (d.start) guard(vm.deviceScope(d.id), 'start', () => d.start!(), undefined)();
    vm.state = 'running';
    if (vm.vmmLog.on) vm.vmmLog.debug(`created → running (${config.memoryMB} MB, ${vm.devices.length} devices)`);
    return { ok: true, vm };
  }

  /** The bus that the core 'PCI' device class creates. */
  createPciBus(id: string): PciBus | { error: string } {
    if (this.pci) return { error: `a second PCI bus ("${id}"): this machine has one PCI bus` };
    this.pci = new PciHostBridge(this.io, this.pic, 0, this.log.child('pci'));
    const errs = this.pci.register(id);
    if (errs.length > 0) return { error: errs.join('; ') };
    return this.pci;
  }

  /**
   * The device manager's side of `attach`: whatever port the lab hands a NIC, the receiver the
   * model sets on it is entered through the NIC's fail-stop scope. Interposed on the instance,
   * so every model gets it without knowing.
   */
  private guardAttach(nic: NicDevice): void {
    const attach = nic.attach.bind(nic);
    const scope = this.deviceScope(nic.id);
    Object.defineProperty(nic, 'attach', { value: (port: FramePort) => attach(guardedPort(port, scope)), configurable: true, writable: true });
  }

  /** What device `id` is given: the machine, with its clock's timers entered through its scope. */
  context(id: string): DeviceContext {
    const vm = this as Vm;
    return {
      vmName: this.config.name,
      memory: this.memory,
      io: this.io,
      pic: this.pic,
      get pci() {
        return vm.pci;
      },
      clock: guardedClock(this.clock, this.deviceScope(id), 'device timer'),
      scope: this.deviceScope(id),
      telemetry: this.telemetry,
      log: this.log.child(id),
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
    if (this.vmmLog.on) this.vmmLog.debug(`device ${id}: running → failed (fail-stop)`);
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
    if (this.vmmLog.on) this.vmmLog.debug(`${this.state} → failed (fail-stop)`);
    this.state = 'failed';
    this.failure = message;
    this.log.error(`VM ${this.config.name} stopped: ${message}`);
    this.haltAll(message);
    this.onFailure(this.config.name, message);
  }

  stop(reason = 'stopped'): void {
    if (this.state === 'stopped' || this.state === 'failed') return;
    if (this.vmmLog.on) this.vmmLog.debug(`${this.state} → stopped (${reason})`);
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
        desc.irq = this.pci!.intxRoute(fn);
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
