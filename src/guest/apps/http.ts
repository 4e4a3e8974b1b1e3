import type { AppConn, AppHandler } from './app-conn.js';
import { TextWriter } from './app-conn.js';

/**
 * The guest's HTTP/1.1 server on port 80: `/` is a status page (interface, ARP, TCP counters —
 * whatever the kernel's status provider reports), `/bytes/N` streams N bytes for throughput tests
 * at the pace the connection takes them. Keep-alive and pipelining per RFC 9112; requests larger
 * than 16 KiB of headers are refused with 431.
 */
const MAX_HEADER_BYTES = 16 * 1024;
/** Upper bound for /bytes/N: 16 GiB is more than any test moves. */
const MAX_STREAM_BYTES = 16 * 1024 ** 3;

export interface HttpRequest {
  method: string;
  target: string;
  version: string;
  headers: Map<string, string>;
}

export type RequestParse = { kind: 'need-more' } | { kind: 'request'; request: HttpRequest; consumed: number } | { kind: 'error'; status: number; reason: string };

const decoder = new TextDecoder('latin1');

/** Parse one request head (no bodies: GET/HEAD only) from the front of `buf`. */
export function parseRequestHead(buf: Uint8Array): RequestParse {
  let end = -1;
  for (let i = 3; i < buf.length; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) {
      end = i + 1;
      break;
    }
  }
  if (end < 0) return buf.length > MAX_HEADER_BYTES ? { kind: 'error', status: 431, reason: 'Request Header Fields Too Large' } : { kind: 'need-more' };
  const text = decoder.decode(buf.subarray(0, end - 4));
  const [requestLine, ...headerLines] = text.split('\r\n');
  const m = /^([A-Z]+) (\S+) HTTP\/(1\.[01])$/.exec(requestLine ?? '');
  if (!m) return { kind: 'error', status: 400, reason: 'Bad Request' };
  const headers = new Map<string, string>();
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (colon <= 0) return { kind: 'error', status: 400, reason: 'Bad Request' };
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { kind: 'request', request: { method: m[1]!, target: m[2]!, version: m[3]!, headers }, consumed: end };
}

export interface HttpStatusProvider {
  /** Plain-text status report (interfaces, ARP, TCP counters) for `/`. */
  statusText(): string;
}

export interface HttpCounters {
  requests: number;
  bytesStreamed: number;
}

export function httpService(status: HttpStatusProvider, counters: HttpCounters = { requests: 0, bytesStreamed: 0 }): AppHandler {
  return (conn: AppConn) => new HttpConnection(conn, status, counters).start();
}

class HttpConnection {
  private buffer: Uint8Array = new Uint8Array(0);
  private readonly out: TextWriter;
  /** Remaining bytes of a /bytes/N body in progress (requests after it wait). */
  private streamLeft = 0;
  private streamBlock: Uint8Array | null = null;
  private streamPos = 0;
  private closeAfter = false;
  private peerEnded = false;

  constructor(
    private readonly conn: AppConn,
    private readonly status: HttpStatusProvider,
    private readonly counters: HttpCounters,
  ) {
    this.out = new TextWriter(conn);
  }

  start(): void {
    this.conn.onData = (d) => {
      const merged = new Uint8Array(this.buffer.length + d.length);
      merged.set(this.buffer);
      merged.set(d, this.buffer.length);
      this.buffer = merged;
      this.process();
    };
    this.conn.onEnd = () => {
      this.peerEnded = true;
      this.process();
    };
    this.conn.onWritable = () => {
      this.out.flush();
      this.pumpStream();
    };
  }

  private process(): void {
    while (this.streamLeft === 0 && this.out.backlog === 0) {
      const r = parseRequestHead(this.buffer);
      if (r.kind === 'need-more') break;
      if (r.kind === 'error') {
        this.respond(r.status, r.reason, `${r.status} ${r.reason}\n`, true);
        this.buffer = new Uint8Array(0);
        return;
      }
      this.buffer = this.buffer.subarray(r.consumed);
      this.handle(r.request);
      if (this.closeAfter) return;
    }
    if (this.peerEnded && this.streamLeft === 0 && this.out.backlog === 0 && !this.closeAfter) {
      this.closeAfter = true;
      this.out.end();
    }
  }

  private handle(req: HttpRequest): void {
    this.counters.requests++;
    const conn = req.headers.get('connection')?.toLowerCase();
    const close = conn === 'close' || (req.version === '1.0' && conn !== 'keep-alive');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      this.respond(405, 'Method Not Allowed', 'only GET and HEAD\n', close, { Allow: 'GET, HEAD' });
      return;
    }
    const head = req.method === 'HEAD';
    const path = req.target.split('?')[0]!;
    const bytes = /^\/bytes\/(\d+)$/.exec(path);
    if (path === '/' || path === '/status') {
      this.respond(200, 'OK', this.status.statusText(), close, { 'Content-Type': 'text/plain; charset=utf-8' }, head);
    } else if (bytes) {
      const n = Number(bytes[1]);
      if (!Number.isSafeInteger(n) || n > MAX_STREAM_BYTES) {
        this.respond(400, 'Bad Request', `N must be at most ${MAX_STREAM_BYTES}\n`, close);
        return;
      }
      this.writeHead(200, 'OK', n, close, { 'Content-Type': 'application/octet-stream' });
      if (!head) {
        // Mark the close before pumping: a short body is written at once, and the end of the
        // stream is where the connection closes.
        if (close) this.closeAfter = true;
        this.streamLeft = n;
        this.streamPos = 0;
        this.pumpStream();
      } else if (close) this.finish();
    } else {
      this.respond(404, 'Not Found', `${path}: not here; try / or /bytes/N\n`, close);
    }
  }

  private writeHead(status: number, reason: string, length: number, close: boolean, extra: Record<string, string> = {}): void {
    let head = `HTTP/1.1 ${status} ${reason}\r\nServer: netlab-guest\r\nContent-Length: ${length}\r\n`;
    for (const [k, v] of Object.entries(extra)) head += `${k}: ${v}\r\n`;
    if (close) head += 'Connection: close\r\n';
    this.out.write(head + '\r\n');
  }

  private respond(status: number, reason: string, body: string, close: boolean, extra: Record<string, string> = {}, headOnly = false): void {
    const bytes = new TextEncoder().encode(body);
    this.writeHead(status, reason, bytes.length, close, extra);
    if (!headOnly) this.out.write(bytes);
    if (close) this.finish();
  }

  private finish(): void {
    this.closeAfter = true;
    this.out.end();
  }

  private pumpStream(): void {
    if (this.streamLeft === 0 || this.out.backlog > 0) return;
    // A fixed block of a recognisable pattern; the peer checks length (and hashes, in tests).
    this.streamBlock ??= patternBlock(64 * 1024);
    for (let rounds = 0; rounds < 256 && this.streamLeft > 0; rounds++) {
      const off = this.streamPos % this.streamBlock.length;
      const want = Math.min(this.streamLeft, this.streamBlock.length - off);
      const n = this.conn.write(this.streamBlock.subarray(off, off + want));
      this.streamLeft -= n;
      this.streamPos += n;
      this.counters.bytesStreamed += n;
      if (n < want) return; // onWritable resumes us
    }
    if (this.streamLeft > 0) return;
    if (this.closeAfter) this.out.end();
    else this.process();
  }
}

/** The /bytes/N body: byte p is (p mod 65536) mod 251 (a prime, so shifts and gaps show up). */
export function patternBlock(size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = i % 251;
  return b;
}
