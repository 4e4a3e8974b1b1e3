import { describe, expect, it } from 'vitest';
import { LAB_CLI, Netns, bytesPattern, sha256Hex, systemSuite } from './netns.js';

/**
 * TAP offloads against the real kernel: `lab up tap2` opens the TAP with IFF_VNET_HDR and
 * TSO4/CSUM, so 64 KiB TCP segments cross it whole both ways (an RTL8139 guest's MTU segments
 * merged on the way out). The kernel's own counters on tap2 prove it: more bytes per packet than
 * an Ethernet frame can hold means GSO frames crossed.
 */
const CLI = LAB_CLI;
let ns: Netns | null = null;

systemSuite([['ip', 'iproute2'], ['ping', 'iputils-ping'], ['curl', 'curl'], ['socat', 'socat']], () => {
  ns?.cleanup();
  ns = null;
});

const sha = sha256Hex;

/** tap2's counters as the kernel keeps them: rx = what the lab wrote, tx = what the kernel sent it. */
function linkCounters(n: Netns): { rxBytes: number; rxPackets: number; txBytes: number; txPackets: number } {
  const j = JSON.parse(n.run(['ip', '-s', '-j', 'link', 'show', 'tap2']).stdout.toString()) as { stats64: { rx: { bytes: number; packets: number }; tx: { bytes: number; packets: number } } }[];
  const s = j[0]!.stats64;
  return { rxBytes: s.rx.bytes, rxPackets: s.rx.packets, txBytes: s.tx.bytes, txPackets: s.tx.packets };
}

function pingMedianMs(n: Netns, count: number): number {
  const out = n.run(['ping', '-c', String(count), '-i', '0.02', '-W', '2', '172.22.0.2']).stdout.toString();
  const rtts = [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  expect(rtts.length).toBe(count);
  return rtts[Math.floor(rtts.length / 2)]!;
}

for (const nic of ['virtio', 'rtl8139'] as const) {
  describe(`lab up tap2 --nic ${nic} with TAP offloads`, () => {
    it('50 MB each way byte-exact, GSO frames crossing the TAP where the guest takes them', async () => {
      ns = new Netns();
      const lab = await ns.start([...CLI, '--no-capture', 'up', 'tap2', '--nic', nic, '--for', '300'], 'ready:');
      const median = pingMedianMs(ns, 50);
      process.stdout.write(`tap-offload ${nic}: ping median ${median} ms\n`);
      const before = linkCounters(ns);
      const n = 50 * 1024 * 1024;
      const down = ns.run(['curl', '-sS', '-m', '120', `http://172.22.0.2/bytes/${n}`], { timeoutMs: 130_000 });
      expect(down.stdout.length).toBe(n);
      expect(sha(down.stdout)).toBe(sha(bytesPattern(n)));
      const mid = linkCounters(ns);
      const data = bytesPattern(n).map((b, i) => b ^ ((i >> 10) & 0xff));
      const echo = ns.run(['socat', '-t', '30', '-T', '60', '-', 'TCP:172.22.0.2:7'], { input: Buffer.from(data), timeoutMs: 130_000 });
      expect(echo.stdout.length).toBe(n);
      expect(sha(echo.stdout)).toBe(sha(data));
      const after = linkCounters(ns);
      const downPerPacket = (mid.rxBytes - before.rxBytes) / (mid.rxPackets - before.rxPackets);
      const upPerPacket = (after.txBytes - mid.txBytes) / (after.txPackets - mid.txPackets);
      // Guest → host: virtio's TSO segments reached the kernel whole through the TAP; the RTL8139
      // guest sends MTU frames only, and the TAP merged each burst of them into GSO frames (GRO).
      expect(downPerPacket).toBeGreaterThan(1514);
      // Host → guest: the kernel hands the TAP GSO frames (with either guest; for the RTL8139 the
      // lab cut them into MTU segments, and the transfer above still arrived byte-exact).
      expect(upPerPacket).toBeGreaterThan(1514);
      lab.child.kill('SIGINT');
      expect(await lab.exit).toBe(0);
      // Closing the TAP closed its fd: the process exited and the device went with it.
      expect(ns.run(['ip', 'link', 'show', 'tap2']).status).not.toBe(0);
      if (nic === 'virtio') {
        expect(lab.out()).toMatch(/rxGsoFrames=[1-9]\d*/);
        // With no capture in between, the kernel's partial checksums went into the guest as
        // NEEDS_CSUM and the guest's went to the kernel partial: nobody summed the 64 KiB segments.
        expect(lab.out()).toMatch(/rxPartialChecksums=[1-9]\d*/);
        expect(lab.out()).toMatch(/txGsoPartial=[1-9]\d*/);
      }
      else expect(lab.out()).toMatch(/tap2 offloads: .*txCoalesced=[1-9]\d*/);
    }, 300_000);
  });
}
