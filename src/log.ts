/**
 * One logger (Palacios' PrintDebug/PrintError): debug output per component, selected at run time
 * (`--debug rtl8139,tcp`, or `all`); errors and warnings always shown.
 */
/**
 * Every component `--debug` knows, by the name a developer would look for: the VMM core (pci, io,
 * irq, vmm), each NIC model, each guest driver (named as Linux names it), the stack's protocols
 * (net/debug.ts's NET_COMPONENTS), and the lab's parts. Sites name their component with one of
 * these as a dotted segment (`vm0.net0.rtl8139`, `vm0.tcp`), so `--debug tcp` enables every VM's.
 */
export const DEBUG_COMPONENTS = [
  'vmm', 'pci', 'io', 'irq',
  'rtl8139', 'ne2000', 'virtio-net',
  '8139too', 'ne2k-pci', 'virtio_net',
  'arp', 'ip', 'icmp', 'tcp', 'udp', 'dhcp', 'dns',
  'usernet', 'switch', 'tap', 'capture',
] as const;

/**
 * The CLI form "pci,rtl8139" (or "all"), checked: an unknown name is an error that lists the known
 * ones, so a typo never silently turns debugging off.
 */
export function parseDebugSpec(spec: string | undefined): { ok: true; components: string[] } | { ok: false; error: string } {
  const names = (spec ?? '').split(',').map((c) => c.trim().toLowerCase()).filter((c) => c.length > 0);
  const known = new Set<string>([...DEBUG_COMPONENTS, 'all']);
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    return { ok: false, error: `--debug: unknown component${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; known: all, ${DEBUG_COMPONENTS.join(', ')}` };
  }
  return { ok: true, components: names };
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LogSink = (level: LogLevel, component: string, message: string) => void;

export const stderrSink: LogSink = (level, component, message) => {
  const tag = level === 'info' ? '' : `${level}: `;
  process.stderr.write(`[${component}] ${tag}${message}\n`);
};

export class Logger {
  private readonly debugAll: boolean;
  private readonly debugSet: Set<string>;

  constructor(
    debugComponents: Iterable<string> = [],
    private readonly sink: LogSink = stderrSink,
    private readonly quiet = false,
  ) {
    this.debugSet = new Set([...debugComponents].map((c) => c.trim().toLowerCase()).filter((c) => c.length > 0));
    this.debugAll = this.debugSet.has('all');
  }

  /** Parse the CLI form "pci,rtl8139". */
  static fromSpec(spec: string | undefined, sink: LogSink = stderrSink, quiet = false): Logger {
    return new Logger(spec ? spec.split(',') : [], sink, quiet);
  }

  debugEnabled(component: string): boolean {
    if (this.debugAll) return true;
    const c = component.toLowerCase();
    if (this.debugSet.has(c)) return true;
    // "vm0.rtl8139" is enabled by "rtl8139": match on any dotted segment.
    for (const part of c.split('.')) if (this.debugSet.has(part)) return true;
    return false;
  }

  /** A logger bound to one component name. */
  child(component: string): ComponentLog {
    return new ComponentLog(this, component);
  }

  write(level: LogLevel, component: string, message: string): void {
    if (level === 'debug' && !this.debugEnabled(component)) return;
    if (level === 'info' && this.quiet) return;
    this.sink(level, component, message);
  }
}

export class ComponentLog {
  /** Cached so hot paths can skip building debug strings: `if (log.on) log.debug(...)`. */
  readonly on: boolean;

  constructor(
    readonly root: Logger,
    readonly component: string,
  ) {
    this.on = root.debugEnabled(component);
  }

  debug(message: string): void {
    if (this.on) this.root.write('debug', this.component, message);
  }
  info(message: string): void {
    this.root.write('info', this.component, message);
  }
  warn(message: string): void {
    this.root.write('warn', this.component, message);
  }
  error(message: string): void {
    this.root.write('error', this.component, message);
  }
  child(sub: string): ComponentLog {
    return new ComponentLog(this.root, `${this.component}.${sub}`);
  }
}

/** A sink that keeps lines in memory, for tests and for `lab` summaries. */
export function memorySink(lines: string[]): LogSink {
  return (level, component, message) => lines.push(`${level} [${component}] ${message}`);
}
