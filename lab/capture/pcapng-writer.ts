import { BatchFile } from './batch-file.js';
import {
  EPB_FLAG_INBOUND,
  EPB_FLAG_OUTBOUND,
  encodeIdb,
  encodeIsb,
  encodeShb,
  epbLength,
  pad4,
  writeEpb,
  type SectionInfo,
} from './pcapng-blocks.js';
import type { PcapWriterOptions } from './pcap-writer.js';
import type { CaptureDirection } from './sink.js';
import { writerBasics } from './pcap-writer.js';

export interface PcapngWriterOptions extends PcapWriterOptions {
  /** Section header options (shb_userappl, shb_os). */
  section?: SectionInfo;
}

interface Iface {
  name: string;
  description?: string;
  received: number;
  dropped: number;
}

/**
 * A pcapng file with one interface per hop it records: each hop's own file has one, the merged
 * `all.pcapng` one per hop. What Wireshark shows as "Interface name/description", "Direction",
 * "Packet id", a packet comment on a frame the next element dropped, and, from the Interface
 * Statistics Block written when a file is finished, "Received/Dropped packets".
 *
 * Interfaces may be added while the capture runs (an IDB may appear anywhere before its first
 * packet); a ring file starts with every interface again so it stands on its own, and ends with a
 * statistics block per interface (counts since the capture started, as dumpcap's do).
 */
export class PcapngWriter extends BatchFile {
  readonly snaplen: number;
  readonly precision: 'us' | 'ns';
  private readonly unitsPerSec: bigint;
  private readonly section: SectionInfo;
  private readonly interfaces: Iface[] = [];
  private readonly startMs: number;
  /** Interface of the last record written, for `noteDrop`'s comment. */
  private lastIf = -1;
  frames = 0;
  bytes = 0;

  constructor(filePath: string, options: PcapngWriterOptions) {
    const { snaplen, timebase } = writerBasics(options);
    super(filePath, options, epbLength(snaplen) + 260, timebase);
    this.snaplen = snaplen;
    this.precision = options.precision ?? 'us';
    this.unitsPerSec = this.precision === 'ns' ? 1_000_000_000n : 1_000_000n;
    this.section = options.section ?? { userAppl: 'netlab' };
    this.startMs = timebase.clock.now();
    this.open();
  }

  /** Add an interface named `name`; returns its interface id for `writeFrame`. */
  addInterface(name: string, description?: string): number {
    const iface: Iface = { name, received: 0, dropped: 0 };
    if (description) iface.description = description;
    // Append before registering: if the append rotates, the fresh file's header must not already
    // hold this interface, or it would appear twice and shift the interface ids.
    this.appendRaw(this.idb(iface));
    this.interfaces.push(iface);
    return this.interfaces.length - 1;
  }

  /** A description learnt after the interface was added; files started from now on carry it. */
  describe(ifId: number, description: string): void {
    const i = this.interfaces[ifId];
    if (i && !i.description) i.description = description;
  }

  protected fileHeader(): Uint8Array {
    return Buffer.concat([encodeShb(this.section), ...this.interfaces.map((i) => this.idb(i))]);
  }

  protected override fileTrailer(): Uint8Array | null {
    if (this.interfaces.length === 0) return null;
    const now = this.timebase.ticks(this.timebase.clock.now(), this.unitsPerSec);
    const start = this.timebase.ticks(this.startMs, this.unitsPerSec);
    return Buffer.concat(
      this.interfaces.map((i, id) => encodeIsb({ interfaceId: id, ts: now, startTime: start, endTime: now, received: BigInt(i.received), dropped: BigInt(i.dropped) })),
    );
  }

  private idb(i: Iface): Buffer {
    return encodeIdb({ name: i.name, ...(i.description ? { description: i.description } : {}), snaplen: this.snaplen, tsresolDigits: this.precision === 'ns' ? 9 : 6 });
  }

  /** Record `frame` on interface `ifId` at clock time `clockMs`, with its direction and packet id. */
  writeFrame(ifId: number, frame: Uint8Array, direction: CaptureDirection, clockMs: number, packetId = 0): void {
    const caplen = Math.min(frame.length, this.snaplen);
    const r = this.reserve(epbLength(caplen));
    if (!r) return;
    const ts = this.timebase.ticks(clockMs, this.unitsPerSec);
    const len = writeEpb(r.buf, r.at, ifId, ts, frame, caplen, direction === 'in' ? EPB_FLAG_INBOUND : EPB_FLAG_OUTBOUND, packetId);
    this.commit(len, frame.length);
    const i = this.interfaces[ifId];
    if (i) i.received++;
    this.lastIf = ifId;
    this.frames++;
    this.bytes += frame.length;
  }

  /**
   * The frame last written on `ifId` was dropped by the next element: count it for the statistics
   * block and, while the record is still unflushed and the last one written, add a packet comment
   * saying so (`--follow` and Wireshark show it). A record already on disk keeps no comment; the
   * count still reaches the statistics block.
   */
  noteDrop(ifId: number, reason: string): void {
    const i = this.interfaces[ifId];
    if (!i) return;
    i.dropped++;
    if (this.lastIf !== ifId) return;
    const comment = Buffer.from(`dropped: ${reason}`, 'utf8');
    this.amendLast((old) => {
      const caplen = old.readUInt32LE(20);
      const optsAt = 28 + pad4(caplen);
      const flags = old.readUInt32LE(optsAt + 4);
      const packetId = Number(old.readBigUInt64LE(optsAt + 12));
      const ts = (BigInt(old.readUInt32LE(12)) << 32n) | BigInt(old.readUInt32LE(16));
      const frame = Buffer.from(old.subarray(28, 28 + caplen));
      const out = Buffer.alloc(epbLength(caplen, comment));
      // The original length is restored after writing: the record may have been cut to snaplen.
      writeEpb(out, 0, ifId, ts, frame, caplen, flags, packetId, comment);
      out.writeUInt32LE(old.readUInt32LE(24), 24);
      return out;
    });
    this.lastIf = -1;
  }
}
