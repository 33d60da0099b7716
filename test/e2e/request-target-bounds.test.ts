/**
 * No request may cost more than linear time in its size before it is
 * authenticated (issue 9, item 2): paths beyond the bounds are refused before
 * routing with 414, and everything within them is routed by a linear router.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MAX_PATH_BYTES, MAX_PATH_SEGMENTS } from '../../src/http/app.js';
import { Client } from '../helpers/http.js';
import { auditCount as countAuditEvents } from '../helpers/audit-rows.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let api: Client;
let admin: string;

const auditCount = () => countAuditEvents(server.server.vault.services.store);

/** Route prefixes an unauthenticated or authenticated caller can aim at, each taking the rest of the path. */
const PREFIXES = (acct: string) => [
  { method: 'POST', prefix: `/authn/${acct}/`, suffix: '/authenticate' },
  { method: 'POST', prefix: `/authn-jwt/jenkins/${acct}/`, suffix: '/authenticate' },
  { method: 'GET', prefix: `/secrets/${acct}/variable/`, suffix: '' },
  { method: 'GET', prefix: `/resources/${acct}/variable/`, suffix: '' },
  { method: 'GET', prefix: `/roles/${acct}/host/`, suffix: '' },
  { method: 'PUT', prefix: `/policies/${acct}/policy/`, suffix: '' },
  { method: 'GET', prefix: '/no/such/route/', suffix: '' },
];

/** The path's segment count as the bound counts it (one per '/'). */
const segmentsOf = (path: string) => path.split('/').length - 1;

beforeAll(async () => {
  server = await startTestServer();
  api = new Client(server.url, server.account);
  admin = await api.login('admin', server.adminKey);
});
afterAll(() => server.close());

describe('request path bounds', () => {
  it('the probe’s example: 7,000 `a/` segments under /authn and /authn-jwt are refused with 414 before any authentication', async () => {
    const before = (await auditCount());
    for (const base of [`/authn/${api.account}/`, `/authn-jwt/jenkins/${api.account}/`]) {
      const r = await api.request('POST', `${base}${'a/'.repeat(7000)}authenticate`, { body: 'key', skipContract: true });
      expect(r.status).toBe(414);
      expect(r.json).toEqual({ error: { code: 'uri_too_long', message: `The request path is longer than ${MAX_PATH_BYTES} bytes` } });
      expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect((await auditCount())).toBe(before);
  });

  it('a path one byte over 12,800 bytes is refused with 414 naming the byte bound; one at the bound is routed', async () => {
    const base = `/secrets/${api.account}/variable/`;
    const r = await api.request('GET', `${base}${'%41'.repeat(Math.ceil((MAX_PATH_BYTES + 1 - base.length) / 3))}`, { token: admin, skipContract: true });
    expect(r.status).toBe(414);
    expect(r.json.error.message).toBe(`The request path is longer than ${MAX_PATH_BYTES} bytes`);
    const at = `${base}${'x'.repeat(MAX_PATH_BYTES - base.length)}`;
    expect(at.length).toBe(MAX_PATH_BYTES);
    const routed = await api.request('GET', at, { token: admin, skipContract: true });
    expect(routed.status).toBe(422); // routed: longer than an id may be
    expect(routed.json.error.code).toBe('argument_error');
  });

  it('exactly at the segment bound a path is routed; one segment more is refused, naming the segment bound', async () => {
    const at = `/authn/${api.account}/${'a/'.repeat(MAX_PATH_SEGMENTS - 3)}authenticate`;
    expect(segmentsOf(at)).toBe(MAX_PATH_SEGMENTS);
    const routed = await api.request('POST', at, { body: 'not-a-key', skipContract: true });
    expect(routed.status).toBe(422); // routed: the login is longer than an id may be
    expect(routed.json.error.code).toBe('argument_error');
    const over = await api.request('POST', `/authn/${api.account}/${'a/'.repeat(MAX_PATH_SEGMENTS - 2)}authenticate`, { body: 'x', skipContract: true });
    expect(over.status).toBe(414);
    expect(over.json.error.message).toBe(`The request path is longer than ${MAX_PATH_SEGMENTS} segments`);
  });

  it('the longest id a policy may declare (4,096 characters, 2,048 segments) stays addressable with raw slashes', async () => {
    const id = Array.from({ length: 2048 }, (_, i) => (i % 2 ? 'b' : 'a')).join('/') + 'c';
    expect(id.length).toBe(4096);
    const loaded = await api.loadPolicy(admin, 'POST', 'root', `- !variable\n  id: ${id}\n`);
    expect(loaded.status, server.logs.join('\n')).toBe(201);
    const set = await api.request('POST', `/secrets/${api.account}/variable/${id}`, { token: admin, body: 'deep-value' });
    expect(set.status).toBe(201);
    const got = await api.request('GET', `/secrets/${api.account}/variable/${id}`, { token: admin });
    expect(got.status).toBe(200);
    expect(got.text).toBe('deep-value');
  });

  it('any path shape on any route: never a 500; refused with 414 exactly when over a bound, and then without an audit event', async () => {
    // encodeURI turns ' ' into %20, 'é' into %C3%A9 and '%' into %25: the bound counts the bytes sent.
    const routes = PREFIXES(api.account);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        fc.integer({ min: 0, max: 7000 }),
        // No '.' or '..' segments: fetch resolves them before sending.
        fc.constantFrom('a', '', '%2F', 'ab c', '.x', '\u00e9', '%'),
        async (route, count, seg) => {
          const path = `${route.prefix}${Array.from({ length: count }, () => encodeURI(seg)).join('/')}${route.suffix || '/x'}`;
          const over = Buffer.byteLength(path) > MAX_PATH_BYTES || segmentsOf(path) > MAX_PATH_SEGMENTS;
          const before = (await auditCount());
          const r = await api.request(route.method, path, { token: route.prefix.startsWith('/authn') ? undefined : admin, body: route.method === 'GET' ? undefined : 'x', skipContract: true });
          expect(r.status).not.toBe(500);
          if (over) {
            // Past 16 KiB of request line and headers (the token header adds up to ~1 KB) Node's HTTP parser
            // answers 431 before the server sees the request; below 15,000 bytes of path it never does.
            if (Buffer.byteLength(path) > 15_000) expect([414, 431]).toContain(r.status);
            else expect(r.status).toBe(414);
            expect((await auditCount())).toBe(before);
          } else expect(r.status).not.toBe(414);
        },
      ),
      { numRuns: 60 },
    );
  });
});
