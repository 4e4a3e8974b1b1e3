import { NO_DEBUG, type DebugLog } from '../debug.js';
import { formatIpv4, type Ipv4Addr } from '../addr.js';
import { IPPROTO_UDP, type IpDatagramInfo, type IpLayer, type IpSendResult, type TransportProtocol } from '../ip-layer.js';
import { emitUdp, parseUdp } from '../wire/udp.js';
import { ICMP_UNREACH_PORT } from '../wire/icmp.js';
import { copyBytes } from '../byte-slab.js';

/**
 * UDP (RFC 768) with sockets: bind to an address/port, optionally connect, send, and receive
 * through a callback. Datagrams to an unbound port get ICMP port unreachable (RFC 1122 §4.1.3.1),
 * except broadcasts. An accept-any hook sees datagrams no socket claims (the user-mode NAT).
 */
export interface UdpMeta {
  src: Ipv4Addr;
  srcPort: number;
  dst: Ipv4Addr;
  dstPort: number;
  netif: string;
  broadcast: boolean;
  foreignDestination: boolean;
}

export interface UdpStats {
  rxDatagrams: number;
  txDatagrams: number;
  rxBadChecksum: number;
  rxMalformed: number;
  noPort: number;
  acceptedAny: number;
}

export class UdpSocket {
  localAddr: Ipv4Addr = 0;
  localPort = 0;
  remoteAddr: Ipv4Addr = 0;
  remotePort = 0;
  closed = false;
  onMessage: ((data: Uint8Array, meta: UdpMeta) => void) | null = null;
  /** ICMP errors about datagrams this socket sent (port unreachable…). */
  onError: ((type: number, code: number) => void) | null = null;

  constructor(private readonly layer: UdpLayer) {}

  bind(port = 0, addr: Ipv4Addr = 0): this {
    this.layer.bindSocket(this, port, addr);
    return this;
  }

  connect(addr: Ipv4Addr, port: number): this {
    if (this.localPort === 0) this.bind();
    this.remoteAddr = addr;
    this.remotePort = port;
    return this;
  }

  send(data: Uint8Array, addr = this.remoteAddr, port = this.remotePort, src?: Ipv4Addr): IpSendResult {
    if (this.closed) return 'dropped';
    if (this.localPort === 0) this.bind();
    return this.layer.sendFrom(src ?? this.localAddr, this.localPort, addr, port, data);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.layer.unbind(this);
  }
}

export class UdpLayer implements TransportProtocol {
  readonly protocol = IPPROTO_UDP;
  readonly stats: UdpStats = { rxDatagrams: 0, txDatagrams: 0, rxBadChecksum: 0, rxMalformed: 0, noPort: 0, acceptedAny: 0 };
  private readonly sockets = new Map<number, UdpSocket[]>();
  private nextEphemeral = 49152;
  /** Datagrams no socket claims: return true when taken (no ICMP error is sent then). */
  acceptAny: ((data: Uint8Array, meta: UdpMeta) => boolean) | null = null;

  constructor(
    private readonly ip: IpLayer,
    /** `--debug udp`: datagrams in and out, drops with their reason. */
    private readonly debug: DebugLog = NO_DEBUG,
  ) {}

  socket(): UdpSocket {
    return new UdpSocket(this);
  }

  bindSocket(s: UdpSocket, port: number, addr: Ipv4Addr): void {
    if (s.localPort !== 0) this.unbind(s);
    if (port === 0) port = this.ephemeral();
    const list = this.sockets.get(port) ?? [];
    if (list.some((o) => o.localAddr === addr || o.localAddr === 0 || addr === 0)) throw new Error(`EADDRINUSE: UDP port ${port} is in use`);
    s.localPort = port;
    s.localAddr = addr;
    list.push(s);
    this.sockets.set(port, list);
  }

  unbind(s: UdpSocket): void {
    const list = this.sockets.get(s.localPort);
    if (!list) return;
    const i = list.indexOf(s);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.sockets.delete(s.localPort);
  }

  private ephemeral(): number {
    for (let i = 0; i < 16384; i++) {
      const p = this.nextEphemeral;
      this.nextEphemeral = p >= 65535 ? 49152 : p + 1;
      if (!this.sockets.has(p)) return p;
    }
    throw new Error('EADDRINUSE: no free UDP ephemeral port');
  }

  sendFrom(src: Ipv4Addr, srcPort: number, dst: Ipv4Addr, dstPort: number, data: Uint8Array): IpSendResult {
    const from = src !== 0 ? src : this.ip.sourceFor(dst);
    if (from === null) return 'no-route';
    this.stats.txDatagrams++;
    if (this.debug.on) this.debug.debug(`out ${formatIpv4(from)}:${srcPort} → ${formatIpv4(dst)}:${dstPort} ${data.length} bytes`);
    return this.ip.output({ src: from, dst, protocol: IPPROTO_UDP, payload: emitUdp({ srcPort, dstPort, payload: data }, from, dst) });
  }

  input(info: IpDatagramInfo, payload: Uint8Array, raw: Uint8Array): void {
    // Sockets keep datagrams (a NAT's send is asynchronous), and the stack keeps nothing of a frame: a copy.
    const r = parseUdp(copyBytes(payload), info.checksumValid ? undefined : { src: info.src, dst: info.dst });
    if (!r.ok) {
      if (r.error === 'bad-checksum') this.stats.rxBadChecksum++;
      else this.stats.rxMalformed++;
      if (this.debug.on) this.debug.debug(`drop (${r.error}) from ${formatIpv4(info.src)}`);
      return;
    }
    this.stats.rxDatagrams++;
    const d = r.value;
    if (this.debug.on) this.debug.debug(`in ${formatIpv4(info.src)}:${d.srcPort} → ${formatIpv4(info.dst)}:${d.dstPort} ${d.payload.length} bytes`);
    const meta: UdpMeta = { src: info.src, srcPort: d.srcPort, dst: info.dst, dstPort: d.dstPort, netif: info.netif, broadcast: info.broadcast, foreignDestination: info.foreignDestination };
    const list = this.sockets.get(d.dstPort);
    const sock = info.foreignDestination
      ? undefined
      : list?.find((s) => (s.localAddr === info.dst || s.localAddr === 0) && (s.remotePort === 0 || (s.remoteAddr === info.src && s.remotePort === d.srcPort)));
    if (sock) {
      sock.onMessage?.(d.payload, meta);
      return;
    }
    if (this.acceptAny?.(d.payload, meta)) {
      this.stats.acceptedAny++;
      return;
    }
    this.stats.noPort++;
    if (this.debug.on) this.debug.debug(`drop (no socket on port ${d.dstPort})${info.broadcast ? '' : ', ICMP port unreachable'}`);
    if (!info.broadcast) this.ip.icmpUnreachable(info, ICMP_UNREACH_PORT, raw);
  }

  icmpError(type: number, code: number, quoted: { src: Ipv4Addr; dst: Ipv4Addr; transportHeader: Uint8Array }): void {
    const h = quoted.transportHeader;
    if (h.length < 4) return;
    const srcPort = (h[0]! << 8) | h[1]!;
    for (const s of this.sockets.get(srcPort) ?? []) s.onError?.(type, code);
  }

  bound(): { addr: Ipv4Addr; port: number }[] {
    return [...this.sockets.values()].flat().map((s) => ({ addr: s.localAddr, port: s.localPort }));
  }
}
