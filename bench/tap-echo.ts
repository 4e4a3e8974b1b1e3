import { writeSync } from 'node:fs';
import { updateChecksum } from '../net/wire/checksum.js';
import { readFd } from '../lab/tap/fd-reader.js';
import { openTap } from '../lab/tap/tun-ioctl.js';

/**
 * The floor of a userspace round trip through a TAP on this machine, for the ping reference of
 * `npm run bench -- tap`: a Node process that answers ARP and ICMP echo for 172.22.0.2 on tap2
 * the way the lab reads and writes the TAP (fd-reader.ts: the fd in the event loop, one read(2) per
 * frame; one write(2) per reply) and with no VM, switch or stack in between — a reply is the
 * request with its addresses swapped. Run inside a namespace of the bench's own; prints `ready:`.
 */
const MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const IP = Uint8Array.of(172, 22, 0, 2);

const opened = openTap('tap2');
if (!opened.ok) {
  process.stderr.write(`tap-echo: ${opened.message}\n`);
  process.exit(1);
}
const fd = opened.fd;
const buf = Buffer.alloc(65536);
const out = Buffer.alloc(65536);

const reading = readFd(fd, () => buf, (n) => {
  const len = answer(n);
  if (len > 0) writeSync(fd, out, 0, len);
  return true;
}, (code) => {
  process.stderr.write(`tap-echo: read ${code}\n`);
  process.exit(1);
});
if (!reading.ok) {
  process.stderr.write(`tap-echo: ${reading.message}\n`);
  process.exit(1);
}
process.stdout.write('ready:\n');

/** The reply to the frame of `n` bytes in `buf`, built in `out`; its length, or 0 for none. */
function answer(n: number): number {
  const isFor = (at: number): boolean => buf[at] === IP[0] && buf[at + 1] === IP[1] && buf[at + 2] === IP[2] && buf[at + 3] === IP[3];
  if (n >= 42 && buf[12] === 0x08 && buf[13] === 0x06 && buf[21] === 1 && isFor(38)) {
    // ARP request for us: an ARP reply (RFC 826) from MAC.
    buf.copy(out, 0, 6, 12);
    out.set(MAC, 6);
    buf.copy(out, 12, 12, 20);
    out[20] = 0;
    out[21] = 2;
    out.set(MAC, 22);
    out.set(IP, 28);
    buf.copy(out, 32, 22, 32);
    return 42;
  }
  const ihl = (buf[14]! & 0x0f) * 4;
  if (n >= 14 + ihl + 8 && buf[12] === 0x08 && buf[13] === 0x00 && buf[23] === 1 && isFor(30) && buf[14 + ihl] === 8) {
    // ICMP echo request: the same datagram back, addresses swapped (the IP header checksum does
    // not change), type 8 → 0 with the ICMP checksum updated (RFC 1624).
    buf.copy(out, 0, 0, n);
    buf.copy(out, 0, 6, 12);
    out.set(MAC, 6);
    buf.copy(out, 26, 30, 34);
    buf.copy(out, 30, 26, 30);
    const icmp = 14 + ihl;
    out[icmp] = 0;
    const sum = updateChecksum((buf[icmp + 2]! << 8) | buf[icmp + 3]!, 0x0800, 0x0000);
    out[icmp + 2] = sum >> 8;
    out[icmp + 3] = sum & 0xff;
    return n;
  }
  return 0;
}
