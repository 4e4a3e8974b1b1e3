import { describe, expect, it } from 'vitest';
import { httpService, parseRequestHead, patternBlock } from '../../../src/guest/apps/http.js';
import { SlowConn } from './conn-double.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const status = { statusText: () => 'eth0 10.0.2.15/24\n' };

describe('guest httpd', () => {
  it('parses a request head and waits for the rest of an incomplete one', () => {
    expect(parseRequestHead(enc('GET / HTTP/1.1\r\nHost: x\r\n'))).toEqual({ kind: 'need-more' });
    const r = parseRequestHead(enc('GET /bytes/10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET'));
    expect(r.kind).toBe('request');
    if (r.kind !== 'request') return;
    expect(r.request.target).toBe('/bytes/10');
    expect(r.request.headers.get('connection')).toBe('close');
    expect(r.consumed).toBe(enc('GET /bytes/10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n').length);
    expect(parseRequestHead(enc('BLAH\r\n\r\n'))).toMatchObject({ kind: 'error', status: 400 });
  });

  it('answers / with the status page and 200, as curl sees it', () => {
    const c = new SlowConn();
    httpService(status)(c);
    c.onData(enc('GET / HTTP/1.1\r\nHost: 172.22.0.2\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n'));
    expect(c.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(c.text()).toContain('Content-Length: 18\r\n');
    expect(c.text().endsWith('eth0 10.0.2.15/24\n')).toBe(true);
    expect(c.ended).toBe(false); // keep-alive
    c.onEnd();
    expect(c.ended).toBe(true);
  });

  it('streams /bytes/N at the pace of a slow peer, exactly N bytes of the pattern, then closes', () => {
    const c = new SlowConn(1000);
    httpService(status)(c);
    c.onData(enc('GET /bytes/200000 HTTP/1.1\r\nConnection: close\r\n\r\n'));
    for (let i = 0; i < 1000 && !c.ended; i++) c.drain();
    const all = c.bytes();
    const bodyStart = all.indexOf('\r\n\r\n') + 4;
    const body = all.subarray(bodyStart);
    expect(body.length).toBe(200000);
    const block = patternBlock(65536);
    for (let p = 0; p < body.length; p += 997) expect(body[p]).toBe(block[p % 65536]);
    expect(c.ended).toBe(true);
  });

  it('serves pipelined requests in order on one connection', () => {
    const c = new SlowConn();
    httpService(status)(c);
    c.onData(enc('GET /bytes/3 HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n'));
    const t = c.text();
    expect(t.indexOf('200 OK')).toBeLessThan(t.indexOf('404 Not Found'));
  });

  it('refuses other methods with 405 and an Allow header', () => {
    const c = new SlowConn();
    httpService(status)(c);
    c.onData(enc('POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n'));
    expect(c.text()).toMatch(/^HTTP\/1\.1 405 Method Not Allowed/);
    expect(c.text()).toContain('Allow: GET, HEAD');
  });
});

describe('httpd closes after a short /bytes/N with Connection: close', () => {
  it('ends the connection once the whole (small) body is written', async () => {
    const { httpService } = await import('../../../src/guest/apps/http.js');
    const { SlowConn } = await import('./conn-double.js');
    const c = new SlowConn();
    httpService({ statusText: () => 'ok' })(c);
    c.onData(new TextEncoder().encode('GET /bytes/16 HTTP/1.1\r\nConnection: close\r\n\r\n'));
    expect(c.ended).toBe(true);
    const body = Buffer.concat(c.sent);
    expect(body.subarray(body.length - 16).equals(Buffer.from([...Array(16).keys()]))).toBe(true);
  });
});
