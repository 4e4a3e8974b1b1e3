import type { Ipv4Addr } from '../../net/addr.js';

/** The typed guest configuration the XML resolves to (Palacios' v3_config, made explicit). */
export type NicModel = 'rtl8139' | 'ne2k' | 'virtio';

/** Device classes that are NIC frontends, by the names the XML uses (Palacios' names). */
export const NIC_CLASSES: Record<string, NicModel> = {
  RTL8139: 'rtl8139',
  NE2000: 'ne2k',
  LNX_VIRTIO_NIC: 'virtio',
};

/** Backend classes: they name a frontend with <frontend tag="…"/>. */
export const BACKEND_CLASSES = ['NIC_BRIDGE', 'TAP', 'USER_NET', 'SWITCH'] as const;
export type BackendClass = (typeof BACKEND_CLASSES)[number];

export interface DeviceConfig {
  id: string;
  className: string;
  /** Line in the XML where the device element starts (for messages). */
  line: number;
  /** The bus device id it plugs into ("pci0"), or undefined for ISA/direct attachment. */
  bus?: string;
  /** NIC frontends: their MAC (a random locally administered one when not given). */
  mac?: Uint8Array;
  macGenerated?: boolean;
  /** Remaining simple settings (attributes and child text), lower-cased names. */
  params: Record<string, string>;
}

export interface BackendConfig {
  id: string;
  className: BackendClass;
  line: number;
  /** The NIC frontend's device id. */
  frontend: string;
  params: Record<string, string>;
  /** USER_NET: redirect specs as written (`tcp:9555:10.10.10.33:80`, `hostfwd=…`). */
  redirects: string[];
}

export interface KernelConfig {
  /** The command line as written (Kitten form, e.g. `net=rtl8139 ip=172.22.0.2 netmask=255.255.0.0 gw=172.22.0.1`). */
  cmdline: string;
  net?: NicModel;
  dhcp: boolean;
  ip?: Ipv4Addr;
  prefixLength?: number;
  gateway?: Ipv4Addr;
  dns?: Ipv4Addr;
  hostname?: string;
}

export interface AppConfig {
  name: string;
  port?: number;
}

/**
 * Who runs the guest: netlab's own VMM core and built-in kernel (default); a Linux image from
 * `lab image build` (named in `<files>` as kernel and initrd) in QEMU, on QEMU's NIC models; or that
 * image on netlab's own NIC models with the v86 emulator as its CPU (Linux's own drivers).
 */
export const GUEST_MACHINES = ['builtin', 'qemu', 'v86'] as const;
export type GuestMachine = (typeof GUEST_MACHINES)[number];

export interface VmConfig {
  name: string;
  /** `<machine>`; absent means builtin. */
  machine?: GuestMachine;
  memoryMB: number;
  telemetry: boolean;
  scheduleHz?: number;
  devices: DeviceConfig[];
  backends: BackendConfig[];
  files: { id: string; filename: string }[];
  kernel: KernelConfig;
  apps: AppConfig[];
}
