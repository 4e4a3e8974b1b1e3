import { createServer } from 'node:net';
import { writeBlocks } from './write-blocks.js';

/**
 * The reference peer for host-side benchmarks, run inside a namespace behind slirp4netns or a
 * veth: the same services the netlab guest offers (discard on 9, echo on 7, HTTP /bytes/N on 80),
 * so both sides of a comparison do the same work. Stops itself after `--for` seconds.
 */
const forSeconds = Number(process.argv[2] ?? '300');
const block = Buffer.alloc(65536, 0x61);

createServer((s) => {
  s.on('data', () => {});
  s.on('end', () => s.end());
  s.on('error', () => {});
}).listen(9, '0.0.0.0');

createServer({ allowHalfOpen: true }, (s) => {
  s.pipe(s);
  s.on('error', () => {});
}).listen(7, '0.0.0.0');

createServer((s) => {
  let head = '';
  s.on('error', () => {});
  s.on('data', (d) => {
    head += d.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    const m = /^GET \/bytes\/(\d+)/.exec(head);
    const n = m ? Number(m[1]) : 2;
    head = head.slice(end + 4);
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n`);
    writeBlocks(s, n, block);
  });
}).listen(80, '0.0.0.0', () => process.stdout.write('ref-server ready\n'));

// Bounded: the server exits by itself even if the benchmark that started it does not stop it.
setTimeout(() => process.exit(0), forSeconds * 1000);
