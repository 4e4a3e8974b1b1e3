import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatIpv4, formatMac } from '../../net/addr.js';
import { DEFAULT_CONFIG_XML } from '../../src/config/default-config.js';
import { formatConfigError, parseVmConfig } from '../../src/config/parse.js';
import { parseKernelArgs } from '../../src/config/kernel-args.js';

const KNOWN = ['8259A', 'PCI', 'SERIAL', 'RTL8139', 'NE2000', 'LNX_VIRTIO_NIC'];

function vm(devices: string, extra = ''): string {
  return `<vm class="PC">\n  <memory>64</memory>\n  <devices>\n    <device class="PCI" id="pci0"/>\n${devices}\n  </devices>\n${extra}</vm>\n`;
}

function errorsOf(xml: string): string[] {
  const r = parseVmConfig(xml, { knownClasses: KNOWN });
  if (r.ok) throw new Error('config was accepted');
  return r.errors.map((e) => formatConfigError(e, 'bad.xml'));
}

describe('guest XML', () => {
  it('accepts the embedded default and resolves its NIC, backend, kernel and apps', () => {
    const r = parseVmConfig(DEFAULT_CONFIG_XML, { knownClasses: KNOWN });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const c = r.value;
    expect(c.memoryMB).toBe(64);
    const nic = c.devices.find((d) => d.className === 'RTL8139')!;
    expect(nic.bus).toBe('pci0');
    expect(formatMac(nic.mac!)).toBe('52:54:00:12:34:56');
    expect(c.backends).toEqual([expect.objectContaining({ className: 'USER_NET', frontend: 'net0' })]);
    expect(c.kernel).toMatchObject({ net: 'rtl8139', dhcp: true });
    expect(c.apps.map((a) => a.name)).toEqual(['httpd', 'echo', 'discard', 'chargen', 'shell']);
  });

  it('resolves examples/default.xml to the same machine as the embedded default', () => {
    const a = parseVmConfig(readFileSync('examples/default.xml', 'utf8'), { knownClasses: KNOWN });
    const b = parseVmConfig(DEFAULT_CONFIG_XML, { knownClasses: KNOWN });
    expect(a.ok && b.ok).toBe(true);
    // Lines differ (the example is commented); everything else must be the same.
    const noLines = (k: string, v: unknown): unknown => (k === 'line' ? undefined : v);
    if (a.ok && b.ok) expect(JSON.stringify(a.value, noLines)).toBe(JSON.stringify(b.value, noLines));
  });

  it('matches names case-insensitively and takes values as attributes or child elements', () => {
    const r = parseVmConfig(
      `<VM CLASS="pc"><Memory>32</Memory><DEVICES><Device Class="pci" ID="pci0"/><device class="rtl8139" id="n"><BUS>pci0</BUS><mac>02:00:00:00:00:01</mac></device></DEVICES></VM>`,
      { knownClasses: KNOWN },
    );
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.value.devices.map((d) => [d.id, d.className, d.bus])).toEqual([['pci0', 'PCI', undefined], ['n', 'RTL8139', 'pci0']]);
  });

  it('ignores unknown elements, as Palacios does', () => {
    const r = parseVmConfig(vm('', '<paging mode="nested"/><frobnicate>yes</frobnicate>'), { knownClasses: KNOWN });
    expect(r.ok).toBe(true);
  });

  it('gives a NIC without <mac> a random locally administered unicast MAC and says so', () => {
    const r = parseVmConfig(vm('<device class="NE2000" id="n"><bus>pci0</bus></device>'), { knownClasses: KNOWN, random: () => 0.5 });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const mac = r.value.devices[1]!.mac!;
    expect(mac[0]! & 0x03).toBe(0x02);
    expect(r.warnings.join()).toContain('has no <mac>');
  });

  it.each([
    ['missing id', vm('    <device class="RTL8139"><bus>pci0</bus></device>'), /line 5: <device> a <device> needs class=.* and id=/],
    ['duplicate id', vm('    <device class="RTL8139" id="pci0"><bus>pci0</bus></device>'), /line 5: <device> id="pci0" is used twice \(first on line 4\)/],
    ['unknown device class', vm('    <device class="E1000" id="n"/>'), /line 5: <device> class="E1000" \(id="n"\) is not a known device class; known: .*RTL8139/],
    ['bad MAC', vm('    <device class="RTL8139" id="n"><bus>pci0</bus><mac>52:54:00:zz:34:56</mac></device>'), /line 5: <mac> "52:54:00:zz:34:56" \(device "n"\): a MAC is six hex pairs/],
    ['multicast MAC', vm('    <device class="RTL8139" id="n"><bus>pci0</bus><mac>01:00:5e:00:00:01</mac></device>'), /<mac> 01:00:5e:00:00:01 .* multicast/],
    ['absurd memory (zero)', vm('').replace('<memory>64</memory>', '<memory>0</memory>'), /line 2: <memory> "0": guest memory is a whole number of MB from 1 to 16384/],
    ['absurd memory (1 TB)', vm('').replace('<memory>64</memory>', '<memory>1048576</memory>'), /<memory> "1048576"/],
    ['memory not a number', vm('').replace('<memory>64</memory>', '<memory>lots</memory>'), /<memory> "lots"/],
    ['backend for a NIC that does not exist', vm('    <device class="USER_NET" id="b"><frontend tag="net9"/></device>'), /line 5: <frontend> tag="net9" \(backend "b"\) is not a NIC in this config/],
    ['NIC naming a backend that does not exist', vm('    <device class="RTL8139" id="n"><bus>pci0</bus><backend>nope</backend></device>'), /<backend> "nope" \(NIC "n"\) names a backend that does not exist/],
    ['backend without a frontend', vm('    <device class="NIC_BRIDGE" id="b"><hostnic name="tap2"/></device>'), /backend "b" \(class NIC_BRIDGE\) needs <frontend tag="NIC-ID"\/>/],
    ['bus that is not defined', vm('    <device class="RTL8139" id="n"><bus>pci7</bus></device>'), /<bus> "pci7" \(device "n"\) is not a device in this config/],
    ['value as attribute and child', vm('    <device class="RTL8139" id="n" bus="pci0"><bus>pci0</bus></device>'), /"bus" is given both as an attribute and as a child element/],
    ['bad kernel address', vm('', '<guest><kernel>net=rtl8139 ip=10.0.2.300</kernel></guest>'), /<kernel> ip=10.0.2.300: not an IPv4 address/],
    ['unknown kernel NIC driver', vm('', '<guest><kernel>net=e1000</kernel></guest>'), /net=e1000: unknown NIC driver; allowed: rtl8139, ne2k, virtio/],
    ['wrong vm class', '<vm class="ARM"><memory>1</memory></vm>', /<vm> class="ARM": only class="PC"/],
    ['no vm root', '<guest/>', /root element must be <vm/],
  ])('rejects a config with %s, naming the element, value and line', (_name, xml, pattern) => {
    expect(errorsOf(xml).join('\n')).toMatch(pattern);
  });

  it('rejects malformed XML with the line the parser reports', () => {
    const errs = errorsOf('<vm class="PC">\n<memory>64</memory>\n<devices>\n<device class="PCI" id="pci0">\n</devices>\n</vm>');
    expect(errs.join()).toMatch(/bad.xml:line \d+: malformed XML: /);
  });
});

describe('kernel arguments (Kitten form)', () => {
  it('parses a static address with netmask and gateway', () => {
    const r = parseKernelArgs('net=rtl8139 ip=172.22.0.2 netmask=255.255.0.0 gw=172.22.0.1');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(formatIpv4(r.value.ip!)).toBe('172.22.0.2');
    expect(r.value.prefixLength).toBe(16);
    expect(formatIpv4(r.value.gateway!)).toBe('172.22.0.1');
  });

  it('accepts the manual\'s "net=rtl819" spelling and CIDR addresses', () => {
    const r = parseKernelArgs('net=rtl819 ip=10.10.10.33/24');
    expect(r.ok && r.value.net).toBe('rtl8139');
    expect(r.ok && r.value.prefixLength).toBe(24);
  });

  it('rejects a holey netmask and an off-subnet gateway', () => {
    expect(parseKernelArgs('ip=10.0.0.2 netmask=255.0.255.0')).toMatchObject({ ok: false, error: expect.stringContaining('contiguous') });
    expect(parseKernelArgs('ip=10.0.0.2/24 gw=10.0.1.1')).toMatchObject({ ok: false, error: expect.stringContaining('not inside') });
  });
});
