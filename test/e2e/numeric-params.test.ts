/**
 * End to end: every numeric query parameter of every route (listing
 * limit/offset, secret version, audit cursor/limit, effective-policy
 * depth/limit, host-factory token count) answers a value that is not a whole
 * number in range — past Number.MAX_SAFE_INTEGER, negative, fractional,
 * exponent, hex, signed, padded, non-ASCII digits — with its documented 4xx
 * and a message naming the parameter, never 500, and a refused request
 * writes nothing (no audit event, no token). In-range values still work.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

let srv: TestServer;
let api: Client;
let admin: string;
const A = () => srv.account;

/** Digit strings a JavaScript number cannot hold exactly (the issue's example is 99999999999999999999). */
const unsafeDigits = fc.bigInt({ min: 2n ** 53n, max: 10n ** 40n }).map(String);
/** Text that is not a plain run of ASCII digits. */
const notDigits = fc.oneof(
  fc.integer({ min: -1_000_000, max: -1 }).map(String),
  fc.double({ noNaN: false }).map(String).filter((s) => !/^\d+$/.test(s)),
  fc.constantFrom('', ' 1', '1 ', '+1', '1e3', '1E400', '0x10', '0b1', '1_000', '1.0', '1,5', 'NaN', 'Infinity', '-0', '١', '０', '1\u0000', '%'),
  fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !/^\d+$/.test(s)),
);
const bad = fc.oneof(unsafeDigits, notDigits);

interface Param {
  name: string;
  route: string;
  request: (value: string) => Promise<{ status: number; json: any; text: string }>;
  /** The status and message fragment a bad value must get. */
  expected: (value: string) => { status: number; code: string; message: RegExp };
}

const q = encodeURIComponent;
const get = (path: string) => api.request('GET', path, { token: admin });
const unprocessableFor = (name: string) => () => ({ status: 422, code: 'unprocessable_entity', message: new RegExp(`'${name}'`) });
/** Conjur documents the effective policy's depth/limit: not a number → 400, too big → 422 (reference §1.7). */
const effectivePolicy = (name: string) => (value: string) =>
  /^\d+$/.test(value)
    ? { status: 422, code: 'unprocessable_entity', message: new RegExp(`'${name}' may be at most`) }
    : { status: 400, code: 'bad_request', message: new RegExp(`'${name}' must be a non-negative integer`) };

const FUTURE = '2050-12-31T00:00:00Z';
const params: Param[] = [
  { name: 'offset', route: 'GET /resources/{account}', request: (v) => get(`/resources/${A()}?offset=${q(v)}`), expected: unprocessableFor('offset') },
  { name: 'limit', route: 'GET /resources/{account}', request: (v) => get(`/resources/${A()}?limit=${q(v)}`), expected: unprocessableFor('limit') },
  { name: 'offset', route: 'GET /resources/{account}/{kind}', request: (v) => get(`/resources/${A()}/variable?limit=5&offset=${q(v)}`), expected: unprocessableFor('offset') },
  { name: 'offset', route: 'GET /roles/…?members', request: (v) => get(`/roles/${A()}/group/g?members&offset=${q(v)}`), expected: unprocessableFor('offset') },
  { name: 'limit', route: 'GET /roles/…?memberships', request: (v) => get(`/roles/${A()}/user/alice?memberships&limit=${q(v)}`), expected: unprocessableFor('limit') },
  { name: 'version', route: 'GET /secrets/…', request: (v) => get(`/secrets/${A()}/variable/db%2Fpassword?version=${q(v)}`), expected: unprocessableFor('version') },
  { name: 'cursor', route: 'GET /audit/{account}', request: (v) => get(`/audit/${A()}?cursor=${q(v)}`), expected: unprocessableFor('cursor') },
  { name: 'limit', route: 'GET /audit/{account}', request: (v) => get(`/audit/${A()}?limit=${q(v)}`), expected: unprocessableFor('limit') },
  { name: 'depth', route: 'GET /policies/… (effective policy)', request: (v) => get(`/policies/${A()}/policy/root?depth=${q(v)}`), expected: effectivePolicy('depth') },
  { name: 'limit', route: 'GET /policies/… (effective policy)', request: (v) => get(`/policies/${A()}/policy/root?limit=${q(v)}`), expected: effectivePolicy('limit') },
  {
    name: 'count',
    route: 'POST /host_factory_tokens',
    request: (v) =>
      api.request('POST', '/host_factory_tokens', {
        token: admin,
        body: `host_factory=${q(`${A()}:host_factory:hf`)}&expiration=${FUTURE}&count=${q(v)}`,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      }),
    expected: unprocessableFor('count'),
  },
];

/** Conjur reads `count` leniently: blank means 1 and surrounding blanks are ignored. */
const countAccepted = (v: string) => v.trim() === '' || (/^\d+$/.test(v.trim()) && Number(v.trim()) >= 1 && Number(v.trim()) <= 100);

async function auditCount(): Promise<number> {
  const r = await api.request('GET', `/audit/${A()}?limit=1`, { token: admin });
  expect(r.status).toBe(200);
  return r.json.events[0]?.seq ?? 0;
}

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const r = await api.loadPolicy(admin, 'POST', 'root', `
- !user alice
- !group g
- !grant { role: !group g, member: !user alice }
- !variable db/password
- !layer l
- !host-factory { id: hf, layers: [ !layer l ] }
`);
  expect(r.status, r.text).toBe(201);
  expect((await api.setSecret(admin, 'db/password', 's3cret')).status).toBe(201);
});

afterAll(async () => {
  await srv.close();
});

describe('numeric query parameters', () => {
  it("GET /resources/{account}?offset=99999999999999999999 is a 422 in Conjur's words, not a 500", async () => {
    const r = await get(`/resources/${A()}?offset=99999999999999999999`);
    expect(r.status, r.text).toBe(422);
    expect(r.json.error.code).toBe('unprocessable_entity');
    expect(r.json.error.message).toMatch(/^'offset' contains an invalid value\. 'offset' must be an integer greater than or equal to 0/);
  });

  for (const p of params) {
    it(`${p.name} on ${p.route}: a value that is not a whole number in range gets its 4xx naming '${p.name}', never 500, and writes nothing`, async () => {
      const before = await auditCount();
      await fc.assert(
        fc.asyncProperty(bad.filter((v) => !(p.name === 'count' && countAccepted(v))), async (value) => {
          const r = await p.request(value);
          const want = p.expected(value);
          expect(r.status, `${JSON.stringify(value)} → ${r.status} ${r.text}`).toBe(want.status);
          expect(r.json.error.code).toBe(want.code);
          expect(r.json.error.message).toMatch(want.message);
        }),
        { numRuns: 60 },
      );
      // Refused requests are refused before anything is recorded or created (the
      // host-factory refusal is itself audited as a failure, which is allowed: no token).
      const after = await auditCount();
      if (p.name === 'count') {
        const failures = await api.request('GET', `/audit/${A()}?action=host-factory&result=success&limit=1000`, { token: admin });
        expect(failures.json.events).toEqual([]);
      } else {
        expect(after).toBe(before);
      }
    });
  }

  it('in-range values are still served: any safe offset and cursor, versions past the newest are 404', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), async (n) => {
        const list = await get(`/resources/${A()}?offset=${n}`);
        expect(list.status, list.text).toBe(200);
        expect(Array.isArray(list.json)).toBe(true);
        const audit = await get(`/audit/${A()}?cursor=${n}&limit=1`);
        expect(audit.status, audit.text).toBe(200);
        const v = await get(`/secrets/${A()}/variable/db%2Fpassword?version=${n}`);
        if (n === 1) expect(v.text).toBe('s3cret');
        else expect(v.status, v.text).toBe(404);
      }),
      { numRuns: 40 },
    );
    const edge = await get(`/resources/${A()}?offset=${Number.MAX_SAFE_INTEGER}`);
    expect(edge.status).toBe(200);
    expect(edge.json).toEqual([]);
  });
});
