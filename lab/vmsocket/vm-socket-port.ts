import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { emptyStats, MAX_FRAME, MIN_FRAME, type FramePort, type FramePortStats, type FrameReceiver } from '../../net/frame-port.js';
import { encodeStreamFrame, StreamDeframer } from './framing.js';
import type { SocketAddr, VmSocketSpec } from './spec.js';
import { batchThisTurn } from '../socket-batch.js';

/**
 * A VM's socket netdev as a FramePort (the contract in net/frame-port.ts): the lab's end of QEMU's
 * `-netdev stream|dgram|socket`, as passt is. Frames from the VM go to the receiver; frames sent
 * here go to the VM. No frame is ever sent longer than MAX_FRAME (QEMU drops the connection over
 * 64 KiB + 4 KiB). While no VM is connected, sends are counted drops, as on an unplugged cable.
 * A stream that loses its framing (a bad length) is closed and counted; the port stays open for
 * the VM to connect again (QEMU's reconnect-ms=), and the lab process never fails because of it.
 */
export interface VmSocketCounters {
  connections: number;
  disconnects: number;
  /** Streams closed because a length was outside 14..NET_BUFSIZE. */
  badLength: number;
  /** Frames over 64 KiB from the VM, skipped. */
  oversize: number;
  /** Connections refused because a VM was already connected. */
  refused: number;
  /** Sends dropped because the socket's send buffer was over its bound. */
  backlogDrops: number;
}

/** Bytes the lab lets queue towards a slow VM before dropping (as a full NIC queue drops). */
export const SEND_BACKLOG_LIMIT = 4 * 1024 * 1024;

export interface VmSocketPort extends FramePort {
  readonly spec: VmSocketSpec;
  /** The address the lab's end has (the port chosen when the spec said 0). */
  readonly bound: SocketAddr;
  readonly counters: VmSocketCounters;
  /** Resolves when a VM is first connected (stream) or first heard from (dgram). */
  readonly connected: Promise<void>;
  /** Log lines (connections, closes and why). */
  onEvent: ((line: string) => void) | null;
  close(): void;
}

export type OpenResult = { ok: true; port: VmSocketPort } | { ok: false; error: string };

function emptyCounters(): VmSocketCounters {
  return { connections: 0, disconnects: 0, badLength: 0, oversize: 0, refused: 0, backlogDrops: 0 };
}

export async function openVmSocket(spec: VmSocketSpec, name: string): Promise<OpenResult> {
  if (spec.kind === 'dgram') return DgramVmPort.open(spec, name);
  return spec.role === 'server' ? StreamVmPort.listen(spec, name) : StreamVmPort.connect(spec, name);
}

class StreamVmPort implements VmSocketPort {
  readonly stats: FramePortStats = emptyStats();
  readonly counters = emptyCounters();
  onEvent: ((line: string) => void) | null = null;
  private receiver: FrameReceiver | null = null;
  private socket: Socket | null = null;
  private server: Server | null = null;
  private closed = false;
  private retry: NodeJS.Timeout | null = null;
  private resolveConnected!: () => void;
  readonly connected: Promise<void>;

  private constructor(
    readonly name: string,
    readonly spec: VmSocketSpec & { kind: 'stream' },
    public bound: SocketAddr,
  ) {
    this.connected = new Promise((r) => (this.resolveConnected = r));
  }

  static listen(spec: VmSocketSpec & { kind: 'stream' }, name: string): Promise<OpenResult> {
    const a = spec.addr;
    if (a.type === 'unix' && existsSync(a.path)) {
      // A socket file left by an earlier run would make listen fail with EADDRINUSE; anything
      // else at that path is not ours to remove.
      if (!lstatSync(a.path).isSocket()) return Promise.resolve({ ok: false, error: `${a.path} exists and is not a socket: choose another --vm-socket path` });
      unlinkSync(a.path);
    }
    const port = new StreamVmPort(name, spec, a);
    return new Promise((resolve) => {
      const server = createServer((s) => port.adopt(s));
      server.once('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, error: `cannot listen on ${a.type === 'unix' ? a.path : `${a.host}:${a.port}`}: ${e.code ?? e.message}` }));
      const onListening = (): void => {
        server.removeAllListeners('error');
        server.on('error', (e) => port.event(`listener error: ${e.message}`));
        const addr = server.address();
        if (a.type === 'inet' && addr && typeof addr === 'object') port.bound = { type: 'inet', host: addr.address, port: addr.port };
        port.server = server;
        resolve({ ok: true, port });
      };
      if (a.type === 'unix') server.listen(a.path, onListening);
      else server.listen(a.port, a.host, onListening);
    });
  }

  /** The lab connects to a VM that listens (QEMU server=on); retries until it is up or we close. */
  static connect(spec: VmSocketSpec & { kind: 'stream' }, name: string): Promise<OpenResult> {
    const port = new StreamVmPort(name, spec, spec.addr);
    port.dial();
    return Promise.resolve({ ok: true, port });
  }

  private dial(): void {
    if (this.closed || this.socket) return;
    const a = this.spec.addr;
    const s = a.type === 'unix' ? createConnection(a.path) : createConnection(a.port, a.host);
    s.once('connect', () => {
      s.removeAllListeners('error');
      this.adopt(s);
    });
    s.once('error', () => {
      s.destroy();
      if (!this.closed) this.retry = setTimeout(() => this.dial(), 200);
    });
  }

  private adopt(s: Socket): void {
    if (this.closed || this.socket) {
      this.counters.refused++;
      this.event(`refused a second connection (a VM is already connected on ${this.name})`);
      s.destroy();
      return;
    }
    this.socket = s;
    this.counters.connections++;
    s.setNoDelay(true);
    const deframer = new StreamDeframer();
    this.event(`VM connected on ${this.name}`);
    this.resolveConnected();
    s.on('data', (chunk: Buffer) => {
      const r = deframer.push(chunk);
      for (const e of r.events) {
        if (e.kind === 'oversize') {
          this.counters.oversize++;
          this.stats.rxDrops++;
          continue;
        }
        this.deliver(e.frame);
      }
      if (!r.ok) {
        this.counters.badLength++;
        this.event(`closing the VM connection on ${this.name}: ${r.error}`);
        s.destroy();
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      if (this.socket === s) this.socket = null;
      this.counters.disconnects++;
      this.event(`VM disconnected from ${this.name}${deframer.buffered ? ` (${deframer.buffered} bytes of a frame cut off)` : ''}`);
      if (this.spec.role === 'client' && !this.closed) this.retry = setTimeout(() => this.dial(), 200);
    });
  }

  private deliver(frame: Uint8Array): void {
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    if (!this.receiver || this.receiver(frame) === false) this.stats.rxDrops++;
  }

  send(frame: Uint8Array): boolean {
    const s = this.socket;
    if (!s || frame.length < MIN_FRAME || frame.length > MAX_FRAME || s.destroyed) {
      this.stats.txDrops++;
      return false;
    }
    if (s.writableLength > SEND_BACKLOG_LIMIT) {
      this.counters.backlogDrops++;
      this.stats.txDrops++;
      return false;
    }
    // Frames sent in one burst (the replies to one read's worth of frames) leave in one writev.
    batchThisTurn(s);
    s.write(encodeStreamFrame(frame));
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    return true;
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
  }

  event(line: string): void {
    this.onEvent?.(line);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.socket?.destroy();
    this.server?.close();
    if (this.spec.role === 'server' && this.spec.addr.type === 'unix') {
      try {
        unlinkSync(this.spec.addr.path);
      } catch {
        // already gone
      }
    }
  }
}

/**
 * `-netdev dgram` / `socket,udp=`: one frame per UDP datagram. Without a fixed remote, frames go
 * to whoever sent the lab a frame last (the VM's address is learnt, as a switch learns a port).
 */
class DgramVmPort implements VmSocketPort {
  readonly stats: FramePortStats = emptyStats();
  readonly counters = emptyCounters();
  onEvent: ((line: string) => void) | null = null;
  private receiver: FrameReceiver | null = null;
  private peer: { host: string; port: number } | null;
  private closed = false;
  private resolveConnected!: () => void;
  readonly connected: Promise<void>;

  private constructor(
    readonly name: string,
    readonly spec: VmSocketSpec & { kind: 'dgram' },
    private readonly sock: UdpSocket,
    public bound: SocketAddr,
  ) {
    this.peer = spec.remote ? { host: spec.remote.host, port: spec.remote.port } : null;
    this.connected = new Promise((r) => (this.resolveConnected = r));
    sock.on('message', (msg, rinfo) => {
      if (this.spec.remote && (rinfo.port !== this.spec.remote.port)) return;
      if (!this.peer || this.peer.port !== rinfo.port || this.peer.host !== rinfo.address) {
        this.peer = { host: rinfo.address, port: rinfo.port };
        this.counters.connections++;
        this.onEvent?.(`VM heard on ${this.name} from ${rinfo.address}:${rinfo.port}`);
      }
      this.resolveConnected();
      this.stats.rxFrames++;
      this.stats.rxBytes += msg.length;
      if (msg.length < MIN_FRAME || msg.length > MAX_FRAME) {
        this.counters.oversize++;
        this.stats.rxDrops++;
        return;
      }
      if (!this.receiver || this.receiver(msg) === false) this.stats.rxDrops++;
    });
    sock.on('error', (e) => this.onEvent?.(`${this.name}: ${e.message}`));
  }

  static open(spec: VmSocketSpec & { kind: 'dgram' }, name: string): Promise<OpenResult> {
    const sock = createSocket({ type: isIPv6(spec.local.host) ? 'udp6' : 'udp4', sendBufferSize: 4 * 1024 * 1024, recvBufferSize: 4 * 1024 * 1024 } as Parameters<typeof createSocket>[0]);
    return new Promise((resolve) => {
      sock.once('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, error: `cannot bind udp ${spec.local.host}:${spec.local.port}: ${e.code ?? e.message}` }));
      sock.bind(spec.local.port, spec.local.host, () => {
        sock.removeAllListeners('error');
        const a = sock.address();
        resolve({ ok: true, port: new DgramVmPort(name, spec, sock, { type: 'inet', host: a.address, port: a.port }) });
      });
    });
  }

  send(frame: Uint8Array): boolean {
    if (this.closed || !this.peer || frame.length < MIN_FRAME || frame.length > MAX_FRAME) {
      this.stats.txDrops++;
      return false;
    }
    this.sock.send(frame, this.peer.port, this.peer.host);
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    return true;
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
  }
}
