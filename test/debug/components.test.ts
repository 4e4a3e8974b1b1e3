import { afterEach, describe, expect, it, vi } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { Stack } from '../../net/stack.js';
import { mulberry32 } from '../../net/random.js';
import { netDebug, type DebugLog } from '../../net/debug.js';
import { DhcpClient } from '../../net/dhcp/client.js';
import { encodeDns, DnsType, DNS_CLASS_IN } from '../../net/wire/dns.js';
import { ComponentLog, DEBUG_COMPONENTS, Logger, memorySink, parseDebugSpec } from '../../src/log.js';
import { rtl8139Driver } from '../../src/guest/drivers/rtl8139.js';
import { ne2kDriver } from '../../src/guest/drivers/ne2k.js';
import { virtioNetDriver } from '../../src/guest/drivers/virtio-net.js';
import { LearningSwitch } from '../../lab/switch.js';
import { userNetAddressing } from '../../lab/usernet/addressing.js';
import { UserNet } from '../../lab/usernet/user-net.js';
import { ip, simGuest, simHost } from '../../lab/sim.js';
import { httpGet } from '../net/tcp-io.js';

/**
 * `--debug COMPONENT` (issue 14): each component's lines appear when it is on, and only its own;
 * with debugging off not one debug call is made (so no message is built: every site tests `on`
 * before it formats anything).
 */

/** A logger with `spec` on, its lines kept as "level [component] message". */
function logged(spec: string): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger(spec.split(','), memorySink(lines)), lines };
}

/** A debug sink that is off and counts the calls made to it anyway (there must be none). */
function countingOff(): DebugLog & { calls: number } {
  const d = { on: false, calls: 0, debug: () => void d.calls++ };
  return d;
}

const NICS = [
  { nicClass: 'RTL8139', model: 'rtl8139', driver: '8139too', drivers: [rtl8139Driver] },
  { nicClass: 'NE2000', model: 'ne2000', driver: 'ne2k-pci', drivers: [ne2kDriver] },
  { nicClass: 'LNX_VIRTIO_NIC', model: 'virtio-net', driver: 'virtio_net', drivers: [virtioNetDriver] },
] as const;

/** A built-in guest on a link in virtual time: ARP, ping, a UDP echo and an HTTP GET from a host. */
function guestScenario(nic: (typeof NICS)[number], logger: Logger): void {
  const g = simGuest({ nicClass: nic.nicClass, drivers: [...nic.drivers], logger });
  const host = simHost(g.clock, g.wire);
  void host.ping(ip('10.0.0.2'), 1);
  g.clock.runUntil(() => false, 200);
  const u = host.udp.socket().bind(5000);
  u.send(new TextEncoder().encode('hello'), ip('10.0.0.2'), 7);
  g.clock.runUntil(() => false, 50);
  expect(httpGet(g.clock, host, ip('10.0.0.2'), '/')).toMatch(/^HTTP\/1\.1 200/);
  g.vm.stop('test over');
}

/** Lines whose component has `name` as a dotted segment (how `--debug name` selects them). */
function of(lines: string[], name: string): string[] {
  return lines.filter((l) => {
    const m = /^debug \[([^\]]+)\]/.exec(l);
    return m !== null && m[1]!.split('.').includes(name);
  });
}

function debugLines(lines: string[]): string[] {
  return lines.filter((l) => l.startsWith('debug '));
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('--debug names', () => {
  it('accepts every known component and "all"; an unknown one is an error listing the known ones', () => {
    expect(parseDebugSpec('pci,rtl8139,tcp')).toEqual({ ok: true, components: ['pci', 'rtl8139', 'tcp'] });
    expect(parseDebugSpec('all').ok).toBe(true);
    expect(parseDebugSpec(DEBUG_COMPONENTS.join(',')).ok).toBe(true);
    const r = parseDebugSpec('rtl8139,tpc');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toContain('tpc');
      for (const c of DEBUG_COMPONENTS) expect(r.error).toContain(c);
    }
  });
});

describe('VMM core, NIC models, drivers and the guest stack', () => {
  for (const nic of NICS) {
    it(`${nic.model}: register accesses by name; ${nic.driver}: probe, interrupts, rx/tx`, () => {
      const { logger, lines } = logged(`${nic.model},${nic.driver}`);
      guestScenario(nic, logger);
      const model = of(lines, nic.model);
      const driver = of(lines, nic.driver);
      expect(debugLines(lines).length).toBe(model.length + driver.length); // nothing else
      expect(model.some((l) => /\b(read|write) [A-Z]/.test(l))).toBe(true);
      expect(driver.some((l) => l.includes('probe 00:'))).toBe(true);
      expect(driver.some((l) => /interrupt, ISR 0x/.test(l))).toBe(true);
      expect(driver.some((l) => /rx \d+ bytes/.test(l))).toBe(true);
      expect(driver.some((l) => /tx \d+ bytes/.test(l))).toBe(true);
    });
  }

  it('rtl8139 names its registers as the datasheet does', () => {
    const { logger, lines } = logged('rtl8139');
    guestScenario(NICS[0], logger);
    const text = of(lines, 'rtl8139').join('\n');
    for (const reg of ['CR', 'RCR', 'TCR', 'RBSTART', 'ISR', 'IMR', 'CAPR', 'TSD0', 'TSAD0']) expect(text).toMatch(new RegExp(`(read|write) ${reg}[/+]`));
  });

  const expectations: [string, RegExp[]][] = [
    ['pci', [/config read \S+ net0 VENDOR_ID\/4 = 0x813910ec/, /config write \S+ net0 COMMAND/, /net0: map io BAR at 0x/]],
    ['io', [/io-(in|out) 0x[0-9a-f]{4}\/[124] net0\+0x/]],
    ['irq', [/IRQ \d+ raised/, /INTA: IRQ \d+ in service/]],
    ['vmm', [/device net0 \(RTL8139\) created/, /created → running/, /running → stopped \(test over\)/]],
    ['arp', [/who-has 10\.0\.0\.2 tell 10\.0\.0\.1/, /reply 10\.0\.0\.2 is-at 52:54:00:12:34:56/]],
    ['ip', [/in 10\.0\.0\.1 → 10\.0\.0\.2 proto (1|6|17)/]],
    ['icmp', [/in type 8 code 0 10\.0\.0\.1 → 10\.0\.0\.2 id \d+ seq 1/, /out type 0 code 0/]],
    ['tcp', [/10\.0\.0\.2:80 ↔ 10\.0\.0\.1:\d+: LISTEN → SYN_RECEIVED|: SYN_RECEIVED → ESTABLISHED/, /ESTABLISHED → (CLOSE_WAIT|FIN_WAIT_1)/]],
    ['udp', [/in 10\.0\.0\.1:5000 → 10\.0\.0\.2:7 5 bytes/, /out 10\.0\.0\.2:7 → 10\.0\.0\.1:5000 5 bytes/]],
  ];
  for (const [component, patterns] of expectations) {
    it(`${component}: its lines appear, and only its`, () => {
      const { logger, lines } = logged(component);
      guestScenario(NICS[0], logger);
      const mine = of(lines, component);
      expect(mine.length).toBeGreaterThan(0);
      expect(debugLines(lines)).toEqual(mine);
      for (const p of patterns) expect(mine.join('\n')).toMatch(p);
    });
  }

  it('all: every component of the scenario at once', () => {
    const { logger, lines } = logged('all');
    guestScenario(NICS[0], logger);
    for (const c of ['pci', 'io', 'irq', 'vmm', 'rtl8139', '8139too', 'arp', 'ip', 'icmp', 'tcp', 'udp']) expect(of(lines, c).length, c).toBeGreaterThan(0);
  });

  it('off: no debug call at all (no message built) for any NIC, and no debug line', () => {
    const calls = vi.spyOn(ComponentLog.prototype, 'debug');
    for (const nic of NICS) {
      const { logger, lines } = logged('');
      guestScenario(nic, logger);
      expect(debugLines(lines)).toEqual([]);
    }
    expect(calls).not.toHaveBeenCalled();
    // The spy does see calls when debugging is on: the test above can fail.
    guestScenario(NICS[0], logged('tcp').logger);
    expect(calls).toHaveBeenCalled();
  });
});

describe('usernet, dhcp and dns: a guest stack leases an address from the user-mode network and asks its DNS', () => {
  async function userScenario(logger: Logger, guestDebug = netDebug((c) => logger.child(`vm0.${c}`))): Promise<void> {
    const clock = new VirtualClock();
    const [guestSide, userSide] = createLink(clock, ['guest', 'user']);
    const a = userNetAddressing([]);
    if (!a.ok) throw new Error(a.error);
    const userNet = new UserNet(userSide, { clock, addressing: a.value, restrict: true, log: logger.child('usernet'), random: mulberry32(3) });
    try {
      const guest = new Stack({ clock, name: 'guest', random: mulberry32(5), debug: guestDebug });
      const netif = guest.addNetif('eth0', guestSide, Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x56));
      netif.up = true;
      const sock = guest.udp.socket().bind(68);
      let bound = false;
      const client = new DhcpClient({
        clock,
        mac: netif.mac,
        random: mulberry32(9),
        debug: guestDebug.dhcp,
        send: (d) => void sock.send(d.payload, d.dst, 67, d.src),
        onBound: (lease) => {
          guest.configure(netif, lease.address, lease.prefixLength, lease.router ?? 0);
          bound = true;
        },
      });
      sock.onMessage = (d, m) => client.input(d, m.src);
      client.start();
      clock.runUntil(() => bound, 10_000);
      expect(bound).toBe(true);
      // A DNS question the proxy answers from the host's resolver (localhost: /etc/hosts).
      const q = guest.udp.socket().bind(0);
      let answered = false;
      q.onMessage = () => void (answered = true);
      q.send(encodeDns({ id: 7, flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: false, cd: false, rcode: 0 }, questions: [{ name: 'localhost', type: DnsType.A, class: DNS_CLASS_IN }], answers: [], authorities: [], additionals: [] }), ip('10.0.2.3'), 53);
      const end = Date.now() + 5000;
      while (!answered && Date.now() < end) {
        clock.advance(1);
        await new Promise((r) => setTimeout(r, 1));
      }
      expect(answered).toBe(true);
      // A TCP connection the restricted NAT refuses: a usernet line.
      guest.tcp.connect(ip('192.0.2.1'), 80);
      clock.runUntil(() => false, 100);
    } finally {
      userNet.close();
    }
  }

  it('dhcp: client states and the server\'s OFFER/ACK', async () => {
    const { logger, lines } = logged('dhcp');
    await userScenario(logger);
    const text = of(lines, 'dhcp').join('\n');
    expect(debugLines(lines)).toEqual(of(lines, 'dhcp'));
    expect(text).toMatch(/\[vm0\.dhcp\] client: INIT → SELECTING/);
    expect(text).toMatch(/client: SELECTING → REQUESTING/);
    expect(text).toMatch(/client: REQUESTING → BOUND \(10\.0\.2\.15\/24/);
    expect(text).toMatch(/\[user\.dhcp\] server: OFFER 52:54:00:12:34:56 → 10\.0\.2\.15/);
    expect(text).toMatch(/server: ACK 52:54:00:12:34:56 → 10\.0\.2\.15/);
  });

  it('dns: the proxy\'s query and answer', async () => {
    const { logger, lines } = logged('dns');
    await userScenario(logger);
    expect(debugLines(lines)).toEqual(of(lines, 'dns'));
    const text = of(lines, 'dns').join('\n');
    expect(text).toMatch(/\[user\.dns\] query id 7 localhost type 1 from 10\.0\.2\.15:\d+/);
    expect(text).toMatch(/answer id 7 localhost: rcode 0, \d+ record/);
  });

  it('usernet: the NAT\'s refusal', async () => {
    const { logger, lines } = logged('usernet');
    await userScenario(logger);
    expect(debugLines(lines)).toEqual(of(lines, 'usernet'));
    expect(of(lines, 'usernet').join('\n')).toMatch(/nat: refused guest TCP to 192\.0\.2\.1:80 \(restricted\)/);
  });

  it('off: no debug call, no message built, in the stack, the DHCP client and the user-mode network', async () => {
    const calls = vi.spyOn(ComponentLog.prototype, 'debug');
    const off = countingOff();
    const { logger, lines } = logged('');
    await userScenario(logger, netDebug(() => off));
    expect(off.calls).toBe(0);
    expect(calls).not.toHaveBeenCalled();
    expect(debugLines(lines)).toEqual([]);
  });
});

describe('switch', () => {
  /** Two stations on a learning switch: ARP floods, the reply is forwarded, a runt is dropped. */
  function switchScenario(debug: DebugLog): void {
    const clock = new VirtualClock();
    const sw = new LearningSwitch(clock, undefined, debug);
    const stacks: Stack[] = [];
    for (let i = 1; i <= 2; i++) {
      const [station, swSide] = createLink(clock, [`h${i}`, `port${i}`]);
      sw.attach(swSide, `port${i}`);
      const s = new Stack({ clock, name: `h${i}`, random: mulberry32(i) });
      s.configure(s.addNetif('eth0', station, Uint8Array.of(2, 0, 0, 0, 0, i)), ip(`10.0.0.${i}`), 24);
      stacks.push(s);
    }
    void stacks[0]!.ping(ip('10.0.0.2'), 1);
    clock.runUntil(() => false, 100);
    expect(sw.stats.forwarded).toBeGreaterThan(0);
  }

  it('switch: learning, flooding and drops appear when on', () => {
    const { logger, lines } = logged('switch');
    switchScenario(logger.child('sw0.switch'));
    const text = of(lines, 'switch').join('\n');
    expect(text).toMatch(/\[sw0\.switch\] learned 02:00:00:00:00:01 on port1/);
    expect(text).toMatch(/flood ff:ff:ff:ff:ff:ff from port1/);
    expect(text).toMatch(/learned 02:00:00:00:00:02 on port2/);
  });

  it('off: no debug call', () => {
    const off = countingOff();
    switchScenario(off);
    expect(off.calls).toBe(0);
  });
});
