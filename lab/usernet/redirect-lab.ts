import { formatIpv4 } from '../../net/addr.js';
import type { Clock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import type { Logger } from '../../src/log.js';
import { userNetAddressing, type UserNetAddressing } from './addressing.js';
import { parseRedirect, type Redirect } from './redirect-spec.js';
import { UserNet } from './user-net.js';

/**
 * A user-mode network with redirects in front of a guest that is not the built-in one (a VM's
 * socket netdev, a Linux guest on netlab's NIC models): the guest gets the redirects' address from
 * the lab's DHCP server, as a QEMU guest on `-netdev user` does.
 */
export interface PlannedRedirects {
  redirects: Redirect[];
  addressing: UserNetAddressing;
}

/** Parse the specs and work out the network they imply (errors name the bad spec). */
export function planRedirects(specs: string[]): { ok: true; value: PlannedRedirects } | { ok: false; error: string } {
  const redirects: Redirect[] = [];
  for (const s of specs) {
    const r = parseRedirect(s);
    if (!r.ok) return r;
    redirects.push(r.value);
  }
  const addressing = userNetAddressing(redirects);
  return addressing.ok ? { ok: true, value: { redirects, addressing: addressing.value } } : addressing;
}

export interface OpenedUserNet {
  userNet: UserNet;
  /** Lines for the user: the network and each redirect. */
  summary: string[];
}

/** The user-mode network on `port` (its guest side), listening for every redirect. */
export async function openUserNet(
  port: FramePort,
  plan: PlannedRedirects,
  o: { clock: Clock; logger: Logger; restrict?: boolean; listenAddress?: string; guest: string },
): Promise<{ ok: true; value: OpenedUserNet } | { ok: false; error: string }> {
  const a = plan.addressing;
  const userNet = new UserNet(port, { clock: o.clock, addressing: a, restrict: o.restrict ?? false, log: o.logger.child('usernet'), listenAddress: o.listenAddress });
  const errors = await userNet.listen(plan.redirects);
  if (errors.length > 0) {
    userNet.close();
    return { ok: false, error: errors.join('\n  ') };
  }
  const summary = [
    `user-mode network ${formatIpv4(a.network)}/${a.prefixLength}: gateway ${formatIpv4(a.gateway)} (host loopback), DNS ${formatIpv4(a.dns)}, DHCP gives ${o.guest} ${formatIpv4(a.guest)}`,
    ...userNet.describeRedirects(plan.redirects).map((l) => `redirect ${l}`),
  ];
  return { ok: true, value: { userNet, summary } };
}
