/**
 * VMM telemetry (Palacios' telemetry: exits per kind with their handling time), kept per device
 * too. Printed at the end of a run and on demand.
 */
export type ExitKind = 'io-in' | 'io-out' | 'mmio-read' | 'mmio-write' | 'irq' | 'dma';

interface ExitStat {
  count: number;
  totalNs: number;
}

export class Telemetry {
  private readonly byKind = new Map<ExitKind, ExitStat>();
  private readonly byDevice = new Map<string, Map<ExitKind, ExitStat>>();
  /** Timing each exit costs a clock read; on by default as in Palacios' telemetry, off for benches. */
  timing: boolean;

  constructor(timing = true) {
    this.timing = timing;
  }

  record(kind: ExitKind, device: string, ns = 0): void {
    bump(this.byKind, kind, ns);
    let d = this.byDevice.get(device);
    if (!d) {
      d = new Map();
      this.byDevice.set(device, d);
    }
    bump(d, kind, ns);
  }

  total(kind?: ExitKind, device?: string): number {
    const map = device === undefined ? this.byKind : this.byDevice.get(device);
    if (!map) return 0;
    if (kind) return map.get(kind)?.count ?? 0;
    let n = 0;
    for (const s of map.values()) n += s.count;
    return n;
  }

  snapshot(): TelemetrySnapshot {
    const kinds: TelemetrySnapshot['kinds'] = {};
    for (const [k, s] of this.byKind) kinds[k] = { count: s.count, avgNs: s.count ? Math.round(s.totalNs / s.count) : 0 };
    const devices: TelemetrySnapshot['devices'] = {};
    for (const [dev, m] of this.byDevice) {
      const entry: Record<string, number> = {};
      for (const [k, s] of m) entry[k] = s.count;
      devices[dev] = entry;
    }
    return { kinds, devices };
  }

  /** Human-readable report, as printed at the end of a run. */
  report(title = 'telemetry'): string {
    const snap = this.snapshot();
    const lines = [`${title}: ${this.total()} exits`];
    for (const [k, s] of Object.entries(snap.kinds)) lines.push(`  ${k.padEnd(11)} ${String(s.count).padStart(10)}  avg ${s.avgNs} ns`);
    for (const [dev, m] of Object.entries(snap.devices)) {
      const parts = Object.entries(m).map(([k, n]) => `${k}=${n}`);
      lines.push(`  ${dev.padEnd(18)} ${parts.join(' ')}`);
    }
    return lines.join('\n');
  }
}

export interface TelemetrySnapshot {
  kinds: Partial<Record<ExitKind, { count: number; avgNs: number }>>;
  devices: Record<string, Record<string, number>>;
}

function bump(map: Map<ExitKind, ExitStat>, kind: ExitKind, ns: number): void {
  const s = map.get(kind);
  if (s) {
    s.count++;
    s.totalNs += ns;
  } else map.set(kind, { count: 1, totalNs: ns });
}
