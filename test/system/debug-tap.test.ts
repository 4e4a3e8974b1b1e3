import { describe, expect, it } from 'vitest';
import { LAB_CLI, Netns, systemSuite } from './netns.js';

/**
 * `--debug tap,switch,8139too` on `lab up` (issue 14): the TAP backend and the switch log what a
 * frame met on its way, in a test-made namespace with the kernel's ping as the peer; and with no
 * `--debug` no debug line is printed at all.
 */
const CLI = LAB_CLI;
let ns: Netns | null = null;

systemSuite([['ip', 'iproute2'], ['ping', 'iputils-ping']], () => {
  ns?.cleanup();
  ns = null;
});

describe('--debug on a TAP lab', () => {
  it('tap: opened, switch: learning, 8139too: rx/tx; nothing when off', async () => {
    ns = new Netns();
    const lab = await ns.start([...CLI, '--no-capture', '--debug', 'tap,switch,8139too', 'up', 'tap2', '--for', '60'], 'ready:');
    expect(ns.run(['ping', '-c', '2', '-W', '2', '172.22.0.2']).status).toBe(0);
    lab.child.kill('SIGTERM');
    await lab.exit;
    const err = lab.err();
    expect(err).toMatch(/\[tap\] debug: tap2: opened/);
    expect(err).toMatch(/\[switch\] debug: learned [0-9a-f:]{17} on tap2/);
    expect(err).toMatch(/\[vm0\.8139too\] debug: eth0: rx \d+ bytes/);
    expect(err).toMatch(/\[vm0\.8139too\] debug: eth0: tx \d+ bytes/);

    const quiet = await ns.start([...CLI, '--no-capture', 'up', 'tap2', '--for', '60'], 'ready:');
    expect(ns.run(['ping', '-c', '1', '-W', '2', '172.22.0.2']).status).toBe(0);
    quiet.child.kill('SIGTERM');
    await quiet.exit;
    expect(quiet.err()).not.toMatch(/\] debug: /);
  }, 60_000);
});
