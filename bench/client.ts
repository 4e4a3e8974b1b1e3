import { connect } from 'node:net';
import { writeBlocks } from './write-blocks.js';

/**
 * Benchmark client, run where the measurement needs it (inside a namespace for TAP/veth runs):
 *   client upload HOST PORT BYTES     → discard service; done when the server closes after our FIN
 *   client download HOST PORT BYTES   → HTTP GET /bytes/BYTES
 *   client cps HOST PORT COUNT CONC   → COUNT short HTTP requests, CONC at a time
 * Prints one JSON line: {"mbps": …} or {"cps": …}.
 */
const [mode, host, portText, nText, concText] = process.argv.slice(2);
const port = Number(portText);
const n = Number(nText);

function upload(): Promise<number> {
  return new Promise((resolve, reject) => {
    const block = Buffer.alloc(65536, 0x5a);
    const s = connect({ host, port, allowHalfOpen: true });
    const t0 = performance.now();
    s.on('connect', () => writeBlocks(s, n, block));
    s.on('data', () => {});
    s.on('close', () => resolve(performance.now() - t0));
    s.on('error', reject);
  });
}

function download(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    const t0 = performance.now();
    let got = 0;
    s.on('connect', () => s.write(`GET /bytes/${n} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n`));
    s.on('data', (d) => (got += d.length));
    s.on('end', () => (got >= n ? resolve(performance.now() - t0) : reject(new Error(`short download: ${got} of ${n}`))));
    s.on('error', reject);
  });
}

function oneRequest(): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    s.on('connect', () => s.write('GET /bytes/16 HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n'));
    s.on('data', () => {});
    s.on('end', () => {
      s.end();
      resolve();
    });
    s.on('error', reject);
  });
}

async function cps(): Promise<number> {
  const conc = Number(concText ?? '8');
  let started = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++;
      await oneRequest();
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
  return (n / (performance.now() - t0)) * 1000;
}

async function main(): Promise<void> {
  if (mode === 'upload') process.stdout.write(JSON.stringify({ mbps: n / 1e6 / ((await upload()) / 1000) }) + '\n');
  else if (mode === 'download') process.stdout.write(JSON.stringify({ mbps: n / 1e6 / ((await download()) / 1000) }) + '\n');
  else if (mode === 'cps') process.stdout.write(JSON.stringify({ cps: await cps() }) + '\n');
  else throw new Error(`unknown mode ${mode}`);
}

const guard = setTimeout(() => {
  process.stderr.write('client: gave up after 300 s\n');
  process.exit(2);
}, 300_000);
main().then(
  () => {
    clearTimeout(guard);
    process.exit(0);
  },
  (e: unknown) => {
    process.stderr.write(`client: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
