import { afterEach, describe, expect, it } from 'vitest';
import { RealClock } from '../../../net/clock.js';
import { parseIpv4 } from '../../../net/addr.js';
import { Stack } from '../../../net/stack.js';
import { parseVmConfig } from '../../../src/config/parse.js';
import { createDeviceRegistry } from '../../../src/registry.js';
import { VmThread } from '../../../lab/vmthread/vm-thread.js';
import type { CaptureDirection } from '../../../lab/capture/sink.js';
import { collect } from '../../net/tcp-io.js';

/** A VM in its own worker thread, reached from this thread through its ring-port wire. */
function config(nicClass: string) {
  const xml = `<vm class="PC" name="vm0"><memory>32</memory><devices>
    <device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
    <device class="SERIAL" id="com1"><port>0x3F8</port><irq>4</irq></device>
    <device class="${nicClass}" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>
    </devices><guest><kernel>ip=10.0.0.2 netmask=255.255.255.0 gw=10.0.0.1</kernel>
    <apps><app name="httpd" port="80"/><app name="discard" port="9"/></apps></guest></vm>`;
  const parsed = parseVmConfig(xml, { knownClasses: createDeviceRegistry().names() });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.value;
}

const running: VmThread[] = [];
afterEach(async () => {
  for (const v of running.splice(0)) await v.stop('test over');
});

describe('a VM in its own thread', () => {
  for (const nicClass of ['RTL8139', 'LNX_VIRTIO_NIC']) {
    it(`${nicClass}: answers pings and HTTP across the thread boundary; its hops are captured in this thread; stop reports final counters`, async () => {
      const clock = new RealClock();
      const frames = new Map<string, { in: number; out: number; outBytes: number }>();
      const sink = (hop: string) => ({
        record: (f: Uint8Array, d: CaptureDirection) => {
          const c = frames.get(hop) ?? { in: 0, out: 0, outBytes: 0 };
          c[d]++;
          if (d === 'out') c.outBytes += f.length;
          frames.set(hop, c);
        },
      });
      let consoleText = '';
      const started = await VmThread.start({ kind: 'builtin', config: config(nicClass) }, {
        clock,
        quiet: true,
        nics: [{ id: 'net0', hop: 'vm0.eth0' }],
        captures: ['vm0.eth0', 'vm0.eth0.stack'].map((hop) => ({ hop, sink: sink(hop) })),
        consoleOut: (t) => (consoleText += t),
      });
      if (!started.ok) throw new Error(started.errors.join('\n'));
      const vm = started.vm;
      running.push(vm);
      expect(vm.nics).toEqual([{ id: 'net0', model: expect.any(String), mac: new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]) }]);
      await vm.networkReady;
      const host = new Stack({ clock, name: 'host' });
      const n = host.addNetif('h0', vm.ports.get('net0')!, new Uint8Array([2, 0, 0, 0, 0, 1]));
      host.configure(n, parseIpv4('10.0.0.1')!, 24);
      const rtts: (number | null)[] = [];
      for (let i = 0; i < 5; i++) rtts.push((await host.ping(parseIpv4('10.0.0.2')!, i, 56, 2000))?.rttMs ?? null);
      expect(rtts.every((r) => r !== null)).toBe(true);
      // 200 KB over TCP from the guest's httpd, through both rings.
      const body = await new Promise<string>((resolve, reject) => {
        const c = host.tcp.connect(parseIpv4('10.0.0.2')!, 80);
        const got = collect(c);
        c.onConnected = () => c.write(new TextEncoder().encode('GET /bytes/200000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
        const t = setInterval(() => {
          if (!got.ended) return;
          clearInterval(t);
          resolve(got.bytes().toString('latin1'));
        }, 5);
        setTimeout(() => reject(new Error(`timeout after ${got.received} bytes`)), 20_000).unref();
      });
      expect(body.startsWith('HTTP/1.1 200')).toBe(true);
      expect(body.length).toBeGreaterThan(200_000);
      const st = await vm.refresh();
      expect(st.state).toBe('running');
      const final = await vm.stop('test over');
      expect(final.state).toBe('stopped');
      expect(final.nics[0]!.counters['rxFrames'] ?? final.nics[0]!.counters['rx_frames'] ?? 1).toBeGreaterThan(0);
      expect(final.telemetry).toContain('telemetry vm0');
      // Both in-VM hops saw the pings and the transfer, both ways, recorded in this thread.
      for (const hop of ['vm0.eth0', 'vm0.eth0.stack']) {
        expect(frames.get(hop)?.in ?? 0).toBeGreaterThan(10);
        expect(frames.get(hop)?.out ?? 0).toBeGreaterThan(5);
        expect(frames.get(hop)?.outBytes ?? 0).toBeGreaterThan(200_000);
      }
      expect(final.captureLost).toBe(0);
      expect(consoleText.length).toBeGreaterThan(0);
    }, 40_000);
  }
});
