/**
 * End to end (issue 9 item 4, item 5's `!!set`, issue 13's parser crash):
 * hostile policy bodies under the 10 MiB body limit are refused with 422
 * naming the limit (and where it was crossed) before any YAML is built, and
 * nothing of the load is stored; a large legitimate policy is parsed in the
 * worker thread while the server keeps answering; a parse that exhausts the
 * worker's heap is a 413, and the server (and the next load) carry on.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { DEFAULT_PARSE_POOL_OPTIONS, sharedParsePool } from '../../src/policy/parse-pool.js';

let srv: TestServer;
let api: Client;
let admin: string;
const A = () => srv.account;

interface Snapshot {
  resources: number;
  rootVersions: number;
}

async function snapshot(): Promise<Snapshot> {
  const count = await api.request('GET', `/resources/${A()}?count=true`, { token: admin });
  const root = await api.request('GET', `/resources/${A()}/policy/root`, { token: admin });
  return { resources: count.json.count, rootVersions: root.json.policy_versions.length };
}

/** The shapes, at the sizes it measured (all under the 10 MiB body limit). */
const hostile = {
  'a flow sequence of 1.4M items': '- !user {id: a, annotations: {x: [' + Array.from({ length: 1_400_000 }, () => '1').join(',') + ']}}\n',
  '600k lines of `- {a: 1}`': Array.from({ length: 600_000 }, () => '- {a: 1}').join('\n') + '\n',
  '100k nested `[`': '['.repeat(100_000) + ']'.repeat(100_000),
  '10M blank lines': '- !user a\n' + '\n'.repeat(10_000_000),
  'an alias bomb of 20k aliases': '- &a !user a\n' + Array.from({ length: 20_000 }, () => '- *a').join('\n') + '\n',
};
const expected: Record<keyof typeof hostile, { message: RegExp; line: number }> = {
  'a flow sequence of 1.4M items': { message: /^Policy has more than 750,000 YAML nodes \(limit: 750,000\)$/, line: 1 },
  '600k lines of `- {a: 1}`': { message: /^Policy has more than 750,000 YAML nodes \(limit: 750,000\)$/, line: 83_334 },
  // Counted at 4 nodes per `[` (see limits.ts), 100k of them stay under the node limit; the tokenizer refuses level 65.
  '100k nested `[`': { message: /^Policy is nested too deeply: more than 64 levels \(limit: 64\)$/, line: 1 },
  '10M blank lines': { message: /^Policy has more than 1,500,000 lines \(limit: 2 per allowed node\)$/, line: 1_500_001 },
  'an alias bomb of 20k aliases': { message: /^Policy has more than 10,000 aliases \(limit: 10,000\)$/, line: 10_002 },
};

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const r = await api.loadPolicy(admin, 'POST', 'root', '- !variable existing\n');
  expect(r.status, r.text).toBe(201);
});

afterAll(async () => {
  await srv?.close();
});

describe('hostile policy bodies', () => {
  for (const [name, body] of Object.entries(hostile) as [keyof typeof hostile, string][]) {
    it(`refuses ${name} with 422 naming the limit, and stores nothing`, async () => {
      expect(Buffer.byteLength(body)).toBeLessThan(10 * 1024 * 1024);
      const before = await snapshot();
      for (const method of ['POST', 'PATCH', 'PUT'] as const) {
        const r = await api.loadPolicy(admin, method, 'root', body);
        expect(r.status, r.text.slice(0, 300)).toBe(422);
        expect(r.json.error.code).toBe('policy_invalid');
        expect(r.json.error.message).toMatch(expected[name].message);
        expect(r.json.error.innererror).toEqual({ line: expected[name].line, column: expect.any(Number) });
      }
      expect(await snapshot()).toEqual(before);
      // And the server still works.
      expect((await api.request('GET', '/health')).status).toBe(200);
    });
  }

  it.each([
    ['- !!set {a, b}\n', "Unrecognized data type '!!set'", 1, 3],
    ['- !user\n  id: a\n  annotations: !!omap [x: 1]\n', "Unrecognized data type '!!omap'", 3, 16],
    ['- !user\n  id: !!binary aGVsbG8=\n', "Unrecognized data type '!!binary'", 2, 7],
    ['- !user\n  id: !!timestamp 2001-12-14\n', "Unrecognized data type '!!timestamp'", 2, 7],
    ['- !!pairs [a: 1]\n', "Unrecognized data type '!!pairs'", 1, 3],
    ['- !user\n  id: a\n  annotations: {<<: {x: y}}\n', 'Merge keys (<<) are not supported in a policy', 3, 17],
    ['%YAML 1.1\n---\n- !user\n  id: a\n  annotations: {d: 2001-12-14}\n', 'Unsupported YAML Date scalar: a policy holds only plain strings, numbers, booleans, nulls, mappings and sequences', 5, 20],
  ])('refuses non-plain YAML %j with 422, line and column (was 500 for !!set)', async (body, message, line, column) => {
    const before = await snapshot();
    const r = await api.loadPolicy(admin, 'POST', 'root', body);
    expect(r.status, r.text).toBe(422);
    expect(r.json.error).toEqual({ code: 'policy_invalid', message, innererror: { line, column } });
    expect(await snapshot()).toEqual(before);
  });
});

describe('a large legitimate policy', () => {
  it('is parsed off the event loop: /health answers while the parse is in progress, then the load succeeds', async () => {
    const lines = ['- !layer fleet'];
    for (let h = 0; h < 2000; h++) lines.push(`- !host h${h}`, `- !grant\n  role: !layer fleet\n  member: !host h${h}`);
    for (let v = 0; v < 20000; v++) lines.push(`- !variable\n  id: app${v % 100}/secret${v}\n  annotations:\n    team: t${v % 10}`);
    const big = lines.join('\n') + '\n';
    const pool = sharedParsePool(DEFAULT_PARSE_POOL_OPTIONS);
    const order: string[] = [];
    const load = api.loadPolicy(admin, 'POST', 'root', big).then((r) => {
      order.push('load');
      return r;
    });
    // Wait (without a clock) until the worker has the policy.
    while (!pool.parsing) await new Promise((r) => setImmediate(r));
    const health = await api.request('GET', '/health');
    order.push(pool.parsing ? 'health during parse' : 'health after parse');
    expect(health.status).toBe(200);
    const r = await load;
    expect(r.status, r.text.slice(0, 300)).toBe(201);
    expect(order).toEqual(['health during parse', 'load']);
    const count = await api.request('GET', `/resources/${A()}?count=true&kind=variable`, { token: admin });
    expect(count.json.count).toBe(20001);
  });
});

describe('a parse that exhausts the worker heap', () => {
  it('is a 413 naming the memory limit; nothing is stored and the next load works', async () => {
    const small = await startTestServer({ env: { COFFER_POLICY_PARSE_MEMORY_MB: '64' } });
    try {
      const c = new Client(small.url, small.account);
      const key = await c.login('admin', small.adminKey);
      const before = (await c.request('GET', `/resources/${small.account}?count=true`, { token: key })).json.count;
      const lines: string[] = [];
      for (let v = 0; v < 60_000; v++) lines.push(`- !variable\n  id: app${v % 100}/secret${v}\n  annotations:\n    team: t${v % 10}`);
      const r = await c.loadPolicy(key, 'POST', 'root', lines.join('\n') + '\n');
      expect(r.status, r.text.slice(0, 300)).toBe(413);
      expect(r.json.error).toEqual({
        code: 'payload_too_large',
        message: "Policy is too large to parse within the parser's memory limit of 64 MB (COFFER_POLICY_PARSE_MEMORY_MB)",
      });
      const count = await c.request('GET', `/resources/${small.account}?count=true`, { token: key });
      expect(count.json.count).toBe(before);
      expect((await c.request('GET', '/health')).status).toBe(200);
      const ok = await c.loadPolicy(key, 'POST', 'root', '- !variable after\n');
      expect(ok.status, ok.text).toBe(201);
    } finally {
      await small.close();
    }
  });
});
