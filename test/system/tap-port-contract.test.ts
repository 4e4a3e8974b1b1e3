import { describe, expect, it } from 'vitest';
import { Netns, systemSuite } from './netns.js';

/**
 * The FramePort contract for the TAP port, with the Linux kernel as the far end (the in-process
 * ports run it in test/contract/frame-ports.test.ts), and the issue-10 case: a TAP passes frames
 * up to 64 KiB whatever its MTU, and the path from it (switch → NIC) must cope.
 */
let ns: Netns | null = null;
systemSuite([['ip', 'iproute2'], ['ping', 'iputils-ping']], () => {
  ns?.cleanup();
  ns = null;
});

describe('TapPort and the FramePort contract (real TAP in a test-made namespace)', () => {
  it('carries 14..65535-byte frames, refuses and counts the rest, counts once, survives a throwing receiver, reads 64 KiB frames whole, holds reading for a busy receiver; with offloads merges a flow into one kernel packet', () => {
    ns = new Netns();
    const r = ns.run(['node', 'test/system/tap-port-child.mjs'], { timeoutMs: 30_000 });
    const line = r.stdout.toString().trim().split('\n').pop() ?? '';
    const out = JSON.parse(line) as {
      accepted: boolean[]; refused: boolean[]; kernelTook: number; sizes: number[]; oversize: number; receiverErrors: number; calls: number;
      stats: { txFrames: number; txDrops: number; rxFrames: number; rxDrops: number; rxBytes: number };
      held: { busySeen: boolean; whileHeld: number; echoesAfter: number; rxAfterReady: number; firstAfter: number };
      offload: { pieces: number; sentPieces: boolean[]; kernelPackets: number; bigRefused: boolean; stats: { txFrames: number; txDrops: number }; offloadStats: { txCoalesced: number; txGsoFrames: number } };
    };
    expect(out.accepted).toEqual([true, true, true, true, true]);
    expect(out.refused).toEqual([false, false, false]);
    expect(out.kernelTook).toBe(5);
    expect(out.stats).toMatchObject({ txFrames: 5, txDrops: 3 });
    // The kernel's 1042-, 60042- and 65535-byte frames (MTU 65521, the TAP's largest) arrive whole.
    expect(out.sizes).toContain(1042);
    expect(out.sizes).toContain(60042);
    expect(out.sizes).toContain(65535);
    expect(out.oversize).toBe(0);
    expect(out.receiverErrors).toBe(1);
    expect(out.stats.rxFrames).toBe(out.sizes.length);
    expect(out.stats.rxBytes).toBe(out.sizes.reduce((a, b) => a + b, 0));
    expect(out.stats.rxDrops).toBe(1); // the frame whose receiver threw
    // A busy receiver holds reading; ready() offers the held echo request first, then the other two.
    expect(out.held).toMatchObject({ busySeen: true, whileHeld: 0, echoesAfter: 3, firstAfter: 542 });
    expect(out.held.rxAfterReady).toBeGreaterThanOrEqual(3);
    // With offloads: three segments of one flow sent in one turn reach the kernel as one packet
    // (GRO toward the kernel), counted as three frames sent; a 9000-byte non-TCP frame is refused.
    expect(out.offload.pieces).toBe(3);
    expect(out.offload.sentPieces).toEqual([true, true, true]);
    expect(out.offload.kernelPackets).toBe(1);
    expect(out.offload.offloadStats).toMatchObject({ txCoalesced: 2, txGsoFrames: 1 });
    expect(out.offload.bigRefused).toBe(false);
    expect(out.offload.stats).toMatchObject({ txFrames: 3, txDrops: 1 });
  });
});

for (const nic of ['rtl8139', 'ne2k', 'virtio']) {
  describe(`lab up tap2 --nic ${nic}: giant frames from the host, then pings`, () => {
    it('after the 1642-byte ICMP echo of issue 10 and 9 KiB / 40 KiB frames (tap2 MTU raised), pings are still answered', async () => {
      ns = new Netns();
      const lab = await ns.start(['node', 'dist/lab/cli.js', '--no-capture', 'up', 'tap2', '--nic', nic, '--for', '60'], 'ready:');
      expect(ns.run(['ping', '-c', '1', '-W', '2', '172.22.0.2']).status).toBe(0);
      // The TAP's largest MTU: the host then sends 1642-, 9 KiB and 40 KiB frames in one piece.
      expect(ns.run(['ip', 'link', 'set', 'tap2', 'mtu', '65521']).status).toBe(0);
      for (const size of ['1600', '8000', '40000']) ns.run(['ping', '-c', '1', '-W', '1', '-s', size, '172.22.0.2']);
      const after = ns.run(['ping', '-c', '3', '-W', '2', '172.22.0.2']);
      expect(after.stdout.toString()).toContain('3 received');
      lab.child.kill('SIGINT');
      await lab.exit;
    }, 60_000);
  });
}

describe('lab up tap2: a lone frame reaches a lab that sleeps', () => {
  it('30 pings 200 ms apart (the lab asleep before each) are all answered within 1 s: the kernel wakes the sleeping lab (its TAP fd in the event loop) for each lone frame', async () => {
    ns = new Netns();
    const lab = await ns.start(['node', 'dist/lab/cli.js', '--no-capture', 'up', 'tap2', '--nic', 'virtio', '--for', '60'], 'ready:');
    const r = ns.run(['ping', '-c', '30', '-i', '0.2', '-W', '1', '172.22.0.2'], { timeoutMs: 30_000 });
    expect(r.stdout.toString()).toContain('30 received');
    lab.child.kill('SIGINT');
    await lab.exit;
  }, 60_000);
});
