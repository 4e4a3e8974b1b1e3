import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import type { EventEmitter } from 'node:events';
import { parsePcapng, BLOCK_SHB } from './pcapng-blocks.js';
import { MANIFEST_FILE, type CaptureManifest } from './run.js';

/**
 * Read a capture run folder back and summarise each hop: frames, bytes, and what protocols they
 * carried (by EtherType, and for IPv4 by protocol). Backs `lab captures`: `summarizeRun` returns the
 * data and a printable table. Reading goes through the npm `pcap-parser`, an implementation other
 * than our writer, so the summary also checks that what we wrote is what a third party reads.
 */

/** The part of pcap-parser's (untyped, CommonJS) API we use; see node_modules/pcap-parser/lib. */
interface PcapPacketHeader {
  timestampSeconds: number;
  /** Sub-second part: microseconds, or nanoseconds for a nanosecond file we fed it (see below). */
  timestampMicroseconds: number;
  capturedLength: number;
  originalLength: number;
}
interface PcapGlobalHeader {
  magicNumber: number;
  majorVersion: number;
  minorVersion: number;
  snapshotLength: number;
  linkLayerType: number;
}
interface PcapParser extends EventEmitter {
  /** Bytes received but not yet parsed (a record cut short at the end of the file). */
  buffer: Buffer | null;
}
interface PcapParserModule {
  parse(input: string | Readable): PcapParser;
}

const requireCjs = createRequire(import.meta.url);
const pcapParser = requireCjs('pcap-parser') as PcapParserModule;

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_VLAN = 0x8100;
const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

const ETHERTYPE_NAMES: Record<number, string> = {
  0x0800: 'IPv4',
  0x0806: 'ARP',
  0x86dd: 'IPv6',
  0x8100: 'VLAN',
  0x88cc: 'LLDP',
};

export interface ProtocolCounts {
  arp: number;
  icmp: number;
  tcp: number;
  udp: number;
  /** Everything else: other EtherTypes, other IPv4 protocols, frames too short to tell. */
  other: number;
}

export interface HopSummary {
  hop: string;
  /** Files read, oldest first (several in ring mode). */
  files: string[];
  frames: number;
  /** Original frame lengths summed. */
  bytes: number;
  capturedBytes: number;
  /** Frames per EtherType, keyed by name where known (`IPv4`) or `0x88b5`. */
  etherTypes: Record<string, number>;
  protocols: ProtocolCounts;
  /** Unix time (seconds) of the first and last frame; null when empty. */
  firstTime: number | null;
  lastTime: number | null;
  /** From the manifest when there is one. */
  drops: number | null;
  manifestFrames: number | null;
  /** Problems reading (bad magic, a record cut short by a crash …). */
  problems: string[];
}

export interface RunSummary {
  dir: string;
  runId: string;
  command: string | null;
  manifest: CaptureManifest | null;
  hops: HopSummary[];
}

export interface PcapFileSummary {
  frames: number;
  bytes: number;
  capturedBytes: number;
  etherTypes: Record<string, number>;
  protocols: ProtocolCounts;
  firstTime: number | null;
  lastTime: number | null;
  linkType: number | null;
  snaplen: number | null;
  precision: 'us' | 'ns' | null;
  problems: string[];
}

/**
 * pcap-parser knows only the microsecond magic. A nanosecond file has the same layout, so it is fed
 * the microsecond magic instead and the sub-second field is read as nanoseconds afterwards.
 */
function magicPatcher(): Transform {
  let first = true;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (first && chunk.length >= 4) {
        first = false;
        const m = chunk.readUInt32LE(0);
        const be = chunk.readUInt32BE(0);
        if (m === 0xa1b23c4d) chunk.writeUInt32LE(0xa1b2c3d4, 0);
        else if (be === 0xa1b23c4d) chunk.writeUInt32BE(0xa1b2c3d4, 0);
      }
      done(null, chunk);
    },
  });
}

function readMagic(file: string): number | null {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(4);
    if (fs.readSync(fd, b, 0, 4, 0) < 4) return null;
    return b.readUInt32LE(0);
  } finally {
    fs.closeSync(fd);
  }
}

function classify(frame: Buffer, s: { etherTypes: Record<string, number>; protocols: ProtocolCounts }): void {
  if (frame.length < 14) {
    s.protocols.other++;
    return;
  }
  let etherType = frame.readUInt16BE(12);
  let l3 = 14;
  // One 802.1Q tag: count the frame by what it carries.
  if (etherType === ETHERTYPE_VLAN && frame.length >= 18) {
    etherType = frame.readUInt16BE(16);
    l3 = 18;
  }
  const key = ETHERTYPE_NAMES[etherType] ?? `0x${etherType.toString(16).padStart(4, '0')}`;
  s.etherTypes[key] = (s.etherTypes[key] ?? 0) + 1;
  if (etherType === ETHERTYPE_ARP) s.protocols.arp++;
  else if (etherType === ETHERTYPE_IPV4 && frame.length >= l3 + 20) {
    const proto = frame[l3 + 9];
    if (proto === IPPROTO_ICMP) s.protocols.icmp++;
    else if (proto === IPPROTO_TCP) s.protocols.tcp++;
    else if (proto === IPPROTO_UDP) s.protocols.udp++;
    else s.protocols.other++;
  } else s.protocols.other++;
}

/** Summarise one capture file, classic pcap or pcapng (by its magic). Never rejects. */
export function summarizeFile(file: string): Promise<PcapFileSummary> {
  let magic: number | null = null;
  try {
    magic = readMagic(file);
  } catch {
    // summarizePcap reports the error.
  }
  return magic === BLOCK_SHB ? Promise.resolve(summarizePcapng(file)) : summarizePcap(file);
}

/** Summarise one pcapng file as netlab writes it (per-hop or merged). */
export function summarizePcapng(file: string): PcapFileSummary {
  const s = emptySummary();
  let b: Buffer;
  try {
    b = fs.readFileSync(file);
  } catch (e) {
    s.problems.push(`${path.basename(file)}: ${(e as Error).message}`);
    return s;
  }
  const f = parsePcapng(b);
  for (const p of f.problems) s.problems.push(`${path.basename(file)}: ${p}`);
  const first = f.interfaces[0];
  if (first) {
    s.linkType = first.linkType;
    s.snaplen = first.snaplen;
    s.precision = first.unitsPerSec === 1_000_000_000n ? 'ns' : 'us';
  }
  for (const i of f.interfaces) if (i.linkType !== 1) s.problems.push(`${path.basename(file)}: interface ${i.name} has link type ${i.linkType}, not Ethernet (1)`);
  for (const p of f.packets) {
    s.frames++;
    s.bytes += p.origlen;
    s.capturedBytes += p.caplen;
    if (s.firstTime === null) s.firstTime = p.time;
    s.lastTime = p.time;
    classify(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.length), s);
  }
  return s;
}

function emptySummary(): PcapFileSummary {
  return {
    frames: 0,
    bytes: 0,
    capturedBytes: 0,
    etherTypes: {},
    protocols: { arp: 0, icmp: 0, tcp: 0, udp: 0, other: 0 },
    firstTime: null,
    lastTime: null,
    linkType: null,
    snaplen: null,
    precision: null,
    problems: [],
  };
}

/** Summarise one classic pcap file with pcap-parser. Never rejects: problems are reported. */
export function summarizePcap(file: string): Promise<PcapFileSummary> {
  const s = emptySummary();
  let magic: number | null;
  try {
    magic = readMagic(file);
  } catch (e) {
    s.problems.push(`${path.basename(file)}: ${(e as Error).message}`);
    return Promise.resolve(s);
  }
  if (magic === null) {
    s.problems.push(`${path.basename(file)}: shorter than a pcap header`);
    return Promise.resolve(s);
  }
  const nanos = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
  s.precision = nanos ? 'ns' : 'us';
  const divisor = nanos ? 1e9 : 1e6;
  return new Promise((resolve) => {
    const parser = pcapParser.parse(fs.createReadStream(file).pipe(magicPatcher()));
    parser.on('globalHeader', (h: PcapGlobalHeader) => {
      s.linkType = h.linkLayerType;
      s.snaplen = h.snapshotLength;
      if (h.linkLayerType !== 1) s.problems.push(`${path.basename(file)}: link type ${h.linkLayerType}, not Ethernet (1)`);
    });
    parser.on('packet', (p: { header: PcapPacketHeader; data: Buffer }) => {
      s.frames++;
      s.bytes += p.header.originalLength;
      s.capturedBytes += p.header.capturedLength;
      const t = p.header.timestampSeconds + p.header.timestampMicroseconds / divisor;
      if (s.firstTime === null) s.firstTime = t;
      s.lastTime = t;
      classify(p.data, s);
    });
    parser.on('error', (e: Error) => s.problems.push(`${path.basename(file)}: ${e.message}`));
    parser.on('end', () => {
      if (parser.buffer && parser.buffer.length > 0 && s.linkType !== null) {
        s.problems.push(`${path.basename(file)}: last record cut short (${parser.buffer.length} bytes left over)`);
      }
      resolve(s);
    });
  });
}

export function readManifest(dir: string): CaptureManifest | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')) as CaptureManifest;
  } catch {
    return null;
  }
}

/**
 * Hops and their files: from the manifest, else every `*.pcapng` / `*.pcap` but the merged file,
 * ring files (`hop_00001_20261203062310.pcapng`) joined to their hop, oldest first.
 */
export function hopFiles(dir: string, manifest: CaptureManifest | null): { hop: string; files: string[] }[] {
  if (manifest) {
    return manifest.hops.map((h) => ({ hop: h.name, files: h.files.length > 0 ? h.files.map((f) => f.file) : [h.file] }));
  }
  const groups = new Map<string, { n: number; file: string }[]>();
  for (const f of fs.readdirSync(dir).sort()) {
    const m = /^(.*?)(?:_(\d{5,})_\d{14})?\.(pcapng|pcap)$/.exec(f);
    if (!m || f === 'all.pcapng') continue;
    const list = groups.get(m[1]!) ?? [];
    list.push({ n: m[2] ? Number(m[2]) : 0, file: f });
    groups.set(m[1]!, list);
  }
  return [...groups].map(([hop, list]) => ({ hop, files: list.sort((a, b) => a.n - b.n).map((x) => x.file) }));
}

/** Summarise every hop of the run in `dir`. */
export async function summarizeRun(dir: string): Promise<RunSummary> {
  const manifest = readManifest(dir);
  const hops: HopSummary[] = [];
  for (const { hop, files } of hopFiles(dir, manifest)) {
    const h: HopSummary = {
      hop,
      files,
      frames: 0,
      bytes: 0,
      capturedBytes: 0,
      etherTypes: {},
      protocols: { arp: 0, icmp: 0, tcp: 0, udp: 0, other: 0 },
      firstTime: null,
      lastTime: null,
      drops: null,
      manifestFrames: null,
      problems: [],
    };
    for (const f of files) {
      const s = await summarizeFile(path.join(dir, f));
      h.frames += s.frames;
      h.bytes += s.bytes;
      h.capturedBytes += s.capturedBytes;
      for (const [k, v] of Object.entries(s.etherTypes)) h.etherTypes[k] = (h.etherTypes[k] ?? 0) + v;
      for (const k of Object.keys(h.protocols) as (keyof ProtocolCounts)[]) h.protocols[k] += s.protocols[k];
      if (s.firstTime !== null && (h.firstTime === null || s.firstTime < h.firstTime)) h.firstTime = s.firstTime;
      if (s.lastTime !== null && (h.lastTime === null || s.lastTime > h.lastTime)) h.lastTime = s.lastTime;
      h.problems.push(...s.problems);
    }
    const m = manifest?.hops.find((x) => x.name === hop);
    if (m) {
      h.drops = m.drops;
      h.manifestFrames = m.frames;
    }
    hops.push(h);
  }
  return { dir, runId: manifest?.runId ?? path.basename(dir), command: manifest?.command ?? null, manifest, hops };
}

/** A printable table of a run summary (what `lab captures` prints). */
export function formatSummary(s: RunSummary): string {
  const header = ['hop', 'frames', 'bytes', 'ARP', 'ICMP', 'TCP', 'UDP', 'other', 'drops', 'ethertypes'];
  const rows = s.hops.map((h) => [
    h.hop,
    String(h.frames),
    String(h.bytes),
    String(h.protocols.arp),
    String(h.protocols.icmp),
    String(h.protocols.tcp),
    String(h.protocols.udp),
    String(h.protocols.other),
    h.drops === null ? '-' : String(h.drops),
    Object.entries(h.etherTypes)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k}:${v}`)
      .join(' ') || '-',
  ]);
  const widths = header.map((_, i) => Math.max(header[i]!.length, ...rows.map((r) => r[i]!.length)));
  // Names and the free-text last column left-aligned, numbers right-aligned.
  const fmt = (r: string[]): string =>
    r
      .map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  const lines = [`run ${s.runId}${s.command ? ` (${s.command})` : ''}${s.manifest && !s.manifest.endTime ? ' — not closed cleanly' : ''}`, fmt(header), ...rows.map(fmt)];
  for (const h of s.hops) {
    // The manifest's per-file counts describe the files as of its last write; after a crash the
    // files may hold more (flushed after that write), never fewer.
    const m = s.manifest?.hops.find((x) => x.name === h.hop);
    const listed = m ? m.files.reduce((n, f) => n + f.frames, 0) : null;
    if (listed !== null && listed !== h.frames) lines.push(`  ${h.hop}: manifest lists ${listed} frames in its files, the files hold ${h.frames}`);
    for (const p of h.problems) lines.push(`  ${h.hop}: ${p}`);
  }
  return lines.join('\n') + '\n';
}
