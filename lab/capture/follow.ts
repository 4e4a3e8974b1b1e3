import * as fs from 'node:fs';
import * as path from 'node:path';
import { parsePcapng } from './pcapng-blocks.js';
import { hopFiles, readManifest } from './summary.js';

/**
 * `lab captures RUN --follow ID`: one frame's way through the lab, from the per-hop pcapng files,
 * where it carries the same epb_packetid at every hop (packet-ids.ts). Each sighting: the hop,
 * the time, the direction, the delay since the previous hop; and where the next element refused
 * it, the drop and its reason (the packet comment the capture wrote).
 */

export interface Sighting {
  hop: string;
  /** Unix seconds. */
  time: number;
  direction: 'in' | 'out' | null;
  length: number;
  /** Set when the frame was dropped at this hop. */
  dropped: string | null;
}

export interface FollowResult {
  id: number;
  sightings: Sighting[];
  /** Hops whose files could not be read as pcapng (classic pcap has no packet ids). */
  unreadable: string[];
}

export function followPacket(dir: string, id: number): FollowResult {
  const manifest = readManifest(dir);
  const want = BigInt(id);
  const sightings: Sighting[] = [];
  const unreadable: string[] = [];
  // The merged file, when there is one, holds every hop in the order frames were recorded, which
  // settles frames seen at several hops within one clock tick (every tick, in virtual time).
  if (manifest?.merged) {
    try {
      const f = parsePcapng(fs.readFileSync(path.join(dir, manifest.merged)));
      for (const p of f.packets) {
        if (p.packetId !== want) continue;
        const drop = p.comments.find((c) => c.startsWith('dropped: '));
        const hop = f.interfaces[p.interfaceId]?.name ?? `interface ${p.interfaceId}`;
        // The merged file's comments name the hop first (`tap2: a refused it`).
        const reason = drop ? drop.slice('dropped: '.length).replace(`${hop}: `, '') : null;
        sightings.push({ hop, time: p.time, direction: p.direction, length: p.origlen, dropped: reason });
      }
      if (f.interfaces.length > 0) return { id, sightings, unreadable };
    } catch {
      // Fall back to the per-hop files.
    }
  }
  for (const { hop, files } of hopFiles(dir, manifest)) {
    for (const file of files) {
      let buf: Buffer;
      try {
        buf = fs.readFileSync(path.join(dir, file));
      } catch {
        unreadable.push(hop);
        continue;
      }
      const f = parsePcapng(buf);
      if (f.interfaces.length === 0) {
        unreadable.push(hop);
        continue;
      }
      for (const p of f.packets) {
        if (p.packetId !== want) continue;
        const drop = p.comments.find((c) => c.startsWith('dropped: '));
        sightings.push({ hop, time: p.time, direction: p.direction, length: p.origlen, dropped: drop ? drop.slice('dropped: '.length) : null });
      }
    }
  }
  // Time order is the frame's order of travel; equal stamps keep the order hops were read in
  // (capture with --merged-capture for the exact order within one clock tick).
  sightings.sort((a, b) => a.time - b.time);
  return { id, sightings, unreadable: [...new Set(unreadable)] };
}

function micros(seconds: number): string {
  const us = seconds * 1e6;
  return us < 1000 ? `${us.toFixed(0)} µs` : `${(us / 1000).toFixed(3)} ms`;
}

export function formatFollow(r: FollowResult): string {
  if (r.sightings.length === 0) {
    const why = r.unreadable.length > 0 ? ` (no packet ids in ${r.unreadable.join(', ')}: classic pcap; capture with pcapng, the default)` : '';
    return `packet ${r.id}: not seen in this run${why}\n`;
  }
  const t0 = r.sightings[0]!.time;
  const lines = [`packet ${r.id}: ${r.sightings.length} sighting${r.sightings.length === 1 ? '' : 's'}`];
  const rows = r.sightings.map((s, i) => {
    const prev = i > 0 ? r.sightings[i - 1]! : null;
    return [
      new Date(s.time * 1000).toISOString().slice(11, 23) + String(Math.round((s.time % 1) * 1e6) % 1000).padStart(3, '0'),
      `+${micros(s.time - t0)}`,
      s.hop,
      s.direction ?? '-',
      `${s.length} B`,
      prev ? `hop delay ${micros(s.time - prev.time)}` : '',
      s.dropped ? `DROPPED: ${s.dropped}` : '',
    ];
  });
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const row of rows) lines.push('  ' + row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  const last = r.sightings.at(-1)!;
  lines.push(last.dropped ? `dropped at ${last.hop}: ${last.dropped}` : `last seen at ${last.hop} (${last.direction ?? '?'})`);
  return lines.join('\n') + '\n';
}
