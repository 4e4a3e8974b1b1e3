/**
 * Where a VM socket is and which side the lab takes, from `--vm-socket SPEC`. The short forms:
 *
 *   /tmp/netlab.sock | unix:PATH        stream, the lab listens on a unix socket (QEMU: server=off)
 *   unix-connect:PATH                   stream, the lab connects (QEMU: server=on)
 *   tcp:[HOST:]PORT                     stream, the lab listens on TCP (HOST 127.0.0.1)
 *   tcp-connect:HOST:PORT               stream, the lab connects over TCP
 *   udp:[HOST:]PORT[,remote=HOST:PORT]  datagrams; without remote= the lab answers whoever sent last
 *
 * and QEMU's own words for the lab's end: `stream,server=on,addr.type=unix,addr.path=…`,
 * `dgram,local.type=inet,local.host=…,local.port=…[,remote.…]`, and the legacy
 * `socket,listen=[HOST]:PORT` / `socket,connect=HOST:PORT` / `socket,udp=HOST:PORT,localaddr=HOST:PORT`.
 * Any form takes `,name=HOP` (the capture hop's name) and `,loss=PCT` (seeded frame loss on this
 * port, both ways). `qemuNetdev()` gives the matching QEMU `-netdev` for the other end.
 */
export type SocketAddr = { type: 'unix'; path: string } | { type: 'inet'; host: string; port: number };

export type VmSocketSpec =
  | { kind: 'stream'; role: 'server' | 'client'; addr: SocketAddr; name?: string; lossPct?: number }
  | { kind: 'dgram'; local: SocketAddr & { type: 'inet' }; remote?: SocketAddr & { type: 'inet' }; name?: string; lossPct?: number };

export type SpecResult = { ok: true; value: VmSocketSpec } | { ok: false; error: string };

const HELP = 'use PATH, unix:PATH, unix-connect:PATH, tcp:[HOST:]PORT, tcp-connect:HOST:PORT, udp:[HOST:]PORT[,remote=HOST:PORT], or QEMU\'s stream,… / dgram,… / socket,… options';

function inet(text: string, defaultHost: string | null, what: string): { ok: true; value: { type: 'inet'; host: string; port: number } } | { ok: false; error: string } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text) ?? (/^(\d+)$/.test(text) ? [text, undefined, '', text] : null);
  if (!m) return { ok: false, error: `${what} "${text}": give HOST:PORT` };
  const host = (m[1] ?? m[2] ?? '') || defaultHost;
  const port = Number(m[3]);
  if (!host) return { ok: false, error: `${what} "${text}": give the host too (HOST:PORT)` };
  if (!Number.isInteger(port) || port < 0 || port > 65535) return { ok: false, error: `${what} "${text}": port ${m[3]} is not 0..65535` };
  return { ok: true, value: { type: 'inet', host, port } };
}

export function parseVmSocketSpec(text: string): SpecResult {
  const parts = text.split(',');
  const head = parts[0]!;
  const kv = new Map<string, string>();
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=');
    if (eq <= 0) return { ok: false, error: `--vm-socket ${text}: "${p}" is not KEY=VALUE; ${HELP}` };
    kv.set(p.slice(0, eq).toLowerCase(), p.slice(eq + 1));
  }
  const extras: { name?: string; lossPct?: number } = {};
  const name = kv.get('name');
  if (name !== undefined) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return { ok: false, error: `--vm-socket name=${name}: letters, digits, '.', '_' or '-' (it names a pcap)` };
    extras.name = name;
  }
  const loss = kv.get('loss');
  if (loss !== undefined) {
    const n = Number(loss);
    if (!Number.isFinite(n) || n < 0 || n > 100) return { ok: false, error: `--vm-socket loss=${loss}: a percentage 0..100` };
    extras.lossPct = n;
  }
  kv.delete('name');
  kv.delete('loss');
  const done = (v: VmSocketSpec): SpecResult => {
    const known = new Set(v.kind === 'stream' ? ['server', 'addr.type', 'addr.path', 'addr.host', 'addr.port', 'listen', 'connect', 'id'] : ['remote', 'local.type', 'local.host', 'local.port', 'remote.type', 'remote.host', 'remote.port', 'udp', 'localaddr', 'id']);
    for (const k of kv.keys()) if (!known.has(k)) return { ok: false, error: `--vm-socket ${text}: unknown option ${k}` };
    return { ok: true, value: { ...v, ...extras } };
  };
  const colon = head.indexOf(':');
  const scheme = colon > 0 ? head.slice(0, colon).toLowerCase() : '';
  const rest = colon > 0 ? head.slice(colon + 1) : '';
  if (scheme === 'unix' || scheme === 'unix-connect') {
    if (!rest) return { ok: false, error: `--vm-socket ${text}: give the socket path` };
    return done({ kind: 'stream', role: scheme === 'unix' ? 'server' : 'client', addr: { type: 'unix', path: rest } });
  }
  if (scheme === 'tcp' || scheme === 'tcp-connect') {
    const a = inet(rest, scheme === 'tcp' ? '127.0.0.1' : null, '--vm-socket');
    if (!a.ok) return a;
    return done({ kind: 'stream', role: scheme === 'tcp' ? 'server' : 'client', addr: a.value });
  }
  if (scheme === 'udp') {
    const l = inet(rest, '127.0.0.1', '--vm-socket udp');
    if (!l.ok) return l;
    const r = kv.get('remote');
    if (r === undefined) return done({ kind: 'dgram', local: l.value });
    const ra = inet(r, null, 'remote=');
    if (!ra.ok) return ra;
    return done({ kind: 'dgram', local: l.value, remote: ra.value });
  }
  const word = head.toLowerCase();
  if (word === 'stream') {
    const server = (kv.get('server') ?? 'on').toLowerCase();
    if (!['on', 'off', 'true', 'false', 'yes', 'no'].includes(server)) return { ok: false, error: `--vm-socket server=${server}: on or off` };
    const a = addrFrom(kv, 'addr', text);
    if (!a.ok) return a;
    return done({ kind: 'stream', role: ['on', 'true', 'yes'].includes(server) ? 'server' : 'client', addr: a.value });
  }
  if (word === 'dgram') {
    const l = addrFrom(kv, 'local', text);
    if (!l.ok) return l;
    if (l.value.type !== 'inet') return { ok: false, error: `--vm-socket ${text}: unix datagram sockets are not available to Node (no AF_UNIX SOCK_DGRAM); use local.type=inet (UDP) or a stream socket` };
    if (!kv.has('remote.type')) return done({ kind: 'dgram', local: l.value });
    const r = addrFrom(kv, 'remote', text);
    if (!r.ok) return r;
    if (r.value.type !== 'inet') return { ok: false, error: `--vm-socket ${text}: remote.type=unix is not available to Node; use inet` };
    return done({ kind: 'dgram', local: l.value, remote: r.value });
  }
  if (word === 'socket') {
    const listen = kv.get('listen');
    const connect = kv.get('connect');
    const udp = kv.get('udp');
    if (kv.has('mcast')) return { ok: false, error: `--vm-socket ${text}: mcast= is not supported; use udp= with localaddr=, or a stream socket` };
    if ([listen, connect, udp].filter((x) => x !== undefined).length !== 1) return { ok: false, error: `--vm-socket ${text}: give exactly one of listen=, connect=, udp=` };
    if (listen !== undefined) {
      const a = inet(listen, '127.0.0.1', 'listen=');
      return a.ok ? done({ kind: 'stream', role: 'server', addr: a.value }) : a;
    }
    if (connect !== undefined) {
      const a = inet(connect, null, 'connect=');
      return a.ok ? done({ kind: 'stream', role: 'client', addr: a.value }) : a;
    }
    const local = kv.get('localaddr');
    if (local === undefined) return { ok: false, error: `--vm-socket ${text}: udp= needs localaddr=HOST:PORT (the lab's end)` };
    const l = inet(local, '127.0.0.1', 'localaddr=');
    if (!l.ok) return l;
    const r = inet(udp!, null, 'udp=');
    if (!r.ok) return r;
    return done({ kind: 'dgram', local: l.value, remote: r.value });
  }
  if (head.includes('/') || head.endsWith('.sock')) return done({ kind: 'stream', role: 'server', addr: { type: 'unix', path: head } });
  return { ok: false, error: `--vm-socket ${text}: ${HELP}` };
}

function addrFrom(kv: Map<string, string>, prefix: string, text: string): { ok: true; value: SocketAddr } | { ok: false; error: string } {
  const type = (kv.get(`${prefix}.type`) ?? '').toLowerCase();
  if (type === 'unix') {
    const path = kv.get(`${prefix}.path`);
    if (!path) return { ok: false, error: `--vm-socket ${text}: ${prefix}.type=unix needs ${prefix}.path=` };
    return { ok: true, value: { type: 'unix', path } };
  }
  if (type === 'inet') {
    const host = kv.get(`${prefix}.host`) ?? '127.0.0.1';
    const port = Number(kv.get(`${prefix}.port`));
    if (!Number.isInteger(port) || port < 0 || port > 65535) return { ok: false, error: `--vm-socket ${text}: ${prefix}.port= must be 0..65535` };
    return { ok: true, value: { type: 'inet', host, port } };
  }
  return { ok: false, error: `--vm-socket ${text}: ${prefix}.type= must be unix or inet` };
}

function addrWords(prefix: string, a: SocketAddr): string {
  return a.type === 'unix' ? `${prefix}.type=unix,${prefix}.path=${a.path}` : `${prefix}.type=inet,${prefix}.host=${a.host},${prefix}.port=${a.port}`;
}

/**
 * The QEMU `-netdev` that pairs with the lab's end (`bound` is the address actually bound, when
 * the spec asked for port 0). For datagrams without a fixed remote, QEMU's local port is `qemuPort`.
 */
export function qemuNetdev(spec: VmSocketSpec, id: string, bound?: SocketAddr, qemuPort?: number): string {
  if (spec.kind === 'stream') {
    return `stream,id=${id},server=${spec.role === 'server' ? 'off' : 'on'},${addrWords('addr', bound ?? spec.addr)}`;
  }
  const labEnd = (bound ?? spec.local) as SocketAddr;
  const qemuEnd: SocketAddr = spec.remote ?? { type: 'inet', host: '127.0.0.1', port: qemuPort ?? 0 };
  return `dgram,id=${id},${addrWords('local', qemuEnd)},${addrWords('remote', labEnd)}`;
}

export function describeSpec(spec: VmSocketSpec, bound?: SocketAddr): string {
  const a = (x: SocketAddr): string => (x.type === 'unix' ? x.path : `${x.host}:${x.port}`);
  if (spec.kind === 'stream') return `stream ${spec.role === 'server' ? 'listening on' : 'connecting to'} ${a(bound ?? spec.addr)}`;
  return `datagrams on udp ${a(bound ?? spec.local)}${spec.remote ? ` to ${a(spec.remote)}` : ''}`;
}
