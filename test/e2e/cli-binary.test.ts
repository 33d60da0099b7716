/**
 * The installed `coffer` binary (bin/coffer.js over dist/) as a child process,
 * as an operator's shell or a CI job runs it: exit codes, stdin, raw stdout,
 * and no credential in any output.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { tempHome } from '../helpers/cli.js';
import { coffer, ensureBuilt } from '../helpers/cli-process.js';

let srv: TestServer;
let home: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  ensureBuilt();
  srv = await startTestServer();
  const api = new Client(srv.url, srv.account);
  const admin = await api.login('admin', srv.adminKey);
  await api.loadPolicy(admin, 'POST', 'root', '- !variable ci/token\n');
  home = tempHome();
  env = { PATH: process.env.PATH, HOME: home };
}, 120_000);
afterAll(async () => {
  await srv.close();
  rmSync(home, { recursive: true, force: true });
});

describe('bin/coffer.js', () => {
  it('init, login from stdin, variable set from stdin and get: raw value, no credential anywhere in the output', async () => {
    const init = await coffer(['init', '-u', srv.url, '-a', srv.account], { env });
    expect([init.code, init.stderr]).toEqual([0, '']);
    const login = await coffer(['login', '-i', 'admin'], { env, stdin: `${srv.adminKey}\n` });
    expect(login.code).toBe(0);
    expect(statSync(join(home, '.netrc')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(home, '.netrc'), 'utf8')).toContain(`machine ${srv.url}/authn`);
    const set = await coffer(['variable', 'set', '-i', 'ci/token'], { env, stdin: 'canary-Secret-42' });
    expect(set.code).toBe(0);
    const get = await coffer(['variable', 'get', '-i', 'ci/token'], { env });
    expect([get.code, get.stdout.toString(), get.stderr]).toEqual([0, 'canary-Secret-42', '']);
    for (const r of [init, login, set]) {
      expect(r.stdout.toString()).not.toContain(srv.adminKey);
      expect(r.stderr).not.toContain(srv.adminKey);
      expect(r.stdout.toString() + r.stderr).not.toContain('canary-Secret-42');
    }
  });

  it('exit codes: 2 usage, 4 not found, 6 not authenticated, 5 network', async () => {
    const usage = await coffer(['variable', 'get'], { env });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^coffer: variable get needs -i ID\nusage: coffer variable get/);
    const missing = await coffer(['variable', 'get', '-i', 'ci/nope'], { env });
    expect([missing.code, missing.stderr]).toEqual([4, "coffer: fetching variable 'ci/nope': CONJ00076E Variable cucumber:variable:ci/nope is empty or not found.\n"]);
    const unauth = await coffer(['whoami'], { env: { ...env, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: 'nope' } });
    expect(unauth.code).toBe(6);
    const down = await coffer(['whoami'], { env: { ...env, CONJUR_APPLIANCE_URL: 'http://127.0.0.1:1', CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: 'k' } });
    expect(down.code).toBe(5);
  });

  it('--help works without any configuration', async () => {
    const r = await coffer(['--help'], { env: { PATH: process.env.PATH, HOME: tempHome() } });
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toContain('policy load|update|replace');
    const sub = await coffer(['audit', 'query', '--help'], { env: { PATH: process.env.PATH, HOME: tempHome() } });
    expect([sub.code, sub.stdout.toString()]).toEqual([0, expect.stringContaining('Example:\n  coffer audit query')]);
  });
});
