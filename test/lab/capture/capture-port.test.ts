import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VirtualClock } from '../../../net/clock.js';
import { createLink } from '../../../net/link.js';
import type { FramePort } from '../../../net/frame-port.js';
import { foldSum, pseudoHeaderSum } from '../../../net/wire/checksum.js';
import { captureBetween } from '../../../lab/capture/capture-port.js';
import { PcapWriter, type CaptureDirection, type CaptureSink } from '../../../lab/capture/pcap-writer.js';
import { pingFrame, requireTshark, tcpFrame, tsharkErrors, tsharkFields, udpFrame } from './frames.js';

class MemorySink implements CaptureSink {
  frames: { dir: CaptureDirection; bytes: Uint8Array }[] = [];
  refusedCount = { in: 0, out: 0 };
  record(frame: Uint8Array, dir: CaptureDirection): void {
    this.frames.push({ dir, bytes: frame.slice() });
  }
  refused(dir: CaptureDirection): void {
    this.refusedCount[dir]++;
  }
}

/** `f` (Ethernet + 20-byte IPv4 + TCP) with only the folded pseudo-header sum in its TCP checksum field. */
function partialOf(f: Uint8Array): Uint8Array {
  const p = f.slice();
  const sum = foldSum(pseudoHeaderSum(p.subarray(26, 30), p.subarray(30, 34), 6, p.length - 34));
  p[50] = sum >> 8;
  p[51] = sum & 0xff;
  return p;
}

let dir: string | null = null;
beforeAll(() => requireTshark());
afterEach(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = null;
});

describe('capture point on an in-memory link', () => {
  it('records both directions and passes frames through unchanged', () => {
    const clock = new VirtualClock();
    const [nicSide, backend] = createLink(clock, ['vm0.eth0', 'net0-back']);
    const sink = new MemorySink();
    const tap = captureBetween(nicSide, 'vm0.eth0', sink);
    const atNic: Uint8Array[] = [];
    const atBackend: Uint8Array[] = [];
    tap.setReceiver((f) => void atNic.push(f));
    backend.setReceiver((f) => {
      atBackend.push(f);
      backend.send(pingFrame(1, true));
    });
    const out = pingFrame(1);
    expect(tap.send(out)).toBe(true);
    clock.runUntil(() => atNic.length === 1);
    expect(atBackend[0]).toBe(out); // the same frame object: no copy on the data path
    expect(atNic[0]).toEqual(pingFrame(1, true));
    expect(sink.frames.map((f) => f.dir)).toEqual(['out', 'in']);
    expect(tap.counters).toEqual({ out: { frames: 1, bytes: out.length, drops: 0 }, in: { frames: 1, bytes: atNic[0]!.length, drops: 0 } });
    expect(tap.stats).toMatchObject({ txFrames: 1, rxFrames: 1, txDrops: 0, rxDrops: 0 });
    expect(tap.name).toBe('vm0.eth0');
  });

  it('returns what the wrapped port returns and leaves a refused frame counted once, by the port that refused it', () => {
    const clock = new VirtualClock();
    const [nicSide, backend] = createLink(clock, ['a', 'b'], { queueLimit: 2 });
    const sink = new MemorySink();
    const tap = captureBetween(nicSide, 'hop', sink);
    backend.setReceiver(() => true);
    const results = [1, 2, 3].map((i) => tap.send(udpFrame(10, i)));
    expect(results).toEqual([true, true, false]);
    expect(nicSide.stats.txDrops).toBe(1);
    expect(tap.stats.txDrops).toBe(0);
    expect(tap.stats.txFrames).toBe(2);
    // The pcap shows what reached the hop; the drop is the hop's to report.
    expect(sink.frames.length).toBe(3);
    expect(tap.counters.out.drops).toBe(1);
    expect(sink.refusedCount.out).toBe(1);
    // A frame too short for any port is refused by the link, not the tap.
    expect(tap.send(new Uint8Array(4))).toBe(false);
    expect(nicSide.stats.txDrops).toBe(2);
  });

  it('passes flow control through and records a held frame once, when it first reached the hop', () => {
    const clock = new VirtualClock();
    const [nicSide, backend] = createLink(clock, ['vm0.eth0', 'net0-back']);
    const sink = new MemorySink();
    const tap = captureBetween(nicSide, 'vm0.eth0', sink);
    expect(tap.holds).toBe(true);
    let busy = true;
    const got: number[] = [];
    tap.setReceiver((f) => {
      if (busy) return 'busy';
      got.push(f.length);
      return true;
    });
    backend.send(udpFrame(10, 1));
    backend.send(udpFrame(20, 2));
    clock.advance(5);
    expect(got).toEqual([]);
    expect(sink.frames.length).toBe(1);
    busy = false;
    tap.ready();
    clock.advance(5);
    expect(got.length).toBe(2);
    expect(sink.frames.map((f) => f.dir)).toEqual(['in', 'in']);
    expect(tap.counters.in).toEqual({ frames: 2, bytes: got[0]! + got[1]!, drops: 0 });
    expect(nicSide.stats.rxDrops).toBe(0);
  });

  it('reports a frame the outer receiver refuses back to the link, which counts the rx drop', () => {
    const clock = new VirtualClock();
    const [nicSide, backend] = createLink(clock);
    const sink = new MemorySink();
    const tap = captureBetween(nicSide, 'hop', sink);
    let accept = false;
    tap.setReceiver(() => accept);
    backend.send(udpFrame(10, 1));
    clock.runUntil(() => false, 10);
    accept = true;
    backend.send(udpFrame(10, 2));
    clock.runUntil(() => false, 10);
    expect(nicSide.stats).toMatchObject({ rxFrames: 1, rxDrops: 1 });
    expect(tap.stats).toMatchObject({ rxFrames: 1, rxDrops: 0 });
    expect(tap.counters.in).toEqual({ frames: 2, bytes: 2 * udpFrame(10).length, drops: 1 });
    // With no receiver at all the frame is refused (as a bare link end would).
    tap.setReceiver(null);
    backend.send(udpFrame(10, 3));
    clock.runUntil(() => false, 10);
    expect(nicSide.stats.rxDrops).toBe(2);
  });

  it('records finished checksums: a frame handed in or sent with a partial one is finished first, and it never offers to take them', () => {
    const clock = new VirtualClock();
    const [nicSide, backend] = createLink(clock, ['vm0.eth0', 'net0-back']);
    const sink = new MemorySink();
    const tap = captureBetween(nicSide, 'vm0.eth0', sink);
    (tap as FramePort).offerGso!(true, true); // the partial word is dropped on the way in
    expect(backend.gso).toBe(true);
    expect(backend.gsoChecksumPartial).toBe(false);
    const heard: { f: Uint8Array; valid: boolean; partial: boolean }[] = [];
    tap.setReceiver((f, info) => void heard.push({ f, valid: info?.checksumValid === true, partial: info?.checksumPartial === true }));
    const atBackend: { f: Uint8Array; partial: boolean }[] = [];
    backend.setReceiver((f, info) => void atBackend.push({ f, partial: info?.checksumPartial === true }));
    const finished = tcpFrame(3000, 7);
    // In: a link carrying the word to a receiver behind the capture point (as a driver hands NEEDS_CSUM frames to its stack).
    nicSide.offerGso!(true, true);
    backend.send(partialOf(finished), { checksumPartial: true });
    clock.runUntil(() => heard.length === 1);
    expect([...sink.frames[0]!.bytes]).toEqual([...finished]);
    expect(heard[0]).toMatchObject({ valid: true, partial: false });
    expect([...heard[0]!.f]).toEqual([...finished]);
    // Out: finished before it is recorded and passed on as an ordinary frame.
    expect(tap.send(partialOf(finished), { checksumPartial: true })).toBe(true);
    clock.runUntil(() => atBackend.length === 1);
    expect([...sink.frames[1]!.bytes]).toEqual([...finished]);
    expect(atBackend[0]!.partial).toBe(false);
  });

  it('never delivers re-entrantly inside send', () => {
    const clock = new VirtualClock();
    const [nicSide, backend] = createLink(clock);
    const tap = captureBetween(nicSide, 'hop', new MemorySink());
    let delivered = 0;
    backend.setReceiver(() => void delivered++);
    tap.send(udpFrame(10));
    expect(delivered).toBe(0);
    clock.runUntil(() => delivered === 1);
    expect(delivered).toBe(1);
  });

  it('two capture points on one link (device side and backend side) each write a pcap tshark reads cleanly', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netlab-cap-'));
    const clock = new VirtualClock();
    const [nicLink, backLink] = createLink(clock, ['vm0.eth0', 'user']);
    const wNic = new PcapWriter(path.join(dir, 'vm0.eth0.pcap'), { clock });
    const wUser = new PcapWriter(path.join(dir, 'user.pcap'), { clock });
    const nic = captureBetween(nicLink, 'vm0.eth0', wNic);
    const user = captureBetween(backLink, 'user', wUser);
    let got = 0;
    nic.setReceiver(() => void got++);
    // The "user network" answers every UDP datagram and TCP segment.
    user.setReceiver((f) => {
      user.send(f[23] === 17 ? udpFrame(20, f[19]!, 'b') : udpFrame(5, 99, 'b'));
    });
    for (let i = 0; i < 20; i++) {
      nic.send(i % 2 ? tcpFrame(100 + i, 1000 * i) : udpFrame(50 + i, i));
      clock.advance(1);
    }
    clock.runUntil(() => got === 20);
    wNic.close();
    wUser.close();
    for (const [name, point] of [['vm0.eth0.pcap', nic], ['user.pcap', user]] as const) {
      const file = path.join(dir, name);
      expect(tsharkErrors(file)).toEqual([]);
      const rows = tsharkFields(file, ['frame.number', 'frame.len']);
      expect(rows.length).toBe(40);
      expect(rows.length).toBe(point.counters.in.frames + point.counters.out.frames);
      expect(rows.reduce((n, r) => n + Number(r[1]), 0)).toBe(point.counters.in.bytes + point.counters.out.bytes);
    }
  });
});
