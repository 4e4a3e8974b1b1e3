/**
 * Test helpers for moving bytes over a TcpConnection at the raw callback level: what the TCP,
 * driver and two-guest suites each wrote for themselves before.
 */
import { createHash } from 'node:crypto';
import type { Ipv4Addr } from '../../net/addr.js';
import type { VirtualClock } from '../../net/clock.js';
import type { Stack } from '../../net/stack.js';
import type { TcpConnection } from '../../net/tcp/connection.js';

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Write all of `data` on `c` as send-buffer room frees (onConnected, onSent), then half-close. */
export function sendAll(c: TcpConnection, data: Uint8Array): void {
  let off = 0;
  const pump = (): void => {
    while (off < data.length) {
      const n = c.write(data.subarray(off, Math.min(data.length, off + 65536)));
      if (n === 0) return;
      off += n;
    }
    c.shutdown();
  };
  c.onConnected = pump;
  c.onSent = pump;
}

export interface Collected {
  readonly chunks: Uint8Array[];
  /** Bytes received so far. */
  received: number;
  /** The peer's FIN arrived. */
  ended: boolean;
  bytes(): Buffer;
}

/** Keep what `c` receives (copied; the window is released as it goes); `onChunk` sees each piece. */
export function collect(c: TcpConnection, onChunk?: (d: Uint8Array) => void): Collected {
  const out: Collected = { chunks: [], received: 0, ended: false, bytes: () => Buffer.concat(out.chunks) };
  c.onData = (d) => {
    out.chunks.push(d.slice());
    out.received += d.length;
    c.recved(d.length);
    onChunk?.(d);
  };
  c.onEnd = () => (out.ended = true);
  return out;
}

/**
 * Send `data` from `from` to a listener on `to` at `addr`:`port` and close; run the clock until the
 * server saw the FIN (or the limits). What the server collected.
 */
export function bulkTo(clock: VirtualClock, from: Stack, to: Stack, addr: Ipv4Addr, port: number, data: Uint8Array, limitMs = 120_000, maxSteps = 10_000_000): Collected {
  let got = null as Collected | null;
  to.tcp.listen(port, (c) => (got = collect(c)));
  sendAll(from.tcp.connect(addr, port), data);
  clock.runUntil(() => got?.ended === true, limitMs, maxSteps);
  if (!got) throw new Error(`no connection reached port ${port}`);
  return got;
}

/** Send `data` to the echo service (port 7) at `to` and wait for all of it to come back. */
export function echoExchange(clock: VirtualClock, from: Stack, to: Ipv4Addr, data: Uint8Array, limitMs: number, maxSteps: number): Collected {
  const c = from.tcp.connect(to, 7);
  sendAll(c, data);
  const back = collect(c);
  clock.runUntil(() => back.ended, limitMs, maxSteps);
  return back;
}

/** GET `path` from the HTTP server at `to`:80 with Connection: close; the whole response as text. */
export function httpGet(clock: VirtualClock, from: Stack, to: Ipv4Addr, path: string): string {
  const c = from.tcp.connect(to, 80);
  c.onConnected = () => c.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
  const got = collect(c);
  clock.runUntil(() => got.ended, 60_000, 5_000_000);
  c.close();
  return got.bytes().toString('latin1');
}
