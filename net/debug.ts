/**
 * Debug output for the stack's components (Palacios' PrintDebug, lwIP's LWIP_DEBUGF): one sink per
 * component — arp, ip, icmp, tcp, udp, dhcp, dns — switched on at run time (`--debug tcp,arp`).
 * net/ does no I/O of its own, so the lab hands the stack these sinks (src/log.ts's ComponentLog is
 * one). Free when off: every call site tests `on` before it builds a message, so a stack with
 * debugging off pays one property read per site and builds no strings.
 */
export interface DebugLog {
  readonly on: boolean;
  debug(message: string): void;
}

export const NO_DEBUG: DebugLog = { on: false, debug: () => {} };

export const NET_COMPONENTS = ['arp', 'ip', 'icmp', 'tcp', 'udp', 'dhcp', 'dns'] as const;
export type NetComponent = (typeof NET_COMPONENTS)[number];
export type NetDebug = Readonly<Record<NetComponent, DebugLog>>;

/** Sinks for every component: from `make`, or all off. */
export function netDebug(make?: (component: NetComponent) => DebugLog): NetDebug {
  const out = {} as Record<NetComponent, DebugLog>;
  for (const c of NET_COMPONENTS) out[c] = make ? make(c) : NO_DEBUG;
  return out;
}
