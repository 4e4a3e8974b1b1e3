/**
 * The userland of the Linux guest image: busybox, an init, and small scripts that offer what the
 * built-in guest offers (src/guest/apps): HTTP on 80 with a status page and `/bytes/N` (the same
 * byte pattern), echo 7, discard 9, a shell on the serial console and telnet 23 — plus a SHA-256
 * sink on 5001 (it answers the hash of everything sent until the sender half-closes), so an
 * upload can be checked byte for byte.
 *
 * The init reads the Kitten-style arguments the lab already uses (src/config/kernel-args.ts):
 * `net=rtl8139|ne2k|virtio`, `ip=dhcp` or `ip=A[/P]` with `netmask=` / `gw=` / `dns=`.
 */
import type { NicModelKey } from './nic-modules.js';

/** The line the lab waits for on the serial console. */
export const READY_MARKER = 'netlab-linux: ready';
/** The ready line's fields (the init prints them in this order; `kernel=` is last). */
const READY_FIELD = /\b(net|driver|mac|ip|kernel)=(\S+)/g;
/**
 * A kernel log record as the serial console prints it (`[    9.123] text` and its line end). The
 * console prints a record wherever the cursor is, so one can land in the middle of the init's
 * ready line and cut it in two.
 */
const KERNEL_RECORD = /\[\s*\d+\.\d+\][^\r\n]*(?:\r?\n|$)/g;

/**
 * The init's ready line, read from console text: null until the whole line (through its last
 * field, `kernel=`, and its line end) has arrived. Kernel log records printed into the middle of it are left out,
 * so a record landing between two fields does not lose the fields after it.
 */
export function parseReadyLine(text: string): { line: string; fields: Record<string, string> } | null {
  const at = text.indexOf(READY_MARKER);
  if (at < 0) return null;
  const rest = text.slice(at).replace(KERNEL_RECORD, '');
  const end = /\bkernel=\S+(?=\r?\n)/.exec(rest);
  if (!end) return null;
  const line = rest.slice(0, end.index + end[0].length).replace(/\s+/g, ' ');
  const fields = Object.fromEntries([...line.matchAll(READY_FIELD)].map((m) => [m[1]!, m[2]!]));
  return { line, fields };
}

/** Lines around the dmesg that `netlab-dmesg` prints (tests send it over the serial shell). */
export const DMESG_BEGIN = '---- netlab-dmesg begin ----';
export const DMESG_END = '---- netlab-dmesg end ----';
/** TCP port of the SHA-256 sink. */
export const SHA256_PORT = 5001;

/** The /bytes/N pattern of src/guest/apps/http.ts: byte p is (p mod 65536) mod 251. */
export function bytesPattern(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let p = 0; p < length; p++) out[p] = (p & 0xffff) % 251;
  return out;
}

/** Size of the pattern file in the image: whole periods, so `cat` loops of it continue the pattern. */
export const PATTERN_FILE_BYTES = 16 * 65536;

export function initScript(models: Record<NicModelKey, string[]>): string {
  const cases = Object.entries(models)
    .map(([m, files]) => `  ${m}) mods="${files.join(' ')}" ;;`)
    .join('\n');
  return `#!/bin/sh
# netlab Linux guest init (lab/image/guest-files.ts). PID 1: never exits.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin /etc
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
hostname netlab-linux
ip link set lo up
net=""; ip=""; mask=""; gw=""; dns=""
for w in $(cat /proc/cmdline); do
  case "$w" in
    net=*) net="\${w#net=}" ;;
    ip=*) ip="\${w#ip=}" ;;
    netmask=*) mask="\${w#netmask=}" ;;
    gw=*) gw="\${w#gw=}" ;;
    dns=*) dns="\${w#dns=}" ;;
  esac
done
case "$net" in
  rtl819) net=rtl8139 ;;
  ne2000) net=ne2k ;;
  virtio-net|vmnet) net=virtio ;;
esac
mods=""
case "$net" in
${cases}
  "") echo "netlab-linux: no net= on the kernel line (net=rtl8139|ne2k|virtio): no network" ;;
  *) echo "netlab-linux: net=$net unknown (allowed: rtl8139, ne2k, virtio)" ;;
esac
for m in $mods; do insmod "/lib/modules/$m" || echo "netlab-linux: insmod $m failed"; done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do usleep 50000; n=$((n+1)); done
addr=none
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  if [ "$ip" = dhcp ]; then
    udhcpc -i eth0 -s /etc/netlab/udhcpc.script -t 20 -T 1 -n 2>/dev/null || echo "netlab-linux: no DHCP lease"
  elif [ -n "$ip" ]; then
    case "$ip" in
      */*) cidr="$ip" ;;
      *) eval $(ipcalc -p "$ip" "\${mask:-255.255.255.0}"); cidr="$ip/$PREFIX" ;;
    esac
    ip addr add "$cidr" dev eth0
    [ -n "$gw" ] && ip route add default via "$gw"
  fi
  [ -n "$dns" ] && echo "nameserver $dns" > /etc/resolv.conf
  addr=$(ip -4 -o addr show dev eth0 | awk '{print $4}' | head -n 1)
fi
nc -ll -p 80 -e /sbin/netlab-httpd &
nc -ll -p 7 -e /bin/cat &
nc -ll -p 9 -e /sbin/netlab-discard &
nc -ll -p ${SHA256_PORT} -e /usr/bin/sha256sum &
telnetd -p 23 -l /bin/sh
drv=$(basename "$(readlink /sys/class/net/eth0/device/driver 2>/dev/null)" 2>/dev/null)
echo "${READY_MARKER} net=$net driver=\${drv:-none} mac=$(cat /sys/class/net/eth0/address 2>/dev/null) ip=\${addr:-none} kernel=$(uname -r)"
while :; do setsid cttyhack sh -l; done
`;
}

export const UDHCPC_SCRIPT = `#!/bin/sh
# udhcpc hook: apply the lease (busybox passes it in the environment).
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "\${router%% *}" dev "$interface"
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "netlab-linux: DHCP lease $ip/\${mask:-24} router \${router:-none} dns \${dns:-none}"
    ;;
esac
exit 0
`;

/**
 * The HTTP server: one connection per request (busybox nc -ll forks it with the socket on stdin
 * and stdout). The request's headers are read to the blank line before answering, since closing a
 * socket with unread data makes Linux reset the connection and cut the response short.
 */
export const HTTPD_SCRIPT = `#!/bin/sh
cr=$(printf '\\r')
read -r method path proto
while read -r line; do
  line="\${line%"$cr"}"
  [ -z "$line" ] && break
done
reply() {
  printf 'HTTP/1.1 %s\\r\\nServer: netlab-linux\\r\\nContent-Type: %s\\r\\nContent-Length: %s\\r\\nConnection: close\\r\\n\\r\\n' "$1" "$2" "$3"
}
case "$path" in
  /bytes/*)
    n="\${path#/bytes/}"
    case "$n" in ''|*[!0-9]*) body="$path: give a byte count, e.g. /bytes/1000000"; reply '400 Bad Request' text/plain $((\${#body}+1)); echo "$body"; exit 0 ;; esac
    reply '200 OK' application/octet-stream "$n"
    [ "$method" = HEAD ] && exit 0
    # Whole copies of the pattern file straight onto the socket (busybox cat uses sendfile), then
    # the remainder: far fewer copies under emulation than a pipe through head.
    q=$((n / ${PATTERN_FILE_BYTES})); r=$((n % ${PATTERN_FILE_BYTES}))
    while [ "$q" -gt 0 ]; do cat /usr/share/netlab/pattern || exit 0; q=$((q - 1)); done
    [ "$r" -gt 0 ] && head -c "$r" /usr/share/netlab/pattern
    ;;
  /|/status)
    body="netlab Linux guest $(uname -r) ($(hostname))
driver $(basename "$(readlink /sys/class/net/eth0/device/driver 2>/dev/null)" 2>/dev/null) mac $(cat /sys/class/net/eth0/address 2>/dev/null)
$(ip -4 addr show dev eth0 2>/dev/null | grep inet)
$(ip route 2>/dev/null)
$(cat /proc/net/dev)
services: http 80 (/ and /bytes/N), echo 7, discard 9, sha256 sink ${SHA256_PORT}, telnet 23, serial shell
uptime $(cat /proc/uptime)"
    reply '200 OK' text/plain $((\${#body}+1))
    [ "$method" = HEAD ] || echo "$body"
    ;;
  *)
    body="$path: not here; try / or /bytes/N"
    reply '404 Not Found' text/plain $((\${#body}+1))
    [ "$method" = HEAD ] || echo "$body"
    ;;
esac
exit 0
`;

export const DISCARD_SCRIPT = `#!/bin/sh
exec cat > /dev/null
`;

export const DMESG_SCRIPT = `#!/bin/sh
echo "${DMESG_BEGIN}"
dmesg -r
echo "${DMESG_END}"
`;
