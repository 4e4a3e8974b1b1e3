import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { buildImage, type BuiltImage } from '../../lab/image/build.js';
import { DMESG_BEGIN, DMESG_END, parseReadyLine } from '../../lab/image/guest-files.js';
import type { NicModelKey } from '../../lab/image/nic-modules.js';
import { findQemu, qemuArgs } from '../../lab/vmsocket/qemu.js';
import type { Netns } from './netns.js';

/**
 * System-test plumbing for Linux guests in QEMU: the image from `lab image build` (cached outside
 * the repo, under ~/.cache/netlab or $NETLAB_IMAGE_CACHE), and a QEMU process inside a test's
 * namespace whose serial console the test reads and types into.
 */
export const CLI = ['node', 'dist/lab/cli.js'];

let built: BuiltImage | null = null;
export function linuxImage(): BuiltImage {
  if (built) return built;
  const base = process.env['NETLAB_IMAGE_CACHE'] ?? join(homedir(), '.cache', 'netlab');
  const r = buildImage({ outDir: join(base, 'linux-image'), cacheDir: join(base, 'debs') });
  if (!r.ok) throw new Error(`lab image build: ${r.error}`);
  built = r.value;
  return built;
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Every guest started, so a test that throws half-way still leaves no QEMU behind (killAllGuests). */
const started = new Set<ConsoleChild>();
export function killAllGuests(): void {
  for (const g of started) g.kill();
  started.clear();
}

/**
 * A child process whose stdout carries a Linux serial console and whose stdin types into it (QEMU
 * with -nographic, or `lab … --guest linux`, which puts the v86 guest's console on its terminal).
 */
export class ConsoleChild {
  protected out = '';
  readonly started = Date.now();
  readonly exit: Promise<number>;

  constructor(readonly child: ChildProcess) {
    this.child.stdout!.on('data', (b: Buffer) => (this.out += b.toString('latin1')));
    this.child.stderr!.on('data', (b: Buffer) => (this.out += b.toString('latin1')));
    this.exit = new Promise((r) => this.child.on('exit', (c, s) => r(c ?? (s ? 128 : 1))));
  }

  get console(): string {
    return this.out;
  }

  /** Wait until `probe` finds what it looks for in the console output; `what` names it in errors. */
  async waitUntil<T>(probe: (text: string) => T | null, what: string, timeoutMs: number): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const found = probe(this.out);
      if (found !== null) return found;
      if (this.child.exitCode !== null) throw new Error(`${this.child.spawnargs.slice(0, 6).join(' ')}… exited ${this.child.exitCode} before ${what}:\n${this.out.slice(-3000)}`);
      if (Date.now() > end) throw new Error(`no ${what} on the serial console after ${timeoutMs} ms:\n${this.out.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Wait until `re` matches the console output after `from`; returns the match. */
  waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    return this.waitUntil((text) => re.exec(text.slice(from)), String(re), timeoutMs);
  }

  /** The ready line's fields (net, driver, mac, ip) and the boot time in seconds. */
  async ready(timeoutMs = 120_000): Promise<{ line: string; seconds: number; fields: Record<string, string> }> {
    const r = await this.waitUntil(parseReadyLine, 'whole ready line', timeoutMs);
    return { ...r, seconds: (Date.now() - this.started) / 1000 };
  }

  /** Type a command on the serial shell and return what it printed up to `end` (a marker it echoes). */
  async shell(command: string, timeoutMs = 60_000): Promise<string> {
    const tag = `done-${Math.random().toString(36).slice(2, 8)}`;
    const from = this.out.length;
    this.child.stdin!.write(`${command}; echo "${tag.slice(0, 4)}""${tag.slice(4)}"\n`);
    // The tag is typed split in two so the echoed command line does not match it.
    const m = await this.waitFor(new RegExp(`([\\s\\S]*?)\\r?\\n${tag}`), timeoutMs, from);
    return m[1]!;
  }

  /** The guest's dmesg with levels (`<3>` err, `<4>` warning …). */
  async dmesg(): Promise<string> {
    const text = await this.shell('netlab-dmesg', 30_000);
    const a = text.indexOf(DMESG_BEGIN);
    const b = text.indexOf(DMESG_END);
    if (a < 0 || b < 0) throw new Error(`no dmesg markers in:\n${text.slice(-2000)}`);
    return text.slice(a + DMESG_BEGIN.length, b);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.pid) this.child.kill('SIGKILL');
  }
}

export class QemuGuest extends ConsoleChild {
  constructor(ns: Netns, nic: NicModelKey, netdev: string, append: string, mac?: string) {
    const img = linuxImage();
    const qemu = findQemu();
    if (!qemu.ok) throw new Error(qemu.error);
    const args = qemuArgs({ kernel: img.kernelPath, initrd: img.initrdPath, append, nic, netdev, mac });
    super(spawn('ip', ['netns', 'exec', ns.name, qemu.path, ...args], { stdio: ['pipe', 'pipe', 'pipe'] }));
    started.add(this);
  }
}

/** Network-driver lines at warning level or worse, and the classic failure phrases at any level. */
export function networkDriverProblems(dmesg: string): string[] {
  const net = /eth\d|8139|ne2k|8390|virtio|net_failover|failover|NETDEV|mii/i;
  const bad = /transmit timed out|tx timeout|NETDEV WATCHDOG|fifo|overrun|ring|error|fail/i;
  const lines = dmesg.split('\n').map((l) => l.trim());
  const problems: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    // 8139too declines QEMU's 8139C+ (revision 0x20) in favour of 8139cp: an info line, not an error.
    if (/use 8139cp/.test(l)) continue;
    const modules = /cut here|WARNING:|BUG:|Oops/.test(l) ? lines.slice(i, i + 12).findIndex((t) => /Modules linked in:/.test(t)) : /Modules linked in:/.test(l) ? 0 : -1;
    if (modules >= 0) {
      // Every kernel trace (a WARNING, an RCU stall under a loaded TCG host) lists all loaded
      // modules, the NIC's among them: the trace is the driver's only when its own lines say so.
      const trace = kernelTrace(lines, i, i + modules);
      const ours = trace.filter((t) => !/Modules linked in:/.test(t) && (NET_TRACE.test(t) || (/WARNING:|BUG:/.test(t) && net.test(t))));
      if (ours.length > 0) problems.push(`${trace.find((t) => !/cut here/.test(t)) ?? trace[0]} … ${ours[ours.length - 1]}`);
      i += trace.length - 1;
      continue;
    }
    if (net.test(l) && (/^<[0-4]>/.test(l) || bad.test(l))) problems.push(l);
  }
  return problems;
}

/** A network driver named in a trace line: a module tag in a call trace, or the interface. */
const NET_TRACE = /\[(8139too|8139cp|ne2k_pci|8390|virtio_net|net_failover|failover|mii)\]|\b(rtl8139|cp|virtnet|ne2k|ei|mii)_\w+\+0x|NETDEV|eth\d/;

/** The lines of a kernel trace that starts at `head` and lists the modules at `at`, to its end. */
function kernelTrace(lines: string[], head: number, at: number): string[] {
  // A trace's lines are warnings (<4>); it ends at "end trace" or at the first line that is not one.
  let end = at;
  while (end + 1 < lines.length && end - at < 80 && !/end trace/.test(lines[end]!) && /^<[0-4]>/.test(lines[end + 1]!)) end++;
  return lines.slice(head, end + 1);
}

let heuristics: string[] | null = null;
function tcpHeuristicsOff(): string[] {
  if (heuristics) return heuristics;
  const r = spawnSync('tshark', ['-G', 'heuristic-decodes'], { encoding: 'utf8' });
  heuristics = (r.stdout ?? '').split('\n').map((l) => l.split('\t')).filter((c) => c[0] === 'tcp' && c[1]).flatMap((c) => ['--disable-protocol', c[1]!]);
  return heuristics;
}

/** Every pcap of a capture run opens in tshark with no malformed frame; returns problems. */
export function tsharkProblems(dir: string): string[] {
  const problems: string[] = [];
  const files = readdirSync(dir).filter((f) => f.endsWith('.pcap') || f.endsWith('.pcapng'));
  if (files.length === 0) problems.push(`${dir}: no pcaps`);
  for (const f of files) {
    // Per-frame dissection with checksums checked; TCP reassembly off, since reassembling a 50 MB
    // HTTP body costs minutes of CPU and adds no per-frame check. Without reassembly, heuristic
    // dissectors guess at segments of random upload bytes (Thrift, …) and call them malformed:
    // protocols only ever found by TCP heuristics are switched off, so payloads are dissected by port.
    const r = spawnSync('tshark', ['-n', '-r', join(dir, f), ...tcpHeuristicsOff(), '-o', 'tcp.desegment_tcp_streams:FALSE', '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-Y', '_ws.malformed || _ws.expert.severity == error'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 600_000 });
    if (r.status !== 0) problems.push(`${f}: tshark exited ${r.status}: ${r.stderr.slice(0, 300)}`);
    else if (r.stdout.trim()) problems.push(`${f}: malformed frames:\n${r.stdout.slice(0, 600)}`);
  }
  return problems;
}
