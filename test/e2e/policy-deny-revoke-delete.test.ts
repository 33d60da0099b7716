/**
 * End to end (issue 13 item 3): `!deny`, `!revoke` and `!delete` applied
 * through the real server with PATCH, checked where it matters — the rows in
 * the database and what the affected role can then fetch — and the same
 * statements through `coffer policy update --dry-run`, whose plan must show
 * the removal while nothing changes.
 *
 * Conjur's rules (reference §2.3–§2.4, §3): `!deny` and `!revoke` remove only
 * rows the loaded policy created; a role that keeps some privilege on a
 * resource still sees it (403 without `execute`), one with none no longer
 * does (404); `!delete` removes the record and cascades to its secrets,
 * permissions, annotations, memberships and credentials.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { runCli, tempHome } from '../helpers/cli.js';
import { openRawDb, type RawDb } from '../helpers/raw-db.js';

let srv: TestServer;
let api: Client;
let admin: string;
let db: RawDb;
let dir: string;
let env: NodeJS.ProcessEnv;
const keys: Record<string, string> = {};
const A = () => srv.account;
const id = (kind: string, name: string) => `${A()}:${kind}:${name}`;

/** The tables a policy load can touch (the audit log aside, which a dry run may append to). */
const STATE_TABLES = ['roles', 'resources', 'role_memberships', 'permissions', 'annotations', 'credentials', 'secrets', 'policy_versions', 'host_factory_tokens'];

async function digest(): Promise<string> {
  const h = createHash('sha256');
  for (const t of STATE_TABLES) {
    const rows = await db.all(`SELECT * FROM ${t}`);
    const text = rows.map((r) => JSON.stringify(r)).sort();
    h.update(`${t}\n${text.join('\n')}\n`);
  }
  return h.digest('hex');
}

const count = async (sql: string, ...args: unknown[]) => ((await db.get(sql, ...args)) as { n: number }).n;
const permissionRows = async (resource: string, role: string) =>
  (await db.all<{ privilege: string }>('SELECT privilege FROM permissions WHERE resource_id = ? AND role_id = ? ORDER BY privilege', resource, role)).map((r) => r.privilege);
const membershipRow = (role: string, member: string) => count('SELECT count(*) AS n FROM role_memberships WHERE role_id = ? AND member_id = ?', role, member);

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** `coffer policy update -b app --dry-run`: returns the plan; asserts exit 0 and that no table changed. */
async function dryRun(name: string, text: string): Promise<string[]> {
  const before = await digest();
  const r = await runCli(['policy', 'update', '-b', 'app', '-f', file(name, text), '--dry-run'], { env });
  expect([r.code, r.err]).toEqual([0, '']);
  expect(r.out).toContain('This was a dry run: nothing was changed.');
  expect(await digest()).toBe(before);
  return r.out.split('\n');
}

/** The indented detail lines of one record in a plan (after its `~ id` / `- id` line). */
function planEntry(lines: string[], head: string): string[] {
  const i = lines.indexOf(head);
  expect(i, `plan has no line '${head}':\n${lines.join('\n')}`).toBeGreaterThanOrEqual(0);
  const out: string[] = [];
  for (let j = i + 1; j < lines.length && lines[j]!.startsWith('      '); j++) out.push(lines[j]!.trim());
  return out;
}

async function patchApp(text: string) {
  const r = await api.loadPolicy(admin, 'PATCH', 'app', text);
  expect(r.status).toBe(201);
  return r;
}

const fetchAs = async (token: string, variable: string) => (await api.getSecret(token, variable)).status;

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  dir = tempHome();
  env = { HOME: dir, CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey };
  expect((await api.loadPolicy(admin, 'POST', 'root', '- !policy app\n')).status).toBe(201);
  // Everything below is loaded into policy 'app' itself, so PATCHes of 'app' own these rows.
  const r = await api.loadPolicy(admin, 'POST', 'app', `
- !variable denied
- !variable granted
- !variable
  id: doomed
  annotations:
    description: to be deleted
- !host runner
- !host watcher
- !host
  id: doomed-host
  annotations:
    description: to be deleted
- !user doomed-user
- !group readers
- !group doomed-group
- !permit
  role: !host runner
  privilege: [ read, execute ]
  resource: !variable denied
- !permit
  role: !group readers
  privilege: [ read, execute ]
  resource: !variable granted
- !grant
  role: !group readers
  member: !host watcher
- !permit
  role: !host runner
  privilege: [ read, execute ]
  resource: !variable doomed
- !permit
  role: !host doomed-host
  privilege: [ read, execute ]
  resource: !variable granted
- !permit
  role: !group doomed-group
  privilege: [ read, execute ]
  resource: !variable granted
- !grant
  role: !group doomed-group
  members: [ !user doomed-user, !host runner ]
- !grant
  role: !group readers
  member: !group doomed-group
`);
  expect(r.status).toBe(201);
  for (const [full, v] of Object.entries(r.json.created_roles as Record<string, { api_key: string }>)) keys[full] = v.api_key;
  for (const v of ['app/denied', 'app/granted']) expect((await api.setSecret(admin, v, `value of ${v}`)).status).toBe(201);
  for (let i = 1; i <= 3; i++) expect((await api.setSecret(admin, 'app/doomed', `doomed v${i}`)).status).toBe(201);
  db = await openRawDb(srv);
});
afterAll(async () => {
  await db?.close();
  await srv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const login = async (full: string) => api.login(full.split(':').slice(1).join('/').replace(/^user\//, ''), keys[full]!);

describe('!deny', () => {
  it('dry run: the plan shows the permission going, and nothing changes', async () => {
    const runner = await login(id('host', 'app/runner'));
    const lines = await dryRun('deny-dry.yml', '- !deny\n  role: !host runner\n  privilege: execute\n  resource: !variable denied\n');
    expect(lines[0]).toMatch(/^Plan for policy update -b app: 0 to create, \d+ to update, 0 to delete\.$/);
    expect(planEntry(lines, `~ ${id('variable', 'app/denied')}`)).toContain(`- permit execute to ${id('host', 'app/runner')}`);
    expect(planEntry(lines, `~ ${id('host', 'app/runner')}`)).toContain(`- may execute ${id('variable', 'app/denied')}`);
    expect(await permissionRows(id('variable', 'app/denied'), id('host', 'app/runner'))).toEqual(['execute', 'read']);
    expect(await fetchAs(runner, 'app/denied')).toBe(200);
  });

  it('PATCH !deny execute: the row is gone, read stays, and the fetch is 403 (the role still sees the variable)', async () => {
    const runner = await login(id('host', 'app/runner'));
    expect(await fetchAs(runner, 'app/denied')).toBe(200);
    await patchApp('- !deny\n  role: !host runner\n  privilege: execute\n  resource: !variable denied\n');
    expect(await permissionRows(id('variable', 'app/denied'), id('host', 'app/runner'))).toEqual(['read']);
    const r = await api.getSecret(runner, 'app/denied');
    expect(r.status).toBe(403);
    expect(r.text).not.toContain('value of app/denied');
    const shown = await api.request('GET', `/resources/${A()}/variable/app/denied`, { token: admin });
    expect(shown.json.permissions).toEqual([{ privilege: 'read', role: id('host', 'app/runner'), policy: id('policy', 'app') }]);
  });

  it('PATCH !deny read as well: no privilege left, so the variable is invisible (404)', async () => {
    const runner = await login(id('host', 'app/runner'));
    await patchApp('- !deny\n  role: !host runner\n  privilege: read\n  resource: !variable denied\n');
    expect(await permissionRows(id('variable', 'app/denied'), id('host', 'app/runner'))).toEqual([]);
    expect(await fetchAs(runner, 'app/denied')).toBe(404);
    expect((await api.request('GET', `/resources/${A()}/variable/app/denied`, { token: runner })).status).toBe(404);
    // The value itself is untouched (a deny removes a permission, not a secret).
    expect((await api.getSecret(admin, 'app/denied')).text).toBe('value of app/denied');
  });

  it('a !deny from another policy removes nothing (Conjur: only rows of the policy being loaded)', async () => {
    const r = await api.loadPolicy(admin, 'PATCH', 'root', '- !deny\n  role: !group app/readers\n  privilege: execute\n  resource: !variable app/granted\n');
    expect(r.status).toBe(201);
    expect(await permissionRows(id('variable', 'app/granted'), id('group', 'app/readers'))).toEqual(['execute', 'read']);
  });
});

describe('!revoke', () => {
  it('dry run: the plan shows the membership going, and nothing changes', async () => {
    const watcher = await login(id('host', 'app/watcher'));
    const lines = await dryRun('revoke-dry.yml', '- !revoke\n  role: !group readers\n  member: !host watcher\n');
    expect(lines[0]).toMatch(/^Plan for policy update -b app: 0 to create, \d+ to update, 0 to delete\.$/);
    expect(planEntry(lines, `~ ${id('group', 'app/readers')}`)).toContain(`- member: ${id('host', 'app/watcher')}`);
    expect(planEntry(lines, `~ ${id('host', 'app/watcher')}`)).toContain(`- member of: ${id('group', 'app/readers')}`);
    expect(await membershipRow(id('group', 'app/readers'), id('host', 'app/watcher'))).toBe(1);
    expect(await fetchAs(watcher, 'app/granted')).toBe(200);
  });

  it('PATCH !revoke: the membership row is gone and with it the privilege it gave (the fetch is refused)', async () => {
    const watcher = await login(id('host', 'app/watcher'));
    expect(await fetchAs(watcher, 'app/granted')).toBe(200);
    await patchApp('- !revoke\n  role: !group readers\n  member: !host watcher\n');
    expect(await membershipRow(id('group', 'app/readers'), id('host', 'app/watcher'))).toBe(0);
    const memberships = await api.request('GET', `/roles/${A()}/host/app/watcher?memberships`, { token: admin });
    expect(memberships.status).toBe(200);
    expect(memberships.json).not.toContain(id('group', 'app/readers'));
    // The group gave read and execute, so nothing is left: the variable is invisible.
    const r = await api.getSecret(watcher, 'app/granted');
    expect(r.status).toBe(404);
    expect(r.text).not.toContain('value of app/granted');
    const check = await api.request('GET', `/resources/${A()}/variable/app/granted?check=true&privilege=execute&role=${encodeURIComponent(id('host', 'app/watcher'))}`, { token: admin });
    expect(check.status).toBe(404);
  });

  it('a !revoke from another policy removes nothing', async () => {
    const r = await api.loadPolicy(admin, 'PATCH', 'root', '- !revoke\n  role: !group app/readers\n  member: !group app/doomed-group\n');
    expect(r.status).toBe(201);
    expect(await membershipRow(id('group', 'app/readers'), id('group', 'app/doomed-group'))).toBe(1);
  });
});

describe('!delete', () => {
  const doomed = () => id('variable', 'app/doomed');

  it('dry run of deleting a variable: the plan lists it, and its versions and permissions stay', async () => {
    const lines = await dryRun('delete-var-dry.yml', '- !delete\n  record: !variable doomed\n');
    expect(lines[0]).toBe('Plan for policy update -b app: 0 to create, 0 to update, 1 to delete.');
    expect(lines).toContain(`- ${doomed()}`);
    expect(await count('SELECT count(*) AS n FROM secrets WHERE resource_id = ?', doomed())).toBe(3);
    expect(await count('SELECT count(*) AS n FROM permissions WHERE resource_id = ?', doomed())).toBe(2);
    expect(await count('SELECT count(*) AS n FROM annotations WHERE resource_id = ?', doomed())).toBe(1);
    expect((await api.getSecret(admin, 'app/doomed')).text).toBe('doomed v3');
  });

  it('PATCH !delete of a variable: resource, every version, permissions and annotations gone; fetch 404, also by version; re-adding it gives no value', async () => {
    const runner = await login(id('host', 'app/runner'));
    expect(await fetchAs(runner, 'app/doomed')).toBe(200);
    await patchApp('- !delete\n  record: !variable doomed\n');
    expect(await count('SELECT count(*) AS n FROM resources WHERE resource_id = ?', doomed())).toBe(0);
    expect(await count('SELECT count(*) AS n FROM secrets WHERE resource_id = ?', doomed())).toBe(0);
    expect(await count('SELECT count(*) AS n FROM permissions WHERE resource_id = ?', doomed())).toBe(0);
    expect(await count('SELECT count(*) AS n FROM annotations WHERE resource_id = ?', doomed())).toBe(0);
    for (const token of [admin, runner]) {
      expect(await fetchAs(token, 'app/doomed')).toBe(404);
      expect((await api.getSecret(token, 'app/doomed', '?version=1')).status).toBe(404);
    }
    expect((await api.request('GET', `/resources/${A()}/variable/app/doomed`, { token: admin })).status).toBe(404);
    // Re-declared, it is a new, empty variable: no old version comes back.
    expect((await api.loadPolicy(admin, 'POST', 'app', '- !variable doomed\n')).status).toBe(201);
    const again = await api.getSecret(admin, 'app/doomed');
    expect(again.status).toBe(404);
    expect(again.text).not.toContain('doomed v');
    expect(await count('SELECT count(*) AS n FROM secrets WHERE resource_id = ?', doomed())).toBe(0);
  });

  it('dry run of deleting a host, a user and a group: the plan lists all three; nothing changes, they still authenticate', async () => {
    const lines = await dryRun('delete-roles-dry.yml', '- !delete\n  record: !host doomed-host\n- !delete\n  record: !user doomed-user\n- !delete\n  record: !group doomed-group\n');
    expect(lines[0]).toMatch(/^Plan for policy update -b app: 0 to create, \d+ to update, 3 to delete\.$/);
    for (const r of [id('host', 'app/doomed-host'), id('user', 'doomed-user@app'), id('group', 'app/doomed-group')]) expect(lines).toContain(`- ${r}`);
    // The roles whose memberships the deletion cuts show the loss.
    expect(planEntry(lines, `~ ${id('host', 'app/runner')}`)).toContain(`- member of: ${id('group', 'app/doomed-group')}`);
    expect(planEntry(lines, `~ ${id('group', 'app/readers')}`)).toContain(`- member: ${id('group', 'app/doomed-group')}`);
    expect(await count('SELECT count(*) AS n FROM roles WHERE role_id IN (?, ?, ?)', id('host', 'app/doomed-host'), id('user', 'doomed-user@app'), id('group', 'app/doomed-group'))).toBe(3);
    await login(id('host', 'app/doomed-host'));
    await login(id('user', 'doomed-user@app'));
  });

  it('PATCH !delete of a host, a user and a group: roles, resources, credentials, memberships both ways and permissions gone; keys and tokens dead; what the group gave is gone', async () => {
    const hostId = id('host', 'app/doomed-host');
    const userId = id('user', 'doomed-user@app');
    const groupId = id('group', 'app/doomed-group');
    const userToken = await login(userId);
    const runner = await login(id('host', 'app/runner'));
    // runner reaches app/granted only through doomed-group (its own permits were on other variables).
    expect(await fetchAs(runner, 'app/granted')).toBe(200);
    expect(await fetchAs(userToken, 'app/granted')).toBe(200);

    await patchApp('- !delete\n  record: !host doomed-host\n- !delete\n  record: !user doomed-user\n- !delete\n  record: !group doomed-group\n');
    for (const r of [hostId, userId, groupId]) {
      expect([r, await count('SELECT count(*) AS n FROM roles WHERE role_id = ?', r)]).toEqual([r, 0]);
      expect([r, await count('SELECT count(*) AS n FROM resources WHERE resource_id = ?', r)]).toEqual([r, 0]);
      expect([r, await count('SELECT count(*) AS n FROM credentials WHERE role_id = ?', r)]).toEqual([r, 0]);
      expect([r, await count('SELECT count(*) AS n FROM role_memberships WHERE role_id = ? OR member_id = ?', r, r)]).toEqual([r, 0]);
      expect([r, await count('SELECT count(*) AS n FROM permissions WHERE role_id = ? OR resource_id = ?', r, r)]).toEqual([r, 0]);
      expect([r, await count('SELECT count(*) AS n FROM annotations WHERE resource_id = ?', r)]).toEqual([r, 0]);
    }
    // The keys no longer authenticate; the user's outstanding token is refused (403: its role is gone).
    expect((await api.request('POST', `/authn/${A()}/${encodeURIComponent('host/app/doomed-host')}/authenticate`, { body: keys[hostId] })).status).toBe(401);
    expect((await api.request('POST', `/authn/${A()}/doomed-user@app/authenticate`, { body: keys[userId] })).status).toBe(401);
    expect((await api.request('GET', '/whoami', { token: userToken })).status).toBe(403);
    expect(await fetchAs(userToken, 'app/granted')).not.toBe(200);
    // What the group gave its members is gone with it.
    expect(await fetchAs(runner, 'app/granted')).toBe(404);
    for (const [kind, name] of [['host', 'app/doomed-host'], ['user', 'doomed-user@app'], ['group', 'app/doomed-group']]) {
      expect((await api.request('GET', `/resources/${A()}/${kind}/${encodeURIComponent(name!)}`, { token: admin })).status).toBe(404);
    }
  });
});
