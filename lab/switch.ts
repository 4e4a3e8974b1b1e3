import { NO_DEBUG, type DebugLog } from '../net/debug.js';
import { formatMac } from '../net/addr.js';
import type { Clock } from '../net/clock.js';
import { CHECKSUM_PARTIAL, GSO_MAX_IP, type FramePort, type TxInfo } from '../net/frame-port.js';
import { finishPartialTcpv4, segmentTcpv4, tcpv4Layout } from '../src/devices/tcp-gso.js';
import { copyBytes } from '../net/byte-slab.js';
import { isLent, settleFrame } from '../net/lend-pool.js';

/**
 * Largest frame sent to a port that takes no GSO: 1500-byte MTU, Ethernet header and one 802.1Q
 * tag. A TAP passes frames up to 64 KiB whatever its MTU (and a guest may send such frames too),
 * but a NIC's receive path is built for the MTU: beyond it the FramePort contract allows only
 * TCP/IPv4 GSO segments, and only to a port whose far end offered them.
 */
export const SWITCH_MAX_FRAME = 1518;

/**
 * A userspace learning bridge (IEEE 802.1D without spanning tree): it learns which port each
 * source MAC lives behind, forwards known unicast to that port only, floods broadcast, multicast
 * and unknown unicast to every other port, and forgets addresses not seen for `agingMs`
 * (300 s, the 802.1D default). Frames are not copied: each port's receiver gets the same bytes,
 * which FramePort ownership allows because nobody modifies a frame after sending it.
 *
 * GSO: the switch takes GSO frames on every port (`offerGso(true)`) and carries them whole to a
 * port whose far end takes them (a virtio-net guest with GUEST_TSO4, a TAP with offloads); for any
 * other port it cuts them into MTU-sized segments.
 *
 * Partial checksums (TxInfo.checksumPartial): taken on every port, passed on with the frame to a
 * port that takes them (a virtio-net guest with GUEST_CSUM, a TAP with offloads), and finished
 * once, in place, before the frame goes to any port that does not (cut segments get their own).
 */
export interface SwitchStats {
  forwarded: number;
  flooded: number;
  filtered: number;
  learned: number;
  aged: number;
  drops: number;
  /** Frames over SWITCH_MAX_FRAME not sent to a port that cannot take them (counted per port). */
  oversize: number;
  /** GSO frames cut into segments for a port that does not take them, and the segments made. */
  gsoCut: number;
  gsoSegments: number;
}

interface Entry {
  port: number;
  seen: number;
}

export class LearningSwitch {
  private readonly ports: FramePort[] = [];
  private readonly names: string[] = [];
  /** Keyed by the 48-bit MAC as a number: no string per frame on the forwarding path. */
  private readonly table = new Map<number, Entry>();
  readonly stats: SwitchStats = { forwarded: 0, flooded: 0, filtered: 0, learned: 0, aged: 0, drops: 0, oversize: 0, gsoCut: 0, gsoSegments: 0 };
  readonly maxEntries = 4096;

  constructor(
    private readonly clock: Clock,
    private readonly agingMs = 300_000,
    /** `--debug switch`: learning, moves, aging, and each drop with its reason. */
    private readonly debug: DebugLog = NO_DEBUG,
  ) {}

  /** Plug a link end into the switch; frames it receives are switched to the other ports. */
  attach(port: FramePort, name = port.name): number {
    const index = this.ports.length;
    this.ports.push(port);
    this.names.push(name);
    port.setReceiver((frame, info) => this.input(index, frame, info?.checksumPartial === true));
    // The switch takes GSO frames on every port and cuts them only for ports that do not (output),
    // and partial checksums, which it finishes only for ports that do not take them.
    port.offerGso?.(true, true);
    return index;
  }

  private key(frame: Uint8Array, offset: number): number {
    return (frame[offset]! * 0x10000 + ((frame[offset + 1]! << 8) | frame[offset + 2]!)) * 0x1000000 + ((frame[offset + 3]! << 16) | (frame[offset + 4]! << 8) | frame[offset + 5]!);
  }

  private input(from: number, frame: Uint8Array, partial: boolean): boolean {
    if (frame.length < 14) {
      if (this.debug.on) this.debug.debug(`drop (runt, ${frame.length} bytes) from ${this.names[from]}`);
      return false;
    }
    const now = this.clock.now();
    if (!(frame[6]! & 1)) {
      const src = this.key(frame, 6);
      const e = this.table.get(src);
      if (!e) {
        if (this.table.size >= this.maxEntries) this.age(now, true);
        this.table.set(src, { port: from, seen: now });
        this.stats.learned++;
        if (this.debug.on) this.debug.debug(`learned ${macName(src)} on ${this.names[from]}`);
      } else {
        if (e.port !== from && this.debug.on) this.debug.debug(`${macName(src)} moved ${this.names[e.port]} → ${this.names[from]}`);
        e.port = from; // a station that moved (or a VM restarted behind another port)
        e.seen = now;
      }
    }
    if (!(frame[0]! & 1)) {
      const e = this.table.get(this.key(frame, 0));
      if (e && now - e.seen <= this.agingMs) {
        if (e.port === from) {
          this.stats.filtered++; // both ends on the same segment: nothing to do
          if (this.debug.on) this.debug.debug(`filtered ${formatMac(frame, 0)}: destination on the port it came from (${this.names[from]})`);
          return true;
        }
        this.stats.forwarded++;
        // Cut into segments, the frame itself went nowhere: its way ends here (lend-pool.ts).
        if (!this.output(e.port, frame, partial && this.staysPartialFor(e.port, frame))) settleFrame(frame);
        return true;
      }
    }
    this.stats.flooded++;
    if (this.debug.on) this.debug.debug(`flood ${formatMac(frame, 0)} from ${this.names[from]}, ${frame.length} bytes`);
    // Every port gets the same bytes: finished for all if any port needs them finished.
    let stillPartial = partial;
    for (let i = 0; stillPartial && i < this.ports.length; i++) if (i !== from) stillPartial = this.staysPartialFor(i, frame);
    // A lent buffer goes back when its frame's way ends, so each port gets a copy of its own.
    const lent = isLent(frame);
    for (let i = 0; i < this.ports.length; i++) if (i !== from) this.output(i, lent ? copyBytes(frame) : frame, stillPartial);
    if (lent) settleFrame(frame);
    return true;
  }

  /**
   * A frame that came with its checksum partial, about to go to port `index`: true when it may
   * stay partial there; otherwise it is finished in place first (false). A GSO frame cut for the
   * port needs nothing: every segment gets its own checksums.
   */
  private staysPartialFor(index: number, frame: Uint8Array): boolean {
    const port = this.ports[index]!;
    if (port.gsoChecksumPartial === true) return true;
    if (frame.length > SWITCH_MAX_FRAME && port.gso !== true) return true;
    finishPartialTcpv4(frame);
    return false;
  }

  /**
   * Send to one port. A frame over SWITCH_MAX_FRAME goes whole only to a port that takes GSO and
   * only as a TCP/IPv4 GSO frame; to any other port such a frame is cut into MTU-sized segments
   * (as Linux's bridge leaves GSO to the egress device), and anything else that large is dropped.
   */
  /** Returns whether the frame itself went to the port (not cut, not dropped). */
  private output(index: number, frame: Uint8Array, partial: boolean): boolean {
    const port = this.ports[index]!;
    if (frame.length <= SWITCH_MAX_FRAME || (port.gso === true && isTcpIpv4Gso(frame))) {
      this.send(index, frame, partial ? CHECKSUM_PARTIAL : undefined);
      return true;
    }
    const l = isTcpIpv4Gso(frame) ? tcpv4Layout(frame) : null;
    if (!l) {
      this.stats.oversize++;
      this.stats.drops++;
      if (this.debug.on) this.debug.debug(`drop (oversize, ${frame.length} bytes > ${SWITCH_MAX_FRAME}) to ${this.names[index]}`);
      return false;
    }
    this.stats.gsoCut++;
    if (this.debug.on) this.debug.debug(`cut a ${frame.length}-byte GSO frame for ${this.names[index]}`);
    for (const piece of segmentTcpv4(frame, l, 1500 - (l.hdrLen - 14))) {
      this.stats.gsoSegments++;
      this.send(index, piece);
    }
    return false;
  }

  private send(index: number, frame: Uint8Array, info?: TxInfo): void {
    if (!this.ports[index]!.send(frame, info)) {
      this.stats.drops++;
      if (this.debug.on) this.debug.debug(`drop (${this.names[index]} refused the frame, ${frame.length} bytes)`);
    }
  }

  private age(now: number, force = false): void {
    for (const [k, e] of this.table) {
      if (force || now - e.seen > this.agingMs) {
        this.table.delete(k);
        this.stats.aged++;
        if (this.debug.on) this.debug.debug(`aged out ${macName(k)}${force ? ' (table full)' : ''}`);
        if (force) return;
      }
    }
  }

  /** The MAC table, for `lab` status output. */
  macTable(): { mac: string; port: string; ageMs: number }[] {
    const now = this.clock.now();
    this.age(now);
    return [...this.table.entries()].map(([mac, e]) => ({ mac: macName(mac), port: this.names[e.port]!, ageMs: now - e.seen }));
  }
}

/** A MAC table key back as `aa:bb:cc:dd:ee:ff`. */
function macName(key: number): string {
  const b = new Uint8Array(6);
  for (let i = 5, k = key; i >= 0; i--, k = Math.floor(k / 256)) b[i] = k % 256;
  return formatMac(b);
}

/** A TCP/IPv4 frame whose IP datagram fits a GSO frame (what a GSO-taking receiver accepts). */
function isTcpIpv4Gso(frame: Uint8Array): boolean {
  if (frame.length < 14 + 20 || frame[12] !== 0x08 || frame[13] !== 0x00) return false;
  const ipLen = (frame[16]! << 8) | frame[17]!;
  return frame[14]! >> 4 === 4 && frame[23] === 6 && ipLen <= GSO_MAX_IP && 14 + ipLen <= frame.length;
}
