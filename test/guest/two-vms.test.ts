import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { guestDrivers } from '../../src/guest/drivers.js';
import { LearningSwitch } from '../../lab/switch.js';
import { ImpairedPort } from '../../lab/impair.js';
import { echoExchange, sha256 } from '../net/tcp-io.js';
import { ip, testGuest } from './guest-vm.js';

/** Two guests with different NIC models on one switch, all in virtual time. */
function pairOfGuests(a: string, b: string, lossPct = 0) {
  const clock = new VirtualClock();
  const ga = testGuest({ clock, nicClass: a, name: 'vma', ip: '10.0.0.2', mac: '52:54:00:00:00:0a', drivers: guestDrivers() });
  const gb = testGuest({ clock, nicClass: b, name: 'vmb', ip: '10.0.0.3', mac: '52:54:00:00:00:0b', drivers: guestDrivers() });
  const sw = new LearningSwitch(clock);
  sw.attach(lossPct ? new ImpairedPort(clock, ga.wire, { lossPct, seed: 11 }) : ga.wire, 'a');
  sw.attach(lossPct ? new ImpairedPort(clock, gb.wire, { lossPct, seed: 12 }) : gb.wire, 'b');
  return { clock, ga, gb };
}

/** 10 MB from A to B's echo service and back: both directions, checked by hash. */
function echoTransfer(clock: VirtualClock, from: ReturnType<typeof testGuest>, to: string, size: number): { ok: boolean; got: number } {
  const data = new Uint8Array(size).map((_, i) => (i * 7 + (i >> 13)) & 0xff);
  const back = echoExchange(clock, from.net.stack, ip(to), data, 3_600_000, 200_000_000);
  return { ok: back.ended && sha256(back.bytes()) === sha256(data), got: back.received };
}

const MODELS = [
  ['RTL8139', 'LNX_VIRTIO_NIC'],
  ['NE2000', 'RTL8139'],
  ['LNX_VIRTIO_NIC', 'NE2000'],
] as const;

describe('two guests with different NICs on one switch', () => {
  for (const [a, b] of MODELS) {
    it(`${a} ↔ ${b}: ping, and 10 MB each way byte-exact`, async () => {
      const { clock, ga, gb } = pairOfGuests(a, b);
      const p = ga.net.stack.ping(ip('10.0.0.3'), 1);
      clock.runUntil(() => false, 500);
      expect(await p).not.toBeNull();
      const r = echoTransfer(clock, ga, '10.0.0.3', 10 * 1024 * 1024);
      expect(r.got).toBe(10 * 1024 * 1024);
      expect(r.ok).toBe(true);
      expect(gb.vm.failures.size + ga.vm.failures.size).toBe(0);
    }, 120_000);
  }

  it('RTL8139 ↔ virtio-net with 2% seeded loss each way: 10 MB each way still byte-exact', () => {
    const { clock, ga } = pairOfGuests('RTL8139', 'LNX_VIRTIO_NIC', 2);
    const r = echoTransfer(clock, ga, '10.0.0.3', 10 * 1024 * 1024);
    expect(r.got).toBe(10 * 1024 * 1024);
    expect(r.ok).toBe(true);
  }, 300_000);
});
