// Runs inside a test-made network namespace (test/system/tap-port-contract.test.ts): opens a TAP
// with the built TapPort, drives it, and prints what it saw as one JSON line. A TAP is created in
// the namespace of the process that opens it, hence a child process.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { TapPort } from '../../dist/lab/tap/tap-port.js';
import { emitIpv4Header } from '../../dist/net/wire/ipv4.js';
import { emitTcp } from '../../dist/net/wire/tcp.js';
import { segmentTcpv4, tcpv4Layout } from '../../dist/src/devices/tcp-gso.js';

const dev = 'nltap0';
// The plain TAP (no virtio-net header): the contract's raw frames of any size up to 64 KiB.
const opened = TapPort.open(dev, { offload: false });
if (!opened.ok) {
  console.log(JSON.stringify({ error: opened.message }));
  process.exit(1);
}
const tap = opened.port;
const ip = (...args) => execFileSync('ip', args);
// A TAP's largest MTU (65521): the kernel then hands it frames of up to 65535 bytes.
ip('link', 'set', dev, 'mtu', '65521');
ip('link', 'set', dev, 'up');
ip('addr', 'add', '10.9.0.1/24', 'dev', dev);
ip('neigh', 'add', '10.9.0.2', 'lladdr', '02:00:00:00:00:02', 'dev', dev, 'nud', 'permanent');
const kernelRx = () => Number(readFileSync(`/sys/class/net/${dev}/statistics/rx_packets`, 'utf8'));

const sizes = [];
let calls = 0;
tap.setReceiver((f) => {
  calls++;
  if (calls === 1) throw new Error('receiver fault');
  sizes.push(f.length);
  return true;
});

const frame = (n) => {
  const f = new Uint8Array(n);
  f.set([0x02, 0, 0, 0, 0, 0x09, 0x02, 0, 0, 0, 0, 0x02, 0x88, 0xb5].slice(0, Math.min(14, n)));
  return f;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await sleep(200);
const rxBefore = kernelRx();
const accepted = [14, 60, 1514, 9000, 65535].map((n) => tap.send(frame(n)));
const refused = [0, 13, 65536].map((n) => tap.send(frame(n)));
await sleep(100);
const kernelTook = kernelRx() - rxBefore;
for (const size of [1000, 60000, 65493]) spawnSync('ping', ['-c', '1', '-W', '1', '-s', String(size), '10.9.0.2']);
await sleep(500);
const plain = { accepted, refused, kernelTook, stats: { ...tap.stats }, sizes, oversize: tap.oversize, receiverErrors: tap.receiverErrors, calls };

// Flow control: a receiver busy with the first echo request (542 bytes) stops reading — nothing
// more is delivered while it is held — and ready() offers that frame again, then reading goes on.
// spawnSync blocks this thread, so all three requests wait in the kernel's queue when reading resumes.
const seen = [];
let busyOnce = true;
tap.setReceiver((f) => {
  if (f.length === 542 && busyOnce) {
    busyOnce = false;
    seen.push('busy');
    return 'busy';
  }
  seen.push(f.length);
  return true;
});
spawnSync('ping', ['-c', '3', '-i', '0.2', '-W', '1', '-s', '500', '10.9.0.2']);
await sleep(300);
const whileHeld = seen.slice(seen.indexOf('busy') + 1).length;
const rxBeforeReady = tap.stats.rxFrames;
tap.ready();
await sleep(300);
const held = { busySeen: seen.includes('busy'), whileHeld, echoesAfter: seen.filter((x) => x === 542).length, rxAfterReady: tap.stats.rxFrames - rxBeforeReady, firstAfter: seen[seen.indexOf('busy') + 1] };
tap.close();

// A TAP with offloads (as `lab up` opens it): three TCP segments of one flow sent in one turn
// reach the kernel as one packet; a frame over the MTU that is no TCP segment is refused.
const dev1 = 'nltap1';
const o = TapPort.open(dev1);
if (!o.ok) {
  console.log(JSON.stringify({ error: o.message }));
  process.exit(1);
}
const gtap = o.port;
ip('link', 'set', dev1, 'up');
ip('addr', 'add', '10.9.1.1/24', 'dev', dev1);
gtap.setReceiver(() => true);
const kernelRx1 = () => Number(readFileSync(`/sys/class/net/${dev1}/statistics/rx_packets`, 'utf8'));
const SRC = (10 << 24) | (9 << 16) | (1 << 8) | 2;
const DST = (10 << 24) | (9 << 16) | (1 << 8) | 1;
const tcpLen = 20 + 3000;
const whole = new Uint8Array(14 + 20 + tcpLen);
whole.set([0x02, 0, 0, 0, 0, 0x09, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00]);
const mac = readFileSync(`/sys/class/net/${dev1}/address`, 'utf8').trim().split(':').map((h) => parseInt(h, 16));
whole.set(mac, 0);
emitIpv4Header(whole, 14, { id: 100, ttl: 64, protocol: 6, src: SRC, dst: DST, payloadLength: tcpLen, flagsOffset: 0x4000 });
emitTcp({ srcPort: 40000, dstPort: 5555, seq: 1000, ack: 1, flags: 0x10, window: 1000, urgent: 0, options: {}, payload: new Uint8Array(3000).fill(1) }, whole, 34, SRC, DST);
const pieces = segmentTcpv4(whole, tcpv4Layout(whole), 1000);
await sleep(200);
const rx1 = kernelRx1();
const sentPieces = pieces.map((p) => gtap.send(p));
await sleep(100);
const notTcp = frame(9000);
notTcp.set(mac, 0);
const bigRefused = gtap.send(notTcp);
await sleep(100);
const offload = { pieces: pieces.length, sentPieces, kernelPackets: kernelRx1() - rx1, bigRefused, stats: gtap.stats, offloadStats: gtap.offloadStats };
gtap.close();
console.log(JSON.stringify({ ...plain, held, offload }));
process.exit(0);
