/**
 * X-Request-Id from the client is echoed and audited only when it is sane
 * (1–128 of `A-Za-z0-9._:@/+=-`); anything else is replaced by a generated id.
 * Sent over a raw socket, since fetch refuses CR, LF and non-Latin-1 text in
 * header values. Every request is an authentication, so each one is audited.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { connect } from 'node:net';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { allAuditRows } from '../helpers/audit-rows.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let srv: TestServer;

beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(() => srv?.close());

interface RawReply {
  status: number;
  /** The response head exactly as received (latin1), without the blank line. */
  head: string;
  headers: [string, string][];
  body: string;
}

/** Sends one request whose X-Request-Id header value is `rawId`, byte for byte (latin1), and reads the whole reply. */
function authenticateWithId(rawId: string | Buffer, extraHeaders = ''): Promise<RawReply> {
  const body = Buffer.from(srv.adminKey);
  const head = Buffer.concat([
    Buffer.from(`POST /authn/${srv.account}/admin/authenticate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: `, 'latin1'),
    typeof rawId === 'string' ? Buffer.from(rawId, 'latin1') : rawId,
    Buffer.from(`\r\n${extraHeaders}Content-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`, 'latin1'),
  ]);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    // write, not end: the server closes after its answer (Connection: close); a half-close could cut a slower answer short.
    const socket = connect(srv.server.port, '127.0.0.1', () => socket.write(Buffer.concat([head, body])));
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const headText = end < 0 ? text : text.slice(0, end);
      const [statusLine, ...lines] = headText.split('\r\n');
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine ?? '')?.[1] ?? 0),
        head: headText,
        headers: lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
        body: end < 0 ? '' : text.slice(end + 4),
      });
    });
  });
}

const headerValues = (r: RawReply, name: string) => r.headers.filter(([k]) => k === name).map(([, v]) => v);

/** Audit rows by request id, read through the store (either backend). */
async function auditRowsWithRequestId(id: string): Promise<{ action: string; result: string }[]> {
  return (await allAuditRows(srv.server.vault.services.store)).filter((r) => r.request_id === id).map((r) => ({ action: r.action, result: r.result }));
}

async function auditRowsWithRequestIdLike(fragment: string): Promise<number> {
  return (await allAuditRows(srv.server.vault.services.store)).filter((r) => (r.request_id ?? '').includes(fragment)).length;
}

/** Every header line of the response head is printable ASCII `name: value`, with no stray CR or LF. */
function expectCleanHead(r: RawReply): void {
  for (const line of r.head.split('\r\n').slice(1)) expect(line).toMatch(/^[!-9;-~]+: ?[ -~]*$/);
  expect(r.head).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
}

/** The id was ignored: one generated UUID in the response, the authentication audited under it, the bad id nowhere. */
async function expectGeneratedId(r: RawReply, marker: string): Promise<void> {
  expect(r.status).toBe(200);
  expectCleanHead(r);
  const ids = headerValues(r, 'x-request-id');
  expect(ids).toHaveLength(1);
  expect(ids[0]).toMatch(UUID);
  expect(r.head).not.toContain(marker);
  expect(await auditRowsWithRequestId(ids[0]!)).toEqual([{ action: 'authn', result: 'success' }]);
  expect(await auditRowsWithRequestIdLike(marker)).toBe(0);
}

describe('X-Request-Id from the client', () => {
  it('a sane id of exactly 128 characters is echoed and audited as sent', async () => {
    const id = `ok128-${'a'.repeat(122)}`;
    expect(id).toHaveLength(128);
    const r = await authenticateWithId(id);
    expect(r.status).toBe(200);
    expectCleanHead(r);
    expect(headerValues(r, 'x-request-id')).toEqual([id]);
    expect(await auditRowsWithRequestId(id)).toEqual([{ action: 'authn', result: 'success' }]);
  });

  it('a 129-character id is ignored: a generated id is answered and audited', async () => {
    const id = `bad129-${'a'.repeat(122)}`;
    expect(id).toHaveLength(129);
    await expectGeneratedId(await authenticateWithId(id), 'bad129-');
  });

  it('a 10 KB id is ignored: a generated id is answered and audited', async () => {
    const id = `bad10k-${'b'.repeat(10 * 1024 - 7)}`;
    expect(id).toHaveLength(10 * 1024);
    await expectGeneratedId(await authenticateWithId(id), 'bad10k-');
  });

  it('non-ASCII ids (Latin-1 bytes and UTF-8 bytes) are ignored: a generated id is answered and audited', async () => {
    await expectGeneratedId(await authenticateWithId('badlatin-caf\xe9'), 'badlatin-');
    await expectGeneratedId(await authenticateWithId(Buffer.from('badutf8-✓-ü', 'utf8')), 'badutf8-');
  });

  it('ids with a tab, a space, a quote or a comma are ignored: a generated id is answered and audited', async () => {
    await expectGeneratedId(await authenticateWithId('badtab-a\tb'), 'badtab-');
    await expectGeneratedId(await authenticateWithId('badspace-a b'), 'badspace-');
    await expectGeneratedId(await authenticateWithId('badquote-a"b'), 'badquote-');
    await expectGeneratedId(await authenticateWithId('badcomma-a,b'), 'badcomma-');
  });

  it('two X-Request-Id headers (joined with ", " by the parser) are ignored: a generated id is answered and audited', async () => {
    await expectGeneratedId(await authenticateWithId('baddup-1', 'X-Request-Id: baddup-2\r\n'), 'baddup-');
  });

  it('a bare CR, a bare LF, a folded line, NUL and other control characters: the HTTP parser refuses the request (400) before it is handled or audited', async () => {
    const cases = { cr: 'badcr-a\rb', lf: 'badlf-a\nb', fold: 'badfold-a\r\n b', nul: 'badnul-a\x00b', soh: 'badsoh-a\x01b', esc: 'badesc-a\x1bb', del: 'baddel-a\x7fb' };
    for (const [name, id] of Object.entries(cases)) {
      const marker = id.slice(0, id.indexOf('-') + 1);
      const r = await authenticateWithId(id);
      expect(r.status, name).toBe(400);
      expectCleanHead(r);
      expect(headerValues(r, 'x-request-id'), name).toEqual([]);
      expect(r.head, name).not.toContain(marker);
      expect(r.body, name).not.toContain(marker);
      expect(await auditRowsWithRequestIdLike(marker), name).toBe(0);
    }
  });

  it('CR LF inside the id ends the header: what follows is a separate request header, never reflected into the response', async () => {
    const r = await authenticateWithId('crlf-split\r\nX-Injected: yes\r\nSet-Cookie: injected=1');
    expect(r.status).toBe(200);
    expectCleanHead(r);
    expect(headerValues(r, 'x-request-id')).toEqual(['crlf-split']);
    expect(headerValues(r, 'x-injected')).toEqual([]);
    expect(headerValues(r, 'set-cookie')).toEqual([]);
    expect(r.head.toLowerCase()).not.toContain('injected');
    expect(await auditRowsWithRequestId('crlf-split')).toEqual([{ action: 'authn', result: 'success' }]);
    expect(await auditRowsWithRequestIdLike('Injected')).toBe(0);
  });
});
