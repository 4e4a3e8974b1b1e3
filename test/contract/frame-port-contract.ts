import { expect, it } from 'vitest';
import { VirtualClock } from '../../net/clock.js';
import { MAX_FRAME, MIN_FRAME, emptyStats, type FramePort, type FramePortStats, type FrameReceiver } from '../../net/frame-port.js';

/**
 * The FramePort contract (net/frame-port.ts), once, as a suite every implementation runs
 * (DESIGN.md: Palacios' backends disagreed on what `send` returns; we keep one contract and test it
 * for every port). Two shapes of subject:
 *
 * - a **carrier** (link end, capture point, impairment, a station's way through the switch, TAP):
 *   the test holds `port` (the end under test) and `far` (a plain link end where what `port` sends
 *   comes out, and from which frames travel to `port`'s receiver);
 * - an **endpoint** (user-mode network, each NIC model): something that attaches to a port. It is
 *   given a ContractProbe, a pass-through that checks what the endpoint does with the port (what
 *   its receiver answers, what it sends, whether it modifies frames), and the test sends hostile
 *   frames at it and then checks it still answers a ping.
 *
 * Clauses are named (CLAUSE) so that a subject may list the ones it is known to break today; those
 * run as `it.fails`, which turns red the day the subject starts to pass, so the list is flipped on
 * by deleting the entry. Nothing is skipped.
 */
export const CLAUSE = {
  delivery: 'delivers what is sent to the other end, in order, bytes unchanged, never inside send',
  sizes: `accepts frames of ${MIN_FRAME}..${MAX_FRAME} bytes it can carry; refuses and counts the rest (send → false, txDrops)`,
  txStats: 'counts each accepted frame once in txFrames/txBytes and each refusal once in txDrops',
  rxStats: 'counts frames its receiver took in rxFrames/rxBytes and refused ones (or no receiver) in rxDrops, once',
  holds: "a port that holds keeps a frame its receiver calls 'busy', and all behind it, until ready(); none lost, in order",
  gso: 'gso and offerGso pass end to end (the far end learns what this end takes, and the reverse)',
  hostileFrames: 'an endpoint takes any frame of 14..65535 bytes without throwing, answers only true/false/void (busy only to a port that holds), and still answers a ping after them',
  endpointSends: 'an endpoint sends only frames of 14..65535 bytes, larger than 1518 only when the port says gso, and never modifies a frame after sending it or while receiving it',
  endpointGso: 'an endpoint that offers GSO takes a 64 KiB TCP/IPv4 segment',
} as const;
export type Clause = keyof typeof CLAUSE;

/** An Ethernet II frame of `size` bytes from `src` to `dst` with `type`, body filled with `tag`. */
export function ethFrame(size: number, dst: Uint8Array, src: Uint8Array, type = 0x88b5, tag = 0): Uint8Array {
  const f = new Uint8Array(size);
  f.set(dst.subarray(0, Math.min(6, size)), 0);
  if (size > 6) f.set(src.subarray(0, Math.min(6, size - 6)), 6);
  if (size >= 14) {
    f[12] = type >> 8;
    f[13] = type & 0xff;
  }
  for (let i = 14; i < size; i++) f[i] = (tag + i) & 0xff;
  return f;
}

/** A TCP/IPv4 frame of `size` bytes (IP total length = size − 14), checksums left zero. */
export function tcpIpv4Frame(size: number, dst: Uint8Array, src: Uint8Array, srcIp: number, dstIp: number): Uint8Array {
  const f = ethFrame(size, dst, src, 0x0800);
  const ipLen = size - 14;
  f.set([0x45, 0, ipLen >> 8, ipLen & 0xff, 0, 1, 0x40, 0, 64, 6, 0, 0], 14);
  new DataView(f.buffer).setUint32(26, srcIp >>> 0);
  new DataView(f.buffer).setUint32(30, dstIp >>> 0);
  f.set([0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0], 34);
  return f;
}

export const BROADCAST = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const STATION_A = new Uint8Array([0x02, 0, 0, 0, 0, 0x0a]);
const STATION_B = new Uint8Array([0x02, 0, 0, 0, 0, 0x0b]);

// ----------------------------------------------------------------------------- carriers

export interface CarrierSubject {
  clock: VirtualClock;
  /** The end under test. */
  port: FramePort;
  /** A plain link end at the other side. */
  far: FramePort;
  /** Ports on the test's side whose drop counters together must show each refusal once. */
  chain: FramePort[];
  /** Largest frame carried to a far end that offered no GSO (MAX_FRAME, or 1518 through a switch). */
  maxPlain: number;
  /** Whether gso/offerGso pass straight through (a switch decides per frame instead). */
  gsoPassThrough: boolean;
  /** Frames to send so that they reach `far` (a switch must learn where `far` is first). */
  address: { toFar: Uint8Array; fromFar: Uint8Array };
  /** Let the subject settle (deliveries, delays). */
  settle(): void;
}

const sum = (ports: FramePort[], k: keyof FramePortStats): number => ports.reduce((n, p) => n + p.stats[k], 0);

/** Run every carrier clause against subjects made fresh by `make`. */
export function carrierContract(make: () => CarrierSubject, knownFailing: Partial<Record<Clause, string>> = {}): void {
  const clause = (c: Clause, body: () => void): void => {
    const why = knownFailing[c];
    if (why) it.fails(`${CLAUSE[c]} [known failing: ${why}]`, body);
    else it(CLAUSE[c], body);
  };

  clause('delivery', () => {
    const s = make();
    const got: Uint8Array[] = [];
    let inSend = false;
    let reentered = false;
    s.far.setReceiver((f) => {
      if (inSend) reentered = true;
      got.push(f.slice());
      return true;
    });
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) {
      const f = ethFrame(60 + i, s.address.toFar, s.address.fromFar, 0x88b5, i);
      sent.push(f.slice());
      inSend = true;
      expect(s.port.send(f)).toBe(true);
      inSend = false;
    }
    s.settle();
    expect(reentered).toBe(false);
    expect(got).toEqual(sent);
    // And the other way, into the port's receiver.
    const back: Uint8Array[] = [];
    s.port.setReceiver((f) => {
      if (inSend) reentered = true;
      back.push(f.slice());
      return true;
    });
    for (let i = 0; i < 5; i++) {
      inSend = true;
      s.far.send(ethFrame(64, s.address.fromFar, s.address.toFar, 0x88b5, 100 + i));
      inSend = false;
    }
    s.settle();
    expect(reentered).toBe(false);
    expect(back.map((f) => f[14])).toEqual([114, 115, 116, 117, 118].map((v) => v & 0xff));
  });

  clause('sizes', () => {
    const s = make();
    const got: number[] = [];
    s.far.setReceiver((f) => void got.push(f.length));
    const ok = [MIN_FRAME, 60, 1514, s.maxPlain].map((n) => s.port.send(ethFrame(n, s.address.toFar, s.address.fromFar)));
    s.settle();
    expect(ok).toEqual([true, true, true, true]);
    expect(got).toEqual([MIN_FRAME, 60, 1514, s.maxPlain]);
    const before = sum(s.chain, 'txDrops');
    const refused = [0, 1, MIN_FRAME - 1, MAX_FRAME + 1].map((n) => s.port.send(ethFrame(n, s.address.toFar, s.address.fromFar)));
    s.settle();
    expect(refused).toEqual([false, false, false, false]);
    expect(sum(s.chain, 'txDrops') - before).toBe(4);
    expect(got.length).toBe(4);
  });

  clause('txStats', () => {
    const s = make();
    s.far.setReceiver(() => true);
    for (let i = 0; i < 10; i++) s.port.send(ethFrame(100, s.address.toFar, s.address.fromFar));
    s.port.send(new Uint8Array(5));
    s.settle();
    expect(s.port.stats.txFrames).toBe(10);
    expect(s.port.stats.txBytes).toBe(1000);
    expect(sum(s.chain, 'txDrops')).toBe(1);
  });

  clause('rxStats', () => {
    const s = make();
    let take = true;
    s.port.setReceiver(() => take);
    for (let i = 0; i < 4; i++) s.far.send(ethFrame(80, s.address.fromFar, s.address.toFar));
    s.settle();
    take = false;
    for (let i = 0; i < 3; i++) s.far.send(ethFrame(80, s.address.fromFar, s.address.toFar));
    s.settle();
    s.port.setReceiver(null);
    s.far.send(ethFrame(80, s.address.fromFar, s.address.toFar));
    s.settle();
    expect(s.port.stats.rxFrames).toBe(4);
    expect(s.port.stats.rxBytes).toBe(320);
    expect(sum(s.chain, 'rxDrops')).toBe(4);
  });

  clause('holds', () => {
    const s = make();
    expect(s.port.holds).toBe(true);
    let room = 2;
    const got: number[] = [];
    s.port.setReceiver((f) => {
      if (room === 0) return 'busy';
      room--;
      got.push(f[14]!);
      return true;
    });
    for (let i = 0; i < 30; i++) s.far.send(ethFrame(60, s.address.fromFar, s.address.toFar, 0x88b5, i - 14));
    s.settle();
    expect(got).toEqual([0, 1]);
    room = 5;
    s.port.ready!();
    s.settle();
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6]);
    room = 1000;
    s.port.ready!();
    s.port.ready!(); // harmless twice
    s.settle();
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(sum(s.chain, 'rxDrops')).toBe(0);
  });

  clause('gso', () => {
    const s = make();
    if (s.gsoPassThrough) {
      expect(s.port.gso ?? false).toBe(false);
      s.far.offerGso!(true);
      expect(s.port.gso).toBe(true);
      s.port.offerGso!(true);
      expect(s.far.gso).toBe(true);
      s.far.offerGso!(false);
      expect(s.port.gso).toBe(false);
      return;
    }
    // Per frame: a frame over 1518 bytes reaches a far end whole only when that end takes GSO and
    // the frame is a TCP/IPv4 segment; to any other end a TCP/IPv4 GSO frame arrives cut into
    // MTU-sized segments, and anything else that large is dropped and counted, never delivered.
    const got: number[] = [];
    s.far.setReceiver((f) => void got.push(f.length));
    const big = (): Uint8Array => tcpIpv4Frame(60_000, s.address.toFar, s.address.fromFar, 0x0a000001, 0x0a000002);
    s.port.send(big());
    s.port.send(ethFrame(60_000, s.address.toFar, s.address.fromFar));
    s.settle();
    expect(got.length).toBe(Math.ceil((60_000 - 54) / 1460));
    expect(Math.max(...got)).toBe(1514);
    got.length = 0;
    s.far.offerGso!(true);
    s.port.send(big());
    s.port.send(ethFrame(60_000, s.address.toFar, s.address.fromFar));
    s.settle();
    expect(got).toEqual([60_000]);
  });
}

// ----------------------------------------------------------------------------- endpoints

/** A pass-through between an endpoint and its port that records contract violations. */
export class ContractProbe implements FramePort {
  readonly stats: FramePortStats = emptyStats();
  readonly violations: string[] = [];
  /** The endpoint called offerGso(true) last. */
  offered = false;
  answers = { taken: 0, refused: 0, busy: 0 };
  private receiver: FrameReceiver | null = null;
  private readonly sent: { frame: Uint8Array; copy: Uint8Array }[] = [];

  constructor(readonly inner: FramePort) {
    inner.setReceiver((f) => this.deliver(f));
  }

  get name(): string {
    return this.inner.name;
  }

  get holds(): boolean {
    return this.inner.holds === true;
  }

  get gso(): boolean {
    return this.inner.gso === true;
  }

  ready(): void {
    this.inner.ready?.();
  }

  offerGso(on: boolean): void {
    this.offered = on;
    this.inner.offerGso?.(on);
  }

  setReceiver(receiver: FrameReceiver | null): void {
    this.receiver = receiver;
  }

  send(frame: Uint8Array): boolean {
    if (frame.length < MIN_FRAME || frame.length > MAX_FRAME) this.violations.push(`sent a ${frame.length}-byte frame`);
    else if (frame.length > 1518 && !this.gso) this.violations.push(`sent a ${frame.length}-byte frame to a port without gso`);
    if (this.sent.length < 10_000) this.sent.push({ frame, copy: frame.slice() });
    return this.inner.send(frame);
  }

  /** Frames sent earlier that have changed since (ownership passed on send). */
  modifiedAfterSend(): number {
    return this.sent.filter(({ frame, copy }) => frame.length !== copy.length || frame.some((b, i) => b !== copy[i])).length;
  }

  private deliver(frame: Uint8Array): ReturnType<FrameReceiver> {
    const copy = frame.slice();
    let answer: ReturnType<FrameReceiver>;
    try {
      answer = this.receiver ? this.receiver(frame) : false;
    } catch (e) {
      this.violations.push(`receiver threw on a ${frame.length}-byte frame: ${(e as Error).message}`);
      return false;
    }
    if (answer !== true && answer !== false && answer !== 'busy' && answer !== 'copied' && answer !== undefined) this.violations.push(`receiver answered ${String(answer)}`);
    if (answer === 'busy' && !this.holds) this.violations.push("receiver answered 'busy' to a port that does not hold");
    if (frame.some((b, i) => b !== copy[i])) this.violations.push(`receiver modified a ${frame.length}-byte frame it was handed`);
    if (answer === 'busy') this.answers.busy++;
    else if (answer === false) this.answers.refused++;
    else this.answers.taken++;
    return answer;
  }
}

export interface EndpointSubject {
  clock: VirtualClock;
  probe: ContractProbe;
  /** Send a frame towards the endpoint (from the far end of its port). */
  inject(frame: Uint8Array): void;
  /** The endpoint's MAC (hostile frames are addressed to it) and an IPv4 address it answers on. */
  mac: Uint8Array;
  ip: number;
  /** Ping the endpoint from the far side; resolves true when answered. */
  alive(): Promise<boolean>;
  /** Make the endpoint send frames (e.g. its own traffic) so its sends can be checked. */
  exercise(): Promise<void>;
}

/** The hostile frames of issue 10: runts, a 1642-byte ICMP echo, 64 KiB frames, garbage. */
export function hostileFrames(mac: Uint8Array, ip: number, seed = 1): Uint8Array[] {
  const frames: Uint8Array[] = [];
  frames.push(ethFrame(14, BROADCAST, STATION_A, 0x0800));
  frames.push(ethFrame(15, mac, STATION_A, 0x0806));
  frames.push(ethFrame(59, mac, STATION_A, 0x0800));
  const echo = tcpIpv4Frame(1642, mac, STATION_A, 0x0a000001, ip);
  echo[23] = 1; // ICMP: the 1600-byte-payload echo from tap2 with its MTU raised
  frames.push(echo);
  frames.push(ethFrame(1519, mac, STATION_A, 0x0800));
  frames.push(ethFrame(9018, mac, STATION_A, 0x0800)); // a jumbo frame
  frames.push(ethFrame(32 * 1024, mac, STATION_A, 0x0800));
  frames.push(ethFrame(MAX_FRAME, mac, STATION_A, 0x0800));
  frames.push(ethFrame(MAX_FRAME, BROADCAST, STATION_A, 0x0806));
  frames.push(tcpIpv4Frame(MAX_FRAME, mac, STATION_A, 0x0a000001, ip));
  let x = seed >>> 0 || 1;
  const rnd = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
  for (let i = 0; i < 40; i++) {
    const f = ethFrame(MIN_FRAME + Math.floor(rnd() * 1600), mac, STATION_B, 0x0800);
    for (let j = 14; j < f.length; j++) f[j] = Math.floor(rnd() * 256);
    frames.push(f);
  }
  return frames;
}

export function endpointContract(make: () => EndpointSubject, knownFailing: Partial<Record<Clause, string>> = {}): void {
  const clause = (c: Clause, body: () => Promise<void>): void => {
    const why = knownFailing[c];
    if (why) it.fails(`${CLAUSE[c]} [known failing: ${why}]`, body, 120_000);
    else it(CLAUSE[c], body, 120_000);
  };

  clause('hostileFrames', async () => {
    const s = make();
    expect(await s.alive()).toBe(true);
    for (const f of hostileFrames(s.mac, s.ip)) {
      s.inject(f);
      s.clock.runUntil(() => false, 5);
    }
    s.clock.runUntil(() => false, 200);
    expect(s.probe.violations).toEqual([]);
    expect(await s.alive()).toBe(true);
    expect(s.probe.violations).toEqual([]);
  });

  clause('endpointSends', async () => {
    const s = make();
    await s.exercise();
    expect(await s.alive()).toBe(true);
    s.clock.runUntil(() => false, 100);
    expect(s.probe.violations).toEqual([]);
    expect(s.probe.stats).toBeDefined();
    expect(s.probe.modifiedAfterSend()).toBe(0);
  });

  clause('endpointGso', async () => {
    const s = make();
    expect(await s.alive()).toBe(true);
    if (!s.probe.offered) {
      // It takes no GSO: then the port must not say so to the far end either.
      expect(s.probe.inner.gso === true).toBe(false);
      return;
    }
    const before = s.probe.answers.refused;
    s.inject(tcpIpv4Frame(14 + 65000, s.mac, STATION_A, 0x0a000001, s.ip));
    s.clock.runUntil(() => false, 50);
    expect(s.probe.answers.refused).toBe(before);
    expect(s.probe.violations).toEqual([]);
  });
}
