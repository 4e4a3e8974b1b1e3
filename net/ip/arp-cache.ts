import type { Ipv4Addr } from '../addr.js';
import type { Clock, TimerHandle } from '../clock.js';

/**
 * The ARP cache (RFC 826, with RFC 1122 §2.3.2.1/2 behaviour): resolved entries age out, an
 * unresolved address keeps a small bounded queue of packets waiting for it (the newest are kept,
 * as RFC 1122 recommends at least one), requests are retried a bounded number of times, then the
 * queued packets are dropped and counted.
 */
export interface ArpOptions {
  /** How long a resolved entry lives (ms). */
  entryTtlMs: number;
  /** Between requests for an unresolved address (ms). */
  retryMs: number;
  /** Requests before giving up on an address. */
  retries: number;
  /** Packets queued per unresolved address. */
  queueLimit: number;
  /** Entries in all (resolved + pending); the oldest resolved one goes when full. */
  maxEntries: number;
}

export const DEFAULT_ARP_OPTIONS: ArpOptions = { entryTtlMs: 300_000, retryMs: 1000, retries: 3, queueLimit: 8, maxEntries: 512 };

export interface ArpStats {
  requestsSent: number;
  repliesSent: number;
  requestsReceived: number;
  repliesReceived: number;
  resolved: number;
  failed: number;
  queueDrops: number;
  gratuitousSent: number;
}

interface Entry {
  mac: Uint8Array | null;
  expires: number;
  queue: Uint8Array[];
  tries: number;
  timer: TimerHandle | null;
  netif: string;
}

export class ArpCache {
  private readonly entries = new Map<Ipv4Addr, Entry>();
  readonly stats: ArpStats = { requestsSent: 0, repliesSent: 0, requestsReceived: 0, repliesReceived: 0, resolved: 0, failed: 0, queueDrops: 0, gratuitousSent: 0 };

  constructor(
    private readonly clock: Clock,
    private readonly options: ArpOptions,
    /** Send a request for `addr` out of `netif`. */
    private readonly sendRequest: (netif: string, addr: Ipv4Addr) => void,
    /** Send queued IP packets (without Ethernet header) now that `mac` is known. */
    private readonly flush: (netif: string, mac: Uint8Array, packets: Uint8Array[]) => void,
    /** Tell the stack that packets to `addr` could not be delivered (host unreachable). */
    private readonly unreachable: (addr: Ipv4Addr, packets: Uint8Array[]) => void,
  ) {}

  lookup(addr: Ipv4Addr): Uint8Array | null {
    const e = this.entries.get(addr);
    if (!e || !e.mac) return null;
    if (e.expires <= this.clock.now()) {
      this.entries.delete(addr);
      return null;
    }
    return e.mac;
  }

  /** Learn (or refresh) a mapping; `create` false only updates an existing entry (RFC 826 merge). */
  update(netif: string, addr: Ipv4Addr, mac: Uint8Array, create: boolean): void {
    let e = this.entries.get(addr);
    if (!e) {
      if (!create) return;
      this.makeRoom();
      e = { mac: null, expires: 0, queue: [], tries: 0, timer: null, netif };
      this.entries.set(addr, e);
    }
    const wasPending = e.mac === null;
    e.mac = mac.slice(0, 6);
    e.expires = this.clock.now() + this.options.entryTtlMs;
    e.netif = netif;
    e.timer?.cancel();
    e.timer = null;
    if (wasPending) this.stats.resolved++;
    if (e.queue.length > 0) {
      const q = e.queue;
      e.queue = [];
      this.flush(netif, e.mac, q);
    }
  }

  /** Queue a packet for an unresolved address, sending a request if none is outstanding. */
  enqueue(netif: string, addr: Ipv4Addr, packet: Uint8Array): 'queued' | 'dropped' {
    let e = this.entries.get(addr);
    if (!e || (e.mac && e.expires <= this.clock.now())) {
      this.makeRoom();
      e = { mac: null, expires: 0, queue: [], tries: 0, timer: null, netif };
      this.entries.set(addr, e);
    }
    let result: 'queued' | 'dropped' = 'queued';
    if (e.queue.length >= this.options.queueLimit) {
      e.queue.shift(); // keep the newest: the oldest is the likeliest to be retransmitted anyway
      this.stats.queueDrops++;
      result = 'dropped';
    }
    e.queue.push(packet);
    if (!e.timer) this.request(addr, e);
    return result;
  }

  private request(addr: Ipv4Addr, e: Entry): void {
    if (e.tries >= this.options.retries) {
      this.entries.delete(addr);
      this.stats.failed++;
      this.stats.queueDrops += e.queue.length;
      this.unreachable(addr, e.queue);
      return;
    }
    e.tries++;
    this.stats.requestsSent++;
    this.sendRequest(e.netif, addr);
    e.timer = this.clock.setTimer(this.options.retryMs, () => {
      e.timer = null;
      if (this.entries.get(addr) === e && e.mac === null) this.request(addr, e);
    });
  }

  private makeRoom(): void {
    if (this.entries.size < this.options.maxEntries) return;
    let oldest: Ipv4Addr | null = null;
    let oldestExp = Infinity;
    for (const [a, e] of this.entries) if (e.mac && e.expires < oldestExp) [oldest, oldestExp] = [a, e.expires];
    if (oldest !== null) this.entries.delete(oldest);
  }

  /** Resolved entries, for `arp` in the shell. */
  list(): { addr: Ipv4Addr; mac: Uint8Array | null; netif: string; expiresInMs: number }[] {
    const now = this.clock.now();
    return [...this.entries.entries()].map(([addr, e]) => ({ addr, mac: e.mac, netif: e.netif, expiresInMs: e.mac ? Math.max(0, e.expires - now) : 0 }));
  }

  clear(): void {
    for (const e of this.entries.values()) e.timer?.cancel();
    this.entries.clear();
  }
}
