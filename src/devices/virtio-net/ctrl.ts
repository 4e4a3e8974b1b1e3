/**
 * virtio-net's receive filter and the control-queue commands that program it (virtio 1.x
 * §5.1.6.5 "Control Virtqueue", §5.1.6.5.1 "Packet Receive Filtering", §5.1.6.5.2 "Setting MAC
 * Address Filtering"). The command bytes come from the guest: everything is parsed with explicit
 * lengths, and a command that does not parse is answered VIRTIO_NET_ERR with the filter unchanged,
 * as QEMU's virtio_net_handle_rx_mode / handle_mac do.
 */

/** struct virtio_net_ctrl: class, command, command data…, then one device-writable ack byte. */
export const VIRTIO_NET_CTRL_RX = 0;
export const VIRTIO_NET_CTRL_RX_PROMISC = 0;
export const VIRTIO_NET_CTRL_RX_ALLMULTI = 1;
export const VIRTIO_NET_CTRL_RX_ALLUNI = 2;
export const VIRTIO_NET_CTRL_RX_NOMULTI = 3;
export const VIRTIO_NET_CTRL_RX_NOUNI = 4;
export const VIRTIO_NET_CTRL_RX_NOBCAST = 5;
export const VIRTIO_NET_CTRL_MAC = 1;
export const VIRTIO_NET_CTRL_MAC_TABLE_SET = 0;
export const VIRTIO_NET_CTRL_MAC_ADDR_SET = 1;
export const VIRTIO_NET_OK = 0;
export const VIRTIO_NET_ERR = 1;

/**
 * Entries kept per MAC table (QEMU keeps 64 in all). A longer table is not an error: the device
 * then accepts every address of that kind (QEMU's uni_overflow / multi_overflow), which is what a
 * NIC with a full perfect filter does.
 */
export const MAC_TABLE_ENTRIES = 64;

/** What the negotiated features allow the driver to ask for. */
export interface CtrlFeatures {
  rx: boolean;
  rxExtra: boolean;
  macAddr: boolean;
}

export class RxFilter {
  promisc = false;
  /**
   * Every multicast passes until the driver says otherwise: that is what the device did before the
   * control queue existed, and a driver without CTRL_RX (ours, Palacios') relies on it. QEMU starts
   * promiscuous "for compatibility" instead; Linux sends its RX mode and MAC table on open, so
   * either default ends up where the guest asked. Foreign unicast stays filtered until PROMISC.
   */
  allmulti = true;
  alluni = false;
  nomulti = false;
  nouni = false;
  nobcast = false;
  uni: Uint8Array[] = [];
  multi: Uint8Array[] = [];
  uniOverflow = false;
  multiOverflow = false;

  /** Whether a frame to `frame[0..6]` reaches a guest whose own address is `own` (QEMU's receive_filter). */
  accepts(frame: Uint8Array, own: Uint8Array): boolean {
    if (this.promisc) return true;
    const dst = frame.subarray(0, 6);
    if (dst[0]! & 1) {
      if (dst.every((b) => b === 0xff)) return !this.nobcast;
      if (this.nomulti) return false;
      if (this.allmulti || this.multiOverflow) return true;
      return this.multi.some((m) => sameMac(m, dst));
    }
    if (this.nouni) return false;
    if (this.alluni || this.uniOverflow) return true;
    if (sameMac(own, dst)) return true;
    return this.uni.some((m) => sameMac(m, dst));
  }
}

function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Carry out one command (`cmd` = class, command, data) and return the ack byte. `setMac` applies
 * VIRTIO_NET_CTRL_MAC_ADDR_SET to the device's config space.
 */
export function runCtrlCommand(filter: RxFilter, cmd: Uint8Array, f: CtrlFeatures, setMac: (mac: Uint8Array) => void): number {
  const cls = cmd[0]!;
  const op = cmd[1]!;
  const data = cmd.subarray(2);
  if (cls === VIRTIO_NET_CTRL_RX) {
    // Every RX command carries exactly one byte, on (non-zero) or off (§5.1.6.5.1).
    if (!f.rx || data.length !== 1) return VIRTIO_NET_ERR;
    const on = data[0] !== 0;
    switch (op) {
      case VIRTIO_NET_CTRL_RX_PROMISC:
        filter.promisc = on;
        return VIRTIO_NET_OK;
      case VIRTIO_NET_CTRL_RX_ALLMULTI:
        filter.allmulti = on;
        return VIRTIO_NET_OK;
    }
    if (!f.rxExtra) return VIRTIO_NET_ERR;
    switch (op) {
      case VIRTIO_NET_CTRL_RX_ALLUNI:
        filter.alluni = on;
        return VIRTIO_NET_OK;
      case VIRTIO_NET_CTRL_RX_NOMULTI:
        filter.nomulti = on;
        return VIRTIO_NET_OK;
      case VIRTIO_NET_CTRL_RX_NOUNI:
        filter.nouni = on;
        return VIRTIO_NET_OK;
      case VIRTIO_NET_CTRL_RX_NOBCAST:
        filter.nobcast = on;
        return VIRTIO_NET_OK;
    }
    return VIRTIO_NET_ERR;
  }
  if (cls === VIRTIO_NET_CTRL_MAC) {
    if (op === VIRTIO_NET_CTRL_MAC_ADDR_SET) {
      if (!f.macAddr || data.length !== 6) return VIRTIO_NET_ERR;
      setMac(data.slice());
      return VIRTIO_NET_OK;
    }
    // MAC_TABLE_SET belongs to CTRL_RX (§5.1.6.5.2): a unicast table, then a multicast table.
    if (op !== VIRTIO_NET_CTRL_MAC_TABLE_SET || !f.rx) return VIRTIO_NET_ERR;
    const uni = parseMacTable(data, 0);
    if (!uni) return VIRTIO_NET_ERR;
    const multi = parseMacTable(data, uni.end);
    // Bytes after the second table mean the driver and device disagree on the layout.
    if (!multi || multi.end !== data.length) return VIRTIO_NET_ERR;
    filter.uni = uni.macs;
    filter.uniOverflow = uni.overflow;
    filter.multi = multi.macs;
    filter.multiOverflow = multi.overflow;
    return VIRTIO_NET_OK;
  }
  return VIRTIO_NET_ERR;
}

/** struct virtio_net_ctrl_mac { le32 entries; u8 macs[entries][6]; } at `at`, or null when cut short. */
function parseMacTable(data: Uint8Array, at: number): { macs: Uint8Array[]; overflow: boolean; end: number } | null {
  if (data.length - at < 4) return null;
  const entries = (data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24)) >>> 0;
  const start = at + 4;
  // Compared before multiplying out: entries is a guest-chosen 32-bit number.
  if (entries > (data.length - start) / 6) return null;
  const end = start + 6 * entries;
  if (entries > MAC_TABLE_ENTRIES) return { macs: [], overflow: true, end };
  const macs: Uint8Array[] = [];
  for (let k = 0; k < entries; k++) macs.push(data.slice(start + 6 * k, start + 6 * k + 6));
  return { macs, overflow: false, end };
}
