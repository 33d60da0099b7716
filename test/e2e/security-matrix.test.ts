/**
 * The security matrix (issue 13, item 1): every route in openapi.yaml × every
 * kind of caller, against the real server, with Conjur's rules as the oracle —
 * 401 unauthenticated, 404 when the caller cannot see the resource, 403 when
 * it sees it but lacks the privilege, 2xx with exactly the privilege.
 *
 * Every refusal is also checked for what it must not do: no planted canary
 * (the secret value, any API key, any token used here) in its body or
 * headers, and no change to any table but the audit log (a digest of every
 * row before and after). No answer but a successful fetch may hold the value.
 *
 * Caller kinds for token routes: no token, a junk header, a token whose
 * signature was altered, an expired token (TestClock), a revoked token
 * (DELETE /authn/{acct}/token), a token of a role deleted since (403),
 * another account's token (its admin), a role
 * that cannot see the resource, roles that see it without the privilege,
 * roles with exactly the privilege, and the owner (a plain user owning the
 * policies, not admin). Credential routes (authn, authn-jwt, host-factory
 * enrolment) get their own kinds: missing, wrong and near-miss credentials, a
 * token where a credential belongs, another account's credentials.
 *
 * A route in openapi.yaml without a row fails the first test.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { createAccountIn } from '../../src/server.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client, type Reply } from '../helpers/http.js';
import { findOperation, listDocumentedRoutes, loadOpenApi } from '../helpers/openapi.js';
import { runCli } from '../helpers/cli.js';
import { DIGEST_REQUIRED_TABLES, garble, leakedCanaries, tableDigest, tokenCanaries } from '../helpers/security-matrix.js';

const A = 'cucumber';
const OTHER = 'other';
const CANARY = 'canary-secret-Hq8Zr3Lw6Pt1';
const VAR = 'svc/db/password';
const VAR_ID = `${A}:variable:${VAR}`;
const VAR_PATH = `/secrets/${A}/variable/${encodeURIComponent(VAR)}`;
const HF_ID = `${A}:host_factory:svc/hf`;
const VICTIM = 'host:svc/victim';
const TEAM_PATH = `/roles/${A}/group/${encodeURIComponent('svc/team')}`;
const MEMBER = `${A}:host:svc/member`;
const NEW_PASSWORD = 'Str0ng-PASSword#1';
/** What every successful policy load sends: a record that already exists (shadowed), so loads change nothing beneath. */
const LOAD_TEXT = '- !variable v\n';

// ---------------------------------------------------------------------------
// The fixture

/** Each role's standing, as the case names show it. */
const ROLES: Record<string, string> = {
  blind: 'no privilege anywhere',
  'app-owner': 'owner of policies app, svc and the authn-jwt services',
  'v-read': 'read on the variable',
  'v-exec': 'execute on the variable',
  'v-update': 'update on the variable',
  'p-read': 'read on policy app',
  'p-create': 'create on policy app',
  'p-shallow': 'update on policy app and app/v, not on app/inner or app/inner/key',
  'p-update': 'update on policy app and on everything beneath it',
  'h-read': 'read on host svc/victim',
  'h-update': 'update on host svc/victim',
  'g-read': 'read on group svc/team',
  'g-create': 'read on group svc/team, create on policy svc',
  'g-update': 'read on group svc/team, update on policy svc',
  'hf-read': 'read on the host factory',
  'hf-exec': 'execute on the host factory',
  'hf-update': 'update on the host factory',
  'ws-read': 'read on webservice conjur/authn-jwt/static and on its status',
  'ws-exec': 'execute on the static webservice and its status',
  'ws-update': 'update on webservice conjur/authn-jwt/static',
  auditor: 'audit on policy svc',
  'root-reader': 'read on policy root',
  'root-auditor': 'audit on policy root',
  'is-read': 'read on policy conjur/issuers',
  'is-create': 'create on policy conjur/issuers',
  'is-update': 'update on policy conjur/issuers',
  'dv-read': 'read on the dynamic variable',
  'dv-update': 'read and update on the dynamic variable',
  admin: 'owner of root',
};
const CALLER_USERS = Object.keys(ROLES).filter((u) => u !== 'admin');

const STAGE_ROOT = `
${[...CALLER_USERS, 'pw-user', 'rot-self', 'doomed'].map((u) => `- !user ${u}`).join('\n')}
- !host pw-host
- !policy
  id: app
  owner: !user app-owner
  body:
  - !variable v
  - !policy
    id: inner
    body:
    - !variable key
- !policy
  id: svc
  owner: !user app-owner
- !policy
  id: conjur/issuers
  owner: !user app-owner
- !policy
  id: data/dynamic
  owner: !user app-owner
  body:
  - !variable
    id: mx
    annotations:
      dynamic/issuer: mx
      dynamic/grant-roles: app_read
- !policy
  id: conjur/authn-jwt/static
  owner: !user app-owner
  body:
  - !webservice
  - !webservice status
  - !variable public-keys
  - !variable issuer
  - !group apps
  - !permit
    role: !group apps
    privilege: [ read, authenticate ]
    resource: !webservice
- !policy
  id: conjur/authn-jwt/gitlab
  owner: !user app-owner
  body:
  - !webservice
  - !variable public-keys
  - !variable issuer
  - !variable token-app-property
  - !variable identity-path
  - !group apps
  - !permit
    role: !group apps
    privilege: [ read, authenticate ]
    resource: !webservice
`;

/** Loaded into policy svc, so these rows belong to svc (membership changes need create/update on svc). */
const STAGE_SVC = `
- !variable db/password
- !host victim
- !host member
- !group team
- !layer nodes
- !host-factory
  id: hf
  layers: [ !layer nodes ]
`;

const permit = (role: string, privilege: string, resources: string) => `- !permit
  role: !user ${role}
  privilege: [ ${privilege} ]
  resource: [ ${resources} ]`;

const STAGE_PERMITS = `
- !host
  id: jwt/static-runner
  annotations:
    authn-jwt/static/repository: acme/app
- !host
  id: jwt/outsider
  annotations:
    authn-jwt/static/repository: acme/app
- !host
  id: jwt/app1
  annotations:
    authn-jwt/gitlab/ref: main
- !grant
  role: !group conjur/authn-jwt/static/apps
  member: !host jwt/static-runner
- !grant
  role: !group conjur/authn-jwt/gitlab/apps
  member: !host jwt/app1
${permit('v-read', 'read', `!variable ${VAR}`)}
${permit('v-exec', 'execute', `!variable ${VAR}`)}
${permit('v-update', 'update', `!variable ${VAR}`)}
${permit('p-read', 'read', '!policy app')}
${permit('p-create', 'create', '!policy app')}
${permit('p-shallow', 'update', '!policy app, !variable app/v')}
${permit('p-update', 'update', '!policy app, !variable app/v, !policy app/inner, !variable app/inner/key')}
${permit('h-read', 'read', '!host svc/victim')}
${permit('h-update', 'update', '!host svc/victim')}
${permit('g-read', 'read', '!group svc/team')}
${permit('g-create', 'read', '!group svc/team')}
${permit('g-create', 'create', '!policy svc')}
${permit('g-update', 'read', '!group svc/team')}
${permit('g-update', 'update', '!policy svc')}
${permit('hf-read', 'read', '!host-factory svc/hf')}
${permit('hf-exec', 'execute', '!host-factory svc/hf')}
${permit('hf-update', 'update', '!host-factory svc/hf')}
${permit('ws-read', 'read', '!webservice conjur/authn-jwt/static/status, !webservice conjur/authn-jwt/static')}
${permit('ws-exec', 'execute', '!webservice conjur/authn-jwt/static/status, !webservice conjur/authn-jwt/static')}
${permit('ws-update', 'update', '!webservice conjur/authn-jwt/static')}
${permit('auditor', 'audit', '!policy svc')}
${permit('root-reader', 'read', '!policy root')}
${permit('root-auditor', 'audit', '!policy root')}
${permit('is-read', 'read', '!policy conjur/issuers')}
${permit('is-create', 'create', '!policy conjur/issuers')}
${permit('is-update', 'update', '!policy conjur/issuers')}
${permit('dv-read', 'read', '!variable data/dynamic/mx')}
${permit('dv-update', 'read, update', '!variable data/dynamic/mx')}
`;

let srv: TestServer;
let api: Client;
let home: string;
/** login → API key (kept current when a key is rotated). */
const keys = new Map<string, string>();
/** login → a live access token. */
const tokens = new Map<string, string>();
/** name → planted value that no refusal may show. */
const canaries = new Map<string, string>();
let expiredToken = '';
let revokedToken = '';
let deletedRoleToken = '';
let garbledToken = '';
let foreignToken = '';
let foreignKey = '';
let hfLive = '';
let hfExpired = '';
let hfRevoked = '';
let hfForDelete = 'not-created-yet';
let freshToken = '';
let enrolled = 0;
let issuersMade = 0;
let issuerTtl = 900;
let leasesMade = 0;
let issuerForDelete = 'not-created-yet';
let leaseForRevoke = 'not-created-yet';
const ISSUER_PW = `${CANARY}-issuer-pw`;
/** A postgresql issuer whose database is not there (nothing listens on port 1). */
const issuerBody = (id: string) => ({ id, type: 'postgresql', max_ttl: 900, data: { host: '127.0.0.1', port: 1, database: 'app', username: 'admin', password: ISSUER_PW, sslmode: 'disable' } });
async function makeIssuer(id: string): Promise<void> {
  const r = await api.request('POST', `/issuers/${A}`, { token: token('admin'), ...json(issuerBody(id)) });
  expect(r.status, r.text).toBe(201);
}
/** A lease row as a fetch would have left it (its database is unreachable, so ending it leaves it pending). */
async function plantLease(): Promise<string> {
  const id = `lease-${++leasesMade}`;
  await store().dynamic.insertLease({
    id, account: A, issuer_id: 'mx', variable_id: `${A}:variable:data/dynamic/mx`, role_id: `${A}:user:app-owner`, token_jti: null,
    db_role: `coffer_${leasesMade.toString(16).padStart(24, '0')}`, expires_at: srv.clock.nowMs() + 3_600_000, created_at: new Date(srv.clock.nowMs()).toISOString(),
  });
  return id;
}
let jwtKey: CryptoKey;
let strangerKey: CryptoKey;

const store = () => srv.server.vault.services.store;
const nowSec = () => Math.floor(srv.clock.nowMs() / 1000);
const futureIso = (seconds: number) => new Date(srv.clock.nowMs() + seconds * 1000).toISOString();
const token = (login: string) => {
  const t = tokens.get(login);
  if (!t) throw new Error(`no token for ${login}`);
  return t;
};
const key = (login: string) => {
  const k = keys.get(login);
  if (!k) throw new Error(`no API key for ${login}`);
  return k;
};
function plant(name: string, value: string) {
  canaries.set(name, value);
}
function plantToken(name: string, tokenJson: string) {
  for (const [n, v] of tokenCanaries(name, tokenJson)) plant(n, v);
}

async function createHfToken(expiresInSeconds: number): Promise<string> {
  const r = await api.request('POST', '/host_factory_tokens', {
    token: token('admin'),
    body: `host_factory=${encodeURIComponent(HF_ID)}&expiration=${encodeURIComponent(futureIso(expiresInSeconds))}`,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
  expect(r.status, r.text).toBe(200);
  const t = r.json[0].token as string;
  plant(`host-factory token ${t.slice(0, 6)}`, t);
  return t;
}

beforeAll(async () => {
  const jwtPair = await generateKeyPair('ES256', { extractable: true });
  jwtKey = jwtPair.privateKey;
  strangerKey = (await generateKeyPair('ES256', { extractable: true })).privateKey;
  const jwks = JSON.stringify({ type: 'jwks', value: { keys: [{ ...(await exportJWK(jwtPair.publicKey)), kid: 'k1', alg: 'ES256' }] } });

  srv = await startTestServer({ account: A, flags: { authenticators: 'authn,authn-jwt/static,authn-jwt/gitlab' } });
  api = new Client(srv.url, A);
  home = mkdtempSync(join(tmpdir(), 'coffer-matrix-home-'));
  keys.set('admin', srv.adminKey);
  tokens.set('admin', await api.login('admin', srv.adminKey));
  for (const [branch, text] of [['root', STAGE_ROOT], ['svc', STAGE_SVC], ['root', STAGE_PERMITS]] as const) {
    const r = await api.loadPolicy(token('admin'), 'POST', branch, text);
    expect(r.status, r.text).toBe(201);
    for (const [id, c] of Object.entries(r.json.created_roles as Record<string, { api_key: string }>)) {
      const [, kind, identifier] = id.split(':') as [string, string, string];
      keys.set(kind === 'user' ? identifier : `${kind}/${identifier}`, c.api_key);
    }
  }
  const set = async (id: string, value: string) => expect((await api.setSecret(token('admin'), id, value)).status).toBe(201);
  await set(VAR, CANARY);
  await set('conjur/authn-jwt/static/public-keys', jwks);
  await set('conjur/authn-jwt/static/issuer', 'https://static.example');
  await set('conjur/authn-jwt/gitlab/public-keys', jwks);
  await set('conjur/authn-jwt/gitlab/issuer', 'https://gitlab.example');
  await set('conjur/authn-jwt/gitlab/token-app-property', 'project_path');
  await set('conjur/authn-jwt/gitlab/identity-path', 'jwt');

  // Expired: a token and a host-factory token issued now, then the clock moves past both.
  expiredToken = await api.login('app-owner', key('app-owner'));
  hfExpired = await createHfToken(60);
  srv.clock.advance(481); // default TTL 480 s

  for (const login of ['admin', ...CALLER_USERS]) tokens.set(login, await api.login(login, key(login)));
  revokedToken = await api.login('app-owner', key('app-owner'));
  expect((await api.request('DELETE', `/authn/${A}/token`, { token: revokedToken })).status).toBe(204);
  garbledToken = garble(token('app-owner'));
  deletedRoleToken = await api.login('doomed', key('doomed'));
  const deletion = await api.loadPolicy(token('admin'), 'PATCH', 'root', '- !delete\n  record: !user doomed\n');
  expect(deletion.status, deletion.text).toBe(201);
  foreignKey = (await createAccountIn(srv.server.vault, OTHER)).api_key;
  foreignToken = await new Client(srv.url, OTHER).login('admin', foreignKey);
  hfLive = await createHfToken(3600);
  hfRevoked = await createHfToken(3600);
  expect((await api.request('DELETE', `/host_factory_tokens/${hfRevoked}`, { token: token('admin') })).status).toBe(204);

  await makeIssuer('mx');
  await plantLease();
  plant('issuer password', ISSUER_PW);
  plant('secret value', CANARY);
  plant('secret value (base64)', Buffer.from(CANARY).toString('base64'));
  plant(`${OTHER} admin API key`, foreignKey);
  for (const [login, k] of keys) plant(`API key of ${login}`, k);
  for (const [login, t] of tokens) plantToken(login, t);
  plantToken('expired token', expiredToken);
  plantToken('revoked token', revokedToken);
  plantToken('token of a deleted role', deletedRoleToken);
  plantToken('foreign token', foreignToken);
  plant('garbled token signature', (JSON.parse(garbledToken) as { signature: string }).signature);
});

afterAll(async () => {
  await srv?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// The matrix

type Auth = { kind: 'none' } | { kind: 'token'; token: string } | { kind: 'raw'; header: string } | { kind: 'basic'; login: string; secret: string };

interface Req {
  method: string;
  path: string;
  body?: string;
  headers?: Record<string, string>;
}

interface Case {
  who: string;
  auth: () => Auth;
  status: number;
  /** A refusal although the status is 2xx (a batch's per-id error, a filtered listing or audit page). */
  refused?: boolean;
  /** A successful fetch: the only answers that may hold the secret value. */
  revealsValue?: boolean;
  check?: (r: Reply) => void | Promise<void>;
  /** Runs before the digest is taken. */
  setup?: () => Promise<void>;
  /** Replaces the row's request (credential routes, fresh host-factory tokens). */
  request?: () => Req;
  /** Why this answer is not checked against openapi.yaml (a gap in the document, reported). */
  contractGap?: string;
}

interface Row {
  /** `METHOD /template` exactly as in openapi.yaml. */
  route: string;
  what: string;
  request: () => Req;
  cases: Case[];
}

const none = (): Auth => ({ kind: 'none' });
const bearer = (t: () => string) => (): Auth => ({ kind: 'token', token: t() });
const raw = (header: () => string) => (): Auth => ({ kind: 'raw', header: header() });
const basic = (login: string, secret: () => string) => (): Auth => ({ kind: 'basic', login, secret: secret() });
const asUser = (login: string) => bearer(() => token(login));
/** The same API key with one character changed (here: the last). */
const nearMiss = (k: string) => `${k.slice(0, -1)}${k.endsWith('a') ? 'b' : 'a'}`;

type Expect = number | { status: number; refused?: boolean; revealsValue?: boolean; check?: (r: Reply) => void | Promise<void> };

function expected(e: Expect): Pick<Case, 'status' | 'refused' | 'revealsValue' | 'check'> {
  return typeof e === 'number' ? { status: e } : e;
}

interface TokenSpec {
  /** A role that cannot see the resource (default 404). */
  blind?: Expect;
  /** Another account's admin (default 404: nothing of this account is visible to it). */
  foreign?: Expect;
  /** Roles that see the resource without the privilege (403 unless said otherwise). */
  seers?: Record<string, Expect>;
  /** Roles holding exactly the privilege. */
  exact?: Record<string, Expect>;
  owner: Expect;
  ownerLogin?: string;
}

/** The standard caller kinds for a token-protected route. */
function tokenCases(spec: TokenSpec): Case[] {
  const ownerLogin = spec.ownerLogin ?? 'app-owner';
  const cases: Case[] = [
    { who: 'no token', auth: none, status: 401 },
    { who: 'a junk Authorization header', auth: raw(() => 'Token token="%%not-a-token%%"'), status: 401 },
    { who: 'a token with its signature altered', auth: bearer(() => garbledToken), status: 401 },
    { who: 'an expired token', auth: bearer(() => expiredToken), status: 401 },
    { who: 'a revoked token', auth: bearer(() => revokedToken), status: 401 },
    // Conjur answers 403 to a valid token whose role has been deleted since.
    { who: 'a token of a deleted role', auth: bearer(() => deletedRoleToken), status: 403 },
    { who: `another account's token (${OTHER} admin)`, auth: bearer(() => foreignToken), ...expected(spec.foreign ?? 404) },
    { who: 'blind: a role that cannot see it', auth: asUser('blind'), ...expected(spec.blind ?? 404) },
  ];
  for (const [login, e] of Object.entries(spec.seers ?? {})) {
    cases.push({ who: `${login} (${ROLES[login]}): sees it without the privilege`, auth: asUser(login), ...expected(e) });
  }
  for (const [login, e] of Object.entries(spec.exact ?? {})) {
    cases.push({ who: `${login} (${ROLES[login]}): exactly the privilege`, auth: asUser(login), ...expected(e) });
  }
  cases.push({ who: `owner ${ownerLogin} (${ROLES[ownerLogin]})`, auth: asUser(ownerLogin), ...expected(spec.owner) });
  return cases;
}

/** Adds setup/request/check to the cases whose `who` starts with one of `prefixes`. */
function amend(cases: Case[], prefixes: string[], extra: Partial<Case>): Case[] {
  return cases.map((c) => (prefixes.some((p) => c.who.startsWith(p)) ? { ...c, ...extra } : c));
}

/** Cases for routes that never look at a token: a token sent anyway changes nothing. */
const publicCases = (status: number, check?: (r: Reply) => void): Case[] => [
  { who: 'no credentials', auth: none, status, check },
  { who: 'a token with its signature altered (ignored)', auth: bearer(() => garbledToken), status, check },
  { who: 'a junk Authorization header (ignored)', auth: raw(() => 'Token token="%%not-a-token%%"'), status, check },
];

/** A console response: its content type and the strict headers every /ui answer carries. */
const consoleServed = (type: string) => (r: Reply) => {
  expect(r.headers.get('content-type')).toContain(type);
  expect(r.headers.get('content-security-policy')).toContain("script-src 'self'");
  expect(r.headers.get('x-content-type-options')).toBe('nosniff');
  expect(r.headers.get('referrer-policy')).toBe('no-referrer');
};

const form = (body: string): Pick<Req, 'body' | 'headers'> => ({ body, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
const json = (o: unknown): Pick<Req, 'body' | 'headers'> => ({ body: JSON.stringify(o), headers: { 'Content-Type': 'application/json' } });

/** A JWT as the authn-jwt services here expect it, unless overridden. */
async function jwt(service: 'static' | 'gitlab', opts: { claims?: Record<string, unknown>; key?: CryptoKey } = {}): Promise<string> {
  const claims = service === 'static'
    ? { iss: 'https://static.example', repository: 'acme/app' }
    : { iss: 'https://gitlab.example', project_path: 'app1', ref: 'main' };
  return new SignJWT({ ...claims, iat: nowSec(), exp: nowSec() + 60, jti: randomUUID(), ...opts.claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .sign(opts.key ?? jwtKey);
}

/** JWT cases are async (signing); the value is prepared in setup and sent by request. */
let currentJwt = '';
function jwtCases(path: (account: string) => string, service: 'static' | 'gitlab', extra: Case[] = []): Case[] {
  const withJwt = (who: string, status: number, make: () => Promise<string>, account = A): Case => ({
    who,
    auth: none,
    status,
    setup: async () => {
      currentJwt = await make();
    },
    request: () => ({ method: 'POST', path: path(account), ...form(`jwt=${encodeURIComponent(currentJwt)}`) }),
    check: status === 200 ? async (r) => expect((await api.request('GET', '/whoami', { token: r.text })).status).toBe(200) : undefined,
  });
  return [
    { who: 'no jwt field', auth: none, status: 400, request: () => ({ method: 'POST', path: path(A), ...form('') }) },
    withJwt('a garbled jwt', 401, async () => 'aaaa.bbbb.cccc'),
    withJwt('a jwt signed by another key', 401, () => jwt(service, { key: strangerKey })),
    withJwt('an expired jwt', 401, () => jwt(service, { claims: { iat: nowSec() - 120, exp: nowSec() - 60 } })),
    withJwt('an access token in place of the jwt', 401, async () => token('app-owner')),
    withJwt(`a valid jwt sent to another account (${OTHER})`, 401, () => jwt(service), OTHER),
    ...extra.map((c) => ({ ...c, request: c.request ?? (() => ({ method: 'POST', path: path(A), ...form(`jwt=${encodeURIComponent(currentJwt)}`) })) })),
    withJwt('a valid jwt', 200, () => jwt(service)),
  ];
}

const listsVar = (r: Reply) => expect(JSON.stringify(r.json)).toContain(VAR_ID);
const hidesVar = (r: Reply) => expect(JSON.stringify(r.json ?? r.text)).not.toContain(VAR_ID);
const listingSpec = (): TokenSpec => ({
  blind: { status: 200, refused: true, check: hidesVar },
  foreign: { status: 200, refused: true, check: hidesVar },
  exact: { 'v-read': { status: 200, check: listsVar } },
  owner: { status: 200, check: listsVar },
});

const batchOutcome = (code: 'not_found' | 'forbidden'): Expect => ({
  status: 200,
  refused: true,
  check: (r) => {
    expect(r.json.values).toEqual({});
    expect(r.json.errors[VAR_ID]?.code).toBe(code);
  },
});
const batchValue: Expect = { status: 200, revealsValue: true, check: (r) => expect(r.json.values[VAR_ID]).toBe(CANARY) };
/** The value of the variable in a GET /secrets?variable_ids= answer (MIME base64 when asked for). */
const batchValueOf = (r: Reply, base64: boolean) => (base64 ? Buffer.from(String(r.json[VAR_ID]), 'base64').toString('utf8') : r.json[VAR_ID]);
const rawValue: Expect = { status: 200, revealsValue: true, check: (r) => expect(r.text).toBe(CANARY) };

const emptyAuditPage: Expect = { status: 200, refused: true, check: (r) => expect(r.json.events).toEqual([]) };
const auditPageWithVar: Expect = {
  status: 200,
  check: (r) => expect((r.json.events as { resource: string | null }[]).some((e) => e.resource === VAR_ID)).toBe(true),
};

/** Histogram buckets summed: the events counted in them. */
const histogramTotal = (r: Reply) => (r.json.buckets as { total: number }[]).reduce((n, b) => n + b.total, 0);
const emptyHistogram: Expect = { status: 200, refused: true, check: (r) => expect(histogramTotal(r)).toBe(0) };
const histogramWithEvents: Expect = { status: 200, check: (r) => expect(histogramTotal(r)).toBeGreaterThan(0) };
const day = 86_400_000;
/** Explaining the owner of the variable: policy svc (owned by app-owner) owns it. */
const EXPLAIN_PATH = () => `/explain/${A}?role=${encodeURIComponent(`${A}:policy:svc`)}&privilege=execute&resource=${encodeURIComponent(VAR_ID)}`;

const ROWS: Row[] = [
  // --- unauthenticated
  { route: 'GET /', what: 'status page', request: () => ({ method: 'GET', path: '/' }), cases: publicCases(200) },
  { route: 'GET /health', what: 'health', request: () => ({ method: 'GET', path: '/health' }), cases: publicCases(200) },
  { route: 'GET /authenticators', what: 'authenticator listing', request: () => ({ method: 'GET', path: '/authenticators' }), cases: publicCases(200) },
  { route: 'GET /ui', what: 'console page', request: () => ({ method: 'GET', path: '/ui' }), cases: publicCases(200, consoleServed('text/html')) },
  { route: 'GET /ui/{path}', what: 'console file', request: () => ({ method: 'GET', path: '/ui/main.js' }), cases: publicCases(200, consoleServed('text/javascript')) },
  {
    route: 'GET /public_keys/{account}/{kind}/{id}',
    what: 'public keys of a user',
    request: () => ({ method: 'GET', path: `/public_keys/${A}/user/app-owner` }),
    cases: publicCases(200, (r) => expect(r.text).toBe('\n')),
  },

  // --- any valid token
  {
    route: 'GET /whoami',
    what: 'identity of the caller',
    request: () => ({ method: 'GET', path: '/whoami' }),
    cases: tokenCases({
      blind: { status: 200, check: (r) => expect([r.json.account, r.json.username]).toEqual([A, 'blind']) },
      foreign: { status: 200, check: (r) => expect([r.json.account, r.json.username]).toEqual([OTHER, 'admin']) },
      owner: { status: 200, check: (r) => expect(r.json.username).toBe('app-owner') },
    }),
  },
  {
    route: 'DELETE /authn/{account}/token',
    what: 'revoking the presented token',
    request: () => ({ method: 'DELETE', path: `/authn/${A}/token` }),
    cases: [
      ...tokenCases({ blind: 204, owner: 204 }).filter((c) => !c.who.startsWith('blind') && !c.who.startsWith('owner')),
      {
        who: 'a fresh token of its own',
        auth: bearer(() => freshToken),
        status: 204,
        setup: async () => {
          freshToken = await api.login('blind', key('blind'));
          plantToken('fresh token', freshToken);
        },
        check: async () => expect((await api.request('GET', '/whoami', { token: freshToken })).status).toBe(401),
      },
    ],
  },

  // --- authn: the credential is the request
  {
    route: 'GET /authn/{account}/login',
    what: 'Basic login → API key',
    request: () => ({ method: 'GET', path: `/authn/${A}/login` }),
    cases: [
      { who: 'no credentials', auth: none, status: 401 },
      { who: 'a wrong password', auth: basic('pw-user', () => 'Wrong-Passw0rd!!'), status: 401 },
      { who: 'the API key with its last character changed', auth: basic('pw-user', () => nearMiss(key('pw-user'))), status: 401 },
      { who: 'an access token instead of Basic', auth: asUser('v-read'), status: 401 },
      { who: 'Basic naming another role with ?role=', auth: basic('pw-user', () => key('pw-user')), status: 401, request: () => ({ method: 'GET', path: `/authn/${A}/login?role=user:v-read` }) },
      { who: `another account's credentials (${OTHER} admin)`, auth: basic('admin', () => foreignKey), status: 401 },
      { who: 'its own API key', auth: basic('pw-user', () => key('pw-user')), status: 200, check: (r) => expect(r.text).toBe(key('pw-user')) },
    ],
  },
  {
    route: 'POST /authn/{account}/{login}/authenticate',
    what: 'API key → access token',
    request: () => ({ method: 'POST', path: `/authn/${A}/pw-user/authenticate`, body: key('pw-user') }),
    cases: [
      { who: 'no API key (empty body)', auth: none, status: 401, request: () => ({ method: 'POST', path: `/authn/${A}/pw-user/authenticate`, body: '' }) },
      { who: 'the API key with its last character changed', auth: none, status: 401, request: () => ({ method: 'POST', path: `/authn/${A}/pw-user/authenticate`, body: nearMiss(key('pw-user')) }) },
      { who: 'an access token as the credential', auth: none, status: 401, request: () => ({ method: 'POST', path: `/authn/${A}/pw-user/authenticate`, body: token('v-read') }) },
      { who: 'a role that does not exist', auth: none, status: 401, request: () => ({ method: 'POST', path: `/authn/${A}/nobody/authenticate`, body: key('pw-user') }) },
      { who: `another account's API key (${OTHER} admin's key for ${A} admin)`, auth: none, status: 401, request: () => ({ method: 'POST', path: `/authn/${A}/admin/authenticate`, body: foreignKey }) },
      { who: 'its own API key', auth: none, status: 200, check: async (r) => expect((await api.request('GET', '/whoami', { token: r.text })).json.username).toBe('pw-user') },
    ],
  },
  {
    route: 'PUT /authn/{account}/password',
    what: 'password change (Basic, same user only)',
    request: () => ({ method: 'PUT', path: `/authn/${A}/password`, body: NEW_PASSWORD }),
    cases: [
      { who: 'no credentials', auth: none, status: 401 },
      { who: 'a wrong password', auth: basic('pw-user', () => 'Wrong-Passw0rd!!'), status: 401 },
      { who: 'the API key with its last character changed', auth: basic('pw-user', () => nearMiss(key('pw-user'))), status: 401 },
      { who: 'an access token instead of Basic', auth: asUser('v-read'), status: 401 },
      { who: 'Basic naming another role with ?role=', auth: basic('pw-user', () => key('pw-user')), status: 401, request: () => ({ method: 'PUT', path: `/authn/${A}/password?role=user:v-read`, body: NEW_PASSWORD }) },
      { who: `another account's credentials (${OTHER} admin)`, auth: basic('admin', () => foreignKey), status: 401 },
      { who: 'a host (hosts have no password)', auth: basic('host/pw-host', () => key('host/pw-host')), status: 403 },
      {
        who: 'its own API key',
        auth: basic('pw-user', () => key('pw-user')),
        status: 204,
        check: async (r) => {
          expect(r.text).toBe('');
          const login = await api.request('GET', `/authn/${A}/login`, { headers: { Authorization: `Basic ${Buffer.from(`pw-user:${NEW_PASSWORD}`).toString('base64')}` } });
          expect(login.status).toBe(200);
        },
      },
    ],
  },
  {
    route: 'PUT /authn/{account}/api_key',
    what: 'own API key rotation (Basic)',
    request: () => ({ method: 'PUT', path: `/authn/${A}/api_key` }),
    cases: [
      { who: 'no credentials', auth: none, status: 401 },
      { who: 'a wrong password', auth: basic('rot-self', () => 'Wrong-Passw0rd!!'), status: 401 },
      { who: 'the API key with its last character changed', auth: basic('rot-self', () => nearMiss(key('rot-self'))), status: 401 },
      { who: 'Basic naming another role with ?role=', auth: basic('rot-self', () => key('rot-self')), status: 401, request: () => ({ method: 'PUT', path: `/authn/${A}/api_key?role=${VICTIM}` }) },
      { who: 'an access token on its own record', auth: asUser('v-read'), status: 401 },
      {
        who: 'its own API key',
        auth: basic('rot-self', () => key('rot-self')),
        status: 200,
        check: async (r) => {
          const old = key('rot-self');
          expect(r.text).not.toBe(old);
          keys.set('rot-self', r.text);
          plant('API key of rot-self (rotated)', r.text);
          expect((await api.request('POST', `/authn/${A}/rot-self/authenticate`, { body: old })).status).toBe(401);
        },
      },
    ],
  },
  {
    route: 'PUT /authn/{account}/api_key',
    what: `rotating another role's API key (?role=${VICTIM}, needs update)`,
    request: () => ({ method: 'PUT', path: `/authn/${A}/api_key?role=${VICTIM}` }),
    cases: tokenCases({
      seers: { 'h-read': 403 },
      exact: { 'h-update': { status: 200, check: (r) => plant('API key of victim (rotated by h-update)', r.text) } },
      owner: { status: 200, check: (r) => plant('API key of victim (rotated by owner)', r.text) },
    }),
  },
  {
    route: 'GET /authn/{account}/api_key',
    what: 'own API key information (Basic)',
    request: () => ({ method: 'GET', path: `/authn/${A}/api_key` }),
    cases: [
      { who: 'no credentials', auth: none, status: 401 },
      { who: 'the API key with its last character changed', auth: basic('pw-user', () => nearMiss(key('pw-user'))), status: 401 },
      { who: 'Basic naming another role with ?role=', auth: basic('pw-user', () => key('pw-user')), status: 401, request: () => ({ method: 'GET', path: `/authn/${A}/api_key?role=${VICTIM}` }) },
      { who: 'its own API key', auth: basic('pw-user', () => key('pw-user')), status: 200, check: (r) => expect(r.json.role).toBe(`${A}:user:pw-user`) },
    ],
  },
  {
    route: 'GET /authn/{account}/api_key',
    what: `another role's API key information (?role=${VICTIM}, needs update)`,
    request: () => ({ method: 'GET', path: `/authn/${A}/api_key?role=${VICTIM}` }),
    cases: tokenCases({
      seers: { 'h-read': 403 },
      exact: { 'h-update': { status: 200, check: (r) => expect(r.json.role).toBe(`${A}:${VICTIM}`) } },
      owner: 200,
    }),
  },

  // --- authn-jwt
  {
    route: 'POST /authn-jwt/{service_id}/{account}/authenticate',
    what: 'JWT → access token, identity from the token (gitlab)',
    request: () => ({ method: 'POST', path: `/authn-jwt/gitlab/${A}/authenticate` }),
    cases: jwtCases((acct) => `/authn-jwt/gitlab/${acct}/authenticate`, 'gitlab'),
  },
  {
    route: 'POST /authn-jwt/{service_id}/{account}/{id}/authenticate',
    what: 'JWT → access token, identity in the URL (static)',
    request: () => ({ method: 'POST', path: `/authn-jwt/static/${A}/${encodeURIComponent('host/jwt/static-runner')}/authenticate` }),
    cases: jwtCases((acct) => `/authn-jwt/static/${acct}/${encodeURIComponent('host/jwt/static-runner')}/authenticate`, 'static', [
      {
        who: 'a valid jwt for a host without authenticate on the service',
        auth: none,
        status: 401,
        setup: async () => {
          currentJwt = await jwt('static');
        },
        request: () => ({ method: 'POST', path: `/authn-jwt/static/${A}/${encodeURIComponent('host/jwt/outsider')}/authenticate`, ...form(`jwt=${encodeURIComponent(currentJwt)}`) }),
      },
    ]),
  },
  {
    route: 'GET /authn-jwt/{service_id}/{account}/status',
    what: 'authenticator status (needs read on the status webservice; Conjur answers 403 without it, visible or not)',
    request: () => ({ method: 'GET', path: `/authn-jwt/static/${A}/status` }),
    cases: amend(
      tokenCases({
        blind: 403,
        foreign: 403,
        seers: { 'ws-exec': 403 },
        exact: { 'ws-read': { status: 200, check: (r) => expect(r.json).toEqual({ status: 'ok' }) } },
        owner: 200,
      }),
      ['a token of a deleted role'],
      { contractGap: "openapi.yaml documents this route's 403 as JSON only; the shared deleted-role 403 has an empty body" },
    ),
  },
  {
    route: 'PATCH /authn-jwt/{service_id}/{account}',
    what: 'enabling an authenticator (needs update on its webservice)',
    request: () => ({ method: 'PATCH', path: `/authn-jwt/static/${A}`, ...form('enabled=true') }),
    cases: tokenCases({
      seers: { 'ws-exec': 403, 'ws-read': 403 },
      exact: { 'ws-update': 204 },
      owner: 204,
    }),
  },

  // --- policies
  {
    route: 'POST /policies/{account}/policy/{id}',
    what: 'add to policy app (needs create)',
    request: () => ({ method: 'POST', path: `/policies/${A}/policy/app`, body: LOAD_TEXT }),
    cases: tokenCases({ seers: { 'p-read': 403, 'p-update': 403 }, exact: { 'p-create': 201 }, owner: 201 }),
  },
  {
    route: 'PATCH /policies/{account}/policy/{id}',
    what: 'update policy app (needs update on the policy only)',
    request: () => ({ method: 'PATCH', path: `/policies/${A}/policy/app`, body: LOAD_TEXT }),
    cases: tokenCases({ seers: { 'p-read': 403, 'p-create': 403 }, exact: { 'p-shallow': 201, 'p-update': 201 }, owner: 201 }),
  },
  {
    route: 'PUT /policies/{account}/policy/{id}',
    what: 'replace policy app (needs update on it and on everything beneath: app/inner, app/inner/key)',
    request: () => ({ method: 'PUT', path: `/policies/${A}/policy/app`, body: LOAD_TEXT }),
    cases: tokenCases({ seers: { 'p-read': 403, 'p-create': 403, 'p-shallow': 403 }, exact: { 'p-update': 201 }, owner: 201 }),
  },
  {
    route: 'PUT /policies/{account}/policy/{id}',
    what: 'dry run of a replace of policy app (refused beneath as a real one)',
    request: () => ({ method: 'PUT', path: `/policies/${A}/policy/app?dryRun=true`, body: LOAD_TEXT }),
    cases: tokenCases({ seers: { 'p-read': 403, 'p-create': 403, 'p-shallow': 403 }, exact: { 'p-update': 200 }, owner: 200 }),
  },
  {
    route: 'GET /policies/{account}/policy/{id}',
    what: 'effective policy of app (only roles holding its owner role; others get 404)',
    request: () => ({ method: 'GET', path: `/policies/${A}/policy/app` }),
    cases: tokenCases({ seers: { 'p-read': 404, 'p-update': 404 }, owner: { status: 200, check: (r) => expect(r.text).toContain('inner') } }),
  },

  // --- resources
  { route: 'GET /resources', what: 'listing across accounts (filtered)', request: () => ({ method: 'GET', path: '/resources' }), cases: tokenCases(listingSpec()) },
  { route: 'GET /resources/{account}', what: 'listing (filtered)', request: () => ({ method: 'GET', path: `/resources/${A}` }), cases: tokenCases(listingSpec()) },
  { route: 'GET /resources/{account}/{kind}', what: 'listing of variables (filtered)', request: () => ({ method: 'GET', path: `/resources/${A}/variable` }), cases: tokenCases(listingSpec()) },
  {
    route: 'GET /resources/{account}/{kind}/{id}',
    what: 'show the variable (any privilege makes it visible; never the value)',
    request: () => ({ method: 'GET', path: `/resources/${A}/variable/${encodeURIComponent(VAR)}` }),
    cases: tokenCases({
      exact: { 'v-read': { status: 200, check: (r) => expect(r.json.id).toBe(VAR_ID) }, 'v-exec': 200, 'v-update': 200 },
      owner: 200,
    }),
  },
  {
    route: 'GET /resources/{account}/{kind}/{id}',
    what: 'permission check ?check=true&privilege=execute (not allowed → 404)',
    request: () => ({ method: 'GET', path: `/resources/${A}/variable/${encodeURIComponent(VAR)}?check=true&privilege=execute` }),
    cases: tokenCases({ seers: { 'v-read': 404, 'v-update': 404 }, exact: { 'v-exec': 204 }, owner: 204 }),
  },
  {
    route: 'GET /resources/{account}/{kind}/{id}',
    what: 'permitted roles ?permitted_roles=true&privilege=execute',
    request: () => ({ method: 'GET', path: `/resources/${A}/variable/${encodeURIComponent(VAR)}?permitted_roles=true&privilege=execute` }),
    cases: tokenCases({ exact: { 'v-read': { status: 200, check: (r) => expect(r.json).toContain(`${A}:user:v-exec`) } }, owner: 200 }),
  },

  // --- roles
  {
    route: 'GET /roles/{account}/{kind}/{id}',
    what: 'show group svc/team',
    request: () => ({ method: 'GET', path: TEAM_PATH }),
    cases: tokenCases({ exact: { 'g-read': { status: 200, check: (r) => expect(r.json.id).toBe(`${A}:group:svc/team`) } }, owner: 200 }),
  },
  {
    route: 'POST /roles/{account}/{kind}/{id}',
    what: 'add a member to group svc/team (needs create on policy svc)',
    request: () => ({ method: 'POST', path: `${TEAM_PATH}?members&member=${encodeURIComponent(MEMBER)}` }),
    cases: tokenCases({ seers: { 'g-read': 403, 'g-update': 403 }, exact: { 'g-create': 204 }, owner: 204 }),
  },
  {
    route: 'DELETE /roles/{account}/{kind}/{id}',
    what: 'remove a member from group svc/team (needs update on policy svc)',
    request: () => ({ method: 'DELETE', path: `${TEAM_PATH}?members&member=${encodeURIComponent(MEMBER)}` }),
    cases: amend(tokenCases({ seers: { 'g-read': 403, 'g-create': 403 }, exact: { 'g-update': 204 }, owner: 204 }), [''], {
      // The membership exists before every attempt, so a refusal has something to leave alone.
      setup: async () => {
        const r = await api.request('POST', `${TEAM_PATH}?members&member=${encodeURIComponent(MEMBER)}`, { token: token('admin') });
        expect(r.status).toBe(204);
      },
    }),
  },

  // --- secrets: fetch paths (read without execute is refused on every one)
  {
    route: 'GET /secrets/{account}/{kind}/{id}',
    what: 'fetch the variable (needs execute)',
    request: () => ({ method: 'GET', path: VAR_PATH }),
    cases: tokenCases({ seers: { 'v-read': 403, 'v-update': 403 }, exact: { 'v-exec': rawValue }, owner: rawValue }),
  },
  {
    route: 'GET /secrets/{account}/{kind}/{id}',
    what: 'fetch version 1 of the variable (needs execute)',
    request: () => ({ method: 'GET', path: `${VAR_PATH}?version=1` }),
    cases: tokenCases({ seers: { 'v-read': 403, 'v-update': 403 }, exact: { 'v-exec': rawValue }, owner: rawValue }),
  },
  {
    route: 'GET /secrets/{account}/{kind}/{id}',
    what: "fetch with Ruby's trailing slash (needs execute)",
    request: () => ({ method: 'GET', path: `${VAR_PATH}/` }),
    cases: tokenCases({ seers: { 'v-read': 403, 'v-update': 403 }, exact: { 'v-exec': rawValue }, owner: rawValue }),
  },
  ...(['', '/'] as const).map((slash): Row => ({
    route: 'GET /secrets',
    what: `batch fetch ${slash ? "as the Go CLI sends it (/secrets/?variable_ids=, base64)" : '?variable_ids='} (needs execute; Conjur checks it before visibility, so invisible is 403 too)`,
    request: () => ({
      method: 'GET',
      path: `/secrets${slash}?variable_ids=${encodeURIComponent(VAR_ID)}`,
      headers: slash ? { 'Accept-Encoding': 'base64' } : ({} as Record<string, string>),
    }),
    cases: tokenCases({
      blind: 403,
      foreign: 403,
      seers: { 'v-read': 403, 'v-update': 403 },
      exact: { 'v-exec': { status: 200, revealsValue: true, check: (r) => expect(batchValueOf(r, slash === '/')).toBe(CANARY) } },
      owner: { status: 200, revealsValue: true, check: (r) => expect(batchValueOf(r, slash === '/')).toBe(CANARY) },
    }),
  })),
  {
    route: 'POST /secrets/{account}/batch',
    what: "per-variable batch fetch (coffer run's path; needs execute per id)",
    request: () => ({ method: 'POST', path: `/secrets/${A}/batch`, ...json({ ids: [VAR_ID] }) }),
    cases: tokenCases({
      blind: batchOutcome('not_found'),
      foreign: batchOutcome('not_found'),
      seers: { 'v-read': batchOutcome('forbidden'), 'v-update': batchOutcome('forbidden') },
      exact: { 'v-exec': batchValue },
      owner: batchValue,
    }),
  },
  // --- secrets: writes (after the fetches, which expect the planted value)
  {
    route: 'POST /secrets/{account}/{kind}/{id}',
    what: 'set the variable (needs update)',
    request: () => ({ method: 'POST', path: VAR_PATH, body: `${CANARY}-written`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }),
    cases: amend(tokenCases({ seers: { 'v-read': 403, 'v-exec': 403 }, exact: { 'v-update': 201 }, owner: 201 }), ['v-update', 'owner'], {
      check: async (r) => {
        expect(r.text).toBe('');
        expect((await api.getSecret(token('admin'), VAR)).text).toBe(`${CANARY}-written`);
      },
    }),
  },
  {
    route: 'POST /secrets/{account}/{kind}/{id}',
    what: 'clear expirations ?expirations (needs update)',
    request: () => ({ method: 'POST', path: `${VAR_PATH}?expirations` }),
    cases: tokenCases({ seers: { 'v-read': 403, 'v-exec': 403 }, exact: { 'v-update': 201 }, owner: 201 }),
  },

  // --- host factory
  {
    route: 'POST /host_factory_tokens',
    what: 'create host-factory tokens (needs execute)',
    request: () => ({ method: 'POST', path: '/host_factory_tokens', ...form(`host_factory=${encodeURIComponent(HF_ID)}&expiration=${encodeURIComponent(futureIso(3600))}`) }),
    cases: amend(tokenCases({ seers: { 'hf-read': 403, 'hf-update': 403 }, exact: { 'hf-exec': 200 }, owner: 200 }), ['hf-exec', 'owner'], {
      check: (r) => {
        expect(r.json).toHaveLength(1);
        plant(`host-factory token ${r.json[0].token.slice(0, 6)}`, r.json[0].token);
      },
    }),
  },
  {
    route: 'DELETE /host_factory_tokens/{token}',
    what: 'revoke a host-factory token (needs update)',
    request: () => ({ method: 'DELETE', path: `/host_factory_tokens/${hfLive}` }),
    cases: amend(tokenCases({ seers: { 'hf-read': 403, 'hf-exec': 403 }, exact: { 'hf-update': 204 }, owner: 204 }), ['hf-update', 'owner'], {
      setup: async () => {
        hfForDelete = await createHfToken(3600);
      },
      request: () => ({ method: 'DELETE', path: `/host_factory_tokens/${hfForDelete}` }),
      check: async () => {
        const r = await api.request('POST', '/host_factories/hosts', { ...form('id=never'), headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Token token="${hfForDelete}"` } });
        expect(r.status).toBe(401);
      },
    }),
  },
  {
    route: 'POST /host_factories/hosts',
    what: 'enrol a host with a host-factory token',
    request: () => ({ method: 'POST', path: '/host_factories/hosts', ...form(`id=svc/enrolled-${++enrolled}`) }),
    cases: [
      { who: 'no token', auth: none, status: 401 },
      { who: 'a junk token', auth: raw(() => 'Token token="not-a-host-factory-token"'), status: 401 },
      { who: 'the live token with its last character changed', auth: raw(() => `Token token="${nearMiss(hfLive)}"`), status: 401 },
      { who: 'an access token in place of the host-factory token', auth: bearer(() => token('app-owner')), status: 401 },
      { who: 'an expired host-factory token', auth: raw(() => `Token token="${hfExpired}"`), status: 401 },
      { who: 'a revoked host-factory token', auth: raw(() => `Token token="${hfRevoked}"`), status: 401 },
      {
        who: 'a live host-factory token',
        auth: raw(() => `Token token="${hfLive}"`),
        status: 201,
        check: (r) => {
          expect(r.json.id).toBe(`${A}:host:svc/enrolled-${enrolled}`);
          plant('API key of an enrolled host', r.json.api_key);
        },
      },
    ],
  },

  // --- issuers (Conjur: create on policy conjur/issuers to create, update for the rest) and leases
  {
    route: 'POST /issuers/{account}',
    what: 'create an issuer (needs create on policy conjur/issuers)',
    request: () => ({ method: 'POST', path: `/issuers/${A}`, ...json(issuerBody(`made-${issuersMade + 1}`)) }),
    cases: amend(tokenCases({ blind: 403, foreign: 403, seers: { 'is-read': 403, 'is-update': 403 }, exact: { 'is-create': 201 }, owner: 201 }), ['is-create', 'owner'], {
      check: (r) => {
        issuersMade++;
        expect(r.json.data.password).toBe('*****');
      },
    }),
  },
  {
    route: 'GET /issuers/{account}',
    what: 'list issuers (needs update on policy conjur/issuers)',
    request: () => ({ method: 'GET', path: `/issuers/${A}` }),
    cases: tokenCases({ blind: 403, foreign: 403, seers: { 'is-read': 403, 'is-create': 403 }, exact: { 'is-update': 200 }, owner: { status: 200, check: (r) => expect(r.json.issuers.map((i: { id: string }) => i.id)).toContain('mx') } }),
  },
  {
    route: 'GET /issuers/{account}/{id}',
    what: 'show an issuer, password masked (needs update on policy conjur/issuers)',
    request: () => ({ method: 'GET', path: `/issuers/${A}/mx` }),
    cases: tokenCases({ blind: 403, foreign: 403, seers: { 'is-read': 403, 'is-create': 403 }, exact: { 'is-update': 200 }, owner: { status: 200, check: (r) => expect(r.json.data.password).toBe('*****') } }),
  },
  {
    route: 'PATCH /issuers/{account}/{id}',
    what: 'update an issuer (needs update on policy conjur/issuers)',
    request: () => ({ method: 'PATCH', path: `/issuers/${A}/mx`, ...json({ max_ttl: issuerTtl + 1 }) }),
    cases: amend(tokenCases({ blind: 403, foreign: 403, seers: { 'is-read': 403, 'is-create': 403 }, exact: { 'is-update': 200 }, owner: 200 }), ['is-update', 'owner'], {
      check: (r) => {
        issuerTtl++;
        expect(r.json.max_ttl).toBe(issuerTtl);
      },
    }),
  },
  {
    route: 'DELETE /issuers/{account}/{id}',
    what: 'delete an issuer (needs update on policy conjur/issuers)',
    request: () => ({ method: 'DELETE', path: `/issuers/${A}/mx?keep_secrets=true` }),
    cases: amend(tokenCases({ blind: 403, foreign: 403, seers: { 'is-read': 403, 'is-create': 403 }, exact: { 'is-update': 200 }, owner: 200 }), ['is-update', 'owner'], {
      setup: async () => {
        issuerForDelete = `doomed-${++issuersMade}`;
        await makeIssuer(issuerForDelete);
      },
      request: () => ({ method: 'DELETE', path: `/issuers/${A}/${issuerForDelete}?keep_secrets=true` }),
      check: async () => expect((await api.request('GET', `/issuers/${A}/${issuerForDelete}`, { token: token('admin') })).status).toBe(404),
    }),
  },
  {
    route: 'GET /leases/{account}',
    what: 'list leases (those of variables the caller can see)',
    request: () => ({ method: 'GET', path: `/leases/${A}` }),
    cases: tokenCases({
      blind: { status: 200, refused: true, check: (r) => expect(r.json.leases).toEqual([]) },
      foreign: { status: 200, refused: true, check: (r) => expect(r.json.leases).toEqual([]) },
      seers: { 'is-update': { status: 200, refused: true, check: (r) => expect(r.json.leases).toEqual([]) } },
      exact: { 'dv-read': { status: 200, check: (r) => expect(r.json.leases.length).toBeGreaterThan(0) } },
      owner: { status: 200, check: (r) => expect(r.json.leases.map((l: { id: string }) => l.id)).toContain('lease-1') },
    }),
  },
  {
    route: 'DELETE /leases/{account}/{id}',
    what: 'end a lease (needs update on the variable; its database is down here, so it stays pending: 202)',
    request: () => ({ method: 'DELETE', path: `/leases/${A}/lease-1` }),
    cases: amend(tokenCases({ seers: { 'dv-read': 403 }, exact: { 'dv-update': 202 }, owner: 202 }), ['dv-update', 'owner'], {
      setup: async () => {
        leaseForRevoke = await plantLease();
      },
      request: () => ({ method: 'DELETE', path: `/leases/${A}/${leaseForRevoke}` }),
      check: (r) => {
        expect(r.json.lease).toMatchObject({ id: leaseForRevoke, state: 'pending', attempts: 1 });
        expect(r.text).not.toContain(ISSUER_PW);
      },
    }),
  },

  // --- audit
  {
    route: 'GET /audit/{account}',
    what: 'audit events (filtered to what the caller may audit)',
    request: () => ({ method: 'GET', path: `/audit/${A}?limit=1000` }),
    cases: tokenCases({
      blind: emptyAuditPage,
      foreign: emptyAuditPage,
      seers: { 'v-read': emptyAuditPage },
      exact: { auditor: auditPageWithVar },
      owner: auditPageWithVar,
    }),
  },
  {
    route: 'GET /audit/{account}/histogram',
    what: 'audit event counts per bucket (scoped like the audit read)',
    request: () => ({
      method: 'GET',
      path: `/audit/${A}/histogram?bucket=day&since=${new Date(srv.clock.nowMs() - 10 * day).toISOString()}&until=${new Date(srv.clock.nowMs() + 10 * day).toISOString()}`,
    }),
    cases: tokenCases({
      blind: emptyHistogram,
      foreign: emptyHistogram,
      seers: { 'v-read': emptyHistogram },
      exact: { auditor: histogramWithEvents, 'root-auditor': histogramWithEvents },
      owner: histogramWithEvents,
    }),
  },

  // --- explain
  {
    route: 'GET /explain/{account}',
    what: 'why a role holds a privilege (the caller must see the role and the resource)',
    request: () => ({ method: 'GET', path: EXPLAIN_PATH() }),
    cases: tokenCases({
      // v-read sees the variable, not policy svc; auditor sees policy svc (audit on it), not the variable.
      seers: { 'v-read': 404, auditor: 404 },
      owner: {
        status: 200,
        check: (r) => {
          expect(r.json.allowed).toBe(true);
          expect(r.json.paths).toEqual([{ grant: { type: 'ownership', role: `${A}:policy:svc`, policy: expect.anything() }, edges: [] }]);
        },
      },
    }),
  },
  {
    route: 'GET /audit/{account}/verify',
    what: 'verify the audit chain (needs audit on policy root; refused with 403 whether root is visible or not)',
    request: () => ({ method: 'GET', path: `/audit/${A}/verify` }),
    cases: tokenCases({
      blind: 403,
      foreign: 403,
      seers: { 'root-reader': 403, auditor: 403 },
      exact: { 'root-auditor': { status: 200, check: (r) => expect(r.json.ok).toBe(true) } },
      owner: 200,
      ownerLogin: 'admin',
    }),
  },
];

async function send(req: Req, auth: Auth, skipContract = false): Promise<Reply> {
  const headers: Record<string, string> = { ...req.headers };
  let tokenJson: string | undefined;
  if (auth.kind === 'token') tokenJson = auth.token;
  if (auth.kind === 'raw') headers.Authorization = auth.header;
  if (auth.kind === 'basic') headers.Authorization = `Basic ${Buffer.from(`${auth.login}:${auth.secret}`).toString('base64')}`;
  return api.request(req.method, req.path, { body: req.body, headers, token: tokenJson, skipContract });
}

const routeKey = (method: string, template: string) => `${method.toUpperCase()} ${template}`;
/** The security requirements openapi.yaml states for a route, e.g. ['conjurToken'] or ['basicAuth', 'conjurToken']. */
function schemesOf(route: string): string[] {
  const [method, path] = route.split(' ') as [string, string];
  const op = loadOpenApi().paths[path]?.[method.toLowerCase()];
  return ((op?.security ?? []) as Record<string, unknown>[]).flatMap((s) => Object.keys(s));
}
const TOKEN_KINDS = ['no token', 'a junk Authorization header', 'a token with its signature altered', 'an expired token', 'a revoked token', 'a token of a deleted role', "another account's token"];
const RESOURCE_KINDS = ['blind:', 'owner '];

describe('the matrix covers every route', () => {
  it('has a row for every operation in openapi.yaml and none for an undocumented one', () => {
    const documented = new Set(listDocumentedRoutes().map((r) => routeKey(r.method, r.path)));
    const covered = new Set(ROWS.map((r) => r.route));
    const missing = [...documented].filter((r) => !covered.has(r)).sort();
    const unknown = [...covered].filter((r) => !documented.has(r)).sort();
    expect({ missing, unknown }).toEqual({ missing: [], unknown: [] });
    expect(documented.size).toBeGreaterThan(30);
  });

  it('has a row for every route the hono app registers (so a route missing from openapi.yaml is caught too)', async () => {
    // Route modules only capture services at registration, so a proxy that answers every property builds the app.
    const anything: any = new Proxy(function () {}, { get: (_t, p) => (p === 'then' ? undefined : anything), apply: () => anything });
    const { createApp } = await import('../../src/http/app.js');
    const config = { bodyLimit: 1024, policyBodyLimit: 1024, trustedProxies: [], version: 'test', logError: () => undefined };
    const app = createApp(anything, config as unknown as Parameters<typeof createApp>[1]);
    const registered = new Set(app.routes.filter((r) => r.method !== 'ALL').map((r) => routeKey(r.method, r.path.replace(/:([A-Za-z_][A-Za-z0-9_]*)(\{[^/]*\})?/g, '{$1}'))));
    const covered = new Set(ROWS.map((r) => r.route));
    expect([...registered].filter((r) => !covered.has(r)).sort()).toEqual([]);
    expect(registered.size).toBeGreaterThan(30);
  });

  it("sends every case's request to the route its row names", () => {
    const wrong: string[] = [];
    for (const row of ROWS) {
      for (const c of row.cases) {
        const req = (c.request ?? row.request)();
        const found = routeKey(req.method, findOperation(req.method, req.path).template);
        if (found !== row.route) wrong.push(`${row.route} / ${c.who}: ${req.method} ${req.path} is ${found}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('gives every token route the caller kinds: no, junk, altered, expired, revoked, deleted-role, foreign token, blind, owner; and a success', () => {
    const problems: string[] = [];
    const documented = listDocumentedRoutes().map((r) => routeKey(r.method, r.path));
    for (const route of documented.filter((r) => schemesOf(r).includes('conjurToken'))) {
      // Revoking the presented token acts on no resource: there is no one to be blind to it or to own it.
      const kinds = route === 'DELETE /authn/{account}/token' ? TOKEN_KINDS : [...TOKEN_KINDS, ...RESOURCE_KINDS];
      const rows = ROWS.filter((r) => r.route === route);
      const complete = (row: Row) => kinds.every((k) => row.cases.some((c) => c.who.startsWith(k))) && row.cases.some((c) => c.status < 300 && !c.refused);
      // A route that also takes Basic credentials has its Basic rows besides its token rows.
      const tokenOnly = !schemesOf(route).includes('basicAuth');
      const bad = tokenOnly ? rows.filter((r) => !complete(r)).map((r) => r.what) : rows.some(complete) ? [] : ['no complete token row'];
      for (const b of bad) problems.push(`${route}: ${b}`);
    }
    expect(problems).toEqual([]);
  });

  it('digests every table a refusal could change, and leaves out only the audit log and what derives from it', async () => {
    const digest = await tableDigest(store());
    expect(Object.keys(digest)).toEqual(expect.arrayContaining(DIGEST_REQUIRED_TABLES));
    expect(Object.keys(digest).filter((t) => t.startsWith('audit'))).toEqual([]);
  });
});

for (const row of ROWS) {
  describe(`${row.route} — ${row.what}`, () => {
    for (const c of row.cases) {
      const refused = c.refused ?? c.status >= 400;
      it(`${c.who} → ${c.status}${refused ? ', refused: no canary in the answer, no table changed' : ''}`, async () => {
        await c.setup?.();
        const req = (c.request ?? row.request)();
        const before = await tableDigest(store());
        const r = await send(req, c.auth(), c.contractGap !== undefined);
        expect(r.status, `${req.method} ${req.path}: ${r.text.slice(0, 400)}`).toBe(c.status);
        if (refused) {
          expect(leakedCanaries(r, canaries)).toEqual([]);
          expect(await tableDigest(store())).toEqual(before);
        } else if (!c.revealsValue) {
          expect(r.text).not.toContain(CANARY);
        }
        await c.check?.(r);
      });
    }
  });
}

// ---------------------------------------------------------------------------
// `coffer run` (the CLI's batch path) at the read/execute boundary

describe('coffer run at the read/execute boundary', () => {
  const runAs = async (login: string, outFile: string) => {
    const res = await runCli(
      ['run', '--yaml', `DB_PASS: !var ${VAR}`, '--', process.execPath, '-e', `require('fs').writeFileSync(${JSON.stringify(outFile)}, process.env.DB_PASS ?? '')`],
      {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: home,
          CONJUR_APPLIANCE_URL: srv.url,
          CONJUR_ACCOUNT: A,
          CONJUR_AUTHN_LOGIN: login,
          CONJUR_AUTHN_API_KEY: key(login),
        },
      },
    );
    return res;
  };

  it('v-read (read, no execute): exits 127 with an error naming DB_PASS, never starts the command, shows neither value nor key', async () => {
    const out = join(home, 'v-read.out');
    const res = await runAs('v-read', out);
    expect(res.code).toBe(127);
    expect(res.err).toContain('DB_PASS');
    expect(existsSync(out)).toBe(false);
    expect(`${res.out}${res.err}`).not.toContain(CANARY);
    expect(`${res.out}${res.err}`).not.toContain(key('v-read'));
  });

  it('v-exec (execute, no read): the command gets the value', async () => {
    const out = join(home, 'v-exec.out');
    const res = await runAs('v-exec', out);
    expect(res.err).toBe('');
    expect(res.code).toBe(0);
    const current = (await api.getSecret(token('admin'), VAR)).text;
    expect(current.startsWith(CANARY)).toBe(true);
    expect(readFileSync(out, 'utf8')).toBe(current);
    expect(`${res.out}${res.err}`).not.toContain(CANARY);
  });
});
