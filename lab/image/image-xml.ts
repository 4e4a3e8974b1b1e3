/**
 * The Palacios-style XML of a built Linux guest: `<files>` names the kernel and the initrd (as the
 * manual's default.xml names its boot CD) and `<machine>` says who runs it. QEMU by default; the
 * same image serves a Linux guest on netlab's own models.
 */
export function linuxGuestXml(o: { kernelFile: string; initrdFile: string; kernelPackage: string; version: string; nic?: 'RTL8139' | 'NE2000' | 'LNX_VIRTIO_NIC'; net?: string; machine?: 'qemu' | 'v86' }): string {
  const nic = o.nic ?? 'RTL8139';
  const net = o.net ?? 'rtl8139';
  return `<!--
  A Linux guest built by "lab image build" from Debian's ${o.kernelPackage} (kernel ${o.version})
  and busybox-static:i386. Run it with "lab run ${o.machine === 'v86' ? 'linux-v86.xml' : 'linux.xml'}".
  <machine>: qemu (QEMU's CPU and NIC models on the lab's networks over a socket netdev), or
  v86 (netlab's own NIC models driven by Linux's drivers, the v86 emulator as the CPU).
  The NIC class picks QEMU's model: RTL8139 -> rtl8139, NE2000 -> ne2k_pci, LNX_VIRTIO_NIC -> virtio-net-pci.
  Kernel line: net=rtl8139|ne2k|virtio, ip=dhcp or ip=A netmask=M gw=G (Kitten style).
  Guest services: http 80 (/ and /bytes/N), echo 7, discard 9, sha256 sink 5001, telnet 23.
-->
<vm class="PC" name="linux0">
  <memory>256</memory>
  <machine>${o.machine ?? 'qemu'}</machine>
  <files>
    <file id="kernel" filename="${o.kernelFile}"/>
    <file id="initrd" filename="${o.initrdFile}"/>
  </files>
  <devices>
    <device class="PCI" id="pci0"/>
    <device class="${nic}" id="net0">
      <bus>pci0</bus>
      <mac>52:54:00:12:34:56</mac>
    </device>
    <device class="USER_NET" id="net0-back">
      <frontend tag="net0"/>
      <redirect>tcp:9555:10.10.10.33:80</redirect>
    </device>
  </devices>
  <guest>
    <kernel>net=${net} ip=dhcp</kernel>
  </guest>
</vm>
`;
}
