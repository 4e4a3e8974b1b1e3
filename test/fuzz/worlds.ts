/**
 * The systems under test, one fresh "world" per fuzz episode: a VM with one NIC on PCI (driven as
 * a guest would: port I/O, MMIO, configuration space, guest memory) whose cable ends in the fuzzer's
 * hand, or a bare net/ Stack on a cable.
 */
import { VirtualClock } from '../../net/clock.js';
import type { FramePort } from '../../net/frame-port.js';
import { createLink } from '../../net/link.js';
import { mulberry32 } from '../../net/random.js';
import { Stack } from '../../net/stack.js';
import { parseVmConfig } from '../../src/config/parse.js';
import { Logger, memorySink } from '../../src/log.js';
import { createDeviceRegistry } from '../../src/registry.js';
import { Vm } from '../../src/vmm/vm.js';
import { buildFrame, listenEcho } from './frames.js';
import { cfgAddr, GUEST_BYTES, GUEST_MB, ip, MAX_TX_FRAME, NIC_MAC, STACK_MAC, type Op, type Target } from './ops.js';

/** Clock steps one `run` op may take: a device that re-arms a zero-delay timer forever trips it. */
export const MAX_STEPS_PER_RUN = 200_000;

export interface Bar {
  kind: 'io' | 'mem';
  base: number;
  size: number;
}

/** One episode's world: a machine with one NIC (or a bare stack) and the wire end we drive. */
export interface World {
  readonly clock: VirtualClock;
  readonly wire: FramePort;
  readonly bars: Bar[];
  readonly slot: number;
  readonly dstMac: number[];
  exec(op: Op): void;
  /** Failures recorded since the world was made, by id. */
  failures(): Map<string, string>;
  oversize: string | null;
  heldGiant: string | null;
  framesOut: number;
  timerStorm: boolean;
}

const CLASS: Record<Exclude<Target, 'stack'>, string> = { ne2000: 'NE2000', rtl8139: 'RTL8139', virtio: 'LNX_VIRTIO_NIC' };

function nicWorld(target: Exclude<Target, 'stack'>): World {
  const registry = createDeviceRegistry();
  const xml = `<vm class="PC" name="fuzz"><memory>${GUEST_MB}</memory><devices>
<device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
<device class="${CLASS[target]}" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>
</devices></vm>`;
  const parsed = parseVmConfig(xml, { knownClasses: registry.names() });
  if (!parsed.ok) throw new Error(`fuzz machine config: ${JSON.stringify(parsed.errors)}`);
  const clock = new VirtualClock();
  const made = Vm.create(parsed.value, { clock, logger: new Logger([], memorySink([])), registry });
  if (!made.ok) throw new Error(`fuzz machine: ${made.errors.join('; ')}`);
  const vm = made.vm;
  const [wire, nicEnd] = createLink(clock, ['fuzz-wire', 'net0'], { queueLimit: 256 });
  vm.nics()[0]!.attach(nicEnd);
  const slot = vm.describe().find((d) => d.id === 'net0')!.pci!.address.slot;
  const fw = vm.firmware.find((a) => a.slot === slot)!;
  const bars: Bar[] = fw.bars.map((b) => ({ kind: b.kind, base: b.base, size: b.size }));
  // pci_enable_device + pci_set_master: decode I/O and memory, bus mastering (DMA) on.
  vm.io.outl(0xcf8, cfgAddr(slot, 0x04));
  vm.io.outw(0xcfc, 0x07);
  const world: World = {
    clock,
    wire,
    bars,
    slot,
    dstMac: NIC_MAC,
    oversize: null,
    heldGiant: null,
    framesOut: 0,
    timerStorm: false,
    failures: () => vm.failures,
    exec(op) {
      switch (op.k) {
        case 'in':
        case 'out': {
          const bar = bars[op.bar % bars.length]!;
          const at = bar.base + op.off;
          if (bar.kind === 'io') {
            if (op.k === 'in') vm.io.in(at & 0xffff, op.size);
            else vm.io.out(at & 0xffff, op.size, op.v);
          } else if (op.k === 'in') vm.io.mmioRead(at >>> 0, op.size);
          else vm.io.mmioWrite(at >>> 0, op.size, op.v);
          return;
        }
        case 'cfg-in':
          vm.io.outl(0xcf8, op.addr);
          vm.io.in(0xcfc + (op.port & 3), op.size);
          return;
        case 'cfg-out':
          vm.io.outl(0xcf8, op.addr);
          vm.io.out(0xcfc + (op.port & 3), op.size, op.v);
          return;
        case 'poke': {
          const bytes = Buffer.from(op.hex, 'hex');
          if (vm.memory.inRange(op.addr, bytes.length)) vm.memory.bytes.set(bytes, op.addr);
          return;
        }
        case 'fill': {
          const len = Math.min(op.len, GUEST_BYTES);
          if (!vm.memory.inRange(op.addr, len)) return;
          const r = mulberry32(op.seed);
          for (let i = 0; i < len; i++) vm.memory.bytes[op.addr + i] = (r() * 256) | 0;
          return;
        }
        case 'frame': {
          const frame = buildFrame(op, world.dstMac);
          // Judge a giant only when nothing is queued before it: then it is offered at once. A frame
          // the NIC took counts in rxFrames, one it refused (dropped) in rxDrops (the FramePort
          // contract); one still in neither is held.
          const settled = (): number => nicEnd.stats.rxFrames + nicEnd.stats.rxDrops;
          const idle = settled() === wire.stats.txFrames;
          const before = settled();
          const sent = wire.send(frame);
          runClock(world, 0);
          const giant = frame.length > MAX_TX_FRAME && !wire.gso;
          if (sent && idle && giant && settled() === before && vm.failures.size === 0 && world.heldGiant === null) {
            world.heldGiant = `the NIC answered 'busy' to a ${frame.length}-byte frame it can never receive: the link holds it and everything behind it`;
          }
          return;
        }
        case 'run':
          runClock(world, op.ms);
          return;
      }
    },
  };
  wire.setReceiver((f) => {
    world.framesOut++;
    if (f.length > MAX_TX_FRAME && !wire.gso && world.oversize === null) world.oversize = `a ${f.length}-byte frame left the NIC onto a cable without GSO`;
    return true;
  });
  return world;
}

/** The net/ Stack at 10.0.0.2 with TCP echo and UDP listening, a peer stack beside the injector. */
function stackWorld(): World {
  const clock = new VirtualClock();
  const [wire, victimEnd] = createLink(clock, ['fuzz-wire', 'stack'], { queueLimit: 256 });
  const victim = new Stack({ clock, name: 'victim', random: mulberry32(2) });
  const n = victim.addNetif('eth0', victimEnd, new Uint8Array(STACK_MAC));
  victim.configure(n, ip(10, 0, 0, 2), 24, ip(10, 0, 0, 1));
  listenEcho(victim);
  const failures = new Map<string, string>();
  const world: World = {
    clock,
    wire,
    bars: [],
    slot: 0,
    dstMac: STACK_MAC,
    oversize: null,
    heldGiant: null,
    framesOut: 0,
    timerStorm: false,
    failures: () => failures,
    exec(op) {
      if (op.k === 'frame') {
        wire.send(buildFrame(op, STACK_MAC));
        runClock(world, 0);
      } else if (op.k === 'run') runClock(world, op.ms);
    },
  };
  wire.setReceiver(() => {
    world.framesOut++;
    return true;
  });
  return world;
}


function runClock(world: World, ms: number): void {
  let steps = 0;
  world.clock.runUntil(() => steps++ >= MAX_STEPS_PER_RUN, ms, MAX_STEPS_PER_RUN + 1);
  if (steps > MAX_STEPS_PER_RUN) world.timerStorm = true;
}

export function makeWorld(target: Target): World {
  return target === 'stack' ? stackWorld() : nicWorld(target);
}



