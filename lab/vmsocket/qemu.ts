import { spawnSync } from 'node:child_process';
import type { NicModelKey } from '../image/nic-modules.js';
import { QEMU_NIC_DEVICE } from '../image/nic-modules.js';

/**
 * Starting QEMU on a built Linux image with its NIC on a lab VM socket: TCG (no KVM needed),
 * no display, the serial console on stdio, and `romfile=` so SeaBIOS does not spend seconds in
 * the NIC's iPXE option ROM.
 */
export const QEMU_BINARY = 'qemu-system-i386';
export const QEMU_INSTALL = 'apt-get install -y qemu-system-x86';

export function findQemu(): { ok: true; path: string } | { ok: false; error: string } {
  for (const bin of [QEMU_BINARY, 'qemu-system-x86_64']) {
    const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return { ok: true, path: r.stdout.trim() };
  }
  return { ok: false, error: `QEMU is not installed (no ${QEMU_BINARY} or qemu-system-x86_64): ${QEMU_INSTALL}` };
}

export interface QemuGuestOptions {
  kernel: string;
  initrd: string;
  /** Kernel line after console=ttyS0 (Kitten style: net=…, ip=…). */
  append: string;
  nic: NicModelKey;
  /** The -netdev value without id (from qemuNetdev, or `user,hostfwd=…` for references). */
  netdev: string;
  mac?: string;
  memoryMB?: number;
}

export function qemuArgs(o: QemuGuestOptions): string[] {
  const netdev = o.netdev.replace(/^(\w+)(,id=[^,]+)?/, '$1,id=n0');
  return [
    '-accel', 'tcg',
    '-m', String(o.memoryMB ?? 256),
    '-nographic', '-no-reboot',
    '-kernel', o.kernel,
    '-initrd', o.initrd,
    // no_timer_check: under TCG on a busy host the kernel's IO-APIC timer check can miss its
    // ticks and panic ("IO-APIC + timer doesn't work!"); the timer works, the check is too strict.
    '-append', `console=ttyS0 quiet no_timer_check ${o.append}`,
    '-netdev', netdev,
    '-device', `${QEMU_NIC_DEVICE[o.nic]},netdev=n0,romfile=${o.mac ? `,mac=${o.mac}` : ''}`,
  ];
}
