import { describe, expect, it } from 'vitest';
import { parseIpv4 as parseAddr } from '../../net/addr.js';
import { VirtualClock } from '../../net/clock.js';
import { createLink } from '../../net/link.js';
import { Stack } from '../../net/stack.js';
import { IP_HEADROOM } from '../../net/ip-layer.js';
import { mulberry32 } from '../../net/random.js';
import { emitIpv4Header, parseIpv4 } from '../../net/wire/ipv4.js';
import { emitEthernetHeader, parseEthernet } from '../../net/wire/ethernet.js';
import { emitIcmp, ICMP_DEST_UNREACH, ICMP_UNREACH_NEEDFRAG } from '../../net/wire/icmp.js';
import { bulkTo, collect, sendAll, sha256, type Collected } from './tcp-io.js';
import { foldSum, internetChecksum, pseudoHeaderSum } from '../../net/wire/checksum.js';
import { finishTcpv4Checksums, tcpv4Layout } from '../../src/devices/tcp-gso.js';

const ip = (s: string): number => parseAddr(s)!;


function pair(mtuB = 1500) {
  const clock = new VirtualClock();
  const [pa, pb] = createLink(clock, ['a', 'b']);
  const a = new Stack({ clock, name: 'a', random: mulberry32(1) });
  const b = new Stack({ clock, name: 'b', random: mulberry32(2) });
  const na = a.addNetif('eth0', pa, new Uint8Array([2, 0, 0, 0, 0, 1]));
  const nb = b.addNetif('eth0', pb, new Uint8Array([2, 0, 0, 0, 0, 2]), mtuB);
  a.configure(na, ip('10.0.0.1'), 24);
  b.configure(nb, ip('10.0.0.2'), 24, ip('10.0.0.1'));
  return { clock, a, b, na, nb, pa, pb };
}

describe('IPv4 stack', () => {
  it('resolves ARP and answers ping', async () => {
    const { clock, a } = pair();
    const p = a.ping(ip('10.0.0.2'), 1);
    clock.runUntil(() => false, 100);
    expect(await p).toMatchObject({ seq: 1, ttl: 64, bytes: 64 });
    expect(a.arp.stats.resolved).toBe(1);
  });

  it('gives up on an address nobody answers after the ARP retries', async () => {
    const { clock, a } = pair();
    const p = a.ping(ip('10.0.0.9'), 1, 56, 10_000);
    clock.runUntil(() => false, 20_000);
    expect(await p).toBeNull();
    expect(a.arp.stats.requestsSent).toBe(3);
    expect(a.arp.stats.failed).toBe(1);
  });

  it('UDP: datagrams both ways, port unreachable for a closed port', () => {
    const { clock, a, b } = pair();
    const sb = b.udp.socket().bind(7000);
    const got: string[] = [];
    sb.onMessage = (d, m) => {
      got.push(new TextDecoder().decode(d));
      sb.send(d, m.src, m.srcPort);
    };
    const sa = a.udp.socket().bind();
    const back: string[] = [];
    sa.onMessage = (d) => back.push(new TextDecoder().decode(d));
    const errors: number[] = [];
    sa.onError = (t, c) => errors.push(t * 256 + c);
    sa.send(new TextEncoder().encode('hello'), ip('10.0.0.2'), 7000);
    sa.send(new TextEncoder().encode('nobody'), ip('10.0.0.2'), 7001);
    clock.runUntil(() => back.length === 1 && errors.length === 1, 5000);
    expect(got).toEqual(['hello']);
    expect(back).toEqual(['hello']);
    expect(errors).toEqual([3 * 256 + 3]);
  });

  it('fragments a large UDP datagram and reassembles it', () => {
    const { clock, a, b } = pair();
    const sb = b.udp.socket().bind(9);
    let got: Uint8Array | null = null;
    sb.onMessage = (d) => (got = d.slice());
    const data = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
    a.udp.socket().send(data, ip('10.0.0.2'), 9);
    clock.runUntil(() => got !== null, 5000);
    expect(a.stats.fragmentsCreated).toBe(4);
    expect(b.reassembler.stats.reassembled).toBe(1);
    expect(Buffer.from(got!).equals(Buffer.from(data))).toBe(true);
  });

  it('drops bad headers and checksums with counters, never throws', () => {
    const { clock, b, pa } = pair();
    const frame = new Uint8Array(14 + 28);
    frame.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    emitIpv4Header(frame, 14, { id: 1, ttl: 64, protocol: 17, src: ip('10.0.0.1'), dst: ip('10.0.0.2'), payloadLength: 8 });
    frame[14 + 10]! ^= 0xff; // corrupt the header checksum
    pa.send(frame);
    const trunc = frame.slice(0, 20);
    pa.send(trunc);
    clock.runUntil(() => false, 10);
    expect(b.stats.rxBadChecksum).toBe(1);
    expect(b.netifs[0]!.counters.rxFrames).toBeGreaterThanOrEqual(2);
  });

  it('a checksum the NIC vouched for (RxInfo.checksumValid) is not summed again; without it the same frame is dropped', () => {
    const { clock, b, nb } = pair();
    const sock = b.udp.socket().bind(7000);
    const got: number[] = [];
    sock.onMessage = (d) => got.push(d.length);
    // UDP 10.0.0.1:5000 → 10.0.0.2:7000 with a checksum that is wrong for its bytes.
    const frame = new Uint8Array(14 + 20 + 8 + 4);
    frame.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    emitIpv4Header(frame, 14, { id: 7, ttl: 64, protocol: 17, src: ip('10.0.0.1'), dst: ip('10.0.0.2'), payloadLength: 12 });
    frame.set([0x13, 0x88, 0x1b, 0x58, 0, 12, 0x12, 0x34, 1, 2, 3, 4], 34);
    b.input(nb, frame.slice(), false);
    clock.runUntil(() => false, 10);
    expect(got).toEqual([]);
    expect(b.udp.stats.rxBadChecksum).toBe(1);
    b.input(nb, frame.slice(), true);
    clock.runUntil(() => false, 10);
    expect(got).toEqual([4]);
    expect(b.udp.stats.rxBadChecksum).toBe(1);
    // A TCP SYN with a wrong checksum: counted and ignored, unless vouched for (then it is answered).
    const syn = new Uint8Array(14 + 20 + 20);
    syn.set(frame.subarray(0, 14));
    emitIpv4Header(syn, 14, { id: 8, ttl: 64, protocol: 6, src: ip('10.0.0.1'), dst: ip('10.0.0.2'), payloadLength: 20 });
    syn.set([0x13, 0x88, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0xde, 0xad, 0, 0], 34);
    const accepted: number[] = [];
    b.tcp.listen(80, (c) => accepted.push(c.remotePort));
    b.input(nb, syn.slice(), false);
    clock.runUntil(() => false, 10);
    expect(b.tcp.stats.badChecksums).toBe(1);
    const before = b.tcp.stats.segmentsOut;
    b.input(nb, syn.slice(), true);
    clock.runUntil(() => false, 10);
    expect(b.tcp.stats.badChecksums).toBe(1);
    expect(b.tcp.stats.segmentsOut).toBe(before + 1); // its SYN-ACK
  });

  it('TCP: 2 MB arrives byte-exact over the stack', () => {
    const { clock, a, b } = pair();
    const size = 2 * 1024 * 1024;
    const data = new Uint8Array(size).map((_, i) => (i * 31 + (i >> 9)) & 0xff);
    const atServer = bulkTo(clock, a, b, ip('10.0.0.2'), 5001, data);
    const got = atServer.bytes();
    expect(got.length).toBe(size);
    expect(sha256(got)).toBe(sha256(data));
  });

  it('TCP over a link whose far end takes GSO frames: multi-MSS segments one way only, byte-exact, MSS-sized again once withdrawn', () => {
    const { clock, a, b, pa, pb } = pair();
    pb.offerGso!(true); // b's receiver takes 64 KiB TCP segments (a virtio guest with GUEST_TSO4)
    expect(pa.gso).toBe(true);
    expect(pb.gso).toBe(false);
    const sizesAtoB: number[] = [];
    const sizesBtoA: number[] = [];
    const sendA = pa.send.bind(pa);
    pa.send = (f) => {
      sizesAtoB.push(f.length);
      const e = parseEthernet(f);
      if (e.ok && e.value.etherType === 0x0800) expect(parseIpv4(e.value.payload).ok).toBe(true);
      return sendA(f);
    };
    const sendB = pb.send.bind(pb);
    pb.send = (f) => (sizesBtoA.push(f.length), sendB(f));
    const size = 4 * 1024 * 1024;
    const data = new Uint8Array(size).map((_, i) => (i * 29 + (i >> 10)) & 0xff);
    let withdrawnAt = -1;
    let atServer: Collected | null = null;
    b.tcp.listen(5002, (c) => {
      atServer = collect(c, () => {
        if (withdrawnAt < 0 && atServer!.received >= size / 2) {
          pb.offerGso!(false); // the guest's driver reset: MTU-sized frames from here on
          withdrawnAt = sizesAtoB.length;
        }
      });
    });
    sendAll(a.tcp.connect(ip('10.0.0.2'), 5002), data);
    clock.runUntil(() => atServer?.ended === true, 120_000, 10_000_000);
    const all = atServer!.bytes();
    expect(all.length).toBe(size);
    expect(sha256(all)).toBe(sha256(data));
    const before = sizesAtoB.slice(0, withdrawnAt);
    const after = sizesAtoB.slice(withdrawnAt); // asked per segment: the next one is MTU-sized
    expect(Math.max(...before)).toBeGreaterThan(30_000);
    expect(Math.max(...before)).toBeLessThanOrEqual(65535);
    expect(after.length).toBeGreaterThan(100);
    expect(Math.max(...after)).toBeLessThanOrEqual(1514);
    expect(Math.max(...sizesBtoA)).toBeLessThanOrEqual(1514);
    // Far fewer frames than MSS-sized segments would need for the first half.
    expect(before.length).toBeLessThan(size / 2 / 1448 / 4);
  });

  it('TCP leaves a GSO segment\'s checksum partial only for a port that finishes it; MTU-sized ones are always whole', () => {
    for (const partialPort of [true, false]) {
      const { clock, a, b, pa, pb } = pair();
      pb.offerGso!(true);
      if (partialPort) Object.defineProperty(pa, 'gsoChecksumPartial', { value: true });
      const seen = { partial: 0, whole: 0, small: 0 };
      const sendA = pa.send.bind(pa);
      pa.send = (f) => {
        const l = tcpv4Layout(f);
        if (!l) return sendA(f);
        const tcp = f.subarray(l.tcpAt);
        const pseudo = pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, tcp.length);
        const valid = internetChecksum(tcp, pseudo) === 0;
        if (f.length <= 1514) {
          expect(valid).toBe(true);
          seen.small++;
          return sendA(f);
        }
        if (valid) {
          seen.whole++;
          return sendA(f);
        }
        // Linux's CHECKSUM_PARTIAL: the folded pseudo-header sum; finished here as a device would.
        expect((tcp[16]! << 8) | tcp[17]!).toBe(foldSum(pseudo));
        seen.partial++;
        const copy = f.slice();
        finishTcpv4Checksums(copy, l);
        return sendA(copy);
      };
      const size = 1024 * 1024;
      const data = new Uint8Array(size).map((_, i) => (i * 13 + (i >> 11)) & 0xff);
      const atServer = bulkTo(clock, a, b, ip('10.0.0.2'), 5003, data);
      expect(sha256(atServer.bytes())).toBe(sha256(data));
      expect(seen.small).toBeGreaterThan(0); // the handshake and ACKs
      if (partialPort) expect(seen).toMatchObject({ whole: 0, partial: expect.any(Number) as number });
      else expect(seen.partial).toBe(0);
      expect(partialPort ? seen.partial : seen.whole).toBeGreaterThan(5);
    }
  });

  it('partial checksums across a link: said with each frame to a receiver that offered them, which trusts them; none to one that did not', () => {
    for (const offered of [true, false]) {
      const { clock, a, b, pa, pb } = pair();
      pb.offerGso!(true, offered);
      expect(pa.gso).toBe(true);
      expect(pa.gsoChecksumPartial).toBe(offered);
      const seen = { partial: 0, whole: 0 };
      const sendA = pa.send.bind(pa);
      pa.send = (f, info) => {
        const l = tcpv4Layout(f);
        if (l && f.length > 1514) {
          const tcp = f.subarray(l.tcpAt);
          const pseudo = pseudoHeaderSum(f.subarray(26, 30), f.subarray(30, 34), 6, tcp.length);
          if (info?.checksumPartial) {
            expect((tcp[16]! << 8) | tcp[17]!).toBe(foldSum(pseudo));
            seen.partial++;
          } else {
            expect(internetChecksum(tcp, pseudo)).toBe(0);
            seen.whole++;
          }
        } else expect(info?.checksumPartial).toBeUndefined();
        return sendA(f, info);
      };
      const data = new Uint8Array(512 * 1024).map((_, i) => (i * 31 + (i >> 9)) & 0xff);
      const atServer = bulkTo(clock, a, b, ip('10.0.0.2'), 5004, data);
      // Left unfinished all the way, and taken: the receiver trusts what a sender in its host left partial.
      expect(sha256(atServer.bytes())).toBe(sha256(data));
      expect(b.tcp.stats.badChecksums).toBe(0);
      expect(offered ? seen.partial : seen.whole).toBeGreaterThan(3);
      expect(offered ? seen.whole : seen.partial).toBe(0);
    }
  });

  it('keeps nothing of a frame past input (its receiver answers \'copied\'): data queued out of order and UDP datagrams survive the frame being overwritten', () => {
    const { clock, a, b, pa, nb } = pair();
    const ping = a.ping(ip('10.0.0.2'), 1);
    clock.runUntil(() => false, 100);
    void ping;
    // a's data segments reach b as a driver lends them, in swapped pairs (so every other one waits
    // in the out-of-order queue), and are scribbled over as soon as b's input returns.
    const sendA = pa.send.bind(pa);
    let held: Uint8Array | null = null;
    const lend = (f: Uint8Array): void => {
      b.input(nb, f, false);
      f.fill(0xee);
    };
    pa.send = (f, info) => {
      const l = tcpv4Layout(f);
      if (!l || f.length - l.hdrLen === 0) return sendA(f, info);
      const mine = f.slice();
      if (held === null) {
        held = mine;
        clock.setTimer(5, () => {
          if (held === mine) {
            held = null;
            lend(mine);
          }
        });
        return true;
      }
      const earlier = held;
      held = null;
      lend(mine);
      lend(earlier);
      return true;
    };
    const data = new Uint8Array(300 * 1024).map((_, i) => (i * 7 + (i >> 8)) & 0xff);
    const atServer = bulkTo(clock, a, b, ip('10.0.0.2'), 5005, data);
    expect(sha256(atServer.bytes())).toBe(sha256(data));
    expect(b.tcp.stats.outOfOrderSegments).toBeGreaterThan(10);
    // A UDP datagram a socket keeps: its own copy, not the lent frame's bytes.
    pa.send = sendA;
    const kept: Uint8Array[] = [];
    b.udp.socket().bind(7001).onMessage = (d) => void kept.push(d);
    const frames: Uint8Array[] = [];
    const toB = pa.send.bind(pa);
    pa.send = (f) => (frames.push(f.slice()), toB(f));
    a.udp.socket().send(new Uint8Array([1, 2, 3, 4]), ip('10.0.0.2'), 7001);
    expect(frames).toHaveLength(1);
    lend(frames[0]!);
    expect([...kept[0]!]).toEqual([1, 2, 3, 4]);
  });

  it('writes the IPv4 and Ethernet headers into the headroom a transport hands over (IpOutput.framed), and copies otherwise', async () => {
    const { clock, a, pa } = pair();
    const ping = a.ping(ip('10.0.0.2'), 1); // ARP resolved, so output goes straight to the port
    clock.runUntil(() => false, 100);
    expect(await ping).not.toBeNull();
    const sent: Uint8Array[] = [];
    const orig = pa.send.bind(pa);
    pa.send = (f) => (sent.push(f), orig(f));
    const out = (payload: Uint8Array, framed?: Uint8Array) => a.output({ src: ip('10.0.0.1'), dst: ip('10.0.0.2'), protocol: 253, payload, framed });
    // Two views into one buffer, as the byte slab hands out: the headroom is known only from `framed`.
    const shared = new Uint8Array(4096);
    const framed = shared.subarray(1000, 1000 + IP_HEADROOM + 100);
    framed.fill(0x5a, IP_HEADROOM);
    expect(out(framed.subarray(IP_HEADROOM), framed)).toBe('sent');
    const unframed = shared.subarray(2000 + IP_HEADROOM, 2000 + IP_HEADROOM + 100).fill(0xa5);
    expect(out(unframed)).toBe('sent');
    expect(sent).toHaveLength(2);
    expect(sent[0]!.buffer).toBe(shared.buffer);
    expect(sent[0]!.byteOffset).toBe(1000);
    expect(sent[1]!.buffer).not.toBe(shared.buffer);
    // The bytes in front of the unframed payload were not someone else's to write.
    expect(shared.subarray(2000, 2000 + IP_HEADROOM).every((x) => x === 0)).toBe(true);
    for (const [f, fill] of [[sent[0]!, 0x5a], [sent[1]!, 0xa5]] as const) {
      const e = parseEthernet(f);
      expect(e.ok && e.value.etherType).toBe(0x0800);
      const p = e.ok ? parseIpv4(e.value.payload) : null;
      expect(p?.ok && p.value.protocol).toBe(253);
      expect(p?.ok && p.value.payload.every((x) => x === fill)).toBe(true);
    }
  });

  it('TCP builds segments in memory the port lends (FramePort.lendTx) once the neighbour is known, writing every byte of it', () => {
    const { clock, a, b, pa } = pair();
    // A driver's one transmit buffer, dirty from the last frame: whatever is not written shows.
    const dma = new Uint8Array(2048);
    let loans = 0;
    let inPlace = 0;
    const sendA = pa.send.bind(pa);
    Object.assign(pa, {
      lendTx: (length: number): Uint8Array | null => {
        loans++;
        return length <= dma.length ? dma.fill(0xee).subarray(0, length) : null;
      },
      // The "hardware" takes the frame at once: a copy leaves, the buffer is reused.
      send: (f: Uint8Array): boolean => {
        if (f.buffer === dma.buffer) inPlace++;
        return sendA(f.buffer === dma.buffer ? f.slice() : f);
      },
    });
    expect(a.datagramBuffer(ip('10.0.0.2'), 6, 100).buffer).not.toBe(dma.buffer); // no ARP entry yet
    expect(a.datagramBuffer(ip('10.0.0.1'), 6, 100).buffer).not.toBe(dma.buffer); // ourselves
    expect(loans).toBe(0);
    const data = new Uint8Array(300_000).map((_, i) => (i * 7 + (i >> 9)) & 0xff);
    const atServer = bulkTo(clock, a, b, ip('10.0.0.2'), 5004, data, 60_000, 1_000_000);
    expect(sha256(atServer.bytes())).toBe(sha256(data));
    expect(b.tcp.stats.badChecksums).toBe(0);
    expect(inPlace).toBeGreaterThan(150); // ~206 data segments, less the SYN sent before ARP resolved
    expect(inPlace).toBeLessThanOrEqual(loans);
  });

  it('frames on the wire are well-formed IPv4', () => {
    const { clock, a, pa, pb } = pair();
    const frames: Uint8Array[] = [];
    const orig = pa.send.bind(pa);
    pa.send = (f) => (frames.push(f), orig(f));
    void a.ping(ip('10.0.0.2'), 7);
    clock.runUntil(() => false, 100);
    const ipFrames = frames.map((f) => parseEthernet(f)).filter((e) => e.ok && e.value.etherType === 0x0800);
    expect(ipFrames.length).toBeGreaterThan(0);
    for (const e of ipFrames) if (e.ok) expect(parseIpv4(e.value.payload).ok).toBe(true);
    void pb;
  });

  it('ICMP "fragmentation needed" reaches TCP with the next-hop MTU (RFC 1191): the connection sends 1240-byte segments', () => {
    const { clock, a, b, pb } = pair();
    b.tcp.listen(7000, () => {});
    const c = a.tcp.connect(ip('10.0.0.2'), 7000);
    clock.runUntil(() => c.state === 'ESTABLISHED', 1000);
    // B goes deaf: what A sends now stays in flight, and we see it.
    const captured: Uint8Array[] = [];
    pb.setReceiver((f) => void captured.push(f.slice()));
    c.write(new Uint8Array(20_000));
    clock.advance(1);
    const first = captured.map((f) => parseEthernet(f)).find((e) => e.ok && e.value.etherType === 0x0800 && e.value.payload.length > 1000);
    expect(first).toBeDefined();
    const ipPacket = first!.ok ? first!.value.payload : new Uint8Array(0);
    // A router's answer: its IP header quoting A's header and the first 8 bytes of TCP.
    const icmp = emitIcmp({ type: ICMP_DEST_UNREACH, code: ICMP_UNREACH_NEEDFRAG, rest: 1280, body: ipPacket.slice(0, 28) });
    const frame = new Uint8Array(14 + 20 + icmp.length);
    emitEthernetHeader(frame, new Uint8Array([2, 0, 0, 0, 0, 1]), new Uint8Array([2, 0, 0, 0, 0, 2]), 0x0800);
    emitIpv4Header(frame, 14, { id: 1, ttl: 64, protocol: 1, src: ip('10.0.0.2'), dst: ip('10.0.0.1'), payloadLength: icmp.length });
    frame.set(icmp, 34);
    captured.length = 0;
    pb.send(frame);
    clock.advance(1);
    expect(a.tcp.stats.pmtuUpdates).toBe(1);
    expect(c.info().sendMss).toBe(1240 - 12);
    const resent = captured.map((f) => parseIpv4(f.subarray(14))).filter((p) => p.ok && p.value.protocol === 6);
    expect(resent.length).toBeGreaterThan(0);
    for (const p of resent) if (p.ok) expect(p.value.packet.length).toBeLessThanOrEqual(1280);
  });
});
