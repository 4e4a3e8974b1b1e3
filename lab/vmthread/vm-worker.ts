import { MessagePort, parentPort, workerData } from 'node:worker_threads';
import { RealClock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import { Logger } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { guestDrivers } from '../../src/guest/drivers.js';
import { startGuestNetwork } from '../../src/guest/network.js';
import type { NicDevice } from '../../src/vmm/device.js';
import { captureBetween } from '../capture/capture-port.js';
import { startGuestVm, type GuestVm } from '../guest-vm.js';
import { FrameRing } from '../ring/frame-ring.js';
import { MirrorWriter } from './capture-mirror.js';
import { PortDoorbell } from './doorbell.js';
import type { FromVm, LinuxThreadGuest, ToVm, VmStatus, VmThreadData } from './protocol.js';
import { RingPort } from './ring-port.js';
import { vmStatus } from './vm-status.js';

/**
 * A VM's own thread, as a VMM runs a vCPU thread: its device models and its guest — the built-in
 * guest kernel with its stack and apps, or Linux on the v86 CPU emulator — run here on their own
 * event loop, and its NICs' wires cross to the lab's thread in shared rings. A fault inside the VM
 * fail-stops it (the VMM core's scopes); if this thread itself dies, the lab's side sees the thread
 * exit and marks the VM failed, and the lab goes on.
 */
const data = workerData as VmThreadData;
const post = (m: FromVm): void => parentPort!.postMessage(m);
const clock = new RealClock();
const logger = Logger.fromSpec(data.debug, undefined, data.quiet);

/** The capture mirror (in-VM hops recorded into the lab's run) and the NICs' ring wires. */
class Wiring {
  readonly mirror: MirrorWriter | null = null;
  private readonly mirrorBell: PortDoorbell | null = null;
  private readonly wires: RingPort[] = [];

  constructor() {
    if (data.mirror) {
      const ring = FrameRing.attach(data.mirror.sab);
      if (ring.ok) {
        this.mirrorBell = new PortDoorbell(data.mirror.bell);
        this.mirror = new MirrorWriter(ring.ring, this.mirrorBell);
      }
    }
  }

  /** `port` with its frames recorded as `hop`, when the lab asked for that hop. */
  wrap(hop: string, port: FramePort): FramePort {
    const i = (data.mirror?.hops ?? []).indexOf(hop);
    return this.mirror && i >= 0 ? captureBetween(port, hop, this.mirror.sink(i)) : port;
  }

  /** Attach each NIC the lab wires out to its ring wire (and its wire-side capture hop). */
  attach(nics: NicDevice[]): void {
    for (const n of data.nics) {
      const wire = new RingPort(n.hop, n.spec, clock, new PortDoorbell(n.bell as MessagePort));
      this.wires.push(wire);
      nics.find((d) => d.id === n.id)?.attach(this.wrap(n.hop, wire));
    }
  }

  close(): void {
    for (const w of this.wires) w.close();
    this.mirrorBell?.close();
  }
}

/**
 * Status on every state change (a fail-stop is news to the lab at once: its exit code, its
 * counters line), on request, and a final one at the stop; then the thread ends.
 */
function serve(status: () => VmStatus, state: () => string, consoleIn: (bytes: Uint8Array) => void, stop: (reason: string) => Promise<void>, wiring: Wiring, start: () => void = () => {}): void {
  let lastState = state();
  const watch = setInterval(() => {
    if (state() === lastState) return;
    lastState = state();
    post({ t: 'status', status: status(), final: false });
  }, 250);
  parentPort!.on('message', (m: ToVm) => {
    if (m.t === 'status') post({ t: 'status', status: status(), final: false });
    else if (m.t === 'start') start();
    else if (m.t === 'console') consoleIn(m.bytes);
    else if (m.t === 'stop') {
      clearInterval(watch);
      void stop(m.reason).then(() => {
        post({ t: 'status', status: status(), final: true });
        wiring.close();
        parentPort!.close();
      });
    }
  });
}

function runBuiltin(guest: GuestVm): void {
  const vm = guest.vm;
  const name = vm.config.name;
  const wiring = new Wiring();
  wiring.attach(vm.nics());
  const net = startGuestNetwork(guest.kernel, { wrapPort: (netif, p) => wiring.wrap(`${name}.${netif}.stack`, p) });
  const status = (): VmStatus => vmStatus(vm, wiring.mirror?.lost ?? 0);
  post({
    t: 'ready',
    nics: vm.nics().map((d) => ({ id: d.id, model: d.model, mac: [...d.mac] })),
    networkError: 'error' in net ? net.error : null,
    status: status(),
  });
  if (!('error' in net)) void net.ready.then(() => post({ t: 'network-ready' }));
  serve(status, () => vm.state, (bytes) => guest.console?.input(bytes), (reason) => {
    vm.stop(reason);
    return Promise.resolve();
  }, wiring);
}

async function runLinux(spec: LinuxThreadGuest): Promise<void> {
  // Loaded here only: a built-in guest's thread has no use for the emulator.
  const { createLinuxGuest } = await import('../v86-linux.js');
  // The serial console arrives a byte at a time: one message per turn of this thread's loop.
  let pending = '';
  const consoleOut = (text: string): void => {
    if (pending === '') setImmediate(() => {
      post({ t: 'console', text: pending });
      pending = '';
    });
    pending += text;
  };
  const made = await createLinuxGuest({ ...spec, mac: Uint8Array.from(spec.mac), clock, logger, registry: createDeviceRegistry(), consoleOut });
  if (!made.ok) {
    post({ t: 'failed-to-start', errors: [made.error] });
    parentPort!.close();
    return;
  }
  const { guest, nic, start } = made;
  const wiring = new Wiring();
  wiring.attach([nic]);
  let stopped = false;
  const state = (): VmStatus['state'] => (guest.failed() ? 'failed' : stopped ? 'stopped' : 'running');
  const status = (): VmStatus => ({ name: spec.name, state: state(), nics: [{ id: nic.id, counters: nic.counters() }], telemetry: guest.report(), captureLost: wiring.mirror?.lost ?? 0 });
  post({ t: 'ready', nics: [{ id: nic.id, model: nic.model, mac: [...nic.mac] }], networkError: null, status: status() });
  void guest.ready.then((ready) => post({ t: 'linux-ready', ready }));
  const decoder = new TextDecoder('latin1');
  serve(status, state, (bytes) => guest.type(decoder.decode(bytes)), async () => {
    stopped = true;
    await guest.stop();
  }, wiring, start);
}

if (data.guest.kind === 'linux') {
  void runLinux(data.guest.linux);
} else {
  const started = startGuestVm(data.guest.config, {
    clock,
    logger,
    registry: createDeviceRegistry(),
    drivers: guestDrivers(),
    consoleOut: (text) => post({ t: 'console', text }),
  });
  if (!started.ok) {
    post({ t: 'failed-to-start', errors: started.errors });
    parentPort!.close();
  } else {
    runBuiltin(started.value);
  }
}
