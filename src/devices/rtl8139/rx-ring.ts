import { ethernetFcs } from '../ether-crc.js';
import { isDmaFault, type DmaFault, type GuestMemory } from '../../vmm/memory.js';
import { allocBytes } from '../../../net/byte-slab.js';

/**
 * The RTL8139's receive ring in guest memory (datasheet "Receive Buffer" / FACTS.md): RBSTART,
 * 8 KiB << RCR.RBLEN long. Each packet is a record — status (LE16), length including the 4-byte
 * FCS (LE16), the frame, the FCS (LE32) — and the next one starts at the next 4-byte boundary.
 * CBR is where the chip writes next; CAPR + 16 is where the driver has read up to. Without RCR.WRAP
 * a record that runs past the end continues at the start; with it, the chip writes on past the end
 * into the slack the driver allocated (8139too's RX_BUF_WRAP_PAD), so a record is contiguous.
 */
export class RxRing {
  /** CBR. */
  write = 0;
  /** CAPR + 16. */
  read = 0;

  get empty(): boolean {
    return this.read === this.write;
  }

  /** Back to the ring's start: CBR 0, CAPR 0xFFF0. */
  reset(): void {
    this.write = 0;
    this.read = 0;
  }

  /** The driver wrote CAPR. */
  setCapr(capr: number, size: number): void {
    this.read = (capr + 16) % size;
  }

  get capr(): number {
    return (this.read - 16) & 0xffff;
  }

  /** Bytes a frame's record takes, including the round-up to 4. */
  static recordBytes(frameLength: number): number {
    return (4 + frameLength + 4 + 3) & ~3;
  }

  /** Whether a record of `need` bytes fits now; the ring is never filled to CBR = CAPR + 16. */
  fits(need: number, size: number): boolean {
    const used = (this.write - this.read + size) % size;
    return used + need < size;
  }

  /**
   * Write one record for `frame` (already padded to 60 bytes) at CBR and advance CBR. A DMA fault
   * (a ring outside guest memory) is returned, never thrown; CBR then stays where it was.
   */
  store(memory: GuestMemory, base: number, size: number, wrap: boolean, status: number, frame: Uint8Array): true | DmaFault {
    const length = frame.length + 4;
    const total = 4 + length;
    const fcs = ethernetFcs(frame);
    if (wrap || this.write + total <= size) {
      // One contiguous DMA straight into guest memory (writeWith: no copy, and memory with other
      // observers, v86's JIT, hears of the store).
      const r = memory.writeWith(base + this.write, total, (dst) => writeRecord(dst, status, length, frame, fcs));
      if (isDmaFault(r)) return r;
    } else {
      const record = allocBytes(total);
      writeRecord(record, status, length, frame, fcs);
      const first = size - this.write;
      let r = memory.write(base + this.write, record.subarray(0, first));
      if (!isDmaFault(r)) r = memory.write(base, record.subarray(first));
      if (isDmaFault(r)) return r;
    }
    this.write = (this.write + RxRing.recordBytes(frame.length)) % size;
    return true;
  }
}

function writeRecord(out: Uint8Array, status: number, length: number, frame: Uint8Array, fcs: number): void {
  out[0] = status & 0xff;
  out[1] = status >> 8;
  out[2] = length & 0xff;
  out[3] = length >> 8;
  out.set(frame, 4);
  const o = 4 + frame.length;
  out[o] = fcs & 0xff;
  out[o + 1] = (fcs >>> 8) & 0xff;
  out[o + 2] = (fcs >>> 16) & 0xff;
  out[o + 3] = fcs >>> 24;
}
