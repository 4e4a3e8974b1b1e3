import { describe, expect, it } from 'vitest';
import { networkDriverProblems } from './linux-guest.js';

/** A kernel trace as Linux 6.1 prints it at log level 4, stopped in `eip`, called through `calls`. */
const trace = (head: string, eip: string, calls: string[]): string =>
  [
    '<4>[    4.262000] ------------[ cut here ]------------',
    `<4>[    4.262500] ${head}`,
    '<4>[    4.263098] Modules linked in: 8139cp 8139too mii',
    '<4>[    4.263200] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-57-686 #1 Debian',
    `<4>[    4.263300] EIP: ${eip}`,
    '<4>[    4.263400] Call Trace:',
    ...calls.map((c) => `<4>[    4.263500]  ${c}`),
    '<4>[    4.263600] ---[ end trace 0000000000000000 ]---',
  ].join('\n');

describe('the Linux guest tests\' dmesg check (networkDriverProblems)', () => {
  it('a kernel trace about something else is not the NIC driver\'s, though it lists the driver among the loaded modules', () => {
    const dmesg = [
      '<6>[    1.0] 8139cp 0000:00:03.0 eth0: RTL-8139C+ at 0x(ptrval), 52:54:00:12:34:56, IRQ 11',
      trace('WARNING: CPU: 0 PID: 1 at kernel/time/clocksource.c:500 clocksource_watchdog+0x1b/0x300', 'clocksource_watchdog+0x1b/0x300', ['call_timer_fn+0x2a/0x100', 'run_timer_softirq+0x2b8/0x400']),
      '<6>[    5.0] 8139cp 0000:00:03.0 eth0: link up, 100Mbps, full-duplex, lpa 0x05E1',
    ].join('\n');
    expect(networkDriverProblems(dmesg)).toEqual([]);
  });

  it('a trace through the driver is its problem, named by the trace\'s head', () => {
    const dmesg = trace('WARNING: CPU: 0 PID: 0 at net/sched/sch_generic.c:525 dev_watchdog+0x1f0/0x200', 'dev_watchdog+0x1f0/0x200', ['rtl8139_tx_timeout+0x10/0x90 [8139too]', 'call_timer_fn+0x2a/0x100']);
    const p = networkDriverProblems(dmesg);
    expect(p).toHaveLength(1);
    expect(p[0]).toContain('WARNING: CPU: 0 PID: 0 at net/sched/sch_generic.c');
    expect(p[0]).toContain('rtl8139_tx_timeout');
  });

  it('driver warnings and errors count; the 8139too/8139cp hand-over does not', () => {
    const dmesg = [
      '<6>[    1.0] 8139too 0000:00:03.0: This (id 10ec:8139 rev 20) is an enhanced 8139C+ chip, use 8139cp',
      '<4>[    9.0] NETDEV WATCHDOG: eth0 (8139too): transmit queue 0 timed out',
      '<6>[    9.5] virtio_net virtio0 eth0: rx error 3',
    ].join('\n');
    expect(networkDriverProblems(dmesg)).toEqual(['<4>[    9.0] NETDEV WATCHDOG: eth0 (8139too): transmit queue 0 timed out', '<6>[    9.5] virtio_net virtio0 eth0: rx error 3']);
  });
});
