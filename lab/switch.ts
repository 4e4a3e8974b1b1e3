import { formatMac } from '../net/addr.js';
import type { Clock } from '../net/clock.js';
import type { FramePort } from '../net/frame-port.js';

/**
 * A userspace learning bridge (IEEE 802.1D without spanning tree): it learns which port each
 * source MAC lives behind, forwards known unicast to that port only, floods broadcast, multicast
 * and unknown unicast to every other port, and forgets addresses not seen for `agingMs`
 * (300 s, the 802.1D default). Frames are not copied: each port's receiver gets the same bytes,
 * which FramePort ownership allows because nobody modifies a frame after sending it.
 */
export interface SwitchStats {
  forwarded: number;
  flooded: number;
  filtered: number;
  learned: number;
  aged: number;
  drops: number;
}

interface Entry {
  port: number;
  seen: number;
}

export class LearningSwitch {
  private readonly ports: FramePort[] = [];
  private readonly names: string[] = [];
  private readonly table = new Map<string, Entry>();
  readonly stats: SwitchStats = { forwarded: 0, flooded: 0, filtered: 0, learned: 0, aged: 0, drops: 0 };
  readonly maxEntries = 4096;

  constructor(
    private readonly clock: Clock,
    private readonly agingMs = 300_000,
  ) {}

  /** Plug a link end into the switch; frames it receives are switched to the other ports. */
  attach(port: FramePort, name = port.name): number {
    const index = this.ports.length;
    this.ports.push(port);
    this.names.push(name);
    port.setReceiver((frame) => this.input(index, frame));
    return index;
  }

  private key(frame: Uint8Array, offset: number): string {
    return formatMac(frame, offset);
  }

  private input(from: number, frame: Uint8Array): boolean {
    if (frame.length < 14) return false;
    const now = this.clock.now();
    if (!(frame[6]! & 1)) {
      const src = this.key(frame, 6);
      const e = this.table.get(src);
      if (!e) {
        if (this.table.size >= this.maxEntries) this.age(now, true);
        this.table.set(src, { port: from, seen: now });
        this.stats.learned++;
      } else {
        e.port = from; // a station that moved (or a VM restarted behind another port)
        e.seen = now;
      }
    }
    if (!(frame[0]! & 1)) {
      const e = this.table.get(this.key(frame, 0));
      if (e && now - e.seen <= this.agingMs) {
        if (e.port === from) {
          this.stats.filtered++; // both ends on the same segment: nothing to do
          return true;
        }
        this.stats.forwarded++;
        if (!this.ports[e.port]!.send(frame)) this.stats.drops++;
        return true;
      }
    }
    this.stats.flooded++;
    for (let i = 0; i < this.ports.length; i++) {
      if (i !== from && !this.ports[i]!.send(frame)) this.stats.drops++;
    }
    return true;
  }

  private age(now: number, force = false): void {
    for (const [k, e] of this.table) {
      if (force || now - e.seen > this.agingMs) {
        this.table.delete(k);
        this.stats.aged++;
        if (force) return;
      }
    }
  }

  /** The MAC table, for `lab` status output. */
  macTable(): { mac: string; port: string; ageMs: number }[] {
    const now = this.clock.now();
    this.age(now);
    return [...this.table.entries()].map(([mac, e]) => ({ mac, port: this.names[e.port]!, ageMs: now - e.seen }));
  }
}
