/**
 * End to end: GET /explain/{account} on a real server — paths through a
 * layer, through nested groups, through ownership, several paths at once,
 * no_permit, the policy version that declared each edge, 404 for a role or a
 * resource the caller cannot see (the same body as for a missing one),
 * malformed queries, and the audit event of an explanation.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client, type Reply } from '../helpers/http.js';
import { runCli, tempHome } from '../helpers/cli.js';

let srv: TestServer;
let api: Client;
let admin: string;
let viewer: string;
const A = 'cucumber';
const id = (kind: string, identifier: string) => `${A}:${kind}:${identifier}`;
const CI = id('policy', 'ci');

const ROOT = `
- !user viewer
- !policy ci
`;

/** Version 1 of policy ci (loaded into ci, so its rows belong to ci). */
const V1 = `
  - !variable db/password
  - !variable other
  - !layer executors
  - !host executor-01
  - !host nested
  - !host multi
  - !host lonely
  - !group inner
  - !group outer
  - !group keepers
  - !variable
    id: owned
    owner: !group keepers
  - !grant
    role: !layer executors
    member: !host executor-01
  - !permit
    role: !layer executors
    privilege: [ execute ]
    resource: !variable db/password
  - !grant
    role: !group outer
    member: !group inner
  - !grant
    role: !group inner
    member: !host nested
  - !permit
    role: !group outer
    privilege: [ read ]
    resource: !variable db/password
  - !grant
    role: !group keepers
    member: !group outer
`;

/** Version 2 of policy ci: host multi reaches execute on db/password three ways. */
const V2 = `
- !grant
  role: !layer executors
  member: !host multi
- !grant
  role: !group inner
  member: !host multi
- !permit
  role: !group outer
  privilege: [ execute ]
  resource: !variable db/password
- !permit
  role: !host multi
  privilege: [ execute ]
  resource: !variable db/password
`;

const VIEWER = `
- !permit
  role: !user viewer
  privilege: [ read ]
  resource: [ !host ci/executor-01, !variable ci/other ]
`;

function explain(token: string, role: string, privilege: string, resource: string, skipContract = false): Promise<Reply> {
  const q = new URLSearchParams({ role, privilege, resource });
  return api.request('GET', `/explain/${A}?${q}`, { token, skipContract });
}

beforeAll(async () => {
  srv = await startTestServer({ account: A });
  api = new Client(srv.url, A);
  admin = await api.login('admin', srv.adminKey);
  const r0 = await api.loadPolicy(admin, 'POST', 'root', ROOT);
  expect(r0.status, r0.text).toBe(201);
  const r1 = await api.loadPolicy(admin, 'POST', 'ci', V1);
  expect([r1.status, r1.json?.version], r1.text).toEqual([201, 1]);
  const r2 = await api.loadPolicy(admin, 'POST', 'ci', V2);
  expect([r2.status, r2.json?.version], r2.text).toEqual([201, 2]);
  const r3 = await api.loadPolicy(admin, 'POST', 'ci', '- !group late\n- !grant\n  role: !group late\n  member: !host lonely\n');
  expect([r3.status, r3.json?.version], r3.text).toEqual([201, 3]);
  const r4 = await api.loadPolicy(admin, 'POST', 'root', VIEWER);
  expect(r4.status, r4.text).toBe(201);
  viewer = await api.login('viewer', r0.json.created_roles[id('user', 'viewer')].api_key);
});

afterAll(async () => {
  await srv?.close();
});

const cliEnv = () => ({ HOME: tempHome(), CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: A, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey });

describe('GET /explain/{account}', () => {
  it('explains a permit held by a layer the host is a member of (host → layer → permit), labelled with the declaring policy and version', async () => {
    const r = await explain(admin, id('host', 'ci/executor-01'), 'execute', id('variable', 'ci/db/password'));
    expect(r.status, r.text).toBe(200);
    expect(r.json).toEqual({
      role: id('host', 'ci/executor-01'),
      privilege: 'execute',
      resource: id('variable', 'ci/db/password'),
      allowed: true,
      paths: [
        {
          grant: { type: 'permit', role: id('layer', 'ci/executors'), policy: { id: CI, version: 1 } },
          edges: [{ member: id('host', 'ci/executor-01'), role: id('layer', 'ci/executors'), admin_option: false, ownership: false, policy: { id: CI, version: 1 } }],
        },
      ],
      paths_truncated: false,
      reason: null,
      message: expect.stringContaining('through 1 path'),
    });
  });

  it('explains a permit reached through two nested groups (host → group inner → group outer → permit)', async () => {
    const r = await explain(admin, id('host', 'ci/nested'), 'read', id('variable', 'ci/db/password'));
    expect(r.status, r.text).toBe(200);
    expect(r.json.allowed).toBe(true);
    expect(r.json.paths).toEqual([
      {
        grant: { type: 'permit', role: id('group', 'ci/outer'), policy: { id: CI, version: 1 } },
        edges: [
          { member: id('host', 'ci/nested'), role: id('group', 'ci/inner'), admin_option: false, ownership: false, policy: { id: CI, version: 1 } },
          { member: id('group', 'ci/inner'), role: id('group', 'ci/outer'), admin_option: false, ownership: false, policy: { id: CI, version: 1 } },
        ],
      },
    ]);
  });

  it('explains ownership: the resource is owned by a group the host reaches in three hops, and an owner holds any privilege', async () => {
    const r = await explain(admin, id('host', 'ci/nested'), 'anything-at-all', id('variable', 'ci/owned'));
    expect(r.status, r.text).toBe(200);
    expect(r.json.allowed).toBe(true);
    expect(r.json.paths).toHaveLength(1);
    expect(r.json.paths[0].grant).toEqual({ type: 'ownership', role: id('group', 'ci/keepers'), policy: { id: CI, version: 1 } });
    expect(r.json.paths[0].edges.map((e: { member: string; role: string }) => [e.member, e.role])).toEqual([
      [id('host', 'ci/nested'), id('group', 'ci/inner')],
      [id('group', 'ci/inner'), id('group', 'ci/outer')],
      [id('group', 'ci/outer'), id('group', 'ci/keepers')],
    ]);
  });

  it('lists every path, shortest first: a direct permit, one through a layer, one through two groups, each labelled with its version', async () => {
    const r = await explain(admin, id('host', 'ci/multi'), 'execute', id('variable', 'ci/db/password'));
    expect(r.status, r.text).toBe(200);
    expect(r.json.allowed).toBe(true);
    expect(r.json.paths_truncated).toBe(false);
    const chains = r.json.paths.map((p: { grant: { role: string }; edges: { role: string }[] }) => [...p.edges.map((e) => e.role), `⇒ ${p.grant.role}`]);
    expect(chains).toEqual([
      [`⇒ ${id('host', 'ci/multi')}`],
      [id('layer', 'ci/executors'), `⇒ ${id('layer', 'ci/executors')}`],
      [id('group', 'ci/inner'), id('group', 'ci/outer'), `⇒ ${id('group', 'ci/outer')}`],
    ]);
    expect(r.json.message).toContain('through 3 paths');
    // Declared by version 2 (the memberships of multi, the permits of multi and of outer), except inner → outer (version 1).
    const versions = r.json.paths.map((p: { grant: { policy: { version: number } }; edges: { policy: { version: number } }[] }) => [
      p.grant.policy.version,
      ...p.edges.map((e) => e.policy.version),
    ]);
    expect(versions).toEqual([[2], [1, 2], [2, 2, 1]]);
  });

  it('labels an edge with the version of the load that declared it (version 3 of ci), and the path to an owner role', async () => {
    // Policy ci owns group late (its record); admin owns policy ci: admin → ci → late is an ownership chain.
    const r = await explain(admin, id('host', 'ci/lonely'), 'read', id('variable', 'ci/other'));
    expect(r.json.allowed).toBe(false);
    const rows = await srv.server.vault.services.store.graph.membershipsOf(id('host', 'ci/lonely'));
    expect(rows.filter((m) => m.ownership === 0).map((m) => [m.role_id, m.policy_id, Number(m.policy_version)])).toEqual([[id('group', 'ci/late'), CI, 3]]);
    const owner = await explain(admin, id('user', 'admin'), 'read', id('group', 'ci/late'));
    expect(owner.status, owner.text).toBe(200);
    expect(owner.json.allowed).toBe(true);
    const ownership = owner.json.paths.find((p: { grant: { type: string } }) => p.grant.type === 'ownership');
    expect(ownership.grant).toEqual({ type: 'ownership', role: CI, policy: { id: CI, version: 3 } });
    expect(ownership.edges.map((e: { member: string; role: string; ownership: boolean }) => [e.member, e.role, e.ownership])).toEqual([[id('user', 'admin'), CI, true]]);
  });

  it('answers allowed false with reason no_permit and a message when nothing grants the privilege', async () => {
    const r = await explain(admin, id('host', 'ci/lonely'), 'execute', id('variable', 'ci/db/password'));
    expect(r.status, r.text).toBe(200);
    expect(r.json).toEqual({
      role: id('host', 'ci/lonely'),
      privilege: 'execute',
      resource: id('variable', 'ci/db/password'),
      allowed: false,
      paths: [],
      paths_truncated: false,
      reason: 'no_permit',
      message: expect.stringContaining('does not hold execute'),
    });
    // read is granted to outer, not to executors: executor-01 has execute only.
    const read = await explain(admin, id('host', 'ci/executor-01'), 'read', id('variable', 'ci/db/password'));
    expect([read.json.allowed, read.json.reason]).toEqual([false, 'no_permit']);
  });

  it('accepts kind:id in the path account as well as full ids', async () => {
    const r = await explain(admin, 'host:ci/executor-01', 'execute', 'variable:ci/db/password');
    expect(r.status, r.text).toBe(200);
    expect([r.json.role, r.json.resource, r.json.allowed]).toEqual([id('host', 'ci/executor-01'), id('variable', 'ci/db/password'), true]);
  });

  it('404 when the caller cannot see the resource, with the same body as for a missing resource', async () => {
    const hidden = id('variable', 'ci/db/password');
    const missing = id('variable', 'ci/no-such-variable');
    const a = await explain(viewer, id('host', 'ci/executor-01'), 'execute', hidden);
    const b = await explain(viewer, id('host', 'ci/executor-01'), 'execute', missing);
    expect([a.status, b.status]).toEqual([404, 404]);
    expect(a.text.replaceAll('ci/db/password', 'X')).toBe(b.text.replaceAll('ci/no-such-variable', 'X'));
    expect(a.json.error.code).toBe('not_found');
  });

  it('404 when the caller cannot see the role, with the same body as for a missing role', async () => {
    const a = await explain(viewer, id('host', 'ci/lonely'), 'read', id('variable', 'ci/other'));
    const b = await explain(viewer, id('host', 'ci/no-such-host'), 'read', id('variable', 'ci/other'));
    expect([a.status, b.status]).toEqual([404, 404]);
    expect(a.text.replaceAll('ci/lonely', 'X')).toBe(b.text.replaceAll('ci/no-such-host', 'X'));
    // The viewer sees both ends here: an answer, not a 404.
    const seen = await explain(viewer, id('host', 'ci/executor-01'), 'read', id('variable', 'ci/other'));
    expect([seen.status, seen.json.allowed]).toEqual([200, false]);
  });

  it('422 for a missing or malformed role, privilege or resource', async () => {
    const cases: [string, string][] = [
      [`role=&privilege=read&resource=${id('variable', 'ci/other')}`, "'role' is required"],
      [`privilege=read&resource=${id('variable', 'ci/other')}`, "'role' is required"],
      [`role=justone&privilege=read&resource=${id('variable', 'ci/other')}`, 'Invalid id'],
      [`role=${id('host', 'ci/nested')}&resource=${id('variable', 'ci/other')}`, "'privilege' is required"],
      [`role=${id('host', 'ci/nested')}&privilege=re%01ad&resource=${id('variable', 'ci/other')}`, 'control character'],
      [`role=${id('host', 'ci/nested')}&privilege=read&resource=variable:`, 'Invalid id'],
      [`role=${id('host', 'ci/nested')}&privilege=read`, "'resource' is required"],
    ];
    for (const [query, message] of cases) {
      const r = await api.request('GET', `/explain/${A}?${query}`, { token: admin });
      expect(r.status, query).toBe(422);
      expect(r.json.error.message, query).toContain(message);
    }
  });

  it('401 without a token', async () => {
    const r = await api.request('GET', `/explain/${A}?role=host:ci/nested&privilege=read&resource=variable:ci/other`);
    expect(r.status).toBe(401);
  });

  it('audits each explanation (action explain, with the asked role, privilege and answer)', async () => {
    await explain(admin, id('host', 'ci/nested'), 'read', id('variable', 'ci/db/password'));
    const r = await api.request('GET', `/audit/${A}?action=explain&limit=1`, { token: admin });
    expect(r.status, r.text).toBe(200);
    const [event] = r.json.events;
    expect(event.action).toBe('explain');
    expect(event.result).toBe('success');
    expect(event.role).toBe(id('user', 'admin'));
    expect(event.resource).toBe(id('variable', 'ci/db/password'));
    expect(JSON.stringify(event)).toContain(id('host', 'ci/nested'));
  });
});

describe('coffer explain', () => {
  it('prints each path as a chain with the policy and version of each step, and exits 0', async () => {
    const r = await runCli(['explain', 'host:ci/multi', 'execute', 'variable:ci/db/password'], { env: cliEnv() });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.split('\n').filter(Boolean)).toEqual([
      'allowed: host:ci/multi execute variable:ci/db/password — 3 paths',
      '  1. host:ci/multi ⇒ permit execute (policy ci v2)',
      '  2. host:ci/multi → layer:ci/executors (policy ci v2) ⇒ permit execute (policy ci v1)',
      '  3. host:ci/multi → group:ci/inner (policy ci v2) → group:ci/outer (policy ci v1) ⇒ permit execute (policy ci v2)',
    ]);
  });

  it('prints an ownership path', async () => {
    const r = await runCli(['explain', `${A}:host:ci/nested`, 'update', `${A}:variable:ci/owned`], { env: cliEnv() });
    expect(r.code).toBe(0);
    expect(r.out).toContain(
      '  1. host:ci/nested → group:ci/inner (policy ci v1) → group:ci/outer (policy ci v1) → group:ci/keepers (policy ci v1) ⇒ owns variable:ci/owned (policy ci v1)',
    );
  });

  it('prints "no path" with the reason and exits 1 when the role does not hold the privilege', async () => {
    const r = await runCli(['explain', 'host:ci/lonely', 'execute', 'variable:ci/db/password'], { env: cliEnv() });
    expect(r.code).toBe(1);
    expect(r.out).toContain('no path: host:ci/lonely cannot execute variable:ci/db/password (no_permit)');
    expect(r.out).toContain('does not hold execute');
  });

  it('--json prints the API answer as is', async () => {
    const r = await runCli(['explain', 'host:ci/executor-01', 'execute', 'variable:ci/db/password', '--json'], { env: cliEnv() });
    expect(r.code).toBe(0);
    const api = await explain(admin, id('host', 'ci/executor-01'), 'execute', id('variable', 'ci/db/password'));
    expect(JSON.parse(r.out)).toEqual(api.json);
    const no = await runCli(['explain', 'host:ci/lonely', 'execute', 'variable:ci/db/password', '--json'], { env: cliEnv() });
    expect(no.code).toBe(1);
    expect(JSON.parse(no.out)).toMatchObject({ allowed: false, reason: 'no_permit', paths: [] });
  });

  it('--help prints the usage with an example, exit 0; the top-level help lists explain', async () => {
    const r = await runCli(['explain', '--help'], { env: { HOME: tempHome() } });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^usage: coffer explain ROLE PRIVILEGE RESOURCE/);
    expect(r.out).toMatch(/\nExample:\n {2}coffer explain host:ci\/executor-01 execute variable:ci\/db\/password/);
    expect((await runCli(['--help'], { env: {} })).out).toContain('explain ROLE PRIVILEGE RESOURCE [--json]');
  });

  it('exits 4 when the role or resource is not found, 2 on a usage error', async () => {
    const r = await runCli(['explain', 'host:ci/executor-01', 'execute', 'variable:ci/nope'], { env: cliEnv() });
    expect(r.code).toBe(4);
    expect(r.err).toContain("Variable 'ci/nope' not found");
    const usage = await runCli(['explain', 'host:ci/executor-01', 'execute'], { env: cliEnv() });
    expect(usage.code).toBe(2);
    const badKind = await runCli(['explain', 'variable:ci/other', 'execute', 'variable:ci/other'], { env: cliEnv() });
    expect(badKind.code).toBe(2);
  });
});
