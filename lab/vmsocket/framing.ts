import { MAX_FRAME, MIN_FRAME } from '../../net/frame-port.js';

/**
 * The framing of QEMU's `-netdev stream` (and legacy `-netdev socket` listen/connect): each
 * Ethernet frame, without FCS, is preceded by its length as a 4-byte big-endian number. QEMU
 * closes the connection on a length above 4096 + 65536 (NET_BUFSIZE); passt refuses lengths under
 * 14 or over 65535. Frames arrive split across reads, or several in one read: the decoder keeps
 * what it has of a frame across calls (QEMU's net_fill_rstate, passt's tap.c).
 */
export const STREAM_HEADER_BYTES = 4;
/** QEMU's NET_BUFSIZE: a longer length makes QEMU drop the connection, so we never send one. */
export const QEMU_NET_BUFSIZE = 4096 + 65536;

export function encodeStreamFrame(frame: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(STREAM_HEADER_BYTES + frame.length);
  b.writeUInt32BE(frame.length, 0);
  b.set(frame, STREAM_HEADER_BYTES);
  return b;
}

export type DeframeEvent = { kind: 'frame'; frame: Uint8Array } | { kind: 'oversize'; length: number };
/** The frames complete so far, and an error once the framing is lost (frames before it still count). */
export type DeframeResult = { ok: true; events: DeframeEvent[] } | { ok: false; error: string; events: DeframeEvent[] };

export class StreamDeframer {
  /** Bytes of an incomplete header or frame carried over from earlier chunks. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private failed: string | null = null;

  /**
   * Feed one chunk as read from the socket. Complete frames come back in order. A length the
   * peer could never legitimately send (under 14, or over QEMU's NET_BUFSIZE) is an error: the
   * stream has lost its framing and the caller must close the connection. Frames between 64 KiB
   * and NET_BUFSIZE are valid framing but too long for a FramePort; they are skipped ('oversize').
   */
  push(chunk: Buffer): DeframeResult {
    if (this.failed) return { ok: false, error: this.failed, events: [] };
    let buf = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      buf = Buffer.concat(this.pending, this.pendingBytes + chunk.length);
      this.pending = [];
      this.pendingBytes = 0;
    }
    const events: DeframeEvent[] = [];
    let off = 0;
    while (buf.length - off >= STREAM_HEADER_BYTES) {
      const len = buf.readUInt32BE(off);
      if (len < MIN_FRAME || len > QEMU_NET_BUFSIZE) {
        this.failed = `frame length ${len} at stream byte ${off}: outside ${MIN_FRAME}..${QEMU_NET_BUFSIZE} (lost framing)`;
        return { ok: false, error: this.failed, events };
      }
      if (buf.length - off - STREAM_HEADER_BYTES < len) break;
      const start = off + STREAM_HEADER_BYTES;
      // A fresh chunk is ours alone, so a frame inside it is handed on without a copy.
      if (len > MAX_FRAME) events.push({ kind: 'oversize', length: len });
      else events.push({ kind: 'frame', frame: buf.subarray(start, start + len) });
      off = start + len;
    }
    if (off < buf.length) {
      const rest = buf.subarray(off);
      this.pending.push(rest);
      this.pendingBytes = rest.length;
    }
    return { ok: true, events };
  }

  /** Bytes held of an incomplete frame (a connection closed with some is a truncated frame). */
  get buffered(): number {
    return this.pendingBytes;
  }
}
