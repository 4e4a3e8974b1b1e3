// Runs inside a test-made network namespace (test/system/tap-port-contract.test.ts): opens a TAP
// with the built TapPort, drives it, and prints what it saw as one JSON line. A TAP is created in
// the namespace of the process that opens it, hence a child process.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { TapPort } from '../../dist/lab/tap/tap-port.js';

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
console.log(JSON.stringify({ accepted, refused, kernelTook, stats: tap.stats, sizes, oversize: tap.oversize, receiverErrors: tap.receiverErrors, calls }));
tap.close();
process.exit(0);
