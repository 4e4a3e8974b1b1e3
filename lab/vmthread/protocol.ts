import type { MessagePort } from 'node:worker_threads';
import type { VmConfig } from '../../src/config/types.js';
import type { VmState } from '../../src/vmm/vm.js';
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

export interface VmThreadData {
  config: VmConfig;
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
  | { t: 'console'; text: string }
  | { t: 'status'; status: VmStatus; final: boolean };

export type ToVm = { t: 'status' } | { t: 'console'; bytes: Uint8Array } | { t: 'stop'; reason: string };
