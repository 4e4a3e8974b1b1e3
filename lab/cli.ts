#!/usr/bin/env node
import { Command, Option } from 'commander';
import { RealClock } from '../net/clock.js';
import { Logger } from '../src/log.js';
import { createDeviceRegistry } from '../src/registry.js';
import { Vm } from '../src/vmm/vm.js';
import { loadConfig } from './config-loader.js';
import { assembleLab, type Lab } from './topology.js';
import { hasNetAdmin, startUp } from './up.js';
import { startCaptureRun, type CaptureRun } from './capture/run.js';
import { formatSummary, summarizeRun } from './capture/summary.js';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { NIC_CLASSES, type NicModel, type VmConfig } from '../src/config/types.js';
import { normaliseQemuArgv, parseQemuNet } from './qemu-args.js';

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
  $ lab config check examples/default.xml     validate a config and print the resolved machine
  $ lab run --debug pci,rtl8139               per-component debug output (errors always shown)
`;

interface GlobalOptions {
  debug?: string;
  captures: string;
  capture: boolean;
  captureMaxMb?: number;
  mergedCapture?: boolean;
  stats?: number;
  quiet?: boolean;
}

/** Live counters every `g.stats` seconds (a long run says how it is doing); returns a stopper. */
function liveStats(g: GlobalOptions, line: () => string): () => void {
  if (!g.stats || g.stats <= 0) return () => {};
  const t = setInterval(() => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line()}\n`), g.stats * 1000);
  return () => clearInterval(t);
}

function nicLine(nics: { id: string; counters(): Record<string, number> }[]): string {
  return nics.map((n) => {
    const c = n.counters();
    return `${n.id} rx ${c['rxFrames'] ?? 0}/${c['rxBytes'] ?? 0}B tx ${c['txFrames'] ?? 0}/${c['txBytes'] ?? 0}B`;
  }).join('  ');
}

function captureRun(command: string, clock: RealClock, g: GlobalOptions): CaptureRun {
  let run: CaptureRun;
  try {
    run = startCaptureRun({
    command,
    clock,
    baseDir: g.captures,
    enabled: g.capture,
    maxBytes: g.captureMaxMb ? Math.round(g.captureMaxMb * 1024 * 1024) : 0,
    merged: g.mergedCapture ?? false,
    });
  } catch (e) {
    fail(`cannot create a capture folder under ${g.captures}/ (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): pass --captures DIR with a writable folder, or --no-capture`, 1);
  }
  // pcaps and the manifest are closed on exit and on signals, so files are valid after Ctrl-C.
  run.installExitHandlers([]);
  return run;
}

function captureLine(run: CaptureRun): string {
  if (!run.dir) return 'captures: off (--no-capture)';
  const m = run.manifest();
  return `captures: ${run.dir}/ (${m.hops.map((h) => `${h.name} ${h.frames}`).join(', ')} frames) — open in Wireshark, or "lab captures ${run.dir}"`;
}

function fail(message: string, code: number): never {
  process.stderr.write(`lab: ${message}\n`);
  process.exit(code);
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('lab')
    .description('netlab: watch and change how a guest\'s network traffic flows, hop by hop')
    .option('--debug <components>', 'debug output for components, comma-separated (e.g. pci,rtl8139,tcp; "all")')
    .option('--captures <dir>', 'where runs write their pcaps', 'captures')
    .option('--no-capture', 'write no pcaps for this run')
    .option('--capture-max-mb <mb>', 'ring mode: rotate each hop\'s pcap before it exceeds this size', parseFloat)
    .option('--merged-capture', 'also write all.pcapng with one named interface per hop')
    .option('--stats <seconds>', 'print a line of live counters every N seconds', parseFloat)
    .option('-q, --quiet', 'only errors and warnings')
    .addHelpText('after', EXAMPLES)
    .showHelpAfterError('(run "lab --help" for usage and examples)');

  program
    .command('run')
    .description('boot a guest from a Palacios-style XML config (the embedded default guest when none is given)')
    .argument('[config]', 'guest XML (see examples/default.xml)')
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
    .action(async (configPath: string | undefined, opts: RunOptions & QemuCliOptions) => {
      await qemuOrRun(configPath, opts, program.opts<GlobalOptions>());
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
    .option('--vms <n>', 'guests on the switch (addresses from 172.2N.0.2 up)', (v) => Number(v), 1)
    .option('--bridge <br>', 'enslave the TAP to this existing Linux bridge instead of addressing it')
    .option('--script <path>', 'run this ifup script with the interface name as $1 (as QEMU does) instead of addressing it')
    .option('--persist', 'leave the TAP device behind on exit')
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
`)
    .action(async (tap: string, opts: UpCliOptions) => {
      await upCommand(tap, opts, program.opts<GlobalOptions>());
    });

  program
    .command('redirect')
    .description('user-mode network with port redirection, QEMU -redir style; no root needed')
    .argument('<specs...>', 'tcp:HOSTPORT:GUESTADDR:GUESTPORT (or udp:…, hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT)')
    .addOption(new Option('--nic <model>', 'the guest NIC (virtio carries 64 KiB TSO segments: the fastest)').choices(['rtl8139', 'ne2k', 'virtio']))
    .option('--config <file>', 'guest XML instead of the embedded default guest (it needs a USER_NET backend)')
    .option('--listen <addr>', 'host address the redirects listen on', '127.0.0.1')
    .option('--restrict', 'isolate the guest: its connections reach only the gateway (host loopback)')
    .addOption(new Option('--for <seconds>', 'stop after this many seconds (default: until Ctrl-C)').argParser(parseSeconds))
    .addHelpText('after', `
Examples:
  $ lab redirect tcp:9555:10.10.10.33:80                 then: curl localhost:9555
  $ lab redirect tcp:9555:10.10.10.33:80 tcp:2323:10.10.10.33:23    then: telnet localhost 2323
  $ lab redirect hostfwd=tcp:127.0.0.1:8080-:80 udp:7007::7
  $ lab redirect --nic virtio tcp:9555:10.10.10.33:80    the same guest with a virtio-net NIC
`)
    .action(async (specs: string[], opts: RunOptions & { config?: string; nic?: NicModel }) => {
      await runCommand(opts.config, specs, opts, program.opts<GlobalOptions>(), opts.nic);
    });

  program
    .command('captures')
    .description('list capture runs, or summarise one: per hop frames, bytes and protocols')
    .argument('[run]', 'a run folder (captures/<run-id>) or run id; the newest with "last"')
    .action(async (which: string | undefined) => {
      await capturesCommand(which, program.opts<GlobalOptions>());
    });

  return program;
}

async function capturesCommand(which: string | undefined, g: GlobalOptions): Promise<void> {
  const base = g.captures;
  const runs = existsSync(base) ? readdirSync(base).filter((d) => statSync(join(base, d)).isDirectory()).sort() : [];
  if (which === undefined) {
    if (runs.length === 0) {
      process.stdout.write(`no capture runs under ${base}/ yet (every lab run writes one)\n`);
      return;
    }
    for (const r of runs) process.stdout.write(`${join(base, r)}\n`);
    return;
  }
  const dir = which === 'last' ? (runs.length ? join(base, runs[runs.length - 1]!) : '') : existsSync(which) ? which : join(base, which);
  if (!dir || !existsSync(dir)) fail(`no capture run "${which}" (runs: lab captures)`, 2);
  process.stdout.write(`${formatSummary(await summarizeRun(dir))}\n`);
}

/** Resolves after `seconds` (when given) or at the first Ctrl-C / SIGTERM, whichever comes first. */
function untilStopped(seconds: number | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => resolve();
    if (seconds !== undefined) setTimeout(done, seconds * 1000);
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
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

interface UpCliOptions {
  nic: 'rtl8139' | 'ne2k' | 'virtio';
  config?: string;
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
  const r = startUp({
    wrapPort: (hop, port) => run.tap(port, hop),
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
    impair:
      opts.loss || opts.delay || opts.jitter || opts.duplicate || opts.reorder || opts.rate
        ? { lossPct: opts.loss, delayMs: opts.delay, jitterMs: opts.jitter, duplicatePct: opts.duplicate, reorderPct: opts.reorder, rateMbps: opts.rate, seed: opts.seed }
        : undefined,
    consoleOut: (vm, t) => say(opts.vms > 1 ? t.replace(/^(?=.)/gm, `[${vm}] `) : t),
  });
  if (!r.ok) {
    run.closeSync();
    fail(r.error, r.exitCode);
  }
  const lab = r.lab;
  run.link(tap, `sw.${lab.guests[0]?.guest.vm.config.name ?? 'vm0'}`, 'learning switch');
  for (const line of lab.summary) say(`${line}\n`);
  if (lab.hostAddr) say(`ready: try  ping ${lab.guests[0]!.addr}   curl http://${lab.guests[0]!.addr}/   (Ctrl-C stops; kill -USR1 ${process.pid} prints counters)\n`);
  else say(`ready: guests at ${lab.guests.map((gu) => gu.addr).join(', ')} on ${tap}; address the host side yourself (Ctrl-C stops)\n`);
  const counters = (): void => {
    process.stdout.write(`${tap}: rx ${lab.tap.stats.rxFrames} frames ${lab.tap.stats.rxBytes} bytes, tx ${lab.tap.stats.txFrames} frames ${lab.tap.stats.txBytes} bytes, drops ${lab.tap.stats.txDrops}\n`);
    process.stdout.write(`switch: ${Object.entries(lab.sw.stats).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    for (const gu of lab.guests) {
      const vm = gu.guest.vm;
      process.stdout.write(`${vm.telemetry.report(`telemetry ${vm.config.name}`)}\n`);
      for (const nic of vm.nics()) process.stdout.write(`  ${nic.id} ${Object.entries(nic.counters()).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    }
  };
  process.on('SIGUSR1', counters);
  const stopStats = liveStats(g, () => `${tap} rx ${lab.tap.stats.rxFrames} tx ${lab.tap.stats.txFrames}  ${lab.guests.map((gu) => nicLine(gu.guest.vm.nics().map((n) => ({ id: `${gu.guest.vm.config.name}.${n.id}`, counters: () => n.counters() })))).join('  ')}`);
  await untilStopped(opts.for);
  stopStats();
  lab.close();
  counters();
  run.closeSync();
  say(`${captureLine(run)}\n`);
  process.exit(lab.guests.some((gu) => gu.guest.vm.state === 'failed') ? 1 : 0);
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
  await untilStopped(opts.for);
  stopStats();
  lab.close();
  printTelemetry();
  run.closeSync();
  say(`${captureLine(run)}\n`);
  process.exit(vm.state === 'failed' ? 1 : 0);
}

const isMain = import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/lab') || process.argv[1]?.endsWith('/cli.js');
if (isMain) {
  buildProgram()
    .parseAsync(normaliseQemuArgv(process.argv))
    .catch((e: unknown) => fail((e as Error).message, 2));
}
