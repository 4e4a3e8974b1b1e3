import type { Ipv4Addr } from './addr.js';
import type { FramePort } from './frame-port.js';

/** Per-interface counters (what `ifconfig` shows, plus drops by cause). */
export interface NetifCounters {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Frames the driver/port refused. */
  txDrops: number;
  /** Frames that were not for us, malformed, or of an unknown EtherType. */
  rxDropsMalformed: number;
  rxDropsNotForUs: number;
  rxDropsUnknownType: number;
}

/**
 * A network interface: a FramePort (the NIC driver's, or a link end), its hardware address and
 * its IPv4 configuration. The stack owns the frames that cross it.
 */
export class Netif {
  addr: Ipv4Addr = 0;
  prefixLength = 0;
  gateway: Ipv4Addr = 0;
  up = false;
  /** Extra addresses this interface answers ARP and IP for (a user-mode gateway's .2 and .3). */
  readonly aliases = new Set<Ipv4Addr>();
  readonly counters: NetifCounters = { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, txDrops: 0, rxDropsMalformed: 0, rxDropsNotForUs: 0, rxDropsUnknownType: 0 };

  constructor(
    readonly name: string,
    readonly port: FramePort,
    readonly mac: Uint8Array,
    public mtu = 1500,
  ) {}

  get configured(): boolean {
    return this.addr !== 0;
  }

  /** The subnet's directed broadcast address. */
  get broadcast(): Ipv4Addr {
    if (this.prefixLength === 0) return 0xffffffff;
    const mask = this.prefixLength === 32 ? 0xffffffff : (~(0xffffffff >>> this.prefixLength)) >>> 0;
    return ((this.addr & mask) | (~mask >>> 0)) >>> 0;
  }

  owns(a: Ipv4Addr): boolean {
    return (a === this.addr && a !== 0) || this.aliases.has(a);
  }

  onLink(a: Ipv4Addr): boolean {
    if (!this.configured || this.prefixLength === 0) return false;
    const mask = this.prefixLength === 32 ? 0xffffffff : (~(0xffffffff >>> this.prefixLength)) >>> 0;
    return ((a & mask) >>> 0) === ((this.addr & mask) >>> 0);
  }
}
