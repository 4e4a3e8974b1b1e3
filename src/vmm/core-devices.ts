import type { DeviceRegistry, Device } from './device.js';

/**
 * The core device classes the XML may name: the 8259A (always present; listing it documents
 * the machine, as Palacios' configs do) and the PCI bus, which NICs attach to with <bus>.
 */
class CoreDevice implements Device {
  state: Device['state'] = 'running';
  constructor(
    readonly id: string,
    readonly className: string,
  ) {}
  counters(): Record<string, number> {
    return {};
  }
  stop(): void {
    this.state = 'stopped';
  }
}

export function registerCoreDevices(registry: DeviceRegistry): void {
  registry.register('8259A', (_ctx, cfg) => new CoreDevice(cfg.id, '8259A'));
  registry.register('PCI', (ctx, cfg) => {
    if (!ctx.createPciBus) return { error: 'this machine cannot create a PCI bus' };
    const bus = ctx.createPciBus(cfg.id);
    if ('error' in bus) return bus;
    return new CoreDevice(cfg.id, 'PCI');
  });
}
