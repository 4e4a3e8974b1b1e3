import type { Clock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import type { Logger } from '../../src/log.js';
import { ImpairedPort } from '../impair.js';
import { openUserNet, planRedirects } from '../usernet/redirect-lab.js';
import type { Redirect } from '../usernet/redirect-spec.js';
import { UserNet } from '../usernet/user-net.js';
import { describeSpec, qemuNetdev, type VmSocketSpec } from './spec.js';
import { openVmSocket, type VmSocketPort } from './vm-socket-port.js';

/**
 * A VM socket opened for a lab: the socket FramePort, seeded loss when the spec asks for it, and a
 * capture point (its own hop, named by the spec or `vmsockN`) — what the switch or the user-mode
 * network is then given.
 */
export interface OpenedVmSocket {
  port: VmSocketPort;
  /** What to attach (the capture point in front of the impairment in front of the socket). */
  wired: FramePort;
  hop: string;
  /** The seeded loss in front of the socket, when the spec asked for one. */
  impaired: ImpairedPort | null;
  /** A line for the user: where the socket is and the QEMU -netdev that pairs with it. */
  hint: string;
}

export async function openLabVmSocket(
  spec: VmSocketSpec,
  index: number,
  o: { clock: Clock; logger: Logger; wrapPort?: (hop: string, port: FramePort) => FramePort; seed?: number },
): Promise<{ ok: true; value: OpenedVmSocket } | { ok: false; error: string }> {
  const hop = spec.name ?? `vmsock${index}`;
  const opened = await openVmSocket(spec, hop);
  if (!opened.ok) return opened;
  const port = opened.port;
  const log = o.logger.child('vmsocket');
  port.onEvent = (line) => log.info(line);
  let p: FramePort = port;
  const impaired = spec.lossPct ? new ImpairedPort(o.clock, p, { lossPct: spec.lossPct, seed: o.seed ?? 1 }) : null;
  if (impaired) p = impaired;
  const wired = o.wrapPort ? o.wrapPort(hop, p) : p;
  const hint = `VM socket ${hop}: ${describeSpec(spec, port.bound)}${spec.lossPct ? `, ${spec.lossPct}% loss` : ''}; QEMU: -netdev ${qemuNetdev(spec, 'n0', port.bound)} -device rtl8139,netdev=n0`;
  return { ok: true, value: { port, wired, hop, impaired, hint } };
}

export interface SocketRedirectLab {
  socket: OpenedVmSocket;
  userNet: UserNet;
  redirects: Redirect[];
  summary: string[];
  close(): void;
}

/**
 * `lab redirect SPECS --vm-socket S`: the user-mode network's guest side is a VM's socket netdev
 * instead of a built-in guest's NIC. The VM gets the redirects' guest address from the lab's DHCP.
 */
export async function startSocketRedirect(o: {
  spec: VmSocketSpec;
  redirects: string[];
  clock: Clock;
  logger: Logger;
  restrict?: boolean;
  listenAddress?: string;
  wrapPort?: (hop: string, port: FramePort) => FramePort;
}): Promise<{ ok: true; lab: SocketRedirectLab } | { ok: false; error: string; exitCode: number }> {
  const plan = planRedirects(o.redirects);
  if (!plan.ok) return { ok: false, error: plan.error, exitCode: 2 };
  const opened = await openLabVmSocket(o.spec, 0, o);
  if (!opened.ok) return { ok: false, error: opened.error, exitCode: 1 };
  const sock = opened.value;
  const un = await openUserNet(sock.wired, plan.value, { ...o, guest: 'the VM' });
  if (!un.ok) {
    sock.port.close();
    return { ok: false, error: un.error, exitCode: 1 };
  }
  const userNet = un.value.userNet;
  const redirects = plan.value.redirects;
  const summary = [sock.hint, ...un.value.summary];
  return {
    ok: true,
    lab: {
      socket: sock,
      userNet,
      redirects,
      summary,
      close: () => {
        userNet.close();
        sock.port.close();
      },
    },
  };
}

/** One line of a VM socket's counters (frames, drops, connections, impairment). */
export function vmSocketLine(s: OpenedVmSocket): string {
  const p = s.port;
  const imp = s.impaired ? ` lost ${s.impaired.impairStats.lost}` : '';
  return `${s.hop}: rx ${p.stats.rxFrames} frames ${p.stats.rxBytes} bytes, tx ${p.stats.txFrames} frames ${p.stats.txBytes} bytes, drops tx ${p.stats.txDrops} rx ${p.stats.rxDrops}${imp}; ${Object.entries(p.counters).map(([k, v]) => `${k}=${v}`).join(' ')}`;
}
