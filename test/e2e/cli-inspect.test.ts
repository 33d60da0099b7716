/** `coffer list`, `resource show|permitted-roles`, `check`, `role …` and `hostfactory …` against a real server. */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { rmSync } from 'node:fs';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { runCli, tempHome } from '../helpers/cli.js';

let srv: TestServer;
let api: Client;
let admin: string;
let home: string;
let env: NodeJS.ProcessEnv;
let aliceEnv: NodeJS.ProcessEnv;

const POLICY = `
- !user alice
- !group ops
- !grant
  role: !group ops
  member: !user alice
- !layer executors
- !host-factory
  id: executors-factory
  layers: [ !layer executors ]
- !variable
  id: prod/db/password
  annotations:
    description: primary database
- !variable prod/api-token
- !variable staging/db/password
- !permit
  role: !group ops
  privilege: [read, execute]
  resource: !variable prod/db/password
- !permit
  role: !user alice
  privilege: [read]
  resource: !variable prod/api-token
`;

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const load = await api.loadPolicy(admin, 'POST', 'root', POLICY);
  expect(load.status).toBe(201);
  home = tempHome();
  const base = { HOME: home, CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account };
  env = { ...base, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey };
  aliceEnv = { ...base, CONJUR_AUTHN_LOGIN: 'alice', CONJUR_AUTHN_API_KEY: load.json.created_roles[`${srv.account}:user:alice`].api_key };
});
afterAll(async () => {
  await srv.close();
  rmSync(home, { recursive: true, force: true });
});

describe('coffer list', () => {
  it('prints an aligned table of what the role can see', async () => {
    const r = await runCli(['list', '--kind', 'variable'], { env });
    expect(r.code).toBe(0);
    expect(r.out.split('\n')).toEqual([
      'KIND      ID                   OWNER',
      'variable  prod/api-token       cucumber:user:admin',
      'variable  prod/db/password     cucumber:user:admin',
      'variable  staging/db/password  cucumber:user:admin',
      '',
    ]);
    const alice = await runCli(['list'], { env: aliceEnv });
    expect(alice.out).toContain('prod/db/password');
    expect(alice.out).not.toContain('staging');
  });

  it('--search, --limit/--offset, --json (ids) and --inspect (objects)', async () => {
    const s = await runCli(['list', '--search', 'staging', '--json'], { env });
    expect(JSON.parse(s.out)).toEqual(['cucumber:variable:staging/db/password']);
    const page = await runCli(['list', '-k', 'variable', '--limit', '1', '--offset', '1', '--json'], { env });
    expect(JSON.parse(page.out)).toEqual(['cucumber:variable:prod/db/password']);
    const inspect = await runCli(['list', '-k', 'variable', '-s', 'primary', '--inspect'], { env });
    expect(JSON.parse(inspect.out)).toEqual([expect.objectContaining({ id: 'cucumber:variable:prod/db/password', annotations: [expect.objectContaining({ name: 'description', value: 'primary database' })] })]);
    const none = await runCli(['list', '--search', 'zzz-nothing'], { env });
    expect([none.code, none.out, none.err]).toEqual([0, '', 'No resources.\n']);
  });

  it('rejects a bad kind or limit before asking the server (exit 2)', async () => {
    for (const args of [['list', '--kind', 'secret'], ['list', '--limit', '0'], ['list', '--offset', '-1'], ['list', 'extra']]) {
      const r = await runCli(args, { env });
      expect(r.code, args.join(' ')).toBe(2);
    }
  });
});

describe('coffer resource', () => {
  it('show: key/value summary with annotations and permissions; --json is the server object', async () => {
    const r = await runCli(['resource', 'show', 'variable:prod/db/password'], { env });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^id +cucumber:variable:prod\/db\/password$/m);
    expect(r.out).toMatch(/^versions +\(no value\)$/m);
    expect(r.out).toMatch(/^ {2}description +primary database$/m);
    expect(r.out).toMatch(/^ {2}execute +cucumber:group:ops$/m);
    const j = await runCli(['resource', 'show', '-i', 'cucumber:variable:prod/db/password', '--json'], { env });
    expect(JSON.parse(j.out)).toMatchObject({ id: 'cucumber:variable:prod/db/password', owner: 'cucumber:user:admin' });
  });

  it('show does not print host-factory tokens unless --json is asked for', async () => {
    const created = await api.request('POST', '/host_factory_tokens', {
      token: admin,
      body: new URLSearchParams({ host_factory: `${srv.account}:host_factory:executors-factory`, expiration: new Date(Date.now() + 3600_000).toISOString() }).toString(),
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      skipContract: true,
    });
    expect(created.status).toBe(200);
    const token = created.json[0].token as string;
    const r = await runCli(['resource', 'show', 'host_factory:executors-factory'], { env });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^tokens +1 \(values not shown; --json prints them\)$/m);
    expect(r.out).not.toContain(token);
    await api.request('DELETE', `/host_factory_tokens/${token}`, { token: admin, skipContract: true });
  });

  it('show of an unknown or invisible resource is exit 4 with the server message; a bad id is exit 2', async () => {
    let r = await runCli(['resource', 'show', 'variable:nope'], { env });
    expect([r.code, r.err]).toEqual([4, "coffer: showing variable 'nope': Variable 'nope' not found in account 'cucumber'\n"]);
    r = await runCli(['resource', 'show', 'variable:staging/db/password'], { env: aliceEnv });
    expect(r.code).toBe(4);
    r = await runCli(['resource', 'show', 'nokind'], { env });
    expect([r.code, r.err]).toEqual([2, expect.stringContaining("'nokind' is not an id of the form KIND:ID")]);
  });

  it('permitted-roles lists roles holding a privilege (positional or -i/-p)', async () => {
    const r = await runCli(['resource', 'permitted-roles', 'variable:prod/db/password', 'execute'], { env });
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toEqual(expect.arrayContaining(['cucumber:group:ops', 'cucumber:user:admin', 'cucumber:user:alice']));
    const j = await runCli(['resource', 'permitted-roles', '-i', 'variable:prod/api-token', '-p', 'execute', '--json'], { env });
    expect(JSON.parse(j.out)).not.toContain('cucumber:user:alice');
    const bad = await runCli(['resource', 'permitted-roles', 'variable:prod/api-token'], { env });
    expect(bad.code).toBe(2);
  });
});

describe('coffer check', () => {
  it('prints true and exits 0, or false and exits 1', async () => {
    let r = await runCli(['check', 'variable:prod/db/password', 'execute'], { env: aliceEnv });
    expect([r.code, r.out]).toEqual([0, 'true\n']);
    r = await runCli(['check', 'variable:prod/api-token', 'execute'], { env: aliceEnv });
    expect([r.code, r.out]).toEqual([1, 'false\n']);
    r = await runCli(['check', '-i', 'variable:prod/api-token', '-p', 'read', '--role', 'user:alice'], { env });
    expect([r.code, r.out]).toEqual([0, 'true\n']);
    r = await runCli(['check', 'variable:staging/db/password', 'read', '--role', 'cucumber:user:alice'], { env });
    expect([r.code, r.out]).toEqual([1, 'false\n']);
  });

  it("asking for a role you don't hold is exit 4; missing arguments exit 2", async () => {
    const r = await runCli(['check', 'variable:prod/db/password', 'execute', '--role', 'user:admin'], { env: aliceEnv });
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/^coffer: checking for user:admin: /);
    expect((await runCli(['check', 'variable:prod/db/password'], { env })).code).toBe(2);
  });
});

describe('coffer role', () => {
  it('members, memberships and all', async () => {
    const m = await runCli(['role', 'members', 'group:ops'], { env });
    expect(m.code).toBe(0);
    expect(m.out.split('\n')[0]).toMatch(/^MEMBER +ADMIN +OWNER +POLICY$/);
    expect(m.out).toMatch(/^cucumber:user:alice +no +no +cucumber:policy:root$/m);
    expect(m.out).toMatch(/^cucumber:user:admin +yes +yes +cucumber:policy:root$/m);
    const ms = await runCli(['role', 'memberships', '-i', 'user:alice'], { env });
    expect(ms.out).toMatch(/^cucumber:group:ops +no +no/m);
    const all = await runCli(['role', 'all', 'user:alice'], { env });
    expect(all.out.trim().split('\n').sort()).toEqual(['cucumber:group:ops', 'cucumber:user:alice']);
    // As in Conjur, a user with no privilege on its own user resource cannot see it.
    expect((await runCli(['role', 'all', 'user:alice'], { env: aliceEnv })).code).toBe(4);
    const json = await runCli(['role', 'all', 'user:alice', '--json'], { env });
    expect(JSON.parse(json.out)).toContain('cucumber:group:ops');
  });

  it('errors: invisible role (4), not a role kind (2), unknown subcommand (2)', async () => {
    expect((await runCli(['role', 'members', 'user:admin'], { env: aliceEnv })).code).toBe(4);
    expect((await runCli(['role', 'members', 'variable:prod/api-token'], { env })).code).toBe(2);
    expect((await runCli(['role', 'graph', 'user:alice'], { env })).code).toBe(2);
    expect((await runCli(['role', 'members'], { env })).code).toBe(2);
  });
});

describe('coffer hostfactory', () => {
  it('tokens create → hosts create (token from stdin, no login) → the host authenticates; tokens revoke → the token is refused', async () => {
    const c = await runCli(['hostfactory', 'tokens', 'create', '-i', 'executors-factory', '--duration', '30m', '--cidr', '127.0.0.1/32', '--json'], { env });
    expect(c.code).toBe(0);
    const [tok] = JSON.parse(c.out) as { token: string; expiration: string; cidr: string[] }[];
    expect(tok!.cidr).toEqual(['127.0.0.1/32']);
    expect(Date.parse(tok!.expiration) - Date.now()).toBeGreaterThan(25 * 60_000);

    const anon = { HOME: home, CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account };
    const h = await runCli(['hostfactory', 'hosts', 'create', '-i', 'ci/executor-7', '--annotation', 'team=ci'], { env: anon, stdin: tok!.token });
    expect(h.code).toBe(0);
    expect(h.err).toContain('Created cucumber:host:ci/executor-7; its API key — shown only once');
    const key = h.out.trim();
    expect(key).toMatch(/^[0-9a-z]{40,}$/);
    const who = await runCli(['whoami', '--json'], { env: { ...anon, CONJUR_AUTHN_LOGIN: 'host/ci/executor-7', CONJUR_AUTHN_API_KEY: key } });
    expect(JSON.parse(who.out).username).toBe('host/ci/executor-7');
    const shown = await runCli(['resource', 'show', 'host:ci/executor-7', '--json'], { env });
    expect(JSON.parse(shown.out).annotations).toEqual([expect.objectContaining({ name: 'team', value: 'ci' })]);

    const rv = await runCli(['hostfactory', 'tokens', 'revoke'], { env, stdin: `${tok!.token}\n` });
    expect([rv.code, rv.out]).toEqual([0, 'Revoked the host-factory token.\n']);
    const again = await runCli(['hostfactory', 'hosts', 'create', '-i', 'ci/executor-8', '-t', tok!.token], { env: anon });
    expect(again.code).toBe(6);
    expect(again.err).toContain('the host-factory token was not accepted');
    const twice = await runCli(['hostfactory', 'tokens', 'revoke', '-t', tok!.token], { env });
    expect(twice.code).toBe(4);
  });

  it('the human table shows the tokens under a shown-once notice', async () => {
    const c = await runCli(['hostfactory', 'tokens', 'create', '-i', 'host_factory:executors-factory', '-c', '2'], { env });
    expect(c.code).toBe(0);
    expect(c.err).toContain('2 host-factory tokens for cucumber:host_factory:executors-factory');
    expect(c.out.split('\n')[0]).toMatch(/^TOKEN +EXPIRATION +CIDR$/);
    expect(c.out.trim().split('\n')).toHaveLength(3);
  });

  it('errors: a role without execute (4), a bad duration or missing id (2), an unknown factory (4)', async () => {
    let r = await runCli(['hostfactory', 'tokens', 'create', '-i', 'executors-factory'], { env: aliceEnv });
    expect(r.code).toBe(4);
    r = await runCli(['hostfactory', 'tokens', 'create', '-i', 'executors-factory', '--duration', 'soon'], { env });
    expect([r.code, r.err]).toEqual([2, expect.stringContaining("--duration 'soon' is not a duration")]);
    r = await runCli(['hostfactory', 'tokens', 'create'], { env });
    expect(r.code).toBe(2);
    r = await runCli(['hostfactory', 'tokens', 'create', '-i', 'nope'], { env });
    expect(r.code).toBe(4);
    r = await runCli(['hostfactory', 'hosts', 'create', '-i', 'x'], { env, stdin: '' });
    expect([r.code, r.err]).toEqual([2, expect.stringContaining('no host-factory token given')]);
    r = await runCli(['hostfactory', 'hosts', 'create', '-i', 'x', '-t', 'bogus-token'], { env });
    expect(r.code).toBe(6);
  });
});
