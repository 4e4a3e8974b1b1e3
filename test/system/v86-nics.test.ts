import { homedir } from 'node:os';
import { buildImage } from '../../lab/image/build.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RealClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { parseIpv4, formatMac } from '../../net/addr.js';
import { Stack } from '../../net/stack.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { registerBuiltinDevices } from '../../src/devices/index.js';
import { Logger } from '../../src/log.js';
import { V86Guest } from '../../src/cpu/v86/adapter.js';
import { DeviceRegistry } from '../../src/vmm/device.js';
import { Telemetry } from '../../src/vmm/telemetry.js';

/**
 * Linux (Debian 6.1 686, the `lab image build` initramfs) boots in v86 on each of netlab's
 * unchanged NIC models: Linux's driver (8139too, ne2k-pci, virtio_net) binds with the MAC from the
 * XML, eth0 takes its static address from the kernel line, and a netlab Stack on the other end of
 * a link pings it. One boot per model, bounded.
 *
 * The image: the one `lab image build` makes (built here into the cache the QEMU Linux tests share,
 * ~/.cache/netlab/linux-image or $NETLAB_IMAGE_CACHE), or kernel (vmlinuz-*) and initrd.img in
 * $NETLAB_LINUX_IMAGE_DIR. A build that cannot run is a failure naming what to install, never a skip.
 */
const IMAGE_DIR = process.env.NETLAB_LINUX_IMAGE_DIR ?? '';
const MAC = '52:54:00:8a:13:9f';
const GUEST_IP = '10.0.2.15';
const PEER_IP = '10.0.2.2';
const BOOT_LIMIT_MS = 240_000;

function findImage(): { kernel: string; initrd: string } | string {
  const how = 'build it with `lab image build` and set NETLAB_LINUX_IMAGE_DIR to its output directory';
  if (!IMAGE_DIR) {
    const base = process.env['NETLAB_IMAGE_CACHE'] ?? path.join(homedir(), '.cache', 'netlab');
    const r = buildImage({ outDir: path.join(base, 'linux-image'), cacheDir: path.join(base, 'debs') });
    return r.ok ? { kernel: r.value.kernelPath, initrd: r.value.initrdPath } : `lab image build: ${r.error}`;
  }
  if (!existsSync(IMAGE_DIR)) return `${IMAGE_DIR} does not exist: ${how}`;
  const kernel = readdirSync(IMAGE_DIR).find((f) => f.startsWith('vmlinuz'));
  const initrd = path.join(IMAGE_DIR, 'initrd.img');
  if (!kernel || !existsSync(initrd)) return `${IMAGE_DIR} lacks vmlinuz-* or initrd.img: ${how}`;
  return { kernel: path.join(IMAGE_DIR, kernel), initrd };
}

const xml = (className: string): string => `<vm class="PC" name="lx"><memory>128</memory><devices>
  <device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
  <device class="${className}" id="net0"><bus>pci0</bus><mac>${MAC}</mac></device>
</devices></vm>`;

/** Per model: the XML class, the initramfs' net= word, Linux's driver and its probe line (if it prints the MAC). */
const MODELS = [
  { className: 'RTL8139', net: 'rtl8139', driver: '8139too', probe: new RegExp(`eth0: RealTek RTL8139 at 0x[0-9a-f]+, ${MAC}, IRQ \\d+`) },
  { className: 'NE2000', net: 'ne2k', driver: 'ne2k-pci', probe: new RegExp(`eth0: RealTek RTL-8029\\S* found at 0x[0-9a-f]+, IRQ \\d+, ${MAC}`) },
  { className: 'LNX_VIRTIO_NIC', net: 'virtio', driver: 'virtio_net', probe: null },
] as const;

describe.each(MODELS)('Linux on netlab $className in v86', ({ className, net, driver, probe }) => {
  let guest: V86Guest | null = null;
  afterAll(async () => {
    await guest?.destroy();
  });

  it(`${driver} binds with the XML MAC, eth0 gets its address and answers ping`, async () => {
    const image = findImage();
    if (typeof image === 'string') throw new Error(image);

    const registry = new DeviceRegistry();
    registerBuiltinDevices(registry);
    for (const core of ['8259A', 'PCI']) registry.register(core, () => ({ error: 'core device' }));
    const parsed = parseVmConfig(xml(className), { knownClasses: registry.names() });
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    const devices = parsed.value.devices.filter((d) => !['8259A', 'PCI'].includes(d.className.toUpperCase()));

    const clock = new RealClock();
    const telemetry = new Telemetry(false);
    let serial = '';
    const t0 = performance.now();
    const made = await V86Guest.create({
      name: 'lx',
      kernel: readFileSync(image.kernel),
      initrd: readFileSync(image.initrd),
      cmdline: `console=ttyS0 quiet net=${net} ip=${GUEST_IP} netmask=255.255.255.0 gw=${PEER_IP}`,
      memoryMB: 128,
      devices,
      registry,
      clock,
      logger: new Logger(),
      telemetry,
      onSerialByte: (b) => {
        serial += String.fromCharCode(b);
      },
    });
    if (!made.ok) throw new Error(made.errors.join('\n'));
    guest = made.guest;
    const nic = guest.nics()[0]!;
    expect(formatMac(nic.mac)).toBe(MAC);

    const [nicEnd, peerEnd] = createLink(clock, ['net0', 'peer']);
    nic.attach(nicEnd);
    const peer = new Stack({ clock, name: 'peer' });
    const netif = peer.addNetif('eth0', peerEnd, Uint8Array.from([0x52, 0x55, 10, 0, 2, 2]));
    peer.configure(netif, parseIpv4(PEER_IP)!, 24);

    void guest.run();
    const waitFor = async (re: RegExp, limitMs: number): Promise<RegExpMatchArray> => {
      const until = performance.now() + limitMs;
      for (;;) {
        const m = serial.match(re);
        if (m) return m;
        if (performance.now() > until) throw new Error(`no ${re} on the serial console within ${limitMs} ms; console tail:\n${serial.slice(-3000)}`);
        if (guest!.failures.size > 0) throw new Error(`device failed: ${[...guest!.failures.values()].join('; ')}\n${serial.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const ready = await waitFor(/netlab-linux: ready [^\r\n]*/, BOOT_LIMIT_MS);
    const bootMs = performance.now() - t0;
    expect(ready[0]).toContain(`driver=${driver}`);
    expect(ready[0]).toContain(`mac=${MAC}`);
    expect(ready[0]).toContain(`ip=${GUEST_IP}/24`);

    // dmesg's own line (8139too prints the MAC it read from the EEPROM) and sysfs.
    guest.sendSerial('echo BEGIN; dmesg | grep eth0; cat /sys/class/net/eth0/address; echo END\n');
    const out = (await waitFor(/BEGIN\r?\n([\s\S]*?)END/, 30_000))[1]!;
    if (probe) expect(out).toMatch(probe);
    expect(out.split(/\r?\n/)).toContain(MAC);

    const rx0 = nic.counters()['rxFrames']!;
    const tx0 = nic.counters()['txFrames']!;
    const exits0 = telemetry.snapshot().devices['net0'] ?? {};
    let answered = 0;
    for (let seq = 1; seq <= 10; seq++) if (await peer.ping(parseIpv4(GUEST_IP)!, seq, 56, 3000)) answered++;
    expect(answered).toBe(10);

    const exits1 = telemetry.snapshot().devices['net0'] ?? {};
    const frames = nic.counters()['rxFrames']! - rx0 + nic.counters()['txFrames']! - tx0;
    const exits = Object.entries(exits1).reduce((n, [k, v]) => n + (k === 'dma' ? 0 : v - (exits0[k] ?? 0)), 0);
    expect(guest.failures.size).toBe(0);
    // Measurements for the report (not asserted).
    console.log(`v86 ${className}: boot-to-ready ${(bootMs / 1000).toFixed(1)} s wall; ${frames} frames, ${exits} register exits (${(exits / frames).toFixed(1)} per frame); irq re-pulses ${guest.irqRepulses}`);
  }, BOOT_LIMIT_MS + 60_000);
});
