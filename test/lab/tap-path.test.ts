import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { LearningSwitch } from '../../lab/switch.js';
import { hostOn as simHost, ip, testGuest } from '../guest/guest-vm.js';
import { guestDrivers } from '../../src/guest/drivers.js';
import { ethFrame, tcpIpv4Frame, BROADCAST } from '../contract/frame-port-contract.js';

/**
 * A TAP passes frames up to 64 KiB whatever its MTU (issue 10): the path from it — TAP port →
 * switch → NIC — must drop and count what a NIC cannot take, never throw or wedge. The TAP's side
 * here is a link end carrying what a TAP read would return (the TapPort itself runs the contract
 * in test/system/tap-port-contract.test.ts); behind the switch, one guest per NIC model.
 */
const MODELS = ['RTL8139', 'NE2000', 'LNX_VIRTIO_NIC'] as const;

describe('TAP → switch → NIC with frames up to 64 KiB', () => {
  it('every guest still answers pings after giant frames to it and to broadcast; the switch counts them', async () => {
    const clock = new VirtualClock();
    const sw = new LearningSwitch(clock);
    const [tapSide, swTap] = createLink(clock, ['tap2', 'sw.tap2']);
    sw.attach(swTap, 'tap2');
    const host = simHost(clock, tapSide);
    const guests = MODELS.map((nicClass, i) => {
      const g = testGuest({ clock, nicClass, name: `vm${i}`, ip: `10.0.0.${i + 2}`, mac: `52:54:00:00:00:0${i + 2}`, drivers: guestDrivers() });
      sw.attach(g.wire, `vm${i}.eth0`);
      return g;
    });
    const pingAll = async (seq: number): Promise<boolean[]> => {
      const answered: boolean[] = [];
      for (let i = 0; i < guests.length; i++) {
        const p = host.ping(ip(`10.0.0.${i + 2}`), seq, 56, 2000);
        clock.runUntil(() => false, 3000);
        answered.push((await p) !== null);
      }
      return answered;
    };
    expect(await pingAll(1)).toEqual([true, true, true]);
    const src = new Uint8Array([2, 0, 0, 0, 0, 1]);
    let sent = 0;
    for (const g of guests) {
      const mac = g.vm.nics()[0]!.mac;
      const echo = tcpIpv4Frame(1642, mac, src, ip('10.0.0.1'), ip('10.0.0.2'));
      echo[23] = 1; // the 1600-byte-payload ICMP echo of issue 10
      for (const f of [echo, ethFrame(9018, mac, src, 0x0800), ethFrame(32 * 1024, mac, src, 0x0800), ethFrame(65535, mac, src, 0x0800), tcpIpv4Frame(65535, mac, src, ip('10.0.0.1'), ip('10.0.0.2'))]) {
        tapSide.send(f);
        sent++;
      }
    }
    tapSide.send(ethFrame(65535, BROADCAST, src, 0x0806));
    clock.runUntil(() => false, 500);
    expect(await pingAll(2)).toEqual([true, true, true]);
    // Each giant to a guest's MAC is dropped once; the broadcast once per guest port.
    expect(sw.stats.oversize).toBe(sent + MODELS.length);
    expect(guests.map((g) => g.vm.failures.size)).toEqual([0, 0, 0]);
  });
});
