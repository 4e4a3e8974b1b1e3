/** Urgent data (RFC 9293 §3.8.5, MUST-30/31/62, with RFC 6093's pointer semantics). */
import { describe, expect, it } from 'vitest';
import { TH_URG } from '../../../net/wire/tcp.js';
import { establish, randomBytes, Sink, TestNet } from './harness.js';

describe('urgent data', () => {
  it('an application sends urgent data; the peer learns where it ends and reads it in line', () => {
    const net = new TestNet({ path: { delayMs: 5 } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    const marks: number[] = [];
    server.onUrgent = (end) => marks.push(end);
    client.write(new TextEncoder().encode('hello '));
    expect(client.writeUrgent(new TextEncoder().encode('!'))).toBe(1);
    net.run(() => sink.received === 7, 5000, 'delivery');
    expect(marks).toEqual([7]); // the urgent byte is the 7th: it ends before offset 7
    const urg = net.trace.filter((e) => e.from === 'a' && e.seg.flags & TH_URG);
    expect(urg.length).toBeGreaterThan(0);
    const s = urg[0]!.seg;
    expect((s.seq + s.urgent) >>> 0).toBe((client.info().iss + 1 + 7) >>> 0); // points past the '!'
    // Once acknowledged, segments no longer carry URG.
    net.trace.length = 0;
    client.write(new Uint8Array(10));
    net.run(() => sink.received === 17, 5000, 'more data');
    expect(net.trace.filter((e) => e.from === 'a' && e.seg.flags & TH_URG)).toHaveLength(0);
  });

  it('a pointer more than 64 KiB ahead is sent as 0xFFFF and the peer is told again when it catches up', () => {
    const net = new TestNet({ path: { delayMs: 5 }, tcp: { sendBufferSize: 512 * 1024, recvBufferSize: 512 * 1024 } });
    const { client, server } = establish(net);
    const sink = new Sink(server);
    const marks: number[] = [];
    server.onUrgent = (end) => marks.push(end);
    const size = 200_000;
    expect(client.writeUrgent(randomBytes(size, 9))).toBe(size);
    net.run(() => sink.received === size, 10_000, 'delivery');
    expect(marks.length).toBeGreaterThanOrEqual(1);
    expect(marks.at(-1)).toBe(size); // the last notice names the true end
    for (let i = 1; i < marks.length; i++) expect(marks[i]!).toBeGreaterThan(marks[i - 1]!);
    expect(net.trace.some((e) => e.from === 'a' && e.seg.urgent === 0xffff)).toBe(true);
  });
});
