/**
 * End to end over raw TCP: the server bounds slow and idle clients and the
 * number of open connections (issue 9, item 5), with the limits configured
 * short for the test:
 *  - headers that trickle past the header timeout: 408, connection cut;
 *  - a connection that sends nothing: cut;
 *  - a request body that stalls past the body idle timeout: cut, nothing stored;
 *  - a slow but steady upload, longer in total than both timeouts: stored;
 *  - an idle keep-alive connection: closed after the keep-alive timeout;
 *  - beyond the connection cap, a new connection is closed unanswered while
 *    the open ones keep working, and a freed slot can be used again.
 * A client that is never cut fails by the test's own timeout; no duration is asserted.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { connect, type Socket } from 'node:net';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client, tokenHeader } from '../helpers/http.js';

interface Raw {
  socket: Socket;
  received: () => string;
  closed: Promise<void>;
  isClosed: () => boolean;
}

function raw(port: number): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = '';
    let closed = false;
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('error', () => {}); // a reset is one way of being cut
    const closedP = new Promise<void>((r) => socket.once('close', () => ((closed = true), r())));
    socket.once('connect', () => resolve({ socket, received: () => data, closed: closedP, isClosed: () => closed }));
    socket.once('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes `pieces` one at a time, `gapMs` apart, until they are all sent or the socket is closed; returns how many were sent. */
async function trickle(r: Raw, pieces: Iterable<string>, gapMs: number): Promise<number> {
  let sent = 0;
  for (const piece of pieces) {
    if (r.isClosed() || r.socket.destroyed) break;
    r.socket.write(piece);
    sent++;
    await sleep(gapMs);
  }
  return sent;
}

function* forever(piece: (i: number) => string): Generator<string> {
  for (let i = 0; ; i++) yield piece(i);
}

describe('slow clients', () => {
  let srv: TestServer;
  let api: Client;
  let admin: string;
  let port: number;

  beforeAll(async () => {
    srv = await startTestServer({
      env: {
        COFFER_HEADERS_TIMEOUT_MS: '1000',
        COFFER_BODY_IDLE_TIMEOUT_MS: '1500',
        COFFER_REQUEST_TIMEOUT_MS: '60000',
        COFFER_KEEP_ALIVE_TIMEOUT_MS: '500',
      },
    });
    api = new Client(srv.url, srv.account);
    admin = await api.login('admin', srv.adminKey);
    port = srv.server.port;
    expect((await api.loadPolicy(admin, 'POST', 'root', '- !variable v\n')).status).toBe(201);
    expect((await api.setSecret(admin, 'v', 'before')).status).toBe(201);
  });
  afterAll(() => srv.close());

  const versions = async () =>
    (await api.request('GET', `/resources/${srv.account}/variable/v`, { token: admin })).json.secrets.map((s: { version: number }) => s.version);

  it('headers trickling past the header timeout get 408 and the connection is cut', async () => {
    const r = await raw(port);
    r.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n');
    const sent = await trickle(r, forever((i) => `X-Slow-${i}: y\r\n`), 100);
    await r.closed;
    expect(sent).toBeGreaterThan(1);
    expect(r.received()).toMatch(/^HTTP\/1\.1 408 /);
  }, 20_000);

  it('a connection that never sends a byte is cut', async () => {
    const r = await raw(port);
    await r.closed;
    expect(r.received()).not.toMatch(/^HTTP\/1\.1 2/);
  }, 20_000);

  it('a request body that stalls past the body idle timeout is cut, and nothing is stored', async () => {
    const before = await versions();
    const r = await raw(port);
    const body = 'stalled-value-'.padEnd(1000, 'x');
    r.socket.write(
      `POST /secrets/${srv.account}/variable/v HTTP/1.1\r\nHost: x\r\nAuthorization: ${tokenHeader(admin)}\r\n` +
        `Content-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 100)}`,
    );
    await r.closed;
    expect(r.received()).not.toMatch(/^HTTP\/1\.1 2/);
    expect(await versions()).toEqual(before);
    expect((await api.getSecret(admin, 'v')).text).toBe('before');
  }, 20_000);

  it('a slow but steady upload, longer in total than the header and body idle timeouts, is stored', async () => {
    const value = Array.from({ length: 30 }, (_, i) => `piece-${String(i).padStart(2, '0')};`).join('');
    const r = await raw(port);
    r.socket.write(
      `POST /secrets/${srv.account}/variable/v HTTP/1.1\r\nHost: x\r\nAuthorization: ${tokenHeader(admin)}\r\n` +
        `Content-Type: application/octet-stream\r\nContent-Length: ${value.length}\r\nConnection: close\r\n\r\n`,
    );
    const pieces = value.match(/.{1,9}/g)!;
    // 30+ pieces 100 ms apart: over 3 s in all, never silent for the 1.5 s body idle timeout.
    expect(await trickle(r, pieces, 100)).toBe(pieces.length);
    await r.closed;
    expect(r.received()).toMatch(/^HTTP\/1\.1 201 /);
    expect((await api.getSecret(admin, 'v')).text).toBe(value);
  }, 30_000);

  it('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
    const r = await raw(port);
    r.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await r.closed;
    expect(r.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(r.received()).toMatch(/keep-alive/i);
  }, 20_000);

  it('an idle keep-alive connection whose request had a body is closed after the keep-alive timeout too', async () => {
    // The body idle timer must hand the socket back to Node's keep-alive timeout, not switch timeouts off:
    // otherwise anyone could hold connections open with one small POST each, up to the connection cap.
    const r = await raw(port);
    r.socket.write(`POST /authn/${srv.account}/nobody/authenticate HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx`);
    await r.closed;
    expect(r.received()).toMatch(/^HTTP\/1\.1 401 /);
  }, 20_000);
});

describe('body idle timeout and slow answers', () => {
  it('a request the server is slow to answer is not cut by the body idle timeout once its body is in', async () => {
    // A body idle timeout of 200 ms, and a policy load of 3,000 variables (seconds of work here): the body
    // arrives at once, then the socket is silent, far longer than 200 ms, while the server works.
    const quick = await startTestServer({ env: { COFFER_BODY_IDLE_TIMEOUT_MS: '200' } });
    const adminToken = await new Client(quick.url, quick.account).login('admin', quick.adminKey);
    const policy = Array.from({ length: 3000 }, (_, i) => `- !variable slow/v${i}\n`).join('');
    const r = await raw(quick.server.port);
    r.socket.write(
      `POST /policies/${quick.account}/policy/root HTTP/1.1\r\nHost: x\r\nAuthorization: ${tokenHeader(adminToken)}\r\n` +
        `Content-Length: ${Buffer.byteLength(policy)}\r\nConnection: close\r\n\r\n${policy}`,
    );
    await r.closed;
    await quick.close();
    expect(r.received()).toMatch(/^HTTP\/1\.1 201 /);
  }, 60_000);

});

describe('connection cap', () => {
  let srv: TestServer;
  const CAP = 5;

  beforeAll(async () => {
    srv = await startTestServer({ env: { COFFER_MAX_CONNECTIONS: String(CAP) } });
  });
  afterAll(() => srv.close());

  const get = (r: Raw) =>
    new Promise<string>((resolve) => {
      const start = r.received().length;
      const check = () => {
        const got = r.received().slice(start);
        if (/\r\n\r\n/.test(got) && /"status"/.test(got)) {
          r.socket.off('data', check);
          resolve(got);
        }
      };
      r.socket.on('data', check);
      r.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    });

  it(`connection ${CAP + 1} is closed unanswered while the ${CAP} open ones keep working; a freed slot is usable again`, async () => {
    const open: Raw[] = [];
    for (let i = 0; i < CAP; i++) open.push(await raw(srv.server.port));
    // Each open connection is served (so the server has taken all of them).
    for (const r of open) expect(await get(r)).toMatch(/^HTTP\/1\.1 200 /);

    const extra = await raw(srv.server.port);
    extra.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await extra.closed;
    expect(extra.received()).toBe('');

    for (const r of open) expect(await get(r)).toMatch(/^HTTP\/1\.1 200 /);

    open[0]!.socket.destroy();
    await open[0]!.closed;
    // The server counts the slot free once it has seen the close; a new connection is then served.
    let served = '';
    for (let attempt = 0; attempt < 50 && served === ''; attempt++) {
      const again = await raw(srv.server.port);
      again.socket.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await again.closed;
      served = again.received();
      if (served === '') await sleep(20);
    }
    expect(served).toMatch(/^HTTP\/1\.1 200 /);
    for (const r of open.slice(1)) r.socket.destroy();
  }, 30_000);
});
