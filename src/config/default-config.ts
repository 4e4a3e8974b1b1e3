/**
 * The embedded default guest, used when no config is given: one RTL8139 on PCI behind the
 * user-mode network, the standard apps. Kept in the same form as examples/default.xml (a test
 * checks both resolve to the same machine).
 */
export const DEFAULT_CONFIG_XML = `<vm class="PC" name="vm0">
  <memory>64</memory>
  <telemetry>enable</telemetry>
  <devices>
    <device class="8259A" id="PIC"/>
    <device class="PCI" id="pci0"/>
    <device class="SERIAL" id="com1"><port>0x3F8</port><irq>4</irq></device>
    <device class="RTL8139" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>
    <device class="USER_NET" id="net0-back"><frontend tag="net0"/></device>
  </devices>
  <guest>
    <kernel>net=rtl8139 ip=dhcp</kernel>
    <apps>
      <app name="httpd" port="80"/>
      <app name="echo" port="7"/>
      <app name="discard" port="9"/>
      <app name="chargen" port="19"/>
      <app name="shell" port="23"/>
    </apps>
  </guest>
</vm>
`;
