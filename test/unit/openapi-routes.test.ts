/**
 * openapi.yaml must document exactly the routes the code registers, and must
 * itself be a structurally sound OpenAPI 3.1 document whose schemas compile.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  HTTP_METHODS,
  createAjv,
  DOC_ID,
  findOperation,
  listDocumentedRoutes,
  loadOpenApi,
  pointerFragment,
  resolvePointer,
  validateResponse,
} from '../helpers/openapi.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ROUTES_DIR = join(ROOT, 'src/http/routes');
const ROUTE_SOURCES = [
  ...readdirSync(ROUTES_DIR)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(ROUTES_DIR, f)),
  join(ROOT, 'src/http/app.ts'),
];

type Json = Record<string, any>;

/** Hono path → OpenAPI template: `:account` → `{account}`, `:id{.+}` → `{id}`. */
function honoToTemplate(path: string): string {
  return path.replace(/:([A-Za-z_][A-Za-z0-9_]*)(\{[^/]*\})?/g, '{$1}');
}

const key = (method: string, path: string) => `${method.toUpperCase()} ${path}`;

const ROUTE_CALL = /\bapp\s*\.\s*(get|post|put|patch|delete|options|head|all|on|route|mount)\s*\(/g;
const ROUTE_CALL_WITH_PATH = /\bapp\s*\.\s*(get|post|put|patch|delete|options|head)\s*\(\s*(['"`])([^'"`]*)\2/g;

/** Routes registered in the source text of src/http/routes/*.ts and src/http/app.ts. */
function routesFromSource(): { routes: Set<string>; problems: string[] } {
  const routes = new Set<string>();
  const problems: string[] = [];
  for (const file of ROUTE_SOURCES) {
    const text = readFileSync(file, 'utf8');
    const calls = [...text.matchAll(ROUTE_CALL)];
    const withPath = [...text.matchAll(ROUTE_CALL_WITH_PATH)];
    for (const m of withPath) routes.add(key(m[1]!, honoToTemplate(m[3]!)));
    if (calls.length !== withPath.length) {
      problems.push(
        `${file}: ${calls.length} app.<method>( calls but ${withPath.length} with a literal path ` +
          '(app.all/on/route/mount or a computed path): extend this test\'s extractor',
      );
    }
  }
  return { routes, problems };
}

function documentedRoutes(): Set<string> {
  return new Set(listDocumentedRoutes().map((r) => key(r.method, r.path)));
}

/** Walks every node; `visit` returns false to stop descending. */
function walk(node: unknown, tokens: string[], visit: (node: unknown, tokens: string[]) => boolean | void): void {
  if (visit(node, tokens) === false) return;
  if (Array.isArray(node)) node.forEach((n, i) => walk(n, [...tokens, String(i)], visit));
  else if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) walk(v, [...tokens, k], visit);
}

function deref(doc: Json, node: Json): Json {
  let current = node;
  for (let i = 0; typeof current?.$ref === 'string' && i < 10; i++) current = resolvePointer(doc, current.$ref) as Json;
  return current;
}

function operations(doc: Json): { path: string; method: string; item: Json; op: Json }[] {
  const out: { path: string; method: string; item: Json; op: Json }[] = [];
  for (const [path, item] of Object.entries(doc.paths as Json)) {
    for (const m of HTTP_METHODS) if ((item as Json)[m]) out.push({ path, method: m, item: item as Json, op: (item as Json)[m] });
  }
  return out;
}

describe('openapi.yaml documents exactly the routes in the code', () => {
  it('finds routes in the route sources', () => {
    const { routes, problems } = routesFromSource();
    expect(problems).toEqual([]);
    expect(routes.size).toBeGreaterThan(10);
  });

  it('has no route missing from openapi.yaml and no documented route missing from the code', () => {
    const code = routesFromSource().routes;
    const documented = documentedRoutes();
    const missingFromSpec = [...code].filter((r) => !documented.has(r)).sort();
    const missingFromCode = [...documented].filter((r) => !code.has(r)).sort();
    expect({ missingFromSpec, missingFromCode }).toEqual({ missingFromSpec: [], missingFromCode: [] });
  });

  it('the constructed hono app registers the same routes as the source text says', async () => {
    // Route modules only capture services at registration time, so a proxy that
    // answers every property is enough to build the app without a database.
    const anything: any = new Proxy(function () {}, {
      get: (_t, p) => (p === 'then' ? undefined : anything),
      apply: () => anything,
    });
    const { createApp } = await import('../../src/http/app.js');
    const app = createApp(anything, {
      bodyLimit: 1024,
      policyBodyLimit: 1024,
      trustedProxies: [],
      version: 'test',
      logError: () => undefined,
    });
    const registered = new Set(
      app.routes.filter((r) => r.method !== 'ALL').map((r) => key(r.method, honoToTemplate(r.path))),
    );
    expect([...registered].sort()).toEqual([...routesFromSource().routes].sort());
  });
});

describe('openapi.yaml is a sound OpenAPI 3.1 document', () => {
  const doc = loadOpenApi();

  it('declares OpenAPI 3.1 with info and paths', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(typeof doc.info?.title).toBe('string');
    expect(typeof doc.info?.version).toBe('string');
    expect(Object.keys(doc.paths ?? {}).length).toBeGreaterThan(0);
  });

  it('resolves every $ref', () => {
    const unresolved: string[] = [];
    walk(doc, [], (node, tokens) => {
      if (node && typeof node === 'object' && !Array.isArray(node) && typeof (node as Json).$ref === 'string') {
        const ref = (node as Json).$ref as string;
        if (!ref.startsWith('#/') || resolvePointer(doc, ref) === undefined) unresolved.push(`${tokens.join('/')}: ${ref}`);
      }
    });
    expect(unresolved).toEqual([]);
  });

  it('gives every operation a unique operationId, responses with descriptions, and known security schemes', () => {
    const problems: string[] = [];
    const ids = new Set<string>();
    const schemes = new Set(Object.keys(doc.components?.securitySchemes ?? {}));
    for (const { path, method, op } of operations(doc)) {
      const where = `${method.toUpperCase()} ${path}`;
      if (typeof op.operationId !== 'string') problems.push(`${where}: no operationId`);
      else if (ids.has(op.operationId)) problems.push(`${where}: duplicate operationId ${op.operationId}`);
      else ids.add(op.operationId);
      const responses = op.responses as Json | undefined;
      if (!responses || Object.keys(responses).length === 0) problems.push(`${where}: no responses`);
      for (const [status, r] of Object.entries(responses ?? {})) {
        if (!/^([1-5]\d\d|[1-5]XX|default)$/.test(status)) problems.push(`${where}: bad response key ${status}`);
        const resolved = deref(doc, r as Json);
        if (typeof resolved?.description !== 'string') problems.push(`${where} ${status}: no description`);
      }
      if (!Array.isArray(op.security)) problems.push(`${where}: security not stated`);
      for (const req of op.security ?? []) for (const s of Object.keys(req)) if (!schemes.has(s)) problems.push(`${where}: unknown security scheme ${s}`);
    }
    expect(problems).toEqual([]);
  });

  it('declares every path template parameter, and only those, as a required path parameter', () => {
    const problems: string[] = [];
    for (const { path, method, item, op } of operations(doc)) {
      const inTemplate = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!).sort();
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map((p: Json) => deref(doc, p));
      const pathParams = params.filter((p) => p.in === 'path');
      const names = pathParams.map((p) => p.name as string).sort();
      if (JSON.stringify(names) !== JSON.stringify(inTemplate)) problems.push(`${method.toUpperCase()} ${path}: path parameters ${names} ≠ ${inTemplate}`);
      for (const p of pathParams) if (p.required !== true) problems.push(`${method.toUpperCase()} ${path}: {${p.name}} not required`);
      for (const p of params) if (!p.schema && !p.content) problems.push(`${method.toUpperCase()} ${path}: parameter ${p.name} has no schema`);
    }
    expect(problems).toEqual([]);
  });

  it('documents the statuses every route can produce from the shared middleware', () => {
    const problems: string[] = [];
    for (const { path, method, op } of operations(doc)) {
      const where = `${method.toUpperCase()} ${path}`;
      const statuses = Object.keys(op.responses ?? {});
      const need = ['500'];
      // Token-protected: missing/invalid token (401) and deleted role (403).
      if ((op.security ?? []).some((s: Json) => 'conjurToken' in s)) need.push('401', '403');
      // Path segments: bad percent-encoding (400), invalid identifier (422), `%2F` in the account (404).
      if (path.includes('{')) need.push('400', '422');
      if (path.includes('{account}')) need.push('404');
      for (const s of need) if (!statuses.includes(s)) problems.push(`${where}: ${s} not documented`);
    }
    expect(problems).toEqual([]);
  });

  it('compiles every schema with ajv (strict, draft 2020-12)', () => {
    const ajv = createAjv(doc);
    const pointers: string[][] = [];
    for (const name of Object.keys(doc.components?.schemas ?? {})) pointers.push(['components', 'schemas', name]);
    walk(doc, [], (node, tokens) => {
      if (tokens[0] === 'components' && tokens[1] === 'schemas') return false;
      if (tokens[tokens.length - 1] === 'schema' && node && typeof node === 'object') {
        pointers.push(tokens);
        return false;
      }
      return undefined;
    });
    expect(pointers.length).toBeGreaterThan(50);
    const failures: string[] = [];
    for (const tokens of pointers) {
      try {
        ajv.compile({ $ref: `${DOC_ID}#${pointerFragment(tokens)}` });
      } catch (err) {
        failures.push(`${tokens.join('/')}: ${(err as Error).message}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

describe('validateResponse', () => {
  const notFound = {
    error: {
      code: 'not_found',
      message: "Variable 'a/b' not found in account 'acme'",
      target: 'variable',
      details: { code: 'not_found', target: 'id', message: 'acme:variable:a/b' },
    },
  };

  it('matches concrete paths to the most specific template', () => {
    expect(findOperation('GET', '/resources/acme/variable/a%2Fb').template).toBe('/resources/{account}/{kind}/{id}');
    expect(findOperation('GET', '/resources/acme/variable/a/b/c').template).toBe('/resources/{account}/{kind}/{id}');
    expect(findOperation('GET', '/resources/acme/variable/').template).toBe('/resources/{account}/{kind}');
    expect(findOperation('GET', '/resources/acme/').template).toBe('/resources/{account}');
    expect(findOperation('GET', '/secrets/').template).toBe('/secrets');
    expect(findOperation('POST', '/secrets/acme/batch').template).toBe('/secrets/{account}/batch');
    expect(findOperation('POST', '/secrets/acme/variable/batch').template).toBe('/secrets/{account}/{kind}/{id}');
    expect(findOperation('POST', '/authn/acme/host%2Fci%2F01/authenticate').template).toBe('/authn/{account}/{login}/authenticate');
    expect(findOperation('POST', '/authn/acme/host/ci/01/authenticate').template).toBe('/authn/{account}/{login}/authenticate');
    expect(findOperation('GET', '/audit/acme/verify').template).toBe('/audit/{account}/verify');
    expect(findOperation('GET', '/audit/acme').template).toBe('/audit/{account}');
    expect(findOperation('GET', '/policies/acme/policy/root?depth=1').template).toBe('/policies/{account}/policy/{id}');
    expect(() => findOperation('GET', '/nope')).toThrow(/no documented path/);
    expect(() => findOperation('PATCH', '/secrets/acme/variable/x')).toThrow(/not documented/);
  });

  it('accepts documented responses', () => {
    validateResponse('GET', '/resources/acme/variable/a%2Fb', 404, 'application/json', notFound);
    validateResponse('GET', '/resources/acme/variable/a%2Fb', 403, null, null);
    validateResponse('GET', '/resources/acme/variable/a%2Fb', 401, 'text/plain; charset=UTF-8', 'Authorization missing');
    validateResponse('GET', '/resources/acme/variable/a%2Fb', 204, null, null);
    validateResponse('GET', '/resources/acme/variable/a%2Fb', 200, 'application/json', {
      created_at: '2021-03-23T16:37:14.455+00:00',
      id: 'acme:variable:a/b',
      owner: 'acme:policy:root',
      policy: 'acme:policy:root',
      permissions: [{ privilege: 'execute', role: 'acme:user:bob', policy: 'acme:policy:root' }],
      annotations: [],
      secrets: [{ version: 1, expires_at: null }],
    });
    validateResponse('GET', '/resources/acme', 200, 'application/json', { count: 3 });
    validateResponse('GET', '/resources/acme/variable/a%2Fb', 200, 'application/json', ['acme:user:admin']);
    validateResponse('GET', '/secrets/acme/variable/x', 200, 'application/octet-stream', 'raw bytes');
    validateResponse('POST', '/authn/acme/alice/authenticate', 401, null, null);
    validateResponse('POST', '/authn/acme/alice/authenticate', 200, 'application/json', { protected: 'eyJhbGciOiJFZERTQSJ9', payload: 'eyJzdWIiOiJhbGljZSJ9', signature: 'c2ln' });
    validateResponse('PUT', '/authn/acme/api_key', 401, null, null);
    validateResponse('PUT', '/authn/acme/api_key', 401, 'application/json', { error: { code: 'unauthorized', message: 'Credential strength is insufficient' } });
    validateResponse('POST', '/policies/acme/policy/root', 201, 'application/json', { created_roles: { 'acme:user:alice': { id: 'acme:user:alice', api_key: 'k' } }, version: 1 });
    validateResponse('POST', '/policies/acme/policy/root', 422, 'application/json', {
      error: { code: 'policy_invalid', message: 'bad', innererror: { line: 3, column: null } },
    });
    validateResponse('POST', '/policies/acme/policy/root', 422, 'application/json', {
      error: { code: 'validation_failed', message: 'policy_text is not present', details: [{ code: 'validation_failed', target: 'policy_text', message: 'is not present' }] },
    });
    validateResponse('GET', '/audit/acme/verify', 409, 'application/json', { ok: false, account: 'acme', events: 2, last_seq: 2, first_bad_seq: 3, reason: 'event 3 was modified (hash mismatch)', bad_seqs: [3], bad_count: 1 });
    validateResponse('GET', '/audit/acme/verify', 200, 'application/json', { ok: true, account: 'acme', events: 0, last_seq: null });
    expect(() => validateResponse('GET', '/audit/acme/verify', 409, 'application/json', { ok: false, checked: 2, lastSeq: 2, firstBadSeq: 3, reason: 'x' })).toThrow();
    const event = {
      seq: 1, time: '2026-01-01T00:00:00.000Z', account: 'acme', action: 'fetch', operation: 'fetch', result: 'success',
      role: 'acme:user:admin', resource: 'acme:variable:x', version: 1, client_ip: '127.0.0.1', request_id: 'r',
      user_agent: null, reason: null, message: 'acme:user:admin fetched acme:variable:x', details: null, hash: 'a'.repeat(64),
    };
    validateResponse('GET', '/audit/acme', 200, 'application/json', { events: [event], next_cursor: null });
    validateResponse('GET', '/audit/acme', 200, 'application/x-ndjson', `${JSON.stringify(event)}\n${JSON.stringify({ ...event, seq: 2 })}\n`);
    validateResponse('GET', '/audit/acme', 200, 'application/x-ndjson', null);
    validateResponse('POST', '/secrets/acme/batch', 200, 'application/json', {
      values: { 'acme:variable:x': 'v' }, base64: [], errors: { 'acme:variable:y': { code: 'not_found', message: 'CONJ00076E …' } },
    });
  });

  it('rejects undocumented statuses, content types and body shapes', () => {
    expect(() => validateResponse('GET', '/whoami', 418, 'application/json', {})).toThrow(/status 418 is not documented/);
    expect(() => validateResponse('GET', '/whoami', 200, 'text/plain', 'x')).toThrow(/text\/plain is not documented/);
    expect(() => validateResponse('GET', '/whoami', 200, 'application/json', { account: 'acme' })).toThrow(/does not match/);
    expect(() => validateResponse('GET', '/resources/acme/variable/a', 404, 'application/json', { error: { code: 'nope', message: 'x' } })).toThrow(/does not match/);
    expect(() => validateResponse('GET', '/resources/acme/variable/a', 404, null, null)).toThrow(/empty body/);
    expect(() => validateResponse('GET', '/resources/acme/variable/a', 403, 'application/json', { error: { code: 'forbidden', message: 'x' } })).toThrow(/no body/);
    expect(() => validateResponse('GET', '/audit/acme', 200, 'application/json', { events: [], next_cursor: 5 })).toThrow(/does not match/);
    expect(() => validateResponse('GET', '/audit/acme', 200, 'application/x-ndjson', '{"seq":1}\n')).toThrow(/NDJSON line 1/);
    expect(() => validateResponse('POST', '/authn/acme/alice/authenticate', 200, 'application/json', { protected: 'a', payload: 'b' })).toThrow(/does not match/);
  });
});
