import { closeSync, constants, openSync } from 'node:fs';
import koffi from 'koffi';

/**
 * TUNSETIFF through libc's ioctl (koffi), since Node has no ioctl and no maintained npm package
 * opens Linux TAP devices. `struct ifreq` is 40 bytes on x86-64 and arm64: the name (IFNAMSIZ 16)
 * then a union whose first member we use is `short ifr_flags`.
 */
const TUNSETIFF = 0x400454ca; // _IOW('T', 202, int)
const TUNSETPERSIST = 0x400454cb; // _IOW('T', 203, int)
export const IFF_TAP = 0x0002;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
const TUNSETOFFLOAD = 0x400454d0; // _IOW('T', 208, unsigned int), the flags by value
const TUNSETVNETHDRSZ = 0x400454d8; // _IOW('T', 216, int), through a pointer
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;

type IoctlPtr = (fd: number, request: number, arg: Buffer) => number;
type IoctlInt = (fd: number, request: number, arg: number) => number;
let ioctlPtr: IoctlPtr | null = null;
let ioctlInt: IoctlInt | null = null;
let errnoFn: (() => number) | null = null;

function libc(): { ptr: IoctlPtr; int: IoctlInt; errno: () => number } {
  if (!ioctlPtr || !ioctlInt || !errnoFn) {
    const lib = koffi.load('libc.so.6');
    ioctlPtr = lib.func('int ioctl(int fd, unsigned long request, _Inout_ uint8_t *arg)') as IoctlPtr;
    ioctlInt = lib.func('int ioctl(int fd, unsigned long request, unsigned long arg)') as IoctlInt;
    const loc = lib.func('int *__errno_location()') as () => unknown;
    errnoFn = () => (koffi.decode(loc(), 'int') as number);
  }
  return { ptr: ioctlPtr, int: ioctlInt, errno: errnoFn };
}

const ERRNO_NAMES: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 16: 'EBUSY', 19: 'ENODEV', 22: 'EINVAL', 13: 'EACCES' };

export type TapOpen = { ok: true; fd: number; name: string } | { ok: false; code: string; message: string };

/**
 * Open /dev/net/tun and attach to (creating if needed) TAP device `name`, no packet-info header.
 * With `vnetHdr`, every read and write carries a `vnetHdr`-byte virtio-net header and the kernel
 * may hand over (and takes) checksum-offloaded and TSO frames per `offload` (TUN_F_* bits).
 */
export function openTap(name: string, options: { vnetHdr?: number; offload?: number } = {}): TapOpen {
  if (Buffer.byteLength(name) >= IFNAMSIZ) return { ok: false, code: 'EINVAL', message: `interface name "${name}" is longer than 15 bytes` };
  let fd: number;
  try {
    // Non-blocking: the lab reads it from its event loop (fd-reader.ts) and must never sleep in read().
    fd = openSync('/dev/net/tun', constants.O_RDWR | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    return { ok: false, code, message: `cannot open /dev/net/tun (${code})` };
  }
  const ifr = Buffer.alloc(IFREQ_SIZE);
  ifr.write(name, 0, 'ascii');
  ifr.writeUInt16LE(IFF_TAP | IFF_NO_PI | (options.vnetHdr ? IFF_VNET_HDR : 0), IFNAMSIZ);
  const c = libc();
  const failed = (what: string): TapOpen => {
    const errno = c.errno();
    closeSync(fd);
    const code = ERRNO_NAMES[errno] ?? `errno ${errno}`;
    return { ok: false, code, message: `${what} ${name} failed (${code})` };
  };
  if (c.ptr(fd, TUNSETIFF, ifr) < 0) return failed('TUNSETIFF');
  if (options.vnetHdr) {
    const size = Buffer.alloc(4);
    size.writeInt32LE(options.vnetHdr);
    if (c.ptr(fd, TUNSETVNETHDRSZ, size) < 0) return failed('TUNSETVNETHDRSZ');
    if (c.int(fd, TUNSETOFFLOAD, options.offload ?? 0) < 0) return failed('TUNSETOFFLOAD');
  }
  const actual = ifr.toString('ascii', 0, IFNAMSIZ).replace(/\0.*$/s, '');
  return { ok: true, fd, name: actual };
}

/** Make the device outlive (or not) the file descriptor, like `ip tuntap add … mode tap`. */
export function setPersist(fd: number, persist: boolean): boolean {
  return libc().int(fd, TUNSETPERSIST, persist ? 1 : 0) >= 0;
}
