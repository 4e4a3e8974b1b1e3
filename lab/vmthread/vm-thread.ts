import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import type { Clock } from '../../net/clock.js';
import type { CaptureSink } from '../capture/sink.js';
import { FrameRing } from '../ring/frame-ring.js';
import { startWorker } from '../ring/worker-start.js';
import { MIRROR_BYTES, MirrorReader } from './capture-mirror.js';
import { PortDoorbell } from './doorbell.js';
import { guestName, type FromVm, type ToVm, type VmStatus, type VmThreadGuest, type VmThreadNic } from './protocol.js';
import { RingPort, ringPortSpecs } from './ring-port.js';

/**
 * The lab's handle on a VM running in its own worker thread (vm-worker.ts): the VM's NIC wires as
 * FramePorts in the lab's thread (attach them to a switch or the user-mode network as a link end),
 * its console, its last known state and counters, and its stop. The VM is a built-in guest or a
 * Linux guest on the v86 CPU emulator.
 */
export interface VmThreadOptions {
  clock: Clock;
  /** `--debug` spec and `--quiet`: the VM's thread makes its own logger from them. */
  debug?: string;
  quiet?: boolean;
  /** The NICs to wire out (device id) and each one's wire-side capture hop name. */
  nics: { id: string; hop: string }[];
  /** Capture hops inside the VM (its NICs' wire sides, its stack) and the run's sink for each. */
  captures?: { hop: string; sink: CaptureSink }[];
  consoleOut?: (text: string) => void;
}

export type VmThreadStart = { ok: true; vm: VmThread } | { ok: false; errors: string[] };

/** How long a stopping VM's thread gets to report before it is terminated. */
const STOP_GRACE_MS = 2000;

export class VmThread {
  /** Last status the VM's thread reported (kept fresh on every state change). */
  status: VmStatus;
  /** Resolves when the guest's interface has its address (built-in guests). */
  readonly networkReady: Promise<void>;
  /** Resolves at a Linux guest's ready line, or with the device failure that came first. */
  readonly linuxReady: Promise<Extract<FromVm, { t: 'linux-ready' }>['ready']>;
  networkError: string | null = null;
  private readonly mirror: MirrorReader | null;
  private finalStatus: ((s: VmStatus) => void) | null = null;
  private statusWaiters: ((s: VmStatus) => void)[] = [];
  private exited = false;
  private readonly exit: Promise<void>;

  private constructor(
    private readonly worker: Worker,
    readonly name: string,
    /** The NICs' wires, by device id, for the lab's side to attach. */
    readonly ports: Map<string, RingPort>,
    readonly nics: { id: string; model: string; mac: Uint8Array }[],
    ready: Extract<FromVm, { t: 'ready' }>,
    mirror: MirrorReader | null,
    networkReady: Promise<void>,
    linuxReady: VmThread['linuxReady'],
  ) {
    this.status = ready.status;
    this.networkError = ready.networkError;
    this.mirror = mirror;
    this.networkReady = networkReady;
    this.linuxReady = linuxReady;
    this.exit = new Promise((resolve) =>
      worker.once('exit', () => {
        this.exited = true;
        this.mirror?.drainNow();
        this.mirror?.stop();
        for (const p of this.ports.values()) p.close();
        if (this.status.state === 'running' || this.status.state === 'created') this.status = { ...this.status, state: 'failed' };
        this.finalStatus?.(this.status);
        for (const w of this.statusWaiters.splice(0)) w(this.status);
        resolve();
      }),
    );
  }

  /** Start the VM's thread and wait until its VM is built and wired (or could not be). */
  static start(guest: VmThreadGuest, o: VmThreadOptions): Promise<VmThreadStart> {
    const name = guestName(guest);
    const nics: VmThreadNic[] = [];
    const ports = new Map<string, RingPort>();
    const transfer: MessagePort[] = [];
    for (const n of o.nics) {
      const [lab, vm] = ringPortSpecs();
      const bell = new MessageChannel();
      ports.set(n.id, new RingPort(`${n.hop}.thread`, lab, o.clock, new PortDoorbell(bell.port1)));
      nics.push({ id: n.id, hop: n.hop, spec: vm, bell: bell.port2 });
      transfer.push(bell.port2);
    }
    let mirror: MirrorReader | null = null;
    let mirrorData: { sab: SharedArrayBuffer; bell: MessagePort; hops: string[] } | null = null;
    if (o.captures && o.captures.length > 0) {
      const ring = FrameRing.create(MIRROR_BYTES);
      if (!ring.ok) return Promise.resolve({ ok: false, errors: [ring.error] });
      const bell = new MessageChannel();
      mirror = new MirrorReader(ring.ring, o.clock, new PortDoorbell(bell.port1), o.captures.map((c) => c.sink));
      mirrorData = { sab: ring.ring.sab, bell: bell.port2, hops: o.captures.map((c) => c.hop) };
      transfer.push(bell.port2);
    }
    const worker = startWorker(import.meta.url, 'vm-worker', {
      workerData: { guest, debug: o.debug, quiet: o.quiet ?? false, nics, mirror: mirrorData },
      transferList: transfer,
    });
    let resolveNet: () => void = () => {};
    const networkReady = new Promise<void>((r) => (resolveNet = r));
    let resolveLinux: (r: Awaited<VmThread['linuxReady']>) => void = () => {};
    const linuxReady = new Promise<Awaited<VmThread['linuxReady']>>((r) => (resolveLinux = r));
    return new Promise<VmThreadStart>((resolve) => {
      let vm: VmThread | null = null;
      const fail = (errors: string[]): void => {
        for (const p of ports.values()) p.close();
        mirror?.stop();
        void worker.terminate();
        resolve({ ok: false, errors });
      };
      worker.on('error', (e) => {
        // The VM's thread died (not a guest fault, which fail-stops inside it): that VM is failed.
        if (!vm) fail([`${name}: its thread failed: ${e.message}`]);
        else process.stderr.write(`lab: ${name}: its thread failed: ${e.message}\n`);
      });
      worker.once('exit', () => {
        resolveLinux({ ok: false, error: `${name}: its thread ended before the guest was ready` });
        if (!vm) fail([`${name}: its thread ended before the VM was built`]);
      });
      worker.on('message', (m: FromVm) => {
        if (m.t === 'failed-to-start') fail(m.errors);
        else if (m.t === 'ready') {
          vm = new VmThread(worker, name, ports, m.nics.map((n) => ({ id: n.id, model: n.model, mac: Uint8Array.from(n.mac) })), m, mirror, networkReady, linuxReady);
          resolve({ ok: true, vm });
        } else if (m.t === 'network-ready') resolveNet();
        else if (m.t === 'linux-ready') resolveLinux(m.ready);
        else if (m.t === 'console') o.consoleOut?.(m.text);
        else if (m.t === 'status' && vm) vm.onStatus(m.status, m.final);
      });
    });
  }

  get failed(): boolean {
    return this.status.state === 'failed';
  }

  /** The VM's current status, asked of its thread (its last known one if the thread is gone). */
  refresh(): Promise<VmStatus> {
    if (this.exited) return Promise.resolve(this.status);
    return new Promise((resolve) => {
      this.statusWaiters.push(resolve);
      this.send({ t: 'status' });
    });
  }

  /** Start a Linux guest's CPU (once its NIC's wire is attached on the lab's side). */
  startCpu(): void {
    this.send({ t: 'start' });
  }

  consoleInput(bytes: Uint8Array): void {
    this.send({ t: 'console', bytes });
  }

  /**
   * Stop the VM, take its final counters and the last capture records, and end its thread (after
   * STOP_GRACE_MS, whatever it is doing).
   */
  async stop(reason: string): Promise<VmStatus> {
    if (this.exited) return this.status;
    const final = new Promise<VmStatus>((resolve) => (this.finalStatus = resolve));
    this.send({ t: 'stop', reason });
    const timer = setTimeout(() => void this.worker.terminate(), STOP_GRACE_MS);
    await final;
    clearTimeout(timer);
    await this.worker.terminate();
    await this.exit;
    return this.status;
  }

  private onStatus(s: VmStatus, final: boolean): void {
    this.status = s;
    for (const w of this.statusWaiters.splice(0)) w(s);
    if (final) {
      this.mirror?.drainNow();
      this.finalStatus?.(s);
    }
  }

  private send(m: ToVm): void {
    if (!this.exited) this.worker.postMessage(m);
  }
}
