import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VirtualClock } from '../../../net/clock.js';
import { createLink } from '../../../net/link.js';
import type { FramePort } from '../../../net/frame-port.js';
import { CaptureRun, runIdFor, type CaptureManifest } from '../../../lab/capture/run.js';
import { formatSummary, summarizeFile, summarizeRun } from '../../../lab/capture/summary.js';
import { parsePcapng } from '../../../lab/capture/pcapng-blocks.js';
import { followPacket, formatFollow } from '../../../lab/capture/follow.js';
import { arpRequest, IP_A, IP_B, MAC_A, pingFrame, requireTshark, tcpFrame, tsharkErrors, tsharkFields, udpFrame } from './frames.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
let base: string;
beforeAll(() => requireTshark());
afterEach(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});
const tmp = (): string => (base = fs.mkdtempSync(path.join(os.tmpdir(), 'netlab-run-')));
const readManifest = (dir: string): CaptureManifest => JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as CaptureManifest;

/** A small lab: NIC ↔ (vm0.eth0) link (user) ↔ a responder, plus a stack-level hop fed directly. */
function miniLab(run: CaptureRun, clock: VirtualClock) {
  const [nicLink, backLink] = createLink(clock, ['vm0.eth0', 'net0-back']);
  const wrapped = run.wrapLink((id) => (id === 'net0-back' ? 'user' : null))({ vm: 'vm0', nic: { id: 'eth0' }, backend: 'net0-back' }, nicLink, backLink);
  const nic: FramePort = wrapped.nicSide;
  const user: FramePort = wrapped.backendSide;
  const stack = run.hop('vm0.eth0.stack', 'between the rtl8139 driver and the stack');
  run.link('vm0.eth0.stack', 'vm0.eth0', 'guest driver ↔ NIC');
  let received = 0;
  nic.setReceiver((f) => {
    stack.record(f, 'in');
    received++;
  });
  user.setReceiver((f) => {
    // Answer pings; swallow the rest.
    if (f[23] === 1) user.send(pingFrame(f[41]!, true));
  });
  const send = (f: Uint8Array): boolean => {
    stack.record(f, 'out');
    return nic.send(f);
  };
  return { send, received: () => received };
}

describe('CaptureRun', () => {
  it('names the run after its start time and command', () => {
    expect(runIdFor(new Date('2026-11-25T05:50:12.345Z'), 'redirect')).toBe('2026-11-25T05-50-12-redirect');
    expect(runIdFor(new Date('2026-11-25T05:50:12Z'), 'up tap2 / x')).toBe('2026-11-25T05-50-12-up-tap2-x');
  });

  it('writes one pcapng per hop and a manifest whose counts equal what tshark and our reader read', async () => {
    const clock = new VirtualClock();
    const run = new CaptureRun({ command: 'run', clock, baseDir: tmp(), startDate: new Date('2026-11-25T05:50:12Z'), merged: true, manifestIntervalMs: 0 });
    expect(run.id).toBe('2026-11-25T05-50-12-run');
    expect(run.dir).toBe(path.join(base, run.id));
    const lab = miniLab(run, clock);
    for (let i = 0; i < 10; i++) {
      lab.send(pingFrame(i));
      lab.send(udpFrame(100 + i, i));
      clock.advance(10);
    }
    lab.send(tcpFrame(50, 1));
    lab.send(arpRequest(MAC_A, IP_A, IP_B));
    clock.advance(100);
    expect(lab.received()).toBe(10);
    run.closeSync();

    const dir = run.dir!;
    expect(fs.readdirSync(dir).sort()).toEqual(['all.pcapng', 'manifest.json', 'user.pcapng', 'vm0.eth0.pcapng', 'vm0.eth0.stack.pcapng']);
    const m = readManifest(dir);
    expect(m).toMatchObject({ runId: run.id, command: 'run', startTime: '2026-11-25T05:50:12.000Z', fileFormat: 'pcapng', timestampPrecision: 'us', linkType: 'ethernet', merged: 'all.pcapng', ring: null });
    expect(m.endTime).not.toBeNull();
    expect(m.links).toEqual([
      { from: 'vm0.eth0', to: 'user', description: 'link' },
      { from: 'vm0.eth0.stack', to: 'vm0.eth0', description: 'guest driver ↔ NIC' },
    ]);
    const byName = Object.fromEntries(m.hops.map((h) => [h.name, h]));
    // 22 sent by the guest, 10 ping replies back.
    expect(byName['vm0.eth0']).toMatchObject({ file: 'vm0.eth0.pcapng', frames: 32, out: { frames: 22 }, in: { frames: 10 }, drops: 0 });
    expect(byName['user']).toMatchObject({ frames: 32, out: { frames: 10 }, in: { frames: 22 } });
    expect(byName['vm0.eth0.stack']!.frames).toBe(32);
    for (const h of m.hops) {
      const file = path.join(dir, h.file);
      expect(tsharkErrors(file)).toEqual([]);
      const rows = tsharkFields(file, ['frame.number', 'frame.len']);
      expect(rows.length).toBe(h.frames);
      expect(rows.reduce((n, r) => n + Number(r[1]), 0)).toBe(h.bytes);
      expect(h.files).toEqual([{ file: h.file, frames: h.frames, bytes: h.bytes }]);
      const parsed = await summarizeFile(file);
      expect(parsed.frames).toBe(h.frames);
      expect(parsed.bytes).toBe(h.bytes);
      // Wireshark's view of the hop: its name and description, netlab as the writer, directions.
      const ifRows = tsharkFields(file, ['frame.interface_name', 'frame.interface_description', 'frame.packet_flags_direction']);
      expect(new Set(ifRows.map((r) => r[0]))).toEqual(new Set([h.name]));
      if (h.description) expect(ifRows[0]![1]).toBe(h.description);
      expect(ifRows.filter((r) => r[2] === '0x00000002').length).toBe(h.out.frames);
      expect(ifRows.filter((r) => r[2] === '0x00000001').length).toBe(h.in.frames);
      const ng = parsePcapng(fs.readFileSync(file));
      expect(ng.userAppl).toMatch(/^netlab \d+\.\d+\.\d+/);
      expect(ng.os).toBeTruthy();
      // The statistics block at close: frames seen and dropped at the hop.
      expect(ng.stats).toEqual([{ interfaceId: 0, received: BigInt(h.frames), dropped: BigInt(h.drops) }]);
    }
    // One frame, one id at every hop it crossed: the guest's first ping at the stack, NIC and user hops.
    const idsAt = (hop: string): string[] => tsharkFields(path.join(dir, `${hop}.pcapng`), ['frame.packet_id']).map((r) => r[0]!);
    const stackIds = idsAt('vm0.eth0.stack');
    const nicIds = idsAt('vm0.eth0');
    const userIds = idsAt('user');
    expect(stackIds[0]).toBe('1');
    expect(nicIds[0]).toBe('1');
    expect(userIds[0]).toBe('1');
    // The stack hop records the 10 replies too, with the ids they got at the user hop.
    expect(new Set(stackIds)).toEqual(new Set(nicIds));
    expect(new Set(userIds)).toEqual(new Set(nicIds));
    expect(new Set(nicIds).size).toBe(32);
    const way = followPacket(dir, 1);
    expect(way.sightings.map((x) => [x.hop, x.direction])).toEqual([
      ['vm0.eth0.stack', 'out'],
      ['vm0.eth0', 'out'],
      ['user', 'in'],
    ]);
    expect(formatFollow(way)).toContain('last seen at user (in)');
    // All hops share one timebase: the same frame has the same stamp at every hop.
    const t1 = tsharkFields(path.join(dir, 'vm0.eth0.pcapng'), ['frame.time_epoch'])[0]![0];
    const t2 = tsharkFields(path.join(dir, 'user.pcapng'), ['frame.time_epoch'])[0]![0];
    expect(t1).toBe(t2);
    expect(Number(t1)).toBeCloseTo(Date.parse('2026-11-25T05:50:12Z') / 1000, 6);

    const merged = tsharkFields(path.join(dir, 'all.pcapng'), ['frame.interface_name']);
    expect(merged.length).toBe(96);
    expect(new Set(merged.map((r) => r[0]))).toEqual(new Set(['vm0.eth0', 'user', 'vm0.eth0.stack']));
    expect(tsharkErrors(path.join(dir, 'all.pcapng'))).toEqual([]);

    const s = await summarizeRun(dir);
    const nicHop = s.hops.find((h) => h.hop === 'vm0.eth0')!;
    expect(nicHop.protocols).toEqual({ arp: 1, icmp: 20, tcp: 1, udp: 10, other: 0 });
    expect(nicHop.etherTypes).toEqual({ IPv4: 31, ARP: 1 });
    expect(nicHop.problems).toEqual([]);
    const text = formatSummary(s);
    expect(text).toContain(`run ${run.id} (run)`);
    expect(text).toMatch(/vm0\.eth0\s+32\s+\d+\s+1\s+20\s+1\s+10\s+0\s+0\s+IPv4:31 ARP:1/);
    expect(text).not.toContain('not closed cleanly');
  });

  it('counts drops at the hop where the next element refused the frame', () => {
    const clock = new VirtualClock();
    const run = new CaptureRun({ command: 'run', clock, baseDir: tmp(), manifestIntervalMs: 0 });
    const [a, b] = createLink(clock, ['a', 'b'], { queueLimit: 3 });
    const tap = run.tap(a, 'tap2');
    b.setReceiver(() => true);
    const sent = Array.from({ length: 5 }, (_, i) => tap.send(udpFrame(10, i)));
    expect(sent.filter(Boolean).length).toBe(3);
    run.closeSync();
    const h = readManifest(run.dir!).hops[0]!;
    expect(h).toMatchObject({ name: 'tap2', frames: 5, drops: 2, out: { frames: 5, drops: 2 } });
    expect(a.stats.txDrops).toBe(2);
    // Wireshark sees the drops: a comment on each dropped frame and the statistics block's count.
    const file = path.join(run.dir!, h.file);
    const rows = tsharkFields(file, ['frame.packet_id', 'frame.comment']);
    expect(rows.filter((r) => r[1] === 'dropped: a refused it').map((r) => r[0])).toEqual(['4', '5']);
    expect(parsePcapng(fs.readFileSync(file)).stats[0]).toMatchObject({ received: 5n, dropped: 2n });
    const way = followPacket(run.dir!, 4);
    expect(way.sightings).toHaveLength(1);
    expect(formatFollow(way)).toContain('dropped at tap2: a refused it');
  });

  it('with --no-capture creates nothing and leaves ports untouched', () => {
    const clock = new VirtualClock();
    const dir = tmp();
    const run = new CaptureRun({ command: 'run', clock, baseDir: path.join(dir, 'captures'), enabled: false });
    const [a] = createLink(clock);
    expect(run.tap(a, 'tap2')).toBe(a);
    run.hop('vm0.eth0').record(udpFrame(10), 'out');
    run.closeSync();
    expect(run.dir).toBeNull();
    expect(fs.existsSync(path.join(dir, 'captures'))).toBe(false);
  });

  it('gives two runs started in the same second separate folders', () => {
    const clock = new VirtualClock();
    const startDate = new Date('2026-11-25T05:50:12Z');
    const r1 = new CaptureRun({ command: 'run', clock, baseDir: tmp(), startDate, manifestIntervalMs: 0 });
    const r2 = new CaptureRun({ command: 'run', clock, baseDir: base, startDate, manifestIntervalMs: 0 });
    expect(r2.id).toBe(`${r1.id}-2`);
    r1.closeSync();
    r2.closeSync();
  });

  it('honours the ring size per hop and lists the ring files in the manifest', async () => {
    const clock = new VirtualClock();
    const run = new CaptureRun({ command: 'run', clock, baseDir: tmp(), maxBytes: 8192, ringFiles: 2, manifestIntervalMs: 0 });
    const hop = run.hop('tap2');
    for (let i = 0; i < 100; i++) hop.record(udpFrame(958, i), 'out');
    run.closeSync();
    const m = readManifest(run.dir!);
    const h = m.hops[0]!;
    expect(h.frames).toBe(100);
    expect(h.files.map((f) => f.file)).toEqual([expect.stringMatching(/^tap2_\d{5}_\d{14}\.pcapng$/), expect.stringMatching(/^tap2_\d{5}_\d{14}\.pcapng$/)]);
    expect(m.ring).toEqual({ maxBytes: 8192, maxDurationMs: null, files: 2 });
    // Consecutive numbers, as dumpcap's ring names them (Wireshark's File Set groups them).
    const nums = h.files.map((f) => Number(/_(\d{5})_/.exec(f.file)![1]));
    expect(nums[1]).toBe(nums[0]! + 1);
    expect(h.rotations).toBe(nums[1]! - 1);
    expect(fs.readdirSync(run.dir!).filter((f) => f.startsWith('tap2')).sort()).toEqual(h.files.map((f) => f.file));
    for (const f of h.files) {
      const p = path.join(run.dir!, f.file);
      expect(fs.statSync(p).size).toBeLessThanOrEqual(8192);
      expect(tsharkFields(p, ['frame.number']).length).toBe(f.frames);
    }
    const s = await summarizeRun(run.dir!);
    expect(s.hops[0]!.frames).toBe(h.files.reduce((n, f) => n + f.frames, 0));
    expect(s.hops[0]!.files).toEqual(h.files.map((f) => f.file));
  });
});

/** A child process that captures on a real clock until it is killed. */
const CHILD = `
import { CaptureRun } from './lab/capture/run.ts';
import { RealClock } from './net/clock.ts';
import { udpFrame, pingFrame } from './test/lab/capture/frames.ts';
const [mode, baseDir] = process.argv.slice(2);
// Killed: frames keep coming after the one flush, but nothing reaches the disk after it (a
// SIGKILL in the middle of a write(2) can cut any file short; "after a flush" is the promise).
const run = mode === 'kill'
  ? new CaptureRun({ command: 'kill-' + mode, clock: new RealClock(), baseDir, flushBytes: 64 << 20, flushIntervalMs: 0, manifestIntervalMs: 0 })
  : new CaptureRun({ command: 'kill-' + mode, clock: new RealClock(), baseDir, flushIntervalMs: 5, manifestIntervalMs: 20 });
if (mode === 'term') run.installExitHandlers();
const nic = run.hop('vm0.eth0');
const tap = run.hop('tap2');
let i = 0;
const burst = () => { for (let k = 0; k < 50; k++, i++) { nic.record(udpFrame(100 + (i % 900), i), 'out'); tap.record(pingFrame(i & 0xffff), 'in'); } };
burst();
run.writeManifest();
process.stdout.write('flushed ' + run.dir + '\\n');
setInterval(burst, 1);
`;

function startChild(mode: 'kill' | 'term'): Promise<{ dir: string; kill: (sig: NodeJS.Signals) => Promise<{ code: number | null; signal: NodeJS.Signals | null }> }> {
  const out = path.join(base, 'child.mjs');
  buildSync({ stdin: { contents: CHILD, resolveDir: repo, loader: 'ts', sourcefile: 'child.ts' }, bundle: true, platform: 'node', format: 'esm', outfile: out, logLevel: 'error' });
  const child = spawn(process.execPath, [out, mode, path.join(base, 'captures')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /flushed (.*)\n/.exec(buf);
      if (m) resolve({ dir: m[1]!, kill: (sig) => (child.kill(sig), exited) });
    });
    void exited.then((e) => reject(new Error(`child exited early: ${JSON.stringify(e)}`)));
  });
}

describe('bounded captures', () => {
  it('a long run stays within the ring: 20 MB of frames through one hop leave at most files × filesize', () => {
    const clock = new VirtualClock();
    const maxBytes = 256 * 1024;
    const run = new CaptureRun({ command: 'run', clock, baseDir: tmp(), maxBytes, ringFiles: 3, manifestIntervalMs: 0 });
    const hop = run.hop('tap2');
    const frame = udpFrame(1400, 1);
    for (let i = 0; i < 14_000; i++) {
      hop.record(frame, 'out');
      clock.advance(0.1);
    }
    run.closeSync();
    const files = fs.readdirSync(run.dir!).filter((f) => f.startsWith('tap2_'));
    expect(files).toHaveLength(3);
    const total = files.reduce((n, f) => n + fs.statSync(path.join(run.dir!, f)).size, 0);
    // Each file may go past filesize only by the statistics block written when it is finished.
    expect(total).toBeLessThanOrEqual(3 * (maxBytes + 128));
    for (const f of files) expect(tsharkErrors(path.join(run.dir!, f))).toEqual([]);
    expect(readManifest(run.dir!).hops[0]!.frames).toBe(14_000);
  });
});

describe('captures survive the process ending', () => {
  it('SIGKILL after a flush leaves pcaps tshark reads, with at least the flushed frames', async () => {
    tmp();
    const child = await startChild('kill');
    await new Promise((r) => setTimeout(r, 150));
    const { signal } = await child.kill('SIGKILL');
    expect(signal).toBe('SIGKILL');
    const m = readManifest(child.dir);
    expect(m.endTime).toBeNull();
    for (const h of m.hops) {
      const file = path.join(child.dir, h.file);
      expect(tsharkErrors(file)).toEqual([]);
      const n = tsharkFields(file, ['frame.number']).length;
      expect(n).toBeGreaterThanOrEqual(50);
      // The manifest was written after a flush: the file holds at least what it lists.
      expect(n).toBeGreaterThanOrEqual(h.files[0]!.frames);
      const parsed = await summarizeFile(file);
      expect(parsed.frames).toBe(n);
      expect(parsed.problems).toEqual([]);
    }
    expect(formatSummary(await summarizeRun(child.dir))).toContain('not closed cleanly');
  });

  it('SIGTERM closes the run: complete manifest equal to the files, then the default exit', async () => {
    tmp();
    const child = await startChild('term');
    await new Promise((r) => setTimeout(r, 100));
    const { signal } = await child.kill('SIGTERM');
    expect(signal).toBe('SIGTERM');
    const m = readManifest(child.dir);
    expect(m.endTime).not.toBeNull();
    expect(m.command).toBe('kill-term');
    for (const h of m.hops) {
      const file = path.join(child.dir, h.file);
      expect(tsharkErrors(file)).toEqual([]);
      expect(tsharkFields(file, ['frame.number']).length).toBe(h.frames);
    }
  });
});

describe('--debug capture', () => {
  it('says which hops, files, drops and pruning happened when on, and nothing when off', () => {
    const lines: string[] = [];
    const on = { on: true, debug: (m: string) => lines.push(m) };
    const clock = new VirtualClock();
    const run = new CaptureRun({ command: 'run', clock, baseDir: tmp(), manifestIntervalMs: 0, keepRuns: 5, debug: on });
    const [a, b] = createLink(clock, ['a', 'b'], { queueLimit: 1 });
    const tap = run.tap(a, 'tap2', 'host TAP');
    b.setReceiver(() => true);
    tap.send(udpFrame(10, 1));
    tap.send(udpFrame(10, 2));
    run.closeSync();
    expect(lines.some((l) => l.startsWith('prune '))).toBe(true);
    expect(lines.some((l) => /^hop tap2 \(host TAP\): .*tap2\.pcapng$/.test(l))).toBe(true);
    expect(lines).toContain('tap2: drop out packet 2: a refused it');
    expect(lines.some((l) => l.startsWith('manifest ') && l.includes('tap2 2'))).toBe(true);

    const silent: string[] = [];
    let built = 0;
    // Off: no call reaches the sink, and no message is built (the getter counts reads of `on` only).
    const off = { get on() { return false; }, debug: (m: string) => { built++; silent.push(m); } };
    const run2 = new CaptureRun({ command: 'run', clock, baseDir: base, manifestIntervalMs: 0, keepRuns: 5, debug: off });
    const [c, d] = createLink(clock, ['c', 'd'], { queueLimit: 1 });
    const tap2 = run2.tap(c, 'tap2');
    d.setReceiver(() => true);
    tap2.send(udpFrame(10, 1));
    tap2.send(udpFrame(10, 2));
    run2.closeSync();
    expect(silent).toEqual([]);
    expect(built).toBe(0);
  });
});
