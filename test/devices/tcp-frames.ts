import type { Ipv4Addr } from '../../net/addr.js';
import { parseEthernet } from '../../net/wire/ethernet.js';
import { parseIpv4 } from '../../net/wire/ipv4.js';
import { parseTcp, type TcpRepr } from '../../net/wire/tcp.js';

/**
 * A TCP/IPv4 frame taken apart with both checksums checked (the IPv4 header's, and the TCP one
 * over the pseudo-header of `src` → `dst`); any fault throws, naming the layer.
 */
export function parseTcpFrame(f: Uint8Array, src: Ipv4Addr, dst: Ipv4Addr): { id: number; totalLength: number; tcp: TcpRepr } {
  const eth = parseEthernet(f);
  if (!eth.ok) throw new Error(eth.error);
  const ip = parseIpv4(eth.value.payload);
  if (!ip.ok) throw new Error(`ip: ${ip.error}`);
  const tcp = parseTcp(ip.value.payload, { src, dst });
  if (!tcp.ok) throw new Error(`tcp: ${tcp.error}`);
  return { id: ip.value.id, totalLength: ip.value.totalLength, tcp: tcp.value };
}
