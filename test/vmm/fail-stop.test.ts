import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import type { FramePort } from '../../net/frame-port.js';
import type { Device, DeviceContext, DeviceFactory, NicDevice } from '../../src/vmm/device.js';
import { describeFault, guard, guardedClock, guardedPort, type FailStopScope } from '../../src/vmm/fail-stop.js';
import { guestDrivers } from '../../src/guest/drivers.js';
import { hostOn, ip, testGuest } from '../guest/guest-vm.js';
import { vmFromXml } from './machine.js';

/**
 * One fail-stop mechanism on every way into a device or a guest: a throw stops that device (or,
 * from guest code, that VM) with a message naming the path, and everything else goes on.
 * The devices below are deliberately buggy device models (what the guard is for), not stand-ins.
 */
type Bug = 'receive' | 'timer' | 'start' | 'register' | 'irq';

class BuggyDevice implements NicDevice {
  readonly className = 'BUGGY';
  readonly model = 'buggy';
  state: Device['state'] = 'running';
  readonly mac = new Uint8Array([2, 0, 0, 0, 0, 9]);
  received = 0;
  ticks = 0;
  constructor(
    private readonly ctx: DeviceContext,
    readonly id: string,
    private readonly bug: Bug | 'none',
    port: number,
  ) {
    ctx.io.registerPorts(id, port, 4, {
      read: () => {
        if (this.bug === 'register') throw new Error(`${id} register bug`);
        return 0x5a;
      },
      write: () => {
        // A model raising an IRQ line that does not exist is a bug the PIC refuses.
        if (this.bug === 'irq') ctx.pic.setIrq(16, true);
      },
    });
  }
  counters(): Record<string, number> {
    return { received: this.received, ticks: this.ticks };
  }
  start(): void {
    if (this.bug === 'start') throw new Error(`${this.id} start bug`);
    const tick = (): void => {
      this.ticks++;
      if (this.bug === 'timer' && this.ticks === 3) throw new Error(`${this.id} timer bug`);
      this.ctx.clock.setTimer(10, tick);
    };
    this.ctx.clock.setTimer(10, tick);
  }
  attach(port: FramePort): void {
    port.setReceiver(() => {
      this.received++;
      if (this.bug === 'receive') throw new Error(`${this.id} receive bug`);
      return true;
    });
  }
  stop(): void {
    this.state = 'stopped';
  }
}

const buggy = (bug: Bug | 'none', port: number): DeviceFactory => (ctx, cfg) => new BuggyDevice(ctx, cfg.id, bug, port);

function twoDevices(bug: Bug, debug: string[] = []) {
  const m = vmFromXml(`<device class="BUGGY_A" id="bad"/><device class="BUGGY_B" id="good"/>`, {
    extraClasses: { BUGGY_A: buggy(bug, 0x300), BUGGY_B: buggy('none', 0x310) },
    debug,
  });
  const bad = m.vm.device('bad') as BuggyDevice;
  const good = m.vm.device('good') as BuggyDevice;
  return { ...m, bad, good };
}

function expectStoppedFor(vm: ReturnType<typeof vmFromXml>['vm'], id: string, path: string, what: RegExp): void {
  const msg = vm.failures.get(id);
  expect(msg, `failures: ${[...vm.failures.entries()].join('; ')}`).toBeDefined();
  expect(msg!.startsWith(`${path}: `)).toBe(true);
  expect(msg).toMatch(what);
  expect(msg).not.toMatch(/\n\s+at /); // one line naming the fault, never a stack trace
  expect(vm.state).toBe('running');
  expect(vm.describe().find((d) => d.id === id)!.state).toBe('failed');
}

describe('fail-stop of a device model', () => {
  it('a throw in frame delivery into the model stops that device only; later frames are refused, not delivered', () => {
    const { vm, clock, bad, good } = twoDevices('receive');
    const [wireBad, endBad] = createLink(clock, ['wire-bad', 'bad']);
    const [wireGood, endGood] = createLink(clock, ['wire-good', 'good']);
    vm.nics().find((n) => n.id === 'bad')!.attach(endBad);
    vm.nics().find((n) => n.id === 'good')!.attach(endGood);
    const frame = (): Uint8Array => new Uint8Array(60).fill(0xff, 0, 6);
    wireBad.send(frame());
    wireGood.send(frame());
    clock.runUntil(() => false, 5);
    expectStoppedFor(vm, 'bad', 'frame delivery', /Error: bad receive bug/);
    wireBad.send(frame());
    wireGood.send(frame());
    clock.runUntil(() => false, 10);
    expect(bad.received).toBe(1);
    expect(endBad.stats.rxDrops).toBe(2); // the frame it threw on, and the one refused after
    expect(good.received).toBe(2);
    expect(vm.failures.has('good')).toBe(false);
  });

  it('a throw in a device timer stops that device only; its timers stop, the other device\'s go on', () => {
    const { vm, clock, bad, good } = twoDevices('timer');
    clock.runUntil(() => false, 100);
    expectStoppedFor(vm, 'bad', 'device timer', /Error: bad timer bug/);
    expect(bad.ticks).toBe(3);
    expect(good.ticks).toBe(10);
  });

  it('a throw in a device\'s start stops that device only', () => {
    const { vm, clock, good } = twoDevices('start');
    expectStoppedFor(vm, 'bad', 'start', /Error: bad start bug/);
    clock.runUntil(() => false, 30);
    expect(good.ticks).toBe(3);
  });

  it('a throw in a register access stops that device with a one-line message; the stack goes to its debug log only', () => {
    const plain = twoDevices('register');
    expect(plain.vm.io.inb(0x300)).toBe(0xff);
    expectStoppedFor(plain.vm, 'bad', 'register access', /Error: bad register bug/);
    expect(plain.vm.io.inb(0x310)).toBe(0x5a);
    expect(plain.logLines.join('\n')).not.toMatch(/\n\s+at /);
    const debugged = twoDevices('register', ['bad']);
    debugged.vm.io.inb(0x300);
    expect(debugged.logLines.find((l) => l.startsWith('debug') && l.includes('register access: Error: bad register bug'))).toMatch(/\n\s+at /);
  });

  it('a model raising an IRQ the PIC does not have is stopped, naming the IRQ', () => {
    const { vm } = twoDevices('irq');
    vm.io.outb(0x300, 1);
    expectStoppedFor(vm, 'bad', 'register access', /RangeError: IRQ 16 does not exist/);
  });
});

describe('fail-stop of a guest', () => {
  function twoGuests() {
    const clock = new VirtualClock();
    const ga = testGuest({ clock, name: 'vma', ip: '10.0.0.2', mac: '52:54:00:00:00:0a', drivers: guestDrivers() });
    const gb = testGuest({ clock, nicClass: 'LNX_VIRTIO_NIC', name: 'vmb', ip: '10.0.0.2', mac: '52:54:00:00:00:0b', drivers: guestDrivers() });
    const hostA = hostOn(clock, ga.wire);
    const hostB = hostOn(clock, gb.wire);
    return { clock, ga, gb, hostA, hostB };
  }

  async function answers(clock: VirtualClock, host: ReturnType<typeof hostOn>): Promise<boolean> {
    const p = host.ping(ip('10.0.0.2'), 1, 56, 1000);
    clock.runUntil(() => false, 1500);
    return (await p) !== null;
  }

  function expectGuestStopped(vm: ReturnType<typeof twoGuests>['ga']['vm'], path: string, what: RegExp): void {
    expect(vm.state).toBe('failed');
    expect(vm.failure!.startsWith(`guest fault: ${path}: `)).toBe(true);
    expect(vm.failure).toMatch(what);
    expect(vm.failure).not.toMatch(/\n\s+at /);
  }

  it('a throw in a guest kernel timer stops that VM; the other VM keeps answering', async () => {
    const { clock, ga, gb, hostA, hostB } = twoGuests();
    expect(await answers(clock, hostA)).toBe(true);
    ga.kernel.hw.clock.setTimer(5, () => {
      throw new Error('kernel timer bug');
    });
    clock.runUntil(() => false, 10);
    expectGuestStopped(ga.vm, 'guest timer', /Error: kernel timer bug/);
    expect(await answers(clock, hostA)).toBe(false);
    expect(await answers(clock, hostB)).toBe(true);
    expect(gb.vm.state).toBe('running');
  });

  it('a throw in a guest app (a TCP service callback, run from the NIC interrupt) stops that VM; the other keeps answering', async () => {
    const { clock, ga, gb, hostA, hostB } = twoGuests();
    ga.net.stack.tcp.listen(4444, (conn) => {
      conn.onData = () => {
        throw new Error('app bug');
      };
    });
    const c = hostA.tcp.connect(ip('10.0.0.2'), 4444);
    c.onConnected = () => void c.write(new Uint8Array([1, 2, 3]));
    clock.runUntil(() => ga.vm.state === 'failed', 2000);
    expectGuestStopped(ga.vm, 'interrupt handler', /Error: app bug/);
    expect(await answers(clock, hostB)).toBe(true);
    expect(gb.vm.state).toBe('running');
  });

  it('a throw in a guest promise continuation (hw.guard) stops that VM; nothing reaches the lab', async () => {
    const { clock, ga, gb, hostB } = twoGuests();
    const cont = ga.kernel.hw.guard('continuation', () => {
      throw new Error('continuation bug');
    });
    await Promise.resolve().then(cont);
    expectGuestStopped(ga.vm, 'continuation', /Error: continuation bug/);
    // A stopped VM runs no more guest code.
    let ran = false;
    ga.kernel.hw.guard('late', () => void (ran = true))();
    ga.kernel.hw.clock.setTimer(1, () => void (ran = true));
    clock.runUntil(() => false, 10);
    expect(ran).toBe(false);
    expect(await answers(clock, hostB)).toBe(true);
    expect(gb.vm.state).toBe('running');
  });
});

describe('the shared guard', () => {
  function scope(): FailStopScope & { failures: string[] } {
    const failures: string[] = [];
    return {
      name: 'x',
      failures,
      get stopped() {
        return failures.length > 0;
      },
      fail: (m) => void failures.push(m),
    };
  }

  it('names thrown non-errors too', () => {
    expect(describeFault(new TypeError('t'))).toBe('TypeError: t');
    expect(describeFault('s')).toBe('s');
    expect(describeFault(42)).toBe('thrown number: 42');
    expect(describeFault(Object.create(null))).toBe('thrown object');
  });

  it('guards a function, a clock and a port receiver with one scope, once', () => {
    const s = scope();
    const f = guard(s, 'cb', (n: number) => {
      if (n > 1) throw new Error('too big');
      return n;
    }, -1);
    expect(f(1)).toBe(1);
    expect(f(2)).toBe(-1);
    expect(f(1)).toBe(-1); // stopped: not entered again
    expect(s.failures).toEqual(['cb: Error: too big']);
    const clock = new VirtualClock();
    const s2 = scope();
    const c = guardedClock(clock, s2);
    c.setTimer(1, () => {
      throw new Error('t');
    });
    expect(() => clock.runUntil(() => false, 5)).not.toThrow();
    expect(s2.failures).toEqual(['timer: Error: t']);
    const s3 = scope();
    const [a, b] = createLink(clock, ['a', 'b']);
    const gb = guardedPort(b, s3);
    expect(gb.holds).toBe(b.holds);
    expect(gb.name).toBe('b');
    gb.setReceiver(() => {
      throw new Error('rx');
    });
    a.send(new Uint8Array(60));
    a.send(new Uint8Array(60));
    clock.runUntil(() => false, 5);
    expect(s3.failures).toEqual(['frame delivery: Error: rx']);
    expect(b.stats.rxDrops).toBe(2);
  });
});

describe('fail-stop of a host-side entry into a device', () => {
  it('a throw while taking console input stops that UART only', async () => {
    const { parseVmConfig } = await import('../../src/config/parse.js');
    const { createDeviceRegistry } = await import('../../src/registry.js');
    const { Logger, memorySink } = await import('../../src/log.js');
    const { startGuestVm } = await import('../../lab/guest-vm.js');
    const registry = createDeviceRegistry();
    registry.register('BUGGY_UART', (_ctx, cfg) => ({
      id: cfg.id,
      className: 'BUGGY_UART',
      state: 'running' as const,
      onOutput: null as ((b: Uint8Array) => void) | null,
      input(): void {
        throw new Error('uart input bug');
      },
      counters: () => ({}),
      stop(): void {},
    }));
    const parsed = parseVmConfig(`<vm class="PC" name="u"><memory>16</memory><devices><device class="8259A" id="PIC"/><device class="PCI" id="pci0"/><device class="BUGGY_UART" id="tty"/></devices></vm>`, { knownClasses: registry.names() });
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    const started = startGuestVm(parsed.value, { clock: new VirtualClock(), logger: new Logger([], memorySink([])), registry, drivers: [] });
    if (!started.ok) throw new Error(started.errors.join('\n'));
    const { vm, console: tty } = started.value;
    expect(() => tty!.input(new Uint8Array([0x41]))).not.toThrow();
    expect(vm.failures.get('tty')).toBe('console input: Error: uart input bug');
    expect(vm.state).toBe('running');
  });
});
