#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander';
import { RealClock } from '../net/clock.js';
import { DEBUG_COMPONENTS, Logger, parseDebugSpec } from '../src/log.js';
import { createDeviceRegistry } from '../src/registry.js';
import { Vm } from '../src/vmm/vm.js';
import type { VmStatus } from './vmthread/protocol.js';
import { vmStatus } from './vmthread/vm-status.js';
import { loadConfig } from './config-loader.js';
import { assembleLab, type Lab } from './topology.js';
import { assembleSwitchLab, hasSwitchBackend } from './switch-lab.js';
import { hasNetAdmin, startUp } from './up.js';
import { addCaptureOptions, captureLine, capturesCommand, extcapCommand, liveCaptureCommand } from './capture/cli.js';
import { captureRun, fail, liveStats, stopRun, untilStopped, type GlobalOptions } from './run-control.js';
import { NIC_CLASSES, type NicModel, type VmConfig } from '../src/config/types.js';
import { normaliseQemuArgv, parseQemuNet } from './qemu-args.js';
import { buildImage, defaultCacheDir } from './image/build.js';
import { parseVmSocketSpec } from './vmsocket/spec.js';
import type { Impairment } from './impair.js';
import { openLabVmSocket, startSocketRedirect, vmSocketLine, type OpenedVmSocket } from './vmsocket/socket-lab.js';
import { runQemuGuest } from './vmsocket/qemu-run.js';
import { linuxFromXml, redirectLinuxCommand, upLinuxCommand, type LinuxRunOptions } from './linux-commands.js';
import { findQemu } from './vmsocket/qemu.js';

/**
 * `lab`: the netlab command line. Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration
 * error, 3 not implemented yet.
 */
const EXAMPLES = `
Examples:
  $ lab redirect tcp:9555:10.10.10.33:80     guest at 10.10.10.33, its port 80 on localhost:9555 (no root)
  $ curl localhost:9555
  $ sudo lab up tap2                          guest at 172.22.0.2 on host TAP tap2 (host 172.22.0.1/16)
  $ ping 172.22.0.2
  $ lab run examples/default.xml --for 5      boot a guest from XML, print its devices and telemetry
  $ lab run examples/switch.xml               three guests on one lab switch, from one XML (SWITCH backend)
  $ lab config check examples/default.xml     validate a config and print the resolved machine
  $ lab image build                           a Linux guest (Debian i386 kernel + busybox) in images/linux/
  $ lab run images/linux/linux.xml            that guest in QEMU, its NIC on the lab's user-mode network
  $ lab redirect tcp:9555:10.10.10.33:80 --vm-socket /tmp/netlab.sock
      then: qemu-system-x86_64 … -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/netlab.sock -device rtl8139,netdev=n0
  $ lab run --debug pci,rtl8139               per-component debug output (errors always shown)

Debug components (--debug, comma-separated, or "all"):
  ${DEBUG_COMPONENTS.join(', ')}
`;



function nicLine(nics: { id: string; counters(): Record<string, number> }[]): string {
  return nics.map((n) => {
    const c = n.counters();
    return `${n.id} rx ${c['rxFrames'] ?? 0}/${c['rxBytes'] ?? 0}B tx ${c['txFrames'] ?? 0}/${c['txBytes'] ?? 0}B`;
  }).join('  ');
}

/** Each guest's VMM telemetry and NIC counters (the end of a run, and kill -USR1), wherever it runs. */
function printGuests(statuses: VmStatus[]): void {
  for (const s of statuses) {
    process.stdout.write(`${s.telemetry}\n`);
    for (const nic of s.nics) process.stdout.write(`  ${nic.id} ${Object.entries(nic.counters).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    if (s.captureLost > 0) process.stdout.write(`  capture records lost (the VM thread's capture ring was full): ${s.captureLost}\n`);
  }
}

/** The guests' part of a --stats line. */
function guestsLine(statuses: VmStatus[]): string {
  return statuses.map((s) => nicLine(s.nics.map((n) => ({ id: `${s.name}.${n.id}`, counters: () => n.counters })))).join('  ');
}

/** Statuses of guests in the lab's thread. */
function localStatuses(guests: { guest: { vm: Vm } }[]): VmStatus[] {
  return guests.map((gu) => vmStatus(gu.guest.vm));
}


/** `--debug`: an unknown component is a usage error that lists the known ones. */
function debugSpec(value: string): string {
  const r = parseDebugSpec(value);
  if (!r.ok) throw new InvalidArgumentError(r.error);
  return value;
}


export function buildProgram(): Command {
  const program = new Command();
  program
    .name('lab')
    .description('netlab: watch and change how a guest\'s network traffic flows, hop by hop')
    .addOption(new Option('--debug <components>', 'debug output for components, comma-separated (e.g. pci,rtl8139,tcp; "all"; list below)').argParser(debugSpec))
    .option('--stats <seconds>', 'print a line of live counters every N seconds', parseFloat)
    .option('-q, --quiet', 'only errors and warnings')
    .addHelpText('after', EXAMPLES)
    .showHelpAfterError('(run "lab --help" for usage and examples)');
  addCaptureOptions(program);

  program
    .command('run')
    .description('boot a guest from a Palacios-style XML config (the embedded default guest when none is given)')
    .argument('[configs...]', 'guest XML (see examples/default.xml); several, or one with a SWITCH backend, put VMs on lab switches')
    .addOption(new Option('--for <seconds>', 'stop after this many seconds (default: until Ctrl-C)').argParser(parseSeconds))
    .option('--restrict', 'isolate the guest: its connections reach only the gateway (host loopback)')
    .option('--net <spec>', 'QEMU -net: user | nic,model=rtl8139|ne2k_pci|virtio-net-pci | tap,ifname=tap2', collect, [])
    .option('--netdev <spec>', 'QEMU -netdev user,id=n0,hostfwd=tcp::9555-:80 | tap,id=n0,ifname=tap2', collect, [])
    .option('--device <spec>', 'QEMU -device rtl8139|ne2k_pci|virtio-net-pci[,netdev=n0]', collect, [])
    .option('--redir <spec>', 'QEMU -redir tcp:HOSTPORT:GUESTADDR:GUESTPORT', collect, [])
    .addHelpText('after', `
QEMU's networking options work as the manual types them:
  $ lab run -net user -net nic,model=rtl8139 -redir tcp:9555:10.10.10.33:80
  $ sudo lab run -net tap,ifname=tap2 -net nic,model=rtl8139
`)
    .action(async (configPaths: string[], opts: RunOptions & QemuCliOptions) => {
      if (configPaths.length > 1 || (configPaths.length === 1 && switchConfigs(configPaths).some(hasSwitchBackend))) {
        await switchRunCommand(configPaths, opts, program.opts<GlobalOptions>());
        return;
      }
      await qemuOrRun(configPaths[0], opts, program.opts<GlobalOptions>());
    });

  const config = program.command('config').description('guest configuration tools');
  config
    .command('check')
    .description('validate a guest config and print the resolved machine: devices, PCI addresses, ports, IRQs')
    .argument('[config]', 'guest XML (the embedded default when none is given)')
    .action((configPath: string | undefined) => {
      checkCommand(configPath, program.opts<GlobalOptions>());
    });

  program
    .command('up')
    .description('a guest on host TAP device tapN at 172.2N.0.2 (host side 172.2N.0.1/16); needs root')
    .argument('<tap>', 'TAP device name, e.g. tap2')
    .addOption(new Option('--nic <model>', 'the guest NIC').choices(['rtl8139', 'ne2k', 'virtio']).default('rtl8139'))
    .option('--config <file>', 'guest XML instead of the embedded default guest')
    .addOption(new Option('--guest <kind>', 'builtin: netlab\'s own guest kernel; linux: a Linux image on netlab\'s NIC model (v86 CPU emulator; Linux\'s own driver)').choices(['builtin', 'linux']).default('builtin'))
    .option('--image <dir>', 'the Linux image for --guest linux (lab image build --out DIR); default: built once into ~/.cache/netlab/linux-image')
    .option('--vms <n>', 'guests on the switch (addresses from 172.2N.0.2 up)', (v) => Number(v), 1)
    .option('--bridge <br>', 'enslave the TAP to this existing Linux bridge instead of addressing it')
    .option('--guest-ip <addr>', 'guest address A.B.C.D[/P] (guest i gets A+i); default: the --config kernel line, else 172.2N.0.2 for tapN, else DHCP')
    .option('--gateway <addr>', 'the guests\' default gateway (default 172.2N.0.1 for tapN)')
    .option('--script <path>', 'run this ifup script with the interface name as $1 (as QEMU does) instead of addressing it')
    .option('--persist', 'leave the TAP device behind on exit')
    .option('--vm-threads', 'run each guest (built-in, or --guest linux with its v86 CPU) in its own worker thread, as a VMM runs a vCPU thread (on a 2-core machine one thread is as fast or faster: docs/benchmarks.md)')
    .option('--vm-socket <spec>', 'also put a VM on the switch through its QEMU socket netdev (repeatable; ,loss=PCT impairs that port)', collect, [])
    .option('--loss <pct>', 'drop this % of frames on the TAP link, each direction (seeded)', parseFloat)
    .option('--delay <ms>', 'delay frames on the TAP link', parseFloat)
    .option('--jitter <ms>', 'random ± jitter added to --delay', parseFloat)
    .option('--duplicate <pct>', 'duplicate this % of frames', parseFloat)
    .option('--reorder <pct>', 'hold back this % of frames by one extra delay', parseFloat)
    .option('--rate <mbps>', 'limit the TAP link to this rate', parseFloat)
    .option('--seed <n>', 'seed for the impairments (a run reproduces from it)', (v) => Number(v), 1)
    .addOption(new Option('--for <seconds>', 'stop after this many seconds (default: until Ctrl-C)').argParser(parseSeconds))
    .addHelpText('after', `
Examples:
  $ sudo npx lab up tap2                      then: ping 172.22.0.2; curl http://172.22.0.2/
  $ sudo npx lab up tap3 --nic virtio --vms 2 guests at 172.23.0.2 and 172.23.0.3
  $ sudo npx lab up tap12 --bridge br0        TAP on an existing bridge, no host address
  $ sudo npx lab up tap2 --guest linux --nic ne2k   Linux's ne2k-pci on netlab's NE2000 at 172.22.0.2
  $ sudo npx lab up tap2 --vm-socket /tmp/vm1.sock   a QEMU VM on the switch beside the built-in guest:
      qemu-system-x86_64 … -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/vm1.sock -device rtl8139,netdev=n0
`)
    .action(async (tap: string, opts: UpCliOptions, cmd: Command) => {
      const linux = linuxGuestOptions(opts, cmd.getOptionValueSource('nic') === 'cli' ? opts.nic : undefined);
      if (linux) {
        if (opts.vmSocket?.length) fail('--vm-socket VMs join the built-in guests\' switch; with --guest linux run them on a second lab (lab up tap3 --vm-socket …)', 2);
        await upLinuxCommand(tap, { ...opts, ...linux, impair: tapImpairment(opts) }, program.opts<GlobalOptions>());
      }
      await upCommand(tap, opts, program.opts<GlobalOptions>());
    });

  program
    .command('redirect')
    .description('user-mode network with port redirection, QEMU -redir style; no root needed')
    .argument('<specs...>', 'tcp:HOSTPORT:GUESTADDR:GUESTPORT (or udp:…, hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT)')
    .addOption(new Option('--nic <model>', 'the guest NIC (virtio carries 64 KiB TSO segments: the fastest)').choices(['rtl8139', 'ne2k', 'virtio']))
    .option('--config <file>', 'guest XML instead of the embedded default guest (it needs a USER_NET backend)')
    .addOption(new Option('--guest <kind>', 'builtin: netlab\'s own guest kernel; linux: a Linux image on netlab\'s NIC model (v86 CPU emulator; Linux\'s own driver; gets the address by DHCP)').choices(['builtin', 'linux']).default('builtin'))
    .option('--image <dir>', 'the Linux image for --guest linux (lab image build --out DIR); default: built once into ~/.cache/netlab/linux-image')
    .option('--listen <addr>', 'host address the redirects listen on', '127.0.0.1')
    .option('--restrict', 'isolate the guest: its connections reach only the gateway (host loopback)')
    .option('--vm-socket <spec>', 'no built-in guest: serve a VM\'s QEMU socket netdev instead (PATH | unix:PATH | tcp:[HOST:]PORT | udp:[HOST:]PORT | QEMU stream,…/dgram,…/socket,… words)')
    .addOption(new Option('--for <seconds>', 'stop after this many seconds (default: until Ctrl-C)').argParser(parseSeconds))
    .addHelpText('after', `
Examples:
  $ lab redirect tcp:9555:10.10.10.33:80                 then: curl localhost:9555
  $ lab redirect tcp:9555:10.10.10.33:80 --vm-socket /tmp/netlab.sock
      then: qemu-system-x86_64 … -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/netlab.sock -device rtl8139,netdev=n0
      (the QEMU guest gets 10.10.10.33 by DHCP; curl localhost:9555 reaches its port 80)
  $ lab redirect tcp:9555:10.10.10.33:80 --vm-socket udp:127.0.0.1:9600
      then: -netdev dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=9601,remote.type=inet,remote.host=127.0.0.1,remote.port=9600
  $ lab redirect tcp:9555:10.10.10.33:80 tcp:2323:10.10.10.33:23    then: telnet localhost 2323
  $ lab redirect hostfwd=tcp:127.0.0.1:8080-:80 udp:7007::7
  $ lab redirect --nic virtio tcp:9555:10.10.10.33:80    the same guest with a virtio-net NIC
  $ lab redirect tcp:9555:10.10.10.33:80 --guest linux   Linux's 8139too on netlab's RTL8139; curl localhost:9555
`)
    .action(async (specs: string[], opts: RunOptions & { config?: string; nic?: NicModel; vmSocket?: string; guest: string; image?: string }) => {
      const linux = linuxGuestOptions(opts, opts.nic);
      if (linux) {
        if (opts.vmSocket !== undefined) fail('--guest linux boots its own guest: drop --vm-socket', 2);
        await redirectLinuxCommand(specs, { ...opts, ...linux }, program.opts<GlobalOptions>());
      }
      if (opts.vmSocket !== undefined) await socketRedirectCommand(specs, opts.vmSocket, opts, program.opts<GlobalOptions>());
      else await runCommand(opts.config, specs, opts, program.opts<GlobalOptions>(), opts.nic);
    });

  const image = program.command('image').description('Linux guest images (Palacios build_vm)');
  image
    .command('build')
    .description('build the Linux guest image from Debian packages: i386 686 kernel + busybox-static initramfs with the NIC modules')
    .option('--out <dir>', 'where the kernel, initrd.img, linux.xml and linux.v3vee go', 'images/linux')
    .option('--cache <dir>', 'where downloaded .debs are kept between builds', defaultCacheDir())
    .option('--kernel <package>', 'a kernel package instead of what linux-image-686:i386 depends on')
    .action((opts: { out: string; cache: string; kernel?: string }) => {
      const g = program.opts<GlobalOptions>();
      const r = buildImage({ outDir: opts.out, cacheDir: opts.cache, kernelPackage: opts.kernel, log: (l) => (g.quiet ? undefined : process.stdout.write(`${l}\n`)) });
      if (!r.ok) fail(`image build failed: ${r.error}`, 1);
      const v = r.value;
      process.stdout.write(`built ${v.xmlPath} (kernel ${v.kernelVersion}, ${v.initrdPath}, single file ${v.imagePath})\nmodules: ${Object.entries(v.modules).map(([m, l]) => `${m}: ${l.join(' ')}`).join('; ')}\nrun it: lab run ${v.xmlPath}   (in QEMU, on QEMU's NIC models)\n    or: lab run ${v.v86XmlPath}   (Linux's own drivers on netlab's NIC models, v86 as the CPU)\n`);
    });

  program
    .command('captures')
    .description('list capture runs, summarise one (per hop frames, bytes, protocols), or follow one frame across hops')
    .argument('[run]', 'a run folder (captures/<run-id>) or run id; the newest with "last"')
    .option('--follow <id>', 'print the way of the frame with this packet id: each hop, its time, the delay each hop added, where it was dropped', (v) => Number(v))
    .addHelpText('after', `
Examples:
  $ lab captures                      list runs
  $ lab captures last                 per hop: frames, bytes, protocols, drops
  $ lab captures last --follow 42     frame 42's way (Wireshark: frame.packet_id == 42)
`)
    .action(async (which: string | undefined, o: { follow?: number }) => {
      await capturesCommand(which, o.follow, program.opts<GlobalOptions>(), fail);
    });

  program
    .command('capture')
    .description('stream hops of a running lab as pcapng to stdout (live), or list the running labs\' hops')
    .argument('[hops...]', 'hop names, e.g. tap2 vm0.eth0 (none: list)')
    .option('--pid <pid>', 'the lab to capture from when several run', (v) => Number(v))
    .addHelpText('after', `
Examples:
  $ lab capture                                   running labs and their hops
  $ lab capture tap2 | wireshark -k -i -          watch hop tap2 live in Wireshark
  $ lab capture vm0.eth0 user | tshark -i -       two hops, one interface each
Wireshark can also list the hops itself: "lab extcap --install" (see README).
`)
    .action(async (hops: string[], o: { pid?: number }) => {
      await liveCaptureCommand(hops, o, fail);
    });

  program
    .command('extcap')
    .description('Wireshark extcap program (run by Wireshark); "lab extcap --install [DIR]" installs it')
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await extcapCommand(args, process.argv[1]!);
    });

  return program;
}



function parseSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--for ${v}: give a positive number of seconds`);
  return n;
}

function checkCommand(configPath: string | undefined, g: GlobalOptions): void {
  const registry = createDeviceRegistry();
  const loaded = loadConfig(configPath, registry);
  if (!loaded.ok) fail(`invalid config:\n  ${loaded.messages.join('\n  ')}`, 2);
  for (const w of loaded.warnings) process.stderr.write(`lab: warning: ${w}\n`);
  const logger = Logger.fromSpec(g.debug, undefined, true);
  const made = Vm.create(loaded.config, { clock: new RealClock(), logger, registry });
  if (!made.ok) fail(`invalid config ${loaded.source}:\n  ${made.errors.join('\n  ')}`, 2);
  const k = loaded.config.kernel;
  if (loaded.config.machine === 'qemu') process.stdout.write(`${loaded.source}: machine qemu (${loaded.config.files.map((f) => `${f.id} ${f.filename}`).join(', ') || 'no <files>'}); QEMU's NIC models, the devices below name the model\n`);
  if (loaded.config.machine === 'v86') process.stdout.write(`${loaded.source}: machine v86 (${loaded.config.files.map((f) => `${f.id} ${f.filename}`).join(', ') || 'no <files>'}); Linux on netlab's NIC models below, the v86 emulator as its CPU\n`);
  process.stdout.write(`${loaded.source}: ok\n${made.vm.deviceTree()}\n  guest: kernel "${k.cmdline}"; apps ${loaded.config.apps.map((a) => a.name + (a.port ? ':' + a.port : '')).join(', ') || 'none'}\n`);
  made.vm.stop('config check done');
}

interface QemuCliOptions {
  net: string[];
  netdev: string[];
  device: string[];
  redir: string[];
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

/** `lab run` with QEMU's -net/-netdev/-device/-redir: map them onto the user-mode or TAP setup. */
async function qemuOrRun(configPath: string | undefined, opts: RunOptions & QemuCliOptions, g: GlobalOptions): Promise<void> {
  if (opts.net.length + opts.netdev.length + opts.device.length + opts.redir.length === 0) {
    await runCommand(configPath, [], opts, g);
    return;
  }
  const q = parseQemuNet({ net: opts.net, netdev: opts.netdev, device: opts.device, redir: opts.redir });
  if (!q.ok) fail(q.error, 2);
  const setup = q.value;
  const model = setup.nic?.model ?? 'rtl8139';
  if (setup.backend?.kind === 'tap') {
    await upCommand(setup.backend.ifname, { nic: model, config: configPath, vms: 1, script: setup.backend.script, for: opts.for, seed: 1 }, g);
    return;
  }
  await runCommand(configPath, setup.redirects, { ...opts, restrict: opts.restrict || (setup.backend?.kind === 'user' && setup.backend.restrict) }, g, model);
}

/** `lab redirect … --vm-socket S`: the user-mode network serves a VM's socket netdev. */
async function socketRedirectCommand(specs: string[], socketSpec: string, opts: RunOptions, g: GlobalOptions): Promise<void> {
  const spec = parseVmSocketSpec(socketSpec);
  if (!spec.ok) fail(spec.error, 2);
  const logger = Logger.fromSpec(g.debug, undefined, g.quiet ?? false);
  const clock = new RealClock();
  const say = (t: string): void => {
    if (!g.quiet) process.stdout.write(t);
  };
  const run = captureRun('redirect', clock, g);
  const made = await startSocketRedirect({ spec: spec.value, redirects: specs, clock, logger, restrict: opts.restrict, listenAddress: opts.listen, wrapPort: (hop, port) => run.tap(port, hop, `VM socket ${hop}`) });
  if (!made.ok) {
    run.closeSync();
    fail(made.error, made.exitCode);
  }
  const lab = made.lab;
  run.link(lab.socket.hop, 'user', 'VM socket to the user-mode network');
  for (const line of lab.summary) say(`${line}\n`);
  const first = lab.redirects.find((r) => r.proto === 'tcp');
  say(`ready: waiting for the VM on ${lab.socket.hop}${first ? `; then  curl http://${first.hostAddr ?? opts.listen ?? '127.0.0.1'}:${first.hostPort}/` : ''}   (Ctrl-C stops; kill -USR1 ${process.pid} prints counters)\n`);
  void lab.socket.port.connected.then(() => say(`VM connected on ${lab.socket.hop}\n`));
  const counters = (): void => {
    process.stdout.write(`  ${vmSocketLine(lab.socket)}\n`);
    process.stdout.write(`  usernet ${Object.entries(lab.userNet.stats).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
  };
  process.on('SIGUSR1', counters);
  const stopStats = liveStats(g, () => `${lab.socket.hop} rx ${lab.socket.port.stats.rxFrames} tx ${lab.socket.port.stats.txFrames}  redirected ${lab.userNet.stats.redirectedConnections}`);
  await stopRun(untilStopped(opts.for), { stopStats, close: () => lab.close(), report: counters, run, say, exitCode: () => (0) });
}

interface UpCliOptions {
  vmThreads?: boolean;
  guest?: string;
  image?: string;
  vmSocket?: string[];
  nic: 'rtl8139' | 'ne2k' | 'virtio';
  config?: string;
  guestIp?: string;
  gateway?: string;
  vms: number;
  bridge?: string;
  script?: string;
  persist?: boolean;
  for?: number;
  loss?: number;
  delay?: number;
  jitter?: number;
  duplicate?: number;
  reorder?: number;
  rate?: number;
  seed: number;
}

/** `--loss`, `--delay` …: the impairment of the TAP link, or none. */
function tapImpairment(opts: UpCliOptions): Impairment | undefined {
  return opts.loss || opts.delay || opts.jitter || opts.duplicate || opts.reorder || opts.rate
    ? { lossPct: opts.loss, delayMs: opts.delay, jitterMs: opts.jitter, duplicatePct: opts.duplicate, reorderPct: opts.reorder, rateMbps: opts.rate, seed: opts.seed }
    : undefined;
}

async function upCommand(tap: string, opts: UpCliOptions, g: GlobalOptions): Promise<void> {
  const registry = createDeviceRegistry();
  const loaded = loadConfig(opts.config, registry);
  if (!loaded.ok) fail(`invalid config:\n  ${loaded.messages.join('\n  ')}`, 2);
  const logger = Logger.fromSpec(g.debug, undefined, g.quiet ?? false);
  const clock = new RealClock();
  const say = (t: string): void => {
    if (!g.quiet) process.stdout.write(t);
  };
  // Say what is missing before touching anything (no capture folder for a run that cannot start).
  if (!hasNetAdmin()) fail(`creating TAP device ${tap} needs root or CAP_NET_ADMIN: run "sudo npx lab up ${tap}", or use "npx lab redirect tcp:9555:10.10.10.33:80", which needs neither`, 4);
  const run = captureRun('up', clock, g);
  const r = await startUp({
    wrapPort: (hop, port) => run.tap(port, hop),
    vmThreads: opts.vmThreads === true,
    hopSink: (hop) => (run.enabled ? run.hop(hop) : null),
    debug: g.debug,
    quiet: g.quiet,
    tap,
    nic: opts.nic === 'ne2k' ? 'ne2k' : opts.nic,
    vms: opts.vms,
    bridge: opts.bridge,
    script: opts.script,
    persist: opts.persist,
    clock,
    logger,
    registry,
    config: loaded.config,
    userConfig: opts.config !== undefined,
    guestIp: opts.guestIp,
    gateway: opts.gateway,
    impair: tapImpairment(opts),
    consoleOut: (vm, t) => say(opts.vms > 1 ? t.replace(/^(?=.)/gm, `[${vm}] `) : t),
  });
  if (!r.ok) {
    run.closeSync();
    fail(r.error, r.exitCode);
  }
  const lab = r.lab;
  run.link(tap, `sw.${lab.guests[0]?.name ?? 'vm0'}`, 'learning switch');
  for (const line of lab.summary) say(`${line}\n`);
  const vmSockets: OpenedVmSocket[] = [];
  for (const [i, text] of (opts.vmSocket ?? []).entries()) {
    const spec = parseVmSocketSpec(text);
    if (!spec.ok) {
      await lab.close();
      run.closeSync();
      fail(spec.error, 2);
    }
    const s = await openLabVmSocket(spec.value, i, { clock, logger, wrapPort: (hop, port) => run.tap(port, hop, `VM socket ${hop}`), seed: opts.seed });
    if (!s.ok) {
      await lab.close();
      run.closeSync();
      fail(s.error, 1);
    }
    lab.sw.attach(s.value.wired, s.value.hop);
    run.link(s.value.hop, 'switch', 'VM socket on the learning switch');
    vmSockets.push(s.value);
    say(`${s.value.hint}\n`);
  }
  if (lab.hostAddr) say(`ready: try  ping ${lab.guests[0]!.addr}   curl http://${lab.guests[0]!.addr}/   (Ctrl-C stops; kill -USR1 ${process.pid} prints counters)\n`);
  else say(`ready: guests at ${lab.guests.map((gu) => gu.addr).join(', ')} on ${tap}; address the host side yourself (Ctrl-C stops)\n`);
  const counters = (): void => {
    process.stdout.write(`${tap}: rx ${lab.tap.stats.rxFrames} frames ${lab.tap.stats.rxBytes} bytes, tx ${lab.tap.stats.txFrames} frames ${lab.tap.stats.txBytes} bytes, drops ${lab.tap.stats.txDrops}\n`);
    if (lab.tap.gso) process.stdout.write(`${tap} offloads: ${Object.entries(lab.tap.offloadStats).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    process.stdout.write(`switch: ${Object.entries(lab.sw.stats).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    for (const v of vmSockets) process.stdout.write(`${vmSocketLine(v)}\n`);
    printGuests(lab.guests.map((gu) => gu.status()));
  };
  // A VM in its own thread is asked for fresh counters first.
  const refreshAll = (): Promise<void[]> => Promise.all(lab.guests.map((gu) => gu.refresh()));
  process.on('SIGUSR1', () => void refreshAll().then(counters));
  const refresher = g.stats && g.stats > 0 ? setInterval(() => void refreshAll(), Math.max(100, g.stats * 500)) : null;
  const stopLine = liveStats(g, () => `${tap} rx ${lab.tap.stats.rxFrames} tx ${lab.tap.stats.txFrames}  ${guestsLine(lab.guests.map((gu) => gu.status()))}`);
  const stopStats = (): void => {
    if (refresher) clearInterval(refresher);
    stopLine();
  };
  await stopRun(untilStopped(opts.for), { stopStats, close: async () => {
    for (const v of vmSockets) v.port.close();
    await lab.close();
  }, report: counters, run, say, exitCode: () => (lab.guests.some((gu) => gu.status().state === 'failed') ? 1 : 0) });
}

interface RunOptions {
  for?: number;
  listen?: string;
  restrict?: boolean;
}

async function runCommand(configPath: string | undefined, specs: string[], opts: RunOptions, g: GlobalOptions, nicModel?: NicModel): Promise<void> {
  const registry = createDeviceRegistry();
  const loaded = loadConfig(configPath, registry);
  if (!loaded.ok) fail(`invalid config:\n  ${loaded.messages.join('\n  ')}`, 2);
  // A Linux image in QEMU: the lab serves its socket netdev (vmsocket/qemu-run.ts).
  if (loaded.config.machine === 'qemu') {
    // Say what is missing before touching anything (no capture folder for a run that cannot start).
    const qemu = findQemu();
    if (!qemu.ok) fail(qemu.error, 4);
    const clock = new RealClock();
    const run = captureRun('run', clock, g);
    const r = await runQemuGuest(loaded.config as VmConfig, {
      configPath: configPath!,
      redirects: specs,
      nicOverride: nicModel,
      clock,
      logger: Logger.fromSpec(g.debug, undefined, g.quiet ?? false),
      say: (t) => (g.quiet ? undefined : process.stdout.write(t)),
      wrapPort: (hop, port) => run.tap(port, hop, `QEMU VM socket ${hop}`),
      until: () => untilStopped(opts.for),
      restrict: opts.restrict,
      listen: opts.listen,
    });
    run.closeSync();
    if (r.error) fail(r.error, r.code);
    if (!g.quiet) process.stdout.write(`${captureLine(run)}\n`);
    process.exit(r.code);
  }
  if (loaded.config.machine === 'v86') await v86RunCommand(configPath!, loaded.config as VmConfig, specs, opts, g, nicModel);
  const tapBackend = loaded.config.backends.find((b) => b.className === 'NIC_BRIDGE' || b.className === 'TAP');
  if (tapBackend && specs.length === 0) {
    // Palacios' NIC_BRIDGE: the NIC bridged to a host device; here, a TAP behind our switch.
    const name = tapBackend.params['hostnic'] ?? tapBackend.params['ifname'] ?? tapBackend.params['name'];
    if (!name) fail(`line ${tapBackend.line}: backend ${tapBackend.id} needs <hostnic name="tap2"/> (the TAP device to bridge to)`, 2);
    const nicDev = loaded.config.devices.find((d) => d.id === tapBackend.frontend);
    await upCommand(name, { nic: nicModel ?? (nicDev ? (NIC_CLASSES[nicDev.className] ?? 'rtl8139') : 'rtl8139'), config: configPath, vms: 1, for: opts.for, seed: 1 }, g);
    return;
  }
  const switchBackend = loaded.config.backends.find((b) => b.className === 'SWITCH');
  if (switchBackend) fail(`line ${switchBackend.line}: a SWITCH backend in XML is not supported by "lab run" yet; use "lab up tapN --vms N" for several guests on one switch`, 2);
  if (nicModel) {
    // -net nic,model=…: every NIC of the config becomes that model.
    const cls = Object.entries(NIC_CLASSES).find(([, m]) => m === nicModel)![0];
    loaded.config.devices = loaded.config.devices.map((d) => (d.className in NIC_CLASSES ? { ...d, className: cls } : d));
    loaded.config.kernel = { ...loaded.config.kernel, net: nicModel };
  }
  for (const w of loaded.warnings) process.stderr.write(`lab: warning: ${w}\n`);
  const logger = Logger.fromSpec(g.debug, undefined, g.quiet ?? false);
  const clock = new RealClock();
  const say = (t: string): void => {
    if (!g.quiet) process.stdout.write(t);
  };
  const run = captureRun(specs.length > 0 ? 'redirect' : 'run', clock, g);
  const userBackends = new Set(loaded.config.backends.filter((b) => b.className === 'USER_NET').map((b) => b.id));
  const made = await assembleLab(loaded.config as VmConfig, {
    wrapLink: run.wrapLink((id) => (userBackends.has(id) ? 'user' : id)),
    wrapStackPort: (vm, netif, port) => run.tap(port, `${vm}.${netif}.stack`, `${vm} ${netif}, between driver and stack`),
    clock,
    logger,
    registry,
    redirects: specs,
    restrict: opts.restrict,
    listenAddress: opts.listen,
    consoleOut: (t) => say(t),
  });
  if (!made.ok) {
    run.closeSync();
    fail(made.errors.join('\n  '), made.exitCode);
  }
  const lab: Lab = made.lab;
  const vm = lab.guest.vm;
  say(`${vm.deviceTree()}\n`);
  for (const line of lab.summary) say(`${line}\n`);
  const first = lab.redirects.find((r) => r.proto === 'tcp');
  if (first) say(`ready: try  curl http://${first.hostAddr ?? opts.listen ?? '127.0.0.1'}:${first.hostPort}/   (Ctrl-C stops; kill -USR1 ${process.pid} prints counters)\n`);
  const printTelemetry = (): void => {
    process.stdout.write(`${vm.telemetry.report(`telemetry ${vm.config.name}`)}\n`);
    for (const nic of vm.nics()) process.stdout.write(`  ${nic.id} ${Object.entries(nic.counters()).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    if (lab.userNet) process.stdout.write(`  usernet ${Object.entries(lab.userNet.stats).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
  };
  process.on('SIGUSR1', printTelemetry);
  const stopStats = liveStats(g, () => `${nicLine(vm.nics())}${lab.userNet ? `  redirected ${lab.userNet.stats.redirectedConnections} nat ${lab.userNet.stats.natTcp}` : ''}`);
  await stopRun(untilStopped(opts.for), { stopStats, close: () => lab.close(), report: printTelemetry, run, say, exitCode: () => (vm.state === 'failed' ? 1 : 0) });
}

/**
 * The Linux guest a command runs, or null for the built-in one: `--guest linux`, or a `--config`
 * XML whose `<machine>` is v86 (its NIC class, MAC, memory and `<files>` then describe the guest;
 * `--nic` typed on the command line and `--image` win over the XML).
 */
function linuxGuestOptions(opts: { guest?: string; config?: string; image?: string; for?: number }, nicTyped: NicModel | undefined): LinuxRunOptions | null {
  if (opts.config === undefined) return opts.guest === 'linux' ? { nic: nicTyped ?? 'rtl8139', image: opts.image, for: opts.for } : null;
  const loaded = loadConfig(opts.config, createDeviceRegistry());
  if (!loaded.ok) fail(`invalid config:\n  ${loaded.messages.join('\n  ')}`, 2);
  if (opts.guest !== 'linux' && loaded.config.machine !== 'v86') return null;
  const from = linuxFromXml(opts.config, loaded.config as VmConfig, nicTyped, opts.image !== undefined);
  if (!from.ok) fail(from.error, 2);
  return { ...from.value, image: opts.image, for: opts.for };
}

/**
 * `lab run linux.xml` where the XML says `<machine>v86</machine>`: the image its `<files>` name, on
 * netlab's model of its NIC class with its MAC, behind its USER_NET backend (with the XML's and the
 * command line's redirects) or bridged to the TAP its NIC_BRIDGE/TAP backend names.
 */
async function v86RunCommand(configPath: string, config: VmConfig, specs: string[], opts: RunOptions, g: GlobalOptions, nicModel?: NicModel): Promise<never> {
  const from = linuxFromXml(configPath, config, nicModel);
  if (!from.ok) fail(from.error, 2);
  const linux = { ...from.value, for: opts.for };
  const nicDev = config.devices.find((d) => d.className in NIC_CLASSES);
  const backend = config.backends.find((b) => b.frontend === nicDev?.id);
  if (backend && (backend.className === 'NIC_BRIDGE' || backend.className === 'TAP') && specs.length === 0) {
    const tap = backend.params['hostnic'] ?? backend.params['ifname'] ?? backend.params['name'];
    if (!tap) fail(`line ${backend.line}: backend ${backend.id} needs <hostnic name="tap2"/> (the TAP device to bridge to)`, 2);
    return upLinuxCommand(tap, { ...linux, vms: 1 }, g);
  }
  if (backend && backend.className !== 'USER_NET') fail(`line ${backend.line}: a v86 Linux guest in "lab run" uses a USER_NET or NIC_BRIDGE backend`, 2);
  return redirectLinuxCommand([...(backend?.redirects ?? []), ...specs], { ...linux, restrict: opts.restrict, listen: opts.listen, command: 'run' }, g);
}

/** Configs for a switch run; a config that does not load is reported when the run loads it again. */
function switchConfigs(paths: string[]): VmConfig[] {
  const registry = createDeviceRegistry();
  return paths.flatMap((p) => {
    const l = loadConfig(p, registry);
    return l.ok ? [l.config] : [];
  });
}

/** `lab run a.xml [b.xml …]` with SWITCH backends: VMs on lab switches (lab/switch-lab.ts). */
async function switchRunCommand(paths: string[], opts: RunOptions, g: GlobalOptions): Promise<void> {
  const registry = createDeviceRegistry();
  const configs: VmConfig[] = [];
  for (const p of paths) {
    const loaded = loadConfig(p, registry);
    if (!loaded.ok) fail(`invalid config ${p}:\n  ${loaded.messages.join('\n  ')}`, 2);
    for (const w of loaded.warnings) process.stderr.write(`lab: warning: ${p}: ${w}\n`);
    configs.push(loaded.config);
  }
  const logger = Logger.fromSpec(g.debug, undefined, g.quiet ?? false);
  const clock = new RealClock();
  const say = (t: string): void => {
    if (!g.quiet) process.stdout.write(t);
  };
  const run = captureRun('run', clock, g);
  const made = assembleSwitchLab(configs, {
    clock,
    logger,
    registry,
    wrapPort: (hop, port) => run.tap(port, hop),
    consoleOut: (vm, t) => say(t.replace(/^(?=.)/gm, `[${vm}] `)),
  });
  if (!made.ok) {
    run.closeSync();
    fail(made.errors.join('\n  '), made.exitCode);
  }
  const lab = made.lab;
  for (const gu of lab.guests) say(`${gu.guest.vm.deviceTree()}\n`);
  for (const line of lab.summary) say(`${line}\n`);
  say(`ready: ${lab.guests.length} VMs on ${[...lab.switches.keys()].join(', ')} (Ctrl-C stops; kill -USR1 ${process.pid} prints counters)\n`);
  const counters = (): void => {
    for (const [name, sw] of lab.switches) process.stdout.write(`switch ${name}: ${Object.entries(sw.stats).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    printGuests(localStatuses(lab.guests));
  };
  process.on('SIGUSR1', counters);
  const stopStats = liveStats(g, () => guestsLine(localStatuses(lab.guests)));
  await stopRun(untilStopped(opts.for), { stopStats, close: () => lab.close(), report: counters, run, say, exitCode: () => (lab.guests.some((gu) => gu.guest.vm.state === 'failed') ? 1 : 0) });
}

const isMain = import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/lab') || process.argv[1]?.endsWith('/cli.js');
if (isMain) {
  buildProgram()
    .parseAsync(normaliseQemuArgv(process.argv))
    .catch((e: unknown) => fail((e as Error).message, 2));
}
