/**
 * Node streams over the raw TCP API: `TcpStream` is a `Duplex` over one TcpConnection, `TcpServer`
 * an EventEmitter that turns a listener's connections into TcpStreams ('connection' events), in
 * the shape of `net.Socket` / `net.Server` so that ordinary stream code (pipe, pipeline, async
 * iteration) runs over the lab's TCP.
 *
 * Flow control is TCP's own, end to end:
 * - writable side: a chunk's callback fires only once the connection's send buffer has taken all of
 *   it (refilled as ACKs free space, `onSent`), so Node's writable buffer fills and `write()`
 *   returns false while the peer or the network is slow;
 * - readable side: received bytes are pushed at once (TCP never hands over more than the receive
 *   window, so this is bounded by the receive buffer), but the window is reopened (`recved`) only
 *   for bytes the consumer has actually taken out of the readable buffer. A consumer that stops
 *   reading therefore closes the window and stalls the sender, as with a real socket.
 */
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import type { Ipv4Addr } from '../addr.js';
import type { TcpConnection, TcpErrorCode } from './connection.js';
import type { ConnectOptions, ListenOptions, TcpLayer, TcpListener } from './layer.js';

/** An error shaped like the ones net.Socket emits (err.code is what callers switch on). */
export class TcpStreamError extends Error {
  constructor(
    readonly code: TcpErrorCode,
    readonly syscall: 'read' | 'connect',
  ) {
    super(`${syscall} ${code}`);
    this.name = 'TcpStreamError';
  }
}

export interface TcpStreamOptions {
  /** Node's writable buffer bound; above it `write()` returns false (default 16 KiB as in Node). */
  writableHighWaterMark?: number;
  readableHighWaterMark?: number;
}

export class TcpStream extends Duplex {
  /** Bytes pushed into the readable side. */
  private pushedBytes = 0;
  /** Bytes handed back to TCP with `recved` (consumed by the reader). */
  private releasedBytes = 0;
  /** The chunk `_write` is still feeding into the send buffer, and its callback. */
  private pendingChunk: Uint8Array | null = null;
  private pendingCallback: ((err?: Error | null) => void) | null = null;
  private connectionGone = false;
  /** The handshake completed: a failure now is a read error, before it a connect error. */
  private established: boolean;

  constructor(
    readonly connection: TcpConnection,
    options: TcpStreamOptions = {},
  ) {
    super({
      allowHalfOpen: true, // TCP half-close: our end() sends FIN, their FIN ends our readable side
      writableHighWaterMark: options.writableHighWaterMark,
      readableHighWaterMark: options.readableHighWaterMark,
    });
    const conn = connection;
    // A passive connection reaches the application already established.
    this.established = conn.state !== 'SYN_SENT' && conn.state !== 'SYN_RECEIVED';
    conn.onConnected = () => {
      this.established = true;
      this.emit('connect');
    };
    conn.onData = (data) => {
      this.pushedBytes += data.length;
      // Copy: the payload is a view into a received frame that the stack may reuse.
      this.push(Buffer.from(data));
    };
    conn.onEnd = () => this.push(null);
    conn.onSent = () => this.feed();
    conn.onError = (code) => {
      this.connectionGone = true;
      // (conn.state is already CLOSED here, so whether we were connecting is our own record.)
      const err = new TcpStreamError(code, this.established ? 'read' : 'connect');
      this.failPending(err);
      this.destroy(err);
    };
    conn.onClose = () => {
      // TIME-WAIT or CLOSED. A normal close already ended both sides; anything else (the
      // connection was aborted under us) leaves the stream with nowhere to go.
      if (conn.state === 'CLOSED') this.connectionGone = true;
      if (conn.state === 'CLOSED' && !this.destroyed && !(this.readableEnded && this.writableFinished)) {
        if (this.pendingCallback) this.failPending(new TcpStreamError('ECONNRESET', 'read'));
      }
    };
  }

  /** Active open: a stream that is writable at once (data waits for the handshake). */
  static connect(layer: TcpLayer, remoteAddr: Ipv4Addr, remotePort: number, options: ConnectOptions & TcpStreamOptions = {}): TcpStream {
    const { writableHighWaterMark, readableHighWaterMark, ...connOptions } = options;
    return new TcpStream(layer.connect(remoteAddr, remotePort, connOptions), { writableHighWaterMark, readableHighWaterMark });
  }

  get remoteAddress(): Ipv4Addr {
    return this.connection.remoteAddr;
  }

  get remotePort(): number {
    return this.connection.remotePort;
  }

  get localAddress(): Ipv4Addr {
    return this.connection.localAddr;
  }

  get localPort(): number {
    return this.connection.localPort;
  }

  /** TCP_NODELAY, as on net.Socket. */
  setNoDelay(noDelay = true): this {
    this.connection.noDelay = noDelay;
    return this;
  }

  /** SO_KEEPALIVE, as on net.Socket (the idle time comes from the layer's configuration). */
  setKeepAlive(enable = false): this {
    this.connection.setKeepAlive(enable);
    return this;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.connectionGone) {
      callback(new TcpStreamError(this.connection.error ?? 'ECONNRESET', 'read'));
      return;
    }
    this.pendingChunk = chunk;
    this.pendingCallback = callback;
    this.feed();
  }

  /** Move as much of the pending chunk as fits into the send buffer; finish it when all did. */
  private feed(): void {
    const chunk = this.pendingChunk;
    if (!chunk) return;
    const n = this.connection.write(chunk);
    if (n < chunk.length) {
      this.pendingChunk = chunk.subarray(n);
      // write() takes nothing once the connection can no longer send (reset, closed).
      if (n === 0 && this.connection.sendSpace === 0 && this.connection.state === 'CLOSED') {
        this.failPending(new TcpStreamError(this.connection.error ?? 'ECONNRESET', 'read'));
      }
      return;
    }
    const cb = this.pendingCallback!;
    this.pendingChunk = null;
    this.pendingCallback = null;
    cb();
  }

  private failPending(err: Error): void {
    const cb = this.pendingCallback;
    this.pendingChunk = null;
    this.pendingCallback = null;
    cb?.(err);
  }

  /** end(): all data is in the send buffer; the FIN goes out after it (RFC 9293 CLOSE). */
  override _final(callback: (err?: Error | null) => void): void {
    this.connection.shutdown();
    callback();
  }

  override _read(_size: number): void {
    this.release();
  }

  /**
   * Every read (pipe and async iteration go through it too) may have taken bytes out of the
   * readable buffer: give exactly those back to TCP as receive window.
   */
  override read(size?: number): any /* Readable.read's own return type */ {
    const chunk: unknown = super.read(size);
    this.release();
    return chunk;
  }

  private release(): void {
    const consumed = this.pushedBytes - this.readableLength;
    if (consumed > this.releasedBytes) {
      const n = consumed - this.releasedBytes;
      this.releasedBytes = consumed;
      this.connection.recved(n);
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const conn = this.connection;
    // A graceful end (both directions finished) lets the connection complete its close on its
    // own (FIN-WAIT-2, TIME-WAIT). Destroying it any earlier discards it: RST, as a socket with
    // unread data does on close.
    const graceful = this.readableEnded && this.writableFinished;
    if (!this.connectionGone && !graceful && conn.state !== 'CLOSED' && conn.state !== 'TIME_WAIT') conn.abort();
    this.failPending(err ?? new Error('stream destroyed'));
    callback(err);
  }
}

/** A listening socket: emits 'connection' with a TcpStream for every established connection. */
export class TcpServer extends EventEmitter {
  private listener: TcpListener | null = null;

  constructor(
    readonly layer: TcpLayer,
    private readonly streamOptions: TcpStreamOptions = {},
  ) {
    super();
  }

  listen(port: number, options: ListenOptions = {}): this {
    if (this.listener) throw new Error('TcpServer is already listening');
    this.listener = this.layer.listen(port, (conn) => this.emit('connection', new TcpStream(conn, this.streamOptions)), options);
    this.emit('listening');
    return this;
  }

  address(): { address: Ipv4Addr; port: number } | null {
    return this.listener ? { address: this.listener.addr, port: this.listener.port } : null;
  }

  /** Stop accepting; established streams carry on. */
  close(): void {
    if (!this.listener) return;
    this.listener.close();
    this.listener = null;
    this.emit('close');
  }
}
