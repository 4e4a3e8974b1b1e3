import { MessagePort, parentPort, workerData } from 'node:worker_threads';
import { RealClock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import { Logger } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { guestDrivers } from '../../src/guest/drivers.js';
import { startGuestNetwork } from '../../src/guest/network.js';
import { captureBetween } from '../capture/capture-port.js';
import { startGuestVm, type GuestVm } from '../guest-vm.js';
import { FrameRing } from '../ring/frame-ring.js';
import { MirrorWriter } from './capture-mirror.js';
import { PortDoorbell } from './doorbell.js';
import type { FromVm, ToVm, VmStatus, VmThreadData } from './protocol.js';
import { RingPort } from './ring-port.js';
import { vmStatus } from './vm-status.js';

/**
 * A VM's own thread, as a VMM runs a vCPU thread: its device models, its guest kernel, the guest's
 * stack and apps run here on their own event loop, and its NICs' wires cross to the lab's thread in
 * shared rings. A fault inside the VM fail-stops it (the VMM core's scopes); if this thread itself
 * dies, the lab's side sees the thread exit and marks the VM failed, and the lab goes on.
 */
const data = workerData as VmThreadData;
const post = (m: FromVm): void => parentPort!.postMessage(m);
const clock = new RealClock();
const logger = Logger.fromSpec(data.debug, undefined, data.quiet);
const name = data.config.name;

const started = startGuestVm(data.config, {
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
  run(started.value);
}

function run(guest: GuestVm): void {
  const vm = guest.vm;
  let mirror: MirrorWriter | null = null;
  let mirrorBell: PortDoorbell | null = null;
  if (data.mirror) {
    const ring = FrameRing.attach(data.mirror.sab);
    if (ring.ok) {
      mirrorBell = new PortDoorbell(data.mirror.bell);
      mirror = new MirrorWriter(ring.ring, mirrorBell);
    }
  }
  const hops = data.mirror?.hops ?? [];
  const wrap = (hop: string, port: FramePort): FramePort => {
    const i = hops.indexOf(hop);
    return mirror && i >= 0 ? captureBetween(port, hop, mirror.sink(i)) : port;
  };
  const wires: RingPort[] = [];
  for (const n of data.nics) {
    const wire = new RingPort(n.hop, n.spec, clock, new PortDoorbell(n.bell as MessagePort));
    wires.push(wire);
    const nic = vm.nics().find((d) => d.id === n.id);
    if (nic) nic.attach(wrap(n.hop, wire));
  }
  const net = startGuestNetwork(guest.kernel, { wrapPort: (netif, p) => wrap(`${name}.${netif}.stack`, p) });
  const status = (): VmStatus => vmStatus(vm, mirror?.lost ?? 0);
  post({
    t: 'ready',
    nics: vm.nics().map((d) => ({ id: d.id, model: d.model, mac: [...d.mac] })),
    networkError: 'error' in net ? net.error : null,
    status: status(),
  });
  if (!('error' in net)) void net.ready.then(() => post({ t: 'network-ready' }));
  // A fail-stop inside the VM is news to the lab at once (its exit code, its counters line).
  let lastState = vm.state;
  const watch = setInterval(() => {
    if (vm.state === lastState) return;
    lastState = vm.state;
    post({ t: 'status', status: status(), final: false });
  }, 250);
  parentPort!.on('message', (m: ToVm) => {
    if (m.t === 'status') post({ t: 'status', status: status(), final: false });
    else if (m.t === 'console') guest.console?.input(m.bytes);
    else if (m.t === 'stop') {
      clearInterval(watch);
      vm.stop(m.reason);
      post({ t: 'status', status: status(), final: true });
      for (const w of wires) w.close();
      mirrorBell?.close();
      parentPort!.close();
    }
  });
}
