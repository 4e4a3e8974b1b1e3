import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RealClock } from '../../../net/clock.js';
import { CaptureRun } from '../../../lab/capture/run.js';
import { LiveServer } from '../../../lab/capture/live.js';
import { pingFrame, requireTshark, udpFrame } from './frames.js';

/**
 * Live captures while a lab runs: `lab capture HOP | tshark -i -` and the extcap program as
 * tshark lists and uses it. The "lab" here is this test process: a capture run on a real clock
 * whose hops record frames on a timer, served on this process's live socket as a lab serves it.
 */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = path.join(repo, 'dist/lab/cli.js');
let base: string;
let run: CaptureRun;
let live: LiveServer;
let timer: NodeJS.Timeout;

beforeAll(async () => {
  requireTshark();
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'netlab-live-'));
  run = new CaptureRun({ command: 'redirect', clock: new RealClock(), baseDir: path.join(base, 'captures'), manifestIntervalMs: 0 });
  live = await LiveServer.start(run);
  const tap = run.hop('tap2', 'host TAP device tap2');
  const nic = run.hop('vm0.eth0', 'vm0 NIC net0 (device side)');
  let i = 0;
  // Bounded: the run stops in afterAll; a frame pair every 20 ms meanwhile.
  timer = setInterval(() => {
    const f = udpFrame(50, i++);
    nic.record(f, 'out');
    tap.record(f, 'in');
    tap.record(pingFrame(i & 0xffff), 'out');
  }, 20);
});

afterAll(() => {
  clearInterval(timer);
  live?.close();
  run?.closeSync();
  fs.rmSync(base, { recursive: true, force: true });
});

function sh(script: string, env: NodeJS.ProcessEnv = process.env, timeoutMs = 30_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn('sh', ['-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, out, err });
    });
  });
}

describe('live capture', () => {
  it('lab capture lists the running lab and its hops', async () => {
    const r = await sh(`node ${CLI} capture`);
    expect(r.out).toContain(`pid ${process.pid}  redirect  run ${run.id}`);
    expect(r.out).toContain('tap2  (host TAP device tap2)');
    expect(r.out).toContain('vm0.eth0');
  });

  it('lab capture HOP | tshark -i - shows the hop live, with names, directions and packet ids', async () => {
    const r = await sh(`node ${CLI} capture tap2 vm0.eth0 --pid ${process.pid} | tshark -i - -c 12 -T fields -e frame.interface_name -e frame.packet_flags_direction -e frame.packet_id -e frame.protocols 2>/dev/null`);
    const rows = r.out.trim().split('\n').map((l) => l.split('\t'));
    expect(rows).toHaveLength(12);
    expect(new Set(rows.map((x) => x[0]))).toEqual(new Set(['tap2', 'vm0.eth0']));
    // The same UDP frame at both hops carries one packet id.
    const udpIds = (hop: string): Set<string> => new Set(rows.filter((x) => x[0] === hop && x[3]!.includes('udp')).map((x) => x[2]!));
    const shared = [...udpIds('vm0.eth0')].filter((id) => udpIds('tap2').has(id));
    expect(shared.length).toBeGreaterThan(0);
    expect(rows.filter((x) => x[0] === 'vm0.eth0').every((x) => x[1] === '0x00000002')).toBe(true);
  });

  it('the extcap program puts the hops into tshark -D, and tshark -i captures from one', async () => {
    const home = path.join(base, 'home');
    fs.mkdirSync(home);
    const env = { ...process.env, HOME: home };
    const inst = await sh(`node ${CLI} extcap --install`, env);
    expect(inst.code).toBe(0);
    expect(fs.existsSync(path.join(home, '.config/wireshark/extcap/netlab'))).toBe(true);
    const d = await sh('tshark -D 2>/dev/null', env);
    expect(d.out).toContain(`netlab-${process.pid}-tap2 (netlab redirect (pid ${process.pid}): tap2 — host TAP device tap2)`);
    const c = await sh(`tshark -i netlab-${process.pid}-vm0.eth0 -c 3 -T fields -e frame.interface_name -e frame.packet_id 2>/dev/null`, env);
    const rows = c.out.trim().split('\n').map((l) => l.split('\t'));
    expect(rows).toHaveLength(3);
    expect(rows.every((x) => x[0] === 'vm0.eth0' && Number(x[1]) > 0)).toBe(true);
  });
});
