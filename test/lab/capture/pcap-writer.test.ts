import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VirtualClock } from '../../../net/clock.js';
import { PcapWriter } from '../../../lab/capture/pcap-writer.js';
import { PcapngWriter } from '../../../lab/capture/pcapng-writer.js';
import { summarizePcap } from '../../../lab/capture/summary.js';
import { ringFilesIn } from '../../../lab/capture/batch-file.js';
import { parsePcapng } from '../../../lab/capture/pcapng-blocks.js';
import { arpRequest, IP_A, IP_B, MAC_A, pingFrame, requireTshark, tcpFrame, tsharkErrors, tsharkFields, udpFrame } from './frames.js';

let dir: string;
beforeAll(() => requireTshark());
afterEach(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});
const tmp = (): string => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netlab-pcap-')));

describe('PcapWriter', () => {
  it('writes a classic pcap header: microsecond magic, 2.4, snaplen, Ethernet', () => {
    const file = path.join(tmp(), 'x.pcap');
    const w = new PcapWriter(file, { clock: new VirtualClock(), snaplen: 1500 });
    w.close();
    const b = fs.readFileSync(file);
    expect(b.length).toBe(24);
    expect(b.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect([b.readUInt16LE(4), b.readUInt16LE(6)]).toEqual([2, 4]);
    expect(b.readUInt32LE(16)).toBe(1500);
    expect(b.readUInt32LE(20)).toBe(1);
  });

  it('is a valid empty capture as soon as it is opened (before any flush)', () => {
    const file = path.join(tmp(), 'x.pcap');
    const w = new PcapWriter(file, { clock: new VirtualClock() });
    expect(tsharkFields(file, ['frame.number'])).toEqual([]);
    w.close();
  });

  it('stamps frames from the clock in microseconds, readable by tshark and pcap-parser alike', async () => {
    const file = path.join(tmp(), 'x.pcap');
    const clock = new VirtualClock();
    // Unix time 1000 s at clock 0, so the expected stamps are plain numbers.
    const w = new PcapWriter(file, { clock, epochOffsetMs: 1_000_000 });
    const frames = [udpFrame(100), tcpFrame(10, 5), pingFrame(1), arpRequest(MAC_A, IP_A, IP_B), udpFrame(3, 1, 'b')];
    const times = [0, 1.5, 999.999, 1000.0004, 123456.789];
    frames.forEach((f, i) => w.writeFrame(f, times[i]!));
    w.close();

    const rows = tsharkFields(file, ['frame.number', 'frame.time_epoch', 'frame.len', 'frame.protocols']);
    expect(rows.map((r) => r[0])).toEqual(['1', '2', '3', '4', '5']);
    expect(rows.map((r) => Number(r[1]))).toEqual([1000, 1000.0015, 1000.999999, 1001, 1123.456789]);
    expect(rows.map((r) => Number(r[2]))).toEqual(frames.map((f) => f.length));
    expect(rows[0]![3]).toBe('eth:ethertype:ip:udp:echo');
    expect(rows[1]![3]).toContain('eth:ethertype:ip:tcp');
    expect(rows[2]![3]).toContain('icmp');
    expect(rows[3]![3]).toBe('eth:ethertype:arp');
    expect(tsharkErrors(file)).toEqual([]);

    const s = await summarizePcap(file);
    expect(s.problems).toEqual([]);
    expect(s.frames).toBe(5);
    expect(s.bytes).toBe(frames.reduce((n, f) => n + f.length, 0));
    expect(s.protocols).toEqual({ arp: 1, icmp: 1, tcp: 1, udp: 2, other: 0 });
    expect(s.firstTime).toBe(1000);
  });

  it('the tshark check used throughout does catch a broken frame', () => {
    const file = path.join(tmp(), 'x.pcap');
    const w = new PcapWriter(file, { clock: new VirtualClock() });
    const bad = udpFrame(20);
    bad[bad.length - 1]! ^= 1;
    w.record(bad);
    w.close();
    expect(tsharkErrors(file).join('\n')).toMatch(/Errors \(1\)/);
  });

  it('writes nanosecond pcaps (magic a1b23c4d) that tshark and the summary read', async () => {
    const file = path.join(tmp(), 'x.pcap');
    const w = new PcapWriter(file, { clock: new VirtualClock(), precision: 'ns', epochOffsetMs: 5_000 });
    w.writeFrame(udpFrame(10), 0.000123);
    w.writeFrame(udpFrame(10, 2), 2.5);
    w.close();
    expect(fs.readFileSync(file).readUInt32LE(0)).toBe(0xa1b23c4d);
    const rows = tsharkFields(file, ['frame.time_epoch']);
    expect(rows.map((r) => r[0])).toEqual(['5.000000123', '5.002500000']);
    const s = await summarizePcap(file);
    expect(s.precision).toBe('ns');
    expect(s.frames).toBe(2);
    expect(s.lastTime).toBeCloseTo(5.0025, 9);
  });

  it('keeps snaplen bytes of a frame and its original length', () => {
    const file = path.join(tmp(), 'x.pcap');
    const w = new PcapWriter(file, { clock: new VirtualClock(), snaplen: 64 });
    w.record(udpFrame(1000));
    w.close();
    const rows = tsharkFields(file, ['frame.len', 'frame.cap_len']);
    expect(rows).toEqual([[String(udpFrame(1000).length), '64']]);
  });

  it('does not keep a reference to the frame (the caller hands it on)', () => {
    const file = path.join(tmp(), 'x.pcap');
    const w = new PcapWriter(file, { clock: new VirtualClock() });
    const f = udpFrame(20);
    const original = f.slice();
    w.record(f);
    f.fill(0xee);
    w.close();
    expect(fs.readFileSync(file).subarray(24 + 16)).toEqual(Buffer.from(original));
  });

  it('batches records in memory and writes them when the batch fills', () => {
    const file = path.join(tmp(), 'x.pcap');
    const w = new PcapWriter(file, { clock: new VirtualClock(), flushBytes: 4096, flushIntervalMs: 0 });
    const f = udpFrame(200);
    w.record(f);
    expect(fs.statSync(file).size).toBe(24);
    while (fs.statSync(file).size === 24) w.record(f);
    // The flush wrote whole records only.
    expect((fs.statSync(file).size - 24) % (16 + f.length)).toBe(0);
    w.close();
    expect(fs.statSync(file).size).toBe(24 + w.frames * (16 + f.length));
  });

  it('flushes on a short real-time timer even when the clock is virtual', async () => {
    const file = path.join(tmp(), 'x.pcap');
    const clock = new VirtualClock();
    const w = new PcapWriter(file, { clock, flushIntervalMs: 20 });
    w.record(udpFrame(10));
    // The flush timer is not a simulation timer.
    expect(clock.pending()).toBe(0);
    await new Promise((r) => setTimeout(r, 80));
    expect(tsharkFields(file, ['frame.number'])).toEqual([['1']]);
    w.close();
  });

  it('ring mode names files as dumpcap does (hop_NNNNN_YYYYMMDDhhmmss), keeps ringFiles of them, none over maxBytes, all valid', async () => {
    const file = path.join(tmp(), 'hop.pcap');
    const maxBytes = 10_000;
    // Unix time 2026-12-03T06:23:10Z at clock 0.
    const w = new PcapWriter(file, { clock: new VirtualClock(), epochOffsetMs: Date.parse('2026-12-03T06:23:10Z'), maxBytes, ringFiles: 3, flushBytes: 1024 });
    const f = udpFrame(458); // 500-byte frames, 516-byte records
    for (let i = 0; i < 200; i++) w.record(udpFrame(458, i));
    w.close();
    const perFile = Math.floor((maxBytes - 24) / (16 + f.length));
    const rotations = Math.ceil(200 / perFile) - 1;
    expect(w.rotations).toBe(rotations);
    const names = fs.readdirSync(dir).sort();
    const n = rotations + 1;
    const name = (k: number): string => `hop_${String(k).padStart(5, '0')}_20261203062310.pcap`;
    expect(names).toEqual([name(n - 2), name(n - 1), name(n)]);
    expect(ringFilesIn(dir, 'hop.pcap')).toEqual(names);
    let total = 0;
    for (const x of names) {
      const p = path.join(dir, x);
      expect(fs.statSync(p).size).toBeLessThanOrEqual(maxBytes);
      expect(tsharkErrors(p)).toEqual([]);
      total += tsharkFields(p, ['frame.number']).length;
    }
    expect(fs.statSync(path.join(dir, name(n - 1))).size).toBe(24 + perFile * (16 + f.length));
    // The ring holds the newest frames: the live file ends with the last one written.
    const counts = w.fileCounts();
    expect(counts.map((c) => path.basename(c.file))).toEqual(names);
    expect(counts.reduce((k, c) => k + c.frames, 0)).toBe(total);
    expect(w.frames).toBe(200);
    const last = tsharkFields(path.join(dir, name(n)), ['ip.id']).at(-1)![0];
    expect(Number(last)).toBe(199);
    const oldest = await summarizePcap(path.join(dir, name(n - 2)));
    expect(oldest.frames).toBe(perFile);
  });

  it('ring by duration (dumpcap -b duration:) starts a new file after that much lab time', () => {
    const file = path.join(tmp(), 'hop.pcap');
    const clock = new VirtualClock();
    const w = new PcapWriter(file, { clock, epochOffsetMs: Date.parse('2026-12-03T06:00:00Z'), maxDurationMs: 1000, ringFiles: 10 });
    for (let i = 0; i < 35; i++) {
      w.record(udpFrame(10, i));
      clock.advance(100);
    }
    w.close();
    const names = fs.readdirSync(dir).sort();
    // 3.5 s of frames, a new file every second of lab time; each named for when it started.
    expect(names).toEqual(['hop_00001_20261203060000.pcap', 'hop_00002_20261203060001.pcap', 'hop_00003_20261203060002.pcap', 'hop_00004_20261203060003.pcap']);
    expect(w.fileCounts().map((c) => c.frames)).toEqual([10, 10, 10, 5]);
  });
});

describe('PcapngWriter', () => {
  it('names one interface per hop and records each packet\'s direction', () => {
    const file = path.join(tmp(), 'all.pcapng');
    const clock = new VirtualClock();
    const w = new PcapngWriter(file, { clock, precision: 'ns' });
    const a = w.addInterface('vm0.eth0');
    w.writeFrame(a, udpFrame(10), 'out', 1);
    const b = w.addInterface('tap2');
    w.writeFrame(b, udpFrame(11, 1, 'b'), 'in', 2);
    w.writeFrame(a, pingFrame(3), 'in', 3);
    w.close();
    const rows = tsharkFields(file, ['frame.interface_name', 'frame.packet_flags_direction', 'frame.len']);
    expect(rows).toEqual([
      ['vm0.eth0', '0x00000002', String(udpFrame(10).length)],
      ['tap2', '0x00000001', String(udpFrame(11).length)],
      ['vm0.eth0', '0x00000001', String(pingFrame(3).length)],
    ]);
    expect(tsharkErrors(file)).toEqual([]);
  });

  it('writes what Wireshark shows of a hop: SHB application and OS, IDB name/description/resolution/snaplen, packet ids, statistics', () => {
    const file = path.join(tmp(), 'tap2.pcapng');
    const clock = new VirtualClock();
    const w = new PcapngWriter(file, { clock, precision: 'ns', snaplen: 200, section: { userAppl: 'netlab 9.9.9', os: 'Linux test' } });
    const id = w.addInterface('tap2', 'host TAP device tap2');
    w.writeFrame(id, udpFrame(10), 'in', 1, 7);
    w.writeFrame(id, udpFrame(400, 2), 'out', 2, 8);
    w.noteDrop(id, 'vm0.eth0 refused it');
    clock.advance(5);
    w.close();
    expect(tsharkErrors(file)).toEqual([]);
    const rows = tsharkFields(file, ['frame.interface_name', 'frame.interface_description', 'frame.packet_id', 'frame.packet_flags_direction', 'frame.cap_len', 'frame.len', 'frame.comment']);
    expect(rows).toEqual([
      ['tap2', 'host TAP device tap2', '7', '0x00000001', String(udpFrame(10).length), String(udpFrame(10).length), ''],
      ['tap2', 'host TAP device tap2', '8', '0x00000002', '200', String(udpFrame(400).length), 'dropped: vm0.eth0 refused it'],
    ]);
    const f = parsePcapng(fs.readFileSync(file));
    expect(f.problems).toEqual([]);
    expect(f.userAppl).toBe('netlab 9.9.9');
    expect(f.os).toBe('Linux test');
    expect(f.interfaces).toEqual([{ name: 'tap2', description: 'host TAP device tap2', snaplen: 200, linkType: 1, unitsPerSec: 1_000_000_000n }]);
    expect(f.stats).toEqual([{ interfaceId: 0, received: 2n, dropped: 1n }]);
    // Wireshark's own reader (capinfos, from the tshark install) sees the section's application,
    // the interface's description and the statistics block.
    const info = spawnSync('capinfos', [file], { encoding: 'utf8' }).stdout;
    expect(info).toContain('Capture application: netlab 9.9.9');
    expect(info).toContain('Description = host TAP device tap2');
    expect(info).toContain('Number of stat entries = 1');
    expect(tsharkFields(file, ['frame.number']).length).toBe(2);
  });

  it('a drop noted after the record reached the disk is still counted (no comment can be added then)', () => {
    const file = path.join(tmp(), 'x.pcapng');
    const w = new PcapngWriter(file, { clock: new VirtualClock() });
    const id = w.addInterface('x');
    w.writeFrame(id, udpFrame(10), 'out', 0, 1);
    w.flush();
    w.noteDrop(id, 'late');
    w.close();
    const f = parsePcapng(fs.readFileSync(file));
    expect(f.packets[0]!.comments).toEqual([]);
    expect(f.stats[0]).toMatchObject({ received: 1n, dropped: 1n });
  });

  it('ring files each start with the section and interfaces and end with statistics', () => {
    const file = path.join(tmp(), 'hop.pcapng');
    const w = new PcapngWriter(file, { clock: new VirtualClock(), maxBytes: 4000, ringFiles: 2, flushBytes: 512 });
    const id = w.addInterface('hop', 'a hop');
    for (let i = 0; i < 30; i++) w.writeFrame(id, udpFrame(200, i), 'out', i, i + 1);
    w.close();
    const names = fs.readdirSync(dir).sort();
    expect(names).toHaveLength(2);
    let lastRecv = 0n;
    for (const n of names) {
      const p = path.join(dir, n);
      expect(fs.statSync(p).size).toBeLessThanOrEqual(4000 + 200);
      expect(tsharkErrors(p)).toEqual([]);
      const f = parsePcapng(fs.readFileSync(p));
      expect(f.interfaces.map((i) => [i.name, i.description])).toEqual([['hop', 'a hop']]);
      expect(f.stats).toHaveLength(1);
      expect(f.stats[0]!.received! > lastRecv).toBe(true);
      lastRecv = f.stats[0]!.received!;
    }
    expect(lastRecv).toBe(30n);
  });
});
