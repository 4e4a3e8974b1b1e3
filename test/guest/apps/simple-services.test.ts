import { describe, expect, it } from 'vitest';
import { chargenLine, chargenService, discardService, echoService } from '../../../src/guest/apps/simple-services.js';
import { SlowConn } from './conn-double.js';

describe('echo, discard, chargen', () => {
  it('echo returns every byte, holding back what a slow peer cannot take, and closes after the peer does', () => {
    const c = new SlowConn(5);
    echoService(c);
    c.onData(new TextEncoder().encode('hello world'));
    expect(c.text()).toBe('hello');
    c.onEnd();
    expect(c.ended).toBe(false);
    c.drain();
    c.drain();
    expect(c.text()).toBe('hello world');
    expect(c.ended).toBe(true);
  });

  it('discard counts and drops', () => {
    const counters = { bytes: 0, connections: 0 };
    const c = new SlowConn();
    discardService(counters)(c);
    c.onData(new Uint8Array(1234));
    expect(counters).toEqual({ bytes: 1234, connections: 1 });
    expect(c.sent).toEqual([]);
  });

  it('chargen sends RFC 864 lines only when there is room', () => {
    expect(new TextDecoder().decode(chargenLine(0)).slice(0, 10)).toBe(' !"#$%&\'()');
    const c = new SlowConn(100);
    chargenService(c);
    expect(c.bytes().length).toBe(100);
    c.drain();
    expect(c.bytes().length).toBe(200);
    expect(c.bytes().subarray(74, 75)[0]).toBe(chargenLine(1)[0]);
  });
});
