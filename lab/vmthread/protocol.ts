import type { MessagePort } from 'node:worker_threads';
import type { NicModel, VmConfig } from '../../src/config/types.js';
import type { VmState } from '../../src/vmm/vm.js';
import type { LinuxReadyResult } from '../v86-linux.js';
import type { RingPortSpec } from './ring-port.js';

/**
 * What the lab's thread and a VM's thread say to each other, besides the frames (which cross in
 * shared rings, lab/vmthread/ring-port.ts): the VM to build, its console, its state and counters,
 * and the stop. Everything here is plain data (structured clone) or transferred MessagePorts.
 */

export interface VmThreadNic {
  /** The NIC's device id in the config (`net0`). */
  id: string;
  /** Its wire-side capture hop (`vm0.eth0`). */
  hop: string;
  spec: RingPortSpec;
  bell: MessagePort;
}

/** A Linux image on one of netlab's NIC models, its CPU the v86 emulator (lab/v86-linux.ts). */
export interface LinuxThreadGuest {
  name: string;
  nic: NicModel;
  mac: number[];
  cmdline: string;
  image: { dir: string; kernel: string; initrd: string };
  memoryMB: number;
}

/** What the thread runs: the built-in guest of a config, or a Linux guest on v86. */
export type VmThreadGuest = { kind: 'builtin'; config: VmConfig } | { kind: 'linux'; linux: LinuxThreadGuest };

export const guestName = (g: VmThreadGuest): string => (g.kind === 'builtin' ? g.config.name : g.linux.name);

export interface VmThreadData {
  guest: VmThreadGuest;
  debug?: string;
  quiet: boolean;
  nics: VmThreadNic[];
  /** Capture hops recorded inside the VM's thread (by index), and the ring they cross in. */
  mirror: { sab: SharedArrayBuffer; bell: MessagePort; hops: string[] } | null;
}

export interface VmStatus {
  name: string;
  state: VmState;
  nics: { id: string; counters: Record<string, number> }[];
  /** The VMM's telemetry report (exits by kind, per device, busiest registers). */
  telemetry: string;
  /** Capture records the mirror ring had no room for. */
  captureLost: number;
}

export type FromVm =
  | { t: 'ready'; nics: { id: string; model: string; mac: number[] }[]; networkError: string | null; status: VmStatus }
  | { t: 'failed-to-start'; errors: string[] }
  | { t: 'network-ready' }
  /** A Linux guest's init printed its ready line (or a device failed first). */
  | { t: 'linux-ready'; ready: LinuxReadyResult }
  | { t: 'console'; text: string }
  | { t: 'status'; status: VmStatus; final: boolean };

/** `start`: a Linux guest's CPU starts once the lab has wired its NIC (a built-in guest runs at once). */
export type ToVm = { t: 'start' } | { t: 'status' } | { t: 'console'; bytes: Uint8Array } | { t: 'stop'; reason: string };
