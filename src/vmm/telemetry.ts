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

  /** Exits per device register: device → (offset << 2 | access kind) → count. */
  private readonly byRegister = new Map<string, Map<number, number>>();

  /** An exit that hit register `offset` (relative to the device's region) of `device`. */
  recordRegister(kind: ExitKind, device: string, offset: number): void {
    let m = this.byRegister.get(device);
    if (!m) {
      m = new Map();
      this.byRegister.set(device, m);
    }
    const key = (offset << 2) | REG_KINDS.indexOf(kind);
    m.set(key, (m.get(key) ?? 0) + 1);
  }

  /** The busiest registers of `device`: offset, access kind and count, most exits first. */
  registers(device: string, limit = 10): { offset: number; kind: ExitKind; count: number }[] {
    const m = this.byRegister.get(device);
    if (!m) return [];
    return [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([key, count]) => ({ offset: key >>> 2, kind: REG_KINDS[key & 3]!, count }));
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
      const regs = this.registers(dev, 6);
      if (regs.length > 0) lines.push(`  ${''.padEnd(18)} top registers: ${regs.map((r) => `0x${r.offset.toString(16).padStart(2, '0')} ${r.kind}=${r.count}`).join(', ')}`);
    }
    return lines.join('\n');
  }
}

const REG_KINDS: ExitKind[] = ['io-in', 'io-out', 'mmio-read', 'mmio-write'];

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
