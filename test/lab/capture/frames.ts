import { execFileSync, spawnSync } from 'node:child_process';
import { internetChecksum, sumBytes } from '../../../net/wire/checksum.js';

/**
 * Real frames for capture tests (Ethernet II / ARP / IPv4 / UDP / TCP / ICMP echo with correct
 * checksums), built by hand so a dissector that finds anything wrong in them reports a capture bug,
 * and tshark helpers.
 */

export const MAC_A = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
export const MAC_B = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
export const IP_A = [10, 0, 2, 15];
export const IP_B = [10, 0, 2, 2];

export function ethernet(dst: number[], src: number[], etherType: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + payload.length);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = etherType >> 8;
  f[13] = etherType & 0xff;
  f.set(payload, 14);
  return f;
}

export function ipv4(src: number[], dst: number[], protocol: number, payload: Uint8Array, id = 1): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  const v = new DataView(p.buffer);
  p[0] = 0x45;
  v.setUint16(2, p.length);
  v.setUint16(4, id);
  v.setUint16(6, 0x4000); // DF
  p[8] = 64;
  p[9] = protocol;
  p.set(src, 12);
  p.set(dst, 16);
  v.setUint16(10, internetChecksum(p.subarray(0, 20)));
  p.set(payload, 20);
  return p;
}

function pseudoSum(src: number[], dst: number[], protocol: number, length: number): number {
  const ph = new Uint8Array(12);
  ph.set(src, 0);
  ph.set(dst, 4);
  ph[9] = protocol;
  ph[10] = length >> 8;
  ph[11] = length & 0xff;
  return sumBytes(ph);
}

export function udp(src: number[], dst: number[], sport: number, dport: number, data: Uint8Array): Uint8Array {
  const u = new Uint8Array(8 + data.length);
  const v = new DataView(u.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint16(4, u.length);
  u.set(data, 8);
  // RFC 768: a computed zero is sent as all ones.
  v.setUint16(6, internetChecksum(u, pseudoSum(src, dst, 17, u.length)) || 0xffff);
  return u;
}

export const TH_FIN = 0x01;
export const TH_SYN = 0x02;
export const TH_PUSH = 0x08;
export const TH_ACK = 0x10;

export function tcp(src: number[], dst: number[], sport: number, dport: number, seq: number, ack: number, flags: number, data: Uint8Array): Uint8Array {
  const t = new Uint8Array(20 + data.length);
  const v = new DataView(t.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint32(4, seq >>> 0);
  v.setUint32(8, ack >>> 0);
  t[12] = 5 << 4;
  t[13] = flags;
  v.setUint16(14, 65535);
  t.set(data, 20);
  v.setUint16(16, internetChecksum(t, pseudoSum(src, dst, 6, t.length)));
  return t;
}

export function icmpEcho(id: number, seq: number, data: Uint8Array, reply = false): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  const v = new DataView(m.buffer);
  m[0] = reply ? 0 : 8;
  v.setUint16(4, id);
  v.setUint16(6, seq);
  m.set(data, 8);
  v.setUint16(2, internetChecksum(m));
  return m;
}

export function arpRequest(srcMac: number[], srcIp: number[], targetIp: number[]): Uint8Array {
  const a = new Uint8Array(28);
  const v = new DataView(a.buffer);
  v.setUint16(0, 1);
  v.setUint16(2, 0x0800);
  a[4] = 6;
  a[5] = 4;
  v.setUint16(6, 1);
  a.set(srcMac, 8);
  a.set(srcIp, 14);
  a.set(targetIp, 24);
  // ARP frames are padded to the 60-byte Ethernet minimum, as a NIC would.
  const f = ethernet([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], srcMac, 0x0806, a);
  const padded = new Uint8Array(60);
  padded.set(f);
  return padded;
}

export function bytes(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

export const udpFrame = (n: number, seed = 0, from = 'a'): Uint8Array =>
  from === 'a'
    ? ethernet(MAC_B, MAC_A, 0x0800, ipv4(IP_A, IP_B, 17, udp(IP_A, IP_B, 40000 + (seed % 1000), 7, bytes(n, seed)), seed & 0xffff))
    : ethernet(MAC_A, MAC_B, 0x0800, ipv4(IP_B, IP_A, 17, udp(IP_B, IP_A, 7, 40000 + (seed % 1000), bytes(n, seed)), seed & 0xffff));

export const tcpFrame = (n: number, seq: number, flags = TH_ACK | TH_PUSH): Uint8Array =>
  ethernet(MAC_B, MAC_A, 0x0800, ipv4(IP_A, IP_B, 6, tcp(IP_A, IP_B, 51000, 80, seq, 1000, flags, bytes(n, seq)), seq & 0xffff));

export const pingFrame = (seq: number, reply = false): Uint8Array =>
  reply
    ? ethernet(MAC_A, MAC_B, 0x0800, ipv4(IP_B, IP_A, 1, icmpEcho(1, seq, bytes(56, seq), true)))
    : ethernet(MAC_B, MAC_A, 0x0800, ipv4(IP_A, IP_B, 1, icmpEcho(1, seq, bytes(56, seq))));

/** Fail with the install command when tshark is missing (system tests must not skip silently). */
export function requireTshark(): void {
  const r = spawnSync('tshark', ['-v'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error('tshark is needed to check captures: apt-get install -y tshark');
  }
}

/** Checksum validation on, so a wrong checksum becomes an expert error. */
const CHECK_OPTIONS = ['-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE'];

/** Run tshark on a file; stdout only (as root it warns on stderr, which is not about the file). */
export function tshark(file: string, args: string[]): string {
  requireTshark();
  return execFileSync('tshark', ['-r', file, ...CHECK_OPTIONS, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 * 1024 * 1024 });
}

/** Rows of `-T fields` output, one array of field values per frame. */
export function tsharkFields(file: string, fields: string[]): string[][] {
  const out = tshark(file, ['-T', 'fields', '-E', 'separator=/t', ...fields.flatMap((f) => ['-e', f])]);
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'));
}

/** Expert items of severity error (malformed packets, bad checksums); empty when the file is clean. */
export function tsharkErrors(file: string): string[] {
  const out = tshark(file, ['-q', '-z', 'expert,error']);
  // The table lists one line per error group after a header; "Errors (N)" announces them.
  const errors = out.split('\n').filter((l) => /Errors \(\d+\)|Malformed|Bad checksum|\[Error/i.test(l));
  return errors;
}
