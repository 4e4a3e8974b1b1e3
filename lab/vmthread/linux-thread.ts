import type { Clock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import type { CaptureSink } from '../capture/sink.js';
import type { LinuxGuest } from '../v86-linux.js';
import type { LinuxThreadGuest } from './protocol.js';
import { VmThread } from './vm-thread.js';

/**
 * A Linux guest whose CPU (the v86 emulator) and NIC model run in their own worker thread, seen by
 * the lab's commands as the same LinuxGuest as one in the lab's thread. Its NIC's wire is a ring
 * port to attach in the lab's thread; its `name.eth0` hop is captured in its thread and mirrored
 * into the lab's capture run. Counters and telemetry are what the thread last reported.
 */
export interface LinuxThreadOptions {
  clock: Clock;
  debug?: string;
  quiet?: boolean;
  /** The run's sink for the guest's `name.eth0` hop, or null when captures are off. */
  sink: CaptureSink | null;
  consoleOut: (text: string) => void;
}

export async function linuxGuestInThread(spec: LinuxThreadGuest, o: LinuxThreadOptions): Promise<{ ok: true; guest: LinuxGuest; wire: FramePort; start: () => void } | { ok: false; error: string }> {
  const hop = `${spec.name}.eth0`;
  const made = await VmThread.start({ kind: 'linux', linux: spec }, {
    clock: o.clock,
    debug: o.debug,
    quiet: o.quiet,
    nics: [{ id: 'net0', hop }],
    captures: o.sink ? [{ hop, sink: o.sink }] : [],
    consoleOut: o.consoleOut,
  });
  if (!made.ok) return { ok: false, error: made.errors.join('; ') };
  const t = made.vm;
  const wire = t.ports.get('net0');
  if (!wire) {
    await t.stop('no NIC');
    return { ok: false, error: `${spec.name}: the NIC model did not come up as a NIC` };
  }
  let t0 = 0;
  const guest: LinuxGuest = {
    name: spec.name,
    ready: t.linuxReady,
    uptime: () => (t0 ? (performance.now() - t0) / 1000 : 0),
    type: (text) => t.consoleInput(Buffer.from(text, 'latin1')),
    nicCounters: () => {
      // Answered from the last report; asking now keeps the next answer fresh.
      void t.refresh();
      return t.status.nics[0]?.counters ?? {};
    },
    failed: () => t.failed,
    refresh: async () => {
      await t.refresh();
    },
    report: () => `${t.status.telemetry}${t.status.state === 'failed' && !/stopped:/.test(t.status.telemetry) ? `\n  ${spec.name}: its thread failed` : ''}`,
    stop: async () => {
      await t.stop('lab stopped');
    },
  };
  const start = (): void => {
    t0 = performance.now();
    t.startCpu();
  };
  return { ok: true, guest, wire, start };
}
