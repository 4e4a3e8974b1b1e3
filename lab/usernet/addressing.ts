import { parseIpv4, prefixMask, sameSubnet, type Ipv4Addr } from '../../net/addr.js';
import type { Redirect } from './redirect-spec.js';

/**
 * The user-mode network's addresses (libslirp's defaults): 10.0.2.0/24, gateway (= host) .2,
 * DNS .3, DHCP leases from .15. A redirect to a guest outside that net (the manual's 10.10.10.33)
 * moves the whole network to that guest's /24 with the same host numbers, so the example works as
 * typed.
 */
export interface UserNetAddressing {
  network: Ipv4Addr;
  prefixLength: number;
  gateway: Ipv4Addr;
  dns: Ipv4Addr;
  dhcpStart: Ipv4Addr;
  dhcpCount: number;
  /** The guest's address: the redirects' guest address, else the first DHCP lease. */
  guest: Ipv4Addr;
  /** True when the guest address was given (static), false when it comes from DHCP. */
  guestStatic: boolean;
}

export const SLIRP_NETWORK = parseIpv4('10.0.2.0')!;

export function userNetAddressing(redirects: Redirect[]): { ok: true; value: UserNetAddressing } | { ok: false; error: string } {
  const guests = [...new Set(redirects.map((r) => r.guestAddr).filter((a): a is Ipv4Addr => a !== undefined))];
  if (guests.length > 1) {
    return { ok: false, error: `the redirects name ${guests.length} different guest addresses; a user-mode network has one guest (use the same GUESTADDR, or leave it empty for the DHCP guest)` };
  }
  const guest = guests[0];
  const network = guest !== undefined && !sameSubnet(guest, SLIRP_NETWORK, 24) ? (guest & prefixMask(24)) >>> 0 : SLIRP_NETWORK;
  const a: UserNetAddressing = {
    network,
    prefixLength: 24,
    gateway: network + 2,
    dns: network + 3,
    dhcpStart: network + 15,
    dhcpCount: 16,
    guest: guest ?? network + 15,
    guestStatic: guest !== undefined,
  };
  const host = guest !== undefined ? guest & 0xff : -1;
  if (host === 0 || host === 255 || host === 2 || host === 3) {
    return { ok: false, error: `guest address .${host} is reserved on the user-mode network (.0 network, .2 gateway, .3 DNS, .255 broadcast); pick another` };
  }
  return { ok: true, value: a };
}
