import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { EPB_FLAG_INBOUND, EPB_FLAG_OUTBOUND, encodeIdb, encodeShb, epbLength, writeEpb } from './pcapng-blocks.js';
import type { CaptureHop, CaptureRun } from './run.js';

/**
 * Live captures: a running lab serves its hops as pcapng streams on a Unix socket, so
 * `lab capture HOP | wireshark -k -i -` (or `tshark -i -`) and the lab's Wireshark extcap program
 * (extcap.ts) watch a hop while the lab runs.
 *
 * One socket per lab process, `<tmpdir>/netlab-live/<pid>.sock` (a short path: Unix socket paths
 * are limited to ~108 bytes), in a folder only its owner may enter. A client sends one line:
 * - `list` — the lab answers one JSON line: pid, run id, command, hops (name, description);
 * - `capture HOP[,HOP…]` — the lab answers with a pcapng stream: a section header, one interface
 *   per hop, then every frame those hops record from now on, with direction and packet id, until
 *   the client goes away or the lab stops. A hop not made yet is waited for.
 * A slow reader never slows the lab: past `MAX_BACKLOG` bytes waiting in the socket, frames for
 * that client are dropped and counted (the client sees a gap, the lab goes on).
 */

export const MAX_BACKLOG = 8 * 1024 * 1024;

export function liveDir(): string {
  return path.join(os.tmpdir(), 'netlab-live');
}

export function liveSocketPath(pid: number): string {
  return path.join(liveDir(), `${pid}.sock`);
}

export interface LiveLabInfo {
  pid: number;
  runId: string;
  command: string;
  hops: { name: string; description?: string }[];
}

export class LiveServer {
  readonly path: string;
  private readonly server: net.Server;
  private readonly clients = new Set<net.Socket>();
  /** Frames dropped for clients that did not keep up. */
  dropped = 0;

  private constructor(private readonly run: CaptureRun, socketPath: string) {
    this.path = socketPath;
    this.server = net.createServer((s) => this.accept(s));
    this.server.unref();
  }

  /** Serve `run`'s hops on this process's live socket. Resolves when it is listening. */
  static async start(run: CaptureRun, socketPath = liveSocketPath(process.pid)): Promise<LiveServer> {
    fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
    // A socket left by a process with this pid that died is stale; nothing listens on it.
    fs.rmSync(socketPath, { force: true });
    const s = new LiveServer(run, socketPath);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(socketPath, () => resolve());
    });
    return s;
  }

  close(): void {
    for (const c of this.clients) c.destroy();
    this.server.close();
    try {
      fs.rmSync(this.path, { force: true });
    } catch {
      // Already gone.
    }
  }

  /** Synchronous close for exit paths: sockets are destroyed, the socket file removed. */
  closeSync(): void {
    this.close();
  }

  private info(): LiveLabInfo {
    return {
      pid: process.pid,
      runId: this.run.id,
      command: this.run.command,
      hops: this.run.hopList().map((h) => ({ name: h.name, ...(h.description ? { description: h.description } : {}) })),
    };
  }

  private accept(sock: net.Socket): void {
    this.clients.add(sock);
    sock.on('close', () => this.clients.delete(sock));
    sock.on('error', () => sock.destroy());
    let line = '';
    const onData = (d: Buffer): void => {
      line += d.toString('utf8');
      if (line.length > 4096) return void sock.destroy();
      const nl = line.indexOf('\n');
      if (nl < 0) return;
      sock.off('data', onData);
      const cmd = line.slice(0, nl).trim();
      if (cmd === 'list') sock.end(JSON.stringify(this.info()) + '\n');
      else if (cmd.startsWith('capture ')) this.stream(sock, cmd.slice('capture '.length).split(',').map((h) => h.trim()).filter(Boolean));
      else sock.end(JSON.stringify({ error: `unknown request "${cmd}": send "list" or "capture HOP"` }) + '\n');
    };
    sock.on('data', onData);
  }

  private stream(sock: net.Socket, hops: string[]): void {
    const ctx = this.run.streamContext();
    const units = ctx.precision === 'ns' ? 1_000_000_000n : 1_000_000n;
    sock.write(encodeShb(ctx.section));
    const unsubs: (() => void)[] = [];
    let nextIf = 0;
    const attach = (hop: CaptureHop): void => {
      if (!hops.includes(hop.name)) return;
      const ifId = nextIf++;
      sock.write(encodeIdb({ name: hop.name, ...(hop.description ? { description: hop.description } : {}), snaplen: ctx.snaplen, tsresolDigits: ctx.precision === 'ns' ? 9 : 6 }));
      unsubs.push(
        hop.listen({
          frame: (frame, direction, clockMs, packetId) => {
            if (sock.destroyed) return;
            if (sock.writableLength > MAX_BACKLOG) {
              this.dropped++;
              return;
            }
            const caplen = Math.min(frame.length, ctx.snaplen);
            const b = Buffer.allocUnsafe(epbLength(caplen));
            writeEpb(b, 0, ifId, ctx.timebase.ticks(clockMs, units), frame, caplen, direction === 'in' ? EPB_FLAG_INBOUND : EPB_FLAG_OUTBOUND, packetId);
            sock.write(b);
          },
        }),
      );
    };
    unsubs.push(this.run.onHop(attach));
    sock.on('close', () => unsubs.forEach((u) => u()));
    // The client only reads; anything it sends now is ignored.
    sock.resume();
  }
}

/** The labs serving live captures on this machine now (stale sockets are skipped and removed). */
export async function findLiveLabs(): Promise<LiveLabInfo[]> {
  let names: string[];
  try {
    names = fs.readdirSync(liveDir()).filter((n) => n.endsWith('.sock'));
  } catch {
    return [];
  }
  const labs: LiveLabInfo[] = [];
  for (const n of names) {
    const p = path.join(liveDir(), n);
    const info = await request(p, 'list').catch(() => null);
    if (info) labs.push(JSON.parse(info) as LiveLabInfo);
    else {
      const pid = Number(n.slice(0, -'.sock'.length));
      // Only a socket whose process is gone is removed; a busy lab just did not answer in time.
      if (Number.isInteger(pid) && !processAlive(pid)) fs.rmSync(p, { force: true });
    }
  }
  return labs;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function request(socketPath: string, line: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    let out = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('timed out'));
    }, timeoutMs);
    s.on('connect', () => s.write(line + '\n'));
    s.on('data', (d) => (out += d.toString('utf8')));
    s.on('end', () => {
      clearTimeout(t);
      resolve(out.trim());
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/**
 * Stream the pcapng of `hops` from the lab with `pid` into `out` (stdout, a FIFO) until the lab
 * stops, `out` goes away, or `signal` aborts. Resolves with why it ended.
 */
export function streamHops(pid: number, hops: string[], out: NodeJS.WritableStream, signal?: AbortSignal): Promise<'lab stopped' | 'reader gone' | 'aborted'> {
  return new Promise((resolve, reject) => {
    const s = net.connect(liveSocketPath(pid));
    let done = false;
    const finish = (why: 'lab stopped' | 'reader gone' | 'aborted'): void => {
      if (done) return;
      done = true;
      s.destroy();
      resolve(why);
    };
    s.on('connect', () => s.write(`capture ${hops.join(',')}\n`));
    s.on('error', (e) => (done ? undefined : reject(new Error(`cannot reach lab ${pid}: ${e.message}`))));
    s.on('end', () => finish('lab stopped'));
    out.on('error', () => finish('reader gone'));
    s.pipe(out as NodeJS.WritableStream, { end: false });
    signal?.addEventListener('abort', () => finish('aborted'));
  });
}
