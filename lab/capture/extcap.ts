import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NETLAB_VERSION } from '../version.js';
import { findLiveLabs, streamHops } from './live.js';

/**
 * netlab as a Wireshark extcap program: every hop of every running lab appears as a capture
 * interface in Wireshark and in `tshark -D`, and capturing from one streams that hop live (the
 * lab's live socket, live.ts). The extcap protocol: Wireshark runs the program with
 * `--extcap-interfaces`, `--extcap-dlts`, `--extcap-config`, then `--capture --fifo PATH` and
 * stops it with SIGTERM.
 *
 * Wireshark runs programs from its extcap folders; `lab extcap --install` writes a small wrapper
 * there that calls this lab with `extcap` and the arguments Wireshark gives.
 */

const PREFIX = 'netlab-';

/** `netlab-<pid>-<hop>`: the interface name Wireshark shows and passes back. */
export function interfaceName(pid: number, hop: string): string {
  return `${PREFIX}${pid}-${hop}`;
}

export function parseInterfaceName(v: string): { pid: number; hop: string } | null {
  const m = /^netlab-(\d+)-(.+)$/.exec(v);
  return m ? { pid: Number(m[1]), hop: m[2]! } : null;
}

interface ExtcapArgs {
  interfaces: boolean;
  dlts: boolean;
  config: boolean;
  capture: boolean;
  iface: string | null;
  fifo: string | null;
  filter: string | null;
}

function parseArgs(argv: string[]): ExtcapArgs {
  const a: ExtcapArgs = { interfaces: false, dlts: false, config: false, capture: false, iface: null, fifo: null, filter: null };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const value = (): string => inline ?? argv[++i] ?? '';
    if (flag === '--extcap-interfaces') a.interfaces = true;
    else if (flag === '--extcap-dlts') a.dlts = true;
    else if (flag === '--extcap-config') a.config = true;
    else if (flag === '--capture') a.capture = true;
    else if (flag === '--extcap-interface') a.iface = value();
    else if (flag === '--fifo') a.fifo = value();
    else if (flag === '--extcap-capture-filter') a.filter = value();
    else if (flag === '--extcap-version') value();
  }
  return a;
}

/** Run the extcap protocol; returns the process exit code. */
export async function extcapMain(argv: string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const a = parseArgs(argv);
  if (a.interfaces) {
    out.write(`extcap {version=${NETLAB_VERSION}}\n`);
    for (const lab of await findLiveLabs()) {
      for (const h of lab.hops) {
        out.write(`interface {value=${interfaceName(lab.pid, h.name)}}{display=netlab ${lab.command} (pid ${lab.pid}): ${h.name}${h.description ? ` — ${h.description}` : ''}}\n`);
      }
    }
    return 0;
  }
  if (a.dlts) {
    out.write('dlt {number=1}{name=EN10MB}{display=Ethernet}\n');
    return 0;
  }
  if (a.config) return 0;
  if (a.capture) {
    const target = a.iface ? parseInterfaceName(a.iface) : null;
    if (!target) {
      process.stderr.write(`netlab extcap: --extcap-interface must be netlab-<pid>-<hop>, got "${a.iface ?? ''}"\n`);
      return 2;
    }
    if (a.filter) {
      process.stderr.write('netlab extcap: capture filters are not supported; use a display filter\n');
      return 2;
    }
    if (!a.fifo) {
      process.stderr.write('netlab extcap: --capture needs --fifo PATH\n');
      return 2;
    }
    const fifo = fs.createWriteStream(a.fifo);
    const stop = new AbortController();
    // Wireshark ends a capture with SIGTERM (SIGINT from a terminal).
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => stop.abort());
    try {
      await streamHops(target.pid, [target.hop], fifo, stop.signal);
    } catch (e) {
      process.stderr.write(`netlab extcap: ${(e as Error).message}\n`);
      return 1;
    } finally {
      fifo.end();
    }
    return 0;
  }
  process.stderr.write('netlab extcap: run by Wireshark (--extcap-interfaces, --extcap-dlts, --extcap-config, --capture)\n');
  return 2;
}

/** Wireshark's personal extcap folders: 4.0 reads ~/.config/wireshark/extcap, 4.2 and later ~/.local/lib/wireshark/extcap. */
export function personalExtcapDirs(home = os.homedir()): string[] {
  return [path.join(home, '.config', 'wireshark', 'extcap'), path.join(home, '.local', 'lib', 'wireshark', 'extcap')];
}

/** Write the wrapper Wireshark runs into `dirs`; returns the files written. */
export function installExtcap(cliPath: string, dirs: string[]): string[] {
  const script = `#!/bin/sh\n# netlab's Wireshark extcap program: every hop of every running lab as a capture interface.\nexec "${process.execPath}" "${path.resolve(cliPath)}" extcap "$@"\n`;
  const written: string[] = [];
  for (const d of dirs) {
    fs.mkdirSync(d, { recursive: true });
    const f = path.join(d, 'netlab');
    fs.writeFileSync(f, script, { mode: 0o755 });
    fs.chmodSync(f, 0o755);
    written.push(f);
  }
  return written;
}
