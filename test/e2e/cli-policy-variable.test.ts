/** `coffer policy load|update|replace` (dry-run plans, created API keys) and `coffer variable get|set` against a real server. */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { runCli, tempHome } from '../helpers/cli.js';

let srv: TestServer;
let api: Client;
let admin: string;
let dir: string;
let env: NodeJS.ProcessEnv;

function file(name: string, text: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  dir = tempHome();
  env = { HOME: dir, CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey };
});
afterAll(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

const BASE = `
- !policy
  id: app
  body:
  - !variable db/password
  - !variable old
  - !host runner
  - !group ops
  - !permit
    role: !host runner
    privilege: [read, execute]
    resource: !variable db/password
`;

describe('coffer policy', () => {
  it('load --dry-run prints a plan of what would be created and changes nothing', async () => {
    const r = await runCli(['policy', 'load', '-b', 'root', '-f', file('base.yml', BASE), '--dry-run'], { env });
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/^Plan for policy load -b root: 5 to create, 1 to update, 0 to delete\.$/);
    expect(lines).toContain('+ cucumber:variable:app/db/password');
    expect(lines).toContain('      permit execute to cucumber:host:app/runner');
    expect(lines).toContain('+ cucumber:host:app/runner');
    expect(lines).toContain('      may read cucumber:variable:app/db/password');
    expect(r.out).toContain('This was a dry run: nothing was changed.');
    expect((await api.request('GET', `/resources/${srv.account}/variable/app/db/password`, { token: admin })).status).toBe(404);
  });

  it('load prints the version and the API keys of created roles once, clearly marked', async () => {
    const r = await runCli(['policy', 'load', '-b', 'root', '-f', file('base.yml', BASE)], { env });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Loaded policy 'root' \(version 1\)\.\nAPI key of the 1 role created — shown only once, store it now:\n {2}ROLE +API KEY\n {2}cucumber:host:app\/runner +[0-9a-z]{40,}\n$/);
    const key = /runner +(\S+)/.exec(r.out)![1]!;
    expect((await api.request('POST', `/authn/${srv.account}/host%2Fapp%2Frunner/authenticate`, { body: key })).status).toBe(200);
  });

  it('update --dry-run shows before → after for changed records and what a !delete removes', async () => {
    const text = `
- !variable
  id: db/password
  annotations:
    description: the main database
- !delete
  record: !variable old
- !grant
  role: !group ops
  member: !host runner
`;
    const r = await runCli(['policy', 'update', '-b', 'app', '-f', file('upd.yml', text), '--dry-run'], { env });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Plan for policy update -b app: 0 to create, \d+ to update, 1 to delete\.$/m);
    expect(r.out).toMatch(/^~ cucumber:variable:app\/db\/password\n {6}\+ annotation description = "the main database"$/m);
    expect(r.out).toMatch(/^~ cucumber:group:app\/ops\n(?: {6}.*\n)* {6}\+ member: cucumber:host:app\/runner$/m);
    expect(r.out).toMatch(/^- cucumber:variable:app\/old$/m);
    // Then applied for real, a second dry run of a changed value shows "before → after".
    expect((await runCli(['policy', 'update', '-b', 'app', '-f', join(dir, 'upd.yml')], { env })).code).toBe(0);
    const again = await runCli(['policy', 'update', '-b', 'app', '-f', file('upd2.yml', '- !variable\n  id: db/password\n  annotations:\n    description: renamed\n'), '--dry-run'], { env });
    expect(again.out).toContain('~ annotation description: "the main database" → "renamed"');
  });

  it('replace --dry-run from stdin (-f -) lists what the new text no longer declares', async () => {
    // Records loaded into 'app' itself (not those the root load created) are what a replace of 'app' can remove.
    expect((await runCli(['policy', 'load', '-b', 'app', '-f', '-'], { env, stdin: '- !variable tmp\n- !variable keep\n' })).code).toBe(0);
    const r = await runCli(['policy', 'replace', '-b', 'app', '-f', '-', '--dry-run'], { env, stdin: '- !variable keep\n' });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Plan for policy replace -b app: \d+ to create, \d+ to update, 1 to delete\.$/m);
    expect(r.out).toMatch(/^- cucumber:variable:app\/tmp$/m);
    expect(r.out).not.toMatch(/^- cucumber:variable:app\/keep$/m);
    // Records another load created are shadowed: the replace leaves them, and shows only the grant and annotation it drops.
    expect(r.out).not.toMatch(/^- cucumber:group:app\/ops$/m);
    expect(r.out).toMatch(/^~ cucumber:group:app\/ops\n {6}- member: cucumber:host:app\/runner$/m);
  });

  it('--json prints the server answer unchanged (dry run and load)', async () => {
    const dry = await runCli(['policy', 'update', '-b', 'app', '-f', join(dir, 'upd2.yml'), '--dry-run', '--json'], { env });
    expect(JSON.parse(dry.out)).toMatchObject({ status: 'Valid YAML', created: { items: [] } });
    const load = await runCli(['policy', 'load', '-b', 'app', '-f', file('u.yml', '- !user carol\n'), '--json'], { env });
    const json = JSON.parse(load.out);
    expect(json.version).toBeGreaterThan(1);
    expect(Object.keys(json.created_roles)).toEqual(['cucumber:user:carol@app']);
  });

  it("invalid policies fail with exit 1 and the server's message, including the line", async () => {
    let r = await runCli(['policy', 'load', '-b', 'root', '-f', file('bad.yml', '- !variable a\n- !bogus b\n')], { env });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^coffer: loading policy 'root': .*Unrecognized data type '!bogus'.*line 2.*\n$/);
    r = await runCli(['policy', 'load', '-b', 'root', '-f', file('bad2.yml', '- !permit\n  role: !user nobody\n  privilege: read\n  resource: !variable app/db/password\n')], { env });
    expect([r.code, r.err]).toEqual([1, "coffer: loading policy 'root': User 'nobody' not found in account 'cucumber' (line 1, column 3)\n"]);
    r = await runCli(['policy', 'load', '-b', 'root', '-f', file('del.yml', '- !delete\n  record: !variable app/old\n'), '--dry-run'], { env });
    expect([r.code, r.err]).toEqual([1, "coffer: checking policy 'root': policy_text may not contain deletion statements\n"]);
  });

  it('an unknown branch is exit 4; a branch the role cannot change is exit 4', async () => {
    let r = await runCli(['policy', 'load', '-b', 'nope', '-f', join(dir, 'u.yml')], { env });
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/^coffer: loading policy 'nope': Policy 'nope' not found in account 'cucumber'\n$/);
    const runnerKey = (await api.request('PUT', `/authn/${srv.account}/api_key?role=host:app/runner`, { token: admin })).text;
    const hostEnv = { ...env, CONJUR_AUTHN_LOGIN: 'host/app/runner', CONJUR_AUTHN_API_KEY: runnerKey };
    r = await runCli(['policy', 'load', '-b', 'root', '-f', join(dir, 'u.yml')], { env: hostEnv });
    expect(r.code).toBe(4);
  });

  it('usage errors are exit 2: missing -b/-f, unknown mode, unreadable file', async () => {
    for (const args of [['policy', 'load', '-f', 'x'], ['policy', 'load', '-b', 'root'], ['policy', 'destroy', '-b', 'root', '-f', 'x'], ['policy', 'load', '-b', 'root', '-f', join(dir, 'missing.yml')], ['policy']]) {
      const r = await runCli(args, { env });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(/^coffer: /);
    }
  });
});

describe('coffer variable', () => {
  it('set from -v, --file and stdin; get prints the raw value with no newline added', async () => {
    let r = await runCli(['variable', 'set', '-i', 'app/db/password', '-v', 'v1-secret'], { env });
    expect([r.code, r.out]).toEqual([0, "Stored a new value for variable 'app/db/password'.\n"]);
    r = await runCli(['variable', 'get', '-i', 'app/db/password'], { env });
    expect([r.code, r.out]).toEqual([0, 'v1-secret']);
    r = await runCli(['variable', 'set', '-i', 'variable:app/db/password', '--file', file('v2', 'v2-secret\n')], { env });
    expect(r.code).toBe(0);
    expect((await runCli(['variable', 'get', '-i', 'app/db/password'], { env })).out).toBe('v2-secret\n');
    r = await runCli(['variable', 'set', '-i', 'cucumber:variable:app/db/password'], { env, stdin: 'v3-secret' });
    expect(r.code).toBe(0);
    expect((await runCli(['variable', 'get', '-i', 'app/db/password'], { env })).out).toBe('v3-secret');
    expect((await runCli(['variable', 'get', '-i', 'app/db/password', '--version', '1'], { env })).out).toBe('v1-secret');
    const json = await runCli(['variable', 'get', '-i', 'app/db/password', '--json'], { env });
    expect(JSON.parse(json.out)).toEqual({ 'cucumber:variable:app/db/password': 'v3-secret' });
  });

  it('binary values round-trip byte for byte', async () => {
    await runCli(['policy', 'load', '-b', 'app', '-f', file('bin.yml', '- !variable blob\n- !variable other\n')], { env });
    const bytes = Buffer.from([0, 255, 254, 10, 13, 0x80, 1, 2, 3]);
    expect((await runCli(['variable', 'set', '-i', 'app/blob', '--file', file('blob', bytes)], { env })).code).toBe(0);
    const r = await runCli(['variable', 'get', '-i', 'app/blob'], { env });
    expect(r.bytes.equals(bytes)).toBe(true);
    const j = await runCli(['variable', 'get', '-i', 'app/blob', '--json'], { env });
    expect([j.code, j.err]).toEqual([1, expect.stringContaining('holds binary data')]);
  });

  it('several ids are fetched in one batch request and printed as JSON', async () => {
    await runCli(['variable', 'set', '-i', 'app/other', '-v', 'o-value'], { env });
    const before = (await api.request('GET', `/audit/${srv.account}?action=fetch&limit=1000`, { token: admin })).json.events.length;
    const r = await runCli(['variable', 'get', '-i', 'app/db/password,app/other'], { env });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ 'cucumber:variable:app/db/password': 'v3-secret', 'cucumber:variable:app/other': 'o-value' });
    const events = (await api.request('GET', `/audit/${srv.account}?action=fetch&limit=1000`, { token: admin })).json.events;
    expect(events.length - before).toBe(2); // one event per variable ...
    expect(new Set(events.slice(0, 2).map((e: any) => e.request_id)).size).toBe(1); // ... from a single request
    const repeated = await runCli(['variable', 'get', '-i', 'app/db/password', '-i', 'app/other', '--json'], { env });
    expect(Object.keys(JSON.parse(repeated.out))).toHaveLength(2);
  });

  it('a batch with a missing variable prints nothing on stdout, one line per failure, exit 4', async () => {
    const r = await runCli(['variable', 'get', '-i', 'app/db/password,app/nope,app/old2'], { env });
    expect(r.code).toBe(4);
    expect(r.out).toBe('');
    expect(r.err).toBe(
      "coffer: fetching 'cucumber:variable:app/nope': CONJ00076E Variable cucumber:variable:app/nope is empty or not found.\n" +
        "coffer: fetching 'cucumber:variable:app/old2': CONJ00076E Variable cucumber:variable:app/old2 is empty or not found.\n",
    );
    expect(r.err).not.toContain('v3-secret');
  });

  it('errors: not found (4), forbidden to a host with read only (4), empty value (1), usage (2); no value ever in an error', async () => {
    let r = await runCli(['variable', 'get', '-i', 'app/nope'], { env });
    expect([r.code, r.err]).toEqual([4, "coffer: fetching variable 'app/nope': CONJ00076E Variable cucumber:variable:app/nope is empty or not found.\n"]);
    r = await runCli(['variable', 'get', '-i', 'app/db/password', '--version', '99'], { env });
    expect(r.code).toBe(4);
    r = await runCli(['variable', 'set', '-i', 'app/db/password'], { env, stdin: '' });
    expect([r.code, r.err]).toEqual([1, "coffer: setting variable 'app/db/password': 'value' may not be empty\n"]);
    const runnerKey = (await api.request('PUT', `/authn/${srv.account}/api_key?role=host:app/runner`, { token: admin })).text;
    const hostEnv = { ...env, CONJUR_AUTHN_LOGIN: 'host/app/runner', CONJUR_AUTHN_API_KEY: runnerKey };
    expect((await runCli(['variable', 'get', '-i', 'app/db/password'], { env: hostEnv })).out).toBe('v3-secret');
    r = await runCli(['variable', 'set', '-i', 'app/db/password', '-v', 'hijack'], { env: hostEnv });
    expect([r.code, r.err]).toEqual([4, "coffer: setting variable 'app/db/password': forbidden (the role lacks the privilege)\n"]);
    r = await runCli(['variable', 'get', '-i', 'app/other'], { env: hostEnv });
    expect(r.code).toBe(4);
    expect(r.err).not.toContain('o-value');
    for (const args of [['variable', 'get'], ['variable', 'get', '-i', 'a,b', '--version', '1'], ['variable', 'get', '-i', 'a', '--version', 'x'], ['variable', 'set', '-i', 'a', '-v', 'x', '--file', 'y'], ['variable'], ['variable', 'rm']]) {
      r = await runCli(args, { env });
      expect(r.code, args.join(' ')).toBe(2);
    }
  });
});
