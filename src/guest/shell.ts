import type { AppConn, AppHandler } from './apps/app-conn.js';
import { TextWriter } from './apps/app-conn.js';

/**
 * The guest's small shell, on the serial console and on telnet port 23: `ifconfig`, `arp`,
 * `route`, `netstat`, `ping`, `stats`, `help`, `exit`. The kernel supplies what each command
 * reports through ShellContext, so the shell only parses lines and formats.
 */
export interface ShellContext {
  ifconfig(): string;
  arp(): string;
  route(): string;
  netstat(): string;
  stats(): string;
  /** Send `count` echo requests; `line` per reply/timeout, `done` with the summary. */
  ping(target: string, count: number, line: (text: string) => void, done: (summary: string) => void): void;
}

export const PROMPT = 'netlab$ ';

const HELP = `commands:
  ifconfig            interfaces: address, MAC, MTU, counters
  arp                 the ARP cache
  route               the routing table
  netstat             TCP connections and listeners
  ping ADDR [-c N]    ICMP echo (default 4)
  stats               protocol counters (lwIP stats)
  help                this list
  exit                close a telnet session
`;

export class Shell {
  private busy = false;
  private queued: string[] = [];

  constructor(
    private readonly ctx: ShellContext,
    private readonly out: (text: string) => void,
    private readonly onExit: () => void = () => {},
  ) {}

  private idleWaiters: (() => void)[] = [];

  /** Run `fn` once every typed command (a running ping, queued lines) has finished. */
  whenIdle(fn: () => void): void {
    if (!this.busy && this.queued.length === 0) fn();
    else this.idleWaiters.push(fn);
  }

  private idle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const fn of w) fn();
  }

  prompt(): void {
    this.out(PROMPT);
  }

  /** One input line. Lines typed while a command (ping) runs wait their turn. */
  line(raw: string): void {
    if (this.busy) {
      this.queued.push(raw);
      return;
    }
    const words = raw.trim().split(/\s+/).filter((w) => w.length > 0);
    if (words.length === 0) {
      this.prompt();
      return;
    }
    const [cmd, ...args] = words;
    const reply = (t: string): void => this.out(t.endsWith('\n') ? t : t + '\n');
    switch (cmd) {
      case 'help':
        reply(HELP);
        break;
      case 'ifconfig':
        reply(this.ctx.ifconfig());
        break;
      case 'arp':
        reply(this.ctx.arp());
        break;
      case 'route':
        reply(this.ctx.route());
        break;
      case 'netstat':
        reply(this.ctx.netstat());
        break;
      case 'stats':
        reply(this.ctx.stats());
        break;
      case 'exit':
      case 'quit':
        this.onExit();
        return;
      case 'ping': {
        const target = args.find((a) => !a.startsWith('-') && a !== args[args.indexOf('-c') + 1]);
        const cIdx = args.indexOf('-c');
        const count = cIdx >= 0 ? Number(args[cIdx + 1]) : 4;
        if (!target || !Number.isInteger(count) || count < 1 || count > 1000) {
          reply('usage: ping ADDR [-c N]   (N from 1 to 1000)');
          break;
        }
        this.busy = true;
        this.ctx.ping(target, count, reply, (summary) => {
          reply(summary);
          this.busy = false;
          this.prompt();
          const next = this.queued.shift();
          if (next !== undefined) this.line(next);
          else this.idle();
        });
        return;
      }
      default:
        reply(`${cmd}: command not found (try help)`);
    }
    this.prompt();
  }
}

/**
 * Telnet (RFC 854) just enough for `telnet host 23`: strip IAC option negotiation from input,
 * refuse every option the client offers (stay in NVT line mode), end lines on CR LF or CR NUL.
 */
const IAC = 255;
const DONT = 254;
const DO = 253;
const WONT = 252;
const WILL = 251;
const SB = 250;
const SE = 240;

export function telnetShellService(ctx: ShellContext, banner: string): AppHandler {
  return (conn: AppConn) => {
    const out = new TextWriter(conn);
    let line = '';
    let state: 'data' | 'iac' | 'opt' | 'sb' | 'sb-iac' = 'data';
    let optVerb = 0;
    let lastCr = false;
    const shell = new Shell(ctx, (t) => out.write(t.replace(/\r?\n/g, '\r\n')), () => out.end());
    conn.onData = (d) => {
      for (const b of d) {
        switch (state) {
          case 'data':
            if (b === IAC) state = 'iac';
            else if (b === 13) {
              lastCr = true;
              shell.line(line);
              line = '';
            } else if (b === 10 || b === 0) {
              if (!lastCr) {
                shell.line(line);
                line = '';
              }
              lastCr = false;
            } else {
              lastCr = false;
              if (b === 8 || b === 127) line = line.slice(0, -1);
              else if (b >= 32 && b < 127) line += String.fromCharCode(b);
            }
            break;
          case 'iac':
            if (b === WILL || b === WONT || b === DO || b === DONT) {
              optVerb = b;
              state = 'opt';
            } else if (b === SB) state = 'sb';
            else state = 'data'; // two-byte commands (and IAC IAC, a literal 255 we do not use)
            break;
          case 'opt':
            // Refuse: WILL → DONT, DO → WONT; the replies to refusals need no answer.
            if (optVerb === WILL) conn.write(Uint8Array.of(IAC, DONT, b));
            else if (optVerb === DO) conn.write(Uint8Array.of(IAC, WONT, b));
            state = 'data';
            break;
          case 'sb':
            if (b === IAC) state = 'sb-iac';
            break;
          case 'sb-iac':
            state = b === SE ? 'data' : 'sb';
            break;
        }
      }
    };
    // A client that sends its commands and half-closes (`echo ping … | nc`) still gets the answers.
    conn.onEnd = () => shell.whenIdle(() => out.end());
    out.write(banner.replace(/\r?\n/g, '\r\n'));
    shell.prompt();
  };
}
