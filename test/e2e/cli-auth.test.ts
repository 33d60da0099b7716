/**
 * `coffer init|login|logout|whoami|api-key rotate` against a real server:
 * Conjur-CLI-compatible ~/.conjurrc and ~/.netrc, 0600 files, configuration
 * precedence, TLS with a private CA, exit codes, and no credential in output.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { runCli, tempHome, type CliResult } from '../helpers/cli.js';

let srv: TestServer;
let api: Client;
let admin: string;
let aliceKey: string;
const homes: string[] = [];

function home(): string {
  const h = tempHome();
  homes.push(h);
  return h;
}

/** Asserts that no credential appears anywhere in a command's output. */
function noSecrets(r: CliResult, ...secrets: string[]): void {
  for (const s of secrets) {
    expect(r.out).not.toContain(s);
    expect(r.err).not.toContain(s);
  }
}

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const load = await api.loadPolicy(admin, 'POST', 'root', '- !user alice\n- !host ci/executor-1\n- !variable db/pw\n');
  aliceKey = load.json.created_roles[`${srv.account}:user:alice`].api_key;
});
afterAll(async () => {
  await srv.close();
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

describe('coffer init', () => {
  it('writes ~/.conjurrc as YAML the Conjur CLI reads, mode 0600, and checks that the server answers', async () => {
    const h = home();
    const r = await runCli(['init', '-u', `${srv.url}/`, '-a', srv.account], { env: { HOME: h } });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/The server answers \(Coffer \d+\.\d+\.\d+, Conjur API 1\.21\.1\)\./);
    const rc = parseYaml(readFileSync(join(h, '.conjurrc'), 'utf8'));
    expect(rc).toEqual({ account: srv.account, appliance_url: srv.url });
    expect(statSync(join(h, '.conjurrc')).mode & 0o777).toBe(0o600);
  });

  it('refuses to overwrite an existing ~/.conjurrc without --force (exit 1), and overwrites with it', async () => {
    const h = home();
    await runCli(['init', '-u', srv.url, '-a', srv.account], { env: { HOME: h } });
    const again = await runCli(['init', '-u', 'https://other.example', '-a', 'x'], { env: { HOME: h } });
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/^coffer: .*\.conjurrc already exists \(for http:\/\/127\.0\.0\.1:\d+, account cucumber\); use --force to overwrite it\n$/);
    const forced = await runCli(['init', '-u', 'http://127.0.0.1:1', '-a', 'x', '--force'], { env: { HOME: h } });
    expect(forced.code).toBe(0);
    expect(forced.err).toContain('connection refused'); // a warning: the file is written anyway
    expect(parseYaml(readFileSync(join(h, '.conjurrc'), 'utf8'))).toMatchObject({ account: 'x' });
  });

  it('honours $CONJURRC for where the file goes', async () => {
    const h = home();
    const path = join(h, 'elsewhere.yml');
    const r = await runCli(['init', '-u', srv.url, '-a', srv.account], { env: { HOME: h, CONJURRC: path } });
    expect(r.code).toBe(0);
    expect(existsSync(path)).toBe(true);
    expect(existsSync(join(h, '.conjurrc'))).toBe(false);
  });

  it('rejects bad input with usage errors (exit 2)', async () => {
    const h = home();
    const cases: [string[], RegExp][] = [
      [['init', '-a', 'x'], /init needs -u URL and -a ACCOUNT/],
      [['init', '-u', 'ftp://x', '-a', 'x'], /must start with https:\/\/ or http:\/\//],
      [['init', '-u', 'not a url', '-a', 'x'], /is not a URL/],
      [['init', '-u', 'https://u:p@x', '-a', 'x'], /may not contain credentials/],
      [['init', '-u', srv.url, '-a', 'a/b'], /invalid account name/],
      [['init', '-u', srv.url, '-a', 'x', '--bogus'], /Unknown option '--bogus'/],
    ];
    for (const [args, msg] of cases) {
      const r = await runCli(args, { env: { HOME: h } });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(msg);
    }
    writeFileSync(join(h, 'not-a-cert.pem'), 'hello');
    const r = await runCli(['init', '-u', srv.url, '-a', 'x', '--ca-cert', join(h, 'not-a-cert.pem')], { env: { HOME: h } });
    expect([r.code, r.err]).toEqual([2, expect.stringContaining('holds no PEM certificate')]);
  });

  it('warns that plain HTTP to a remote host sends credentials in clear', async () => {
    const h = home();
    const r = await runCli(['init', '-u', 'http://coffer.invalid', '-a', 'x'], { env: { HOME: h } });
    expect(r.code).toBe(0);
    expect(r.err).toContain('plain HTTP');
  });
});

describe('coffer login / whoami / logout', () => {
  it('exchanges the API key from stdin, stores it in ~/.netrc (0600, machine <url>/authn) and never prints it', async () => {
    const h = home();
    await runCli(['init', '-u', srv.url, '-a', srv.account], { env: { HOME: h } });
    const r = await runCli(['login', '-i', 'alice', '--api-key-stdin'], { env: { HOME: h }, stdin: `${aliceKey}\n` });
    expect(r.code).toBe(0);
    expect(r.out).toContain("Logged in as 'alice'");
    noSecrets(r, aliceKey);
    const netrc = readFileSync(join(h, '.netrc'), 'utf8');
    expect(netrc).toBe(`machine ${srv.url}/authn\n  login alice\n  password ${aliceKey}\n`);
    expect(statSync(join(h, '.netrc')).mode & 0o777).toBe(0o600);

    const who = await runCli(['whoami'], { env: { HOME: h } });
    expect(who.code).toBe(0);
    expect(who.out).toMatch(/^login +alice$/m);
    expect(who.out).toMatch(/^account +cucumber$/m);
    noSecrets(who, aliceKey);
    const json = await runCli(['whoami', '--json'], { env: { HOME: h } });
    expect(JSON.parse(json.out)).toMatchObject({ username: 'alice', account: srv.account });
  });

  it('logs a host in with the password read from a non-terminal stdin', async () => {
    const h = home();
    await runCli(['init', '-u', srv.url, '-a', srv.account], { env: { HOME: h } });
    const rotated = await api.request('PUT', `/authn/${srv.account}/api_key?role=host:ci/executor-1`, { token: admin });
    const hostKey = rotated.text;
    const r = await runCli(['login', '-i', 'host/ci/executor-1'], { env: { HOME: h }, stdin: hostKey });
    expect(r.code).toBe(0);
    const who = await runCli(['whoami', '--json'], { env: { HOME: h } });
    expect(JSON.parse(who.out).username).toBe('host/ci/executor-1');
  });

  it('refuses a wrong key with exit 6, leaves ~/.netrc alone and echoes nothing of what was typed', async () => {
    const h = home();
    await runCli(['init', '-u', srv.url, '-a', srv.account], { env: { HOME: h } });
    const r = await runCli(['login', '-i', 'alice'], { env: { HOME: h }, stdin: 'Wrong-Secret-123\n' });
    expect(r.code).toBe(6);
    expect(r.err).toBe("coffer: login failed for 'alice': wrong password or API key, or unknown login\n");
    noSecrets(r, 'Wrong-Secret-123');
    expect(existsSync(join(h, '.netrc'))).toBe(false);
    const empty = await runCli(['login', '-i', 'alice'], { env: { HOME: h }, stdin: '' });
    expect([empty.code, empty.err]).toEqual([2, expect.stringContaining('no password or API key given')]);
    const noId = await runCli(['login'], { env: { HOME: h }, stdin: 'x' });
    expect([noId.code, noId.err]).toEqual([2, expect.stringContaining('login needs -i LOGIN')]);
  });

  it('without configuration says to run coffer init (exit 2); without credentials says to log in (exit 6)', async () => {
    const h = home();
    let r = await runCli(['whoami'], { env: { HOME: h } });
    expect([r.code, r.err]).toEqual([2, 'coffer: no server configured: run `coffer init -u URL -a ACCOUNT` or set CONJUR_APPLIANCE_URL\n']);
    await runCli(['init', '-u', srv.url, '-a', srv.account], { env: { HOME: h } });
    r = await runCli(['whoami'], { env: { HOME: h } });
    expect(r.code).toBe(6);
    expect(r.err).toContain('not logged in to');
  });

  it('logout removes only this server\'s entries (Go and Python style) and keeps the rest of ~/.netrc byte for byte', async () => {
    const h = home();
    await runCli(['init', '-u', srv.url, '-a', srv.account], { env: { HOME: h } });
    const others = '# my netrc\nmachine github.com\n  login me\n  password ghp_x\n\n';
    writeFileSync(join(h, '.netrc'), `${others}machine ${srv.url}\n  login alice\n  password ${aliceKey}\n`, { mode: 0o600 });
    await runCli(['login', '-i', 'alice'], { env: { HOME: h }, stdin: aliceKey });
    const both = readFileSync(join(h, '.netrc'), 'utf8');
    expect(both).toContain(`machine ${srv.url}/authn\n  login alice`);
    const r = await runCli(['logout'], { env: { HOME: h } });
    expect(r.code).toBe(0);
    expect(r.out).toContain('Removed the stored credentials');
    expect(readFileSync(join(h, '.netrc'), 'utf8')).toBe(others);
    const again = await runCli(['logout'], { env: { HOME: h } });
    expect([again.code, again.out]).toEqual([0, expect.stringContaining('nothing to remove')]);
    const who = await runCli(['whoami'], { env: { HOME: h } });
    expect(who.code).toBe(6);
  });

  it('logout revokes a token given in CONJUR_AUTHN_TOKEN: reusing it afterwards gets 401', async () => {
    const token = await api.login('alice', aliceKey);
    const env = { HOME: home(), CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account, CONJUR_AUTHN_TOKEN: token };
    expect((await runCli(['whoami'], { env })).code).toBe(0);
    const r = await runCli(['logout'], { env });
    expect([r.code, r.out]).toEqual([0, expect.stringContaining('Revoked the access token')]);
    expect((await api.request('GET', '/whoami', { token })).status).toBe(401);
    const after = await runCli(['whoami'], { env });
    expect([after.code, after.err]).toEqual([6, expect.stringContaining('Unauthorized: Invalid token')]);
  });

  it('every command revokes the token it obtained (the server sees authenticate then revoke)', async () => {
    const env = { HOME: home(), CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account, CONJUR_AUTHN_LOGIN: 'alice', CONJUR_AUTHN_API_KEY: aliceKey };
    const before = (await api.request('GET', `/audit/${srv.account}?role=user:alice&action=authn&limit=1000`, { token: admin })).json.events.length;
    expect((await runCli(['whoami'], { env })).code).toBe(0);
    const events = (await api.request('GET', `/audit/${srv.account}?role=user:alice&action=authn&limit=1000&order=asc`, { token: admin })).json.events;
    expect(events.length - before).toBe(2);
    expect(events.slice(-2).map((e: any) => e.operation)).toEqual(['authenticate', 'revoke-token']);
  });
});

describe('files as the Conjur CLIs write them, and precedence', () => {
  it('reads a Python-CLI ~/.conjurrc and a Python-style `machine <url>` netrc entry', async () => {
    const h = home();
    writeFileSync(join(h, '.conjurrc'), `---\naccount: ${srv.account}\nappliance_url: ${srv.url}\ncert_file: ''\nplugins: []\n`);
    writeFileSync(join(h, '.netrc'), `machine ${srv.url}\nlogin alice\npassword ${aliceKey}\n`, { mode: 0o600 });
    const r = await runCli(['whoami', '--json'], { env: { HOME: h } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).username).toBe('alice');
  });

  it('reads a Python-CLI 7.0/7.1 ~/.conjurrc (conjur_url, conjur_account)', async () => {
    const h = home();
    writeFileSync(join(h, '.conjurrc'), `---\nconjur_account: ${srv.account}\nconjur_url: ${srv.url}\ncert_file: ''\n`);
    writeFileSync(join(h, '.netrc'), `machine ${srv.url}/authn\nlogin alice\npassword ${aliceKey}\n`, { mode: 0o600 });
    const r = await runCli(['whoami', '--json'], { env: { HOME: h } });
    expect([r.code, JSON.parse(r.out).username]).toEqual([0, 'alice']);
  });

  it('reads a Go-CLI ~/.conjurrc with netrc_path, and the netrc on one line', async () => {
    const h = home();
    mkdirSync(join(h, 'conf'));
    writeFileSync(join(h, '.conjurrc'), `account: ${srv.account}\nappliance_url: ${srv.url}\nauthn_type: authn\nnetrc_path: ${join(h, 'conf/netrc')}\ncredential_storage: file\n`);
    writeFileSync(join(h, 'conf/netrc'), `machine ${srv.url}/authn login alice password ${aliceKey}\n`, { mode: 0o600 });
    const r = await runCli(['whoami', '--json'], { env: { HOME: h } });
    expect([r.code, JSON.parse(r.out).username]).toEqual([0, 'alice']);
  });

  it('repairs a group/world-readable ~/.netrc to 0600 with a warning that names no secret', async () => {
    const h = home();
    await runCli(['init', '-u', srv.url, '-a', srv.account], { env: { HOME: h } });
    writeFileSync(join(h, '.netrc'), `machine ${srv.url}/authn\n  login alice\n  password ${aliceKey}\n`);
    chmodSync(join(h, '.netrc'), 0o644);
    const r = await runCli(['whoami'], { env: { HOME: h } });
    expect(r.code).toBe(0);
    expect(r.err).toContain('was readable by other users (mode 644); changed it to 0600');
    noSecrets(r, aliceKey);
    expect(statSync(join(h, '.netrc')).mode & 0o777).toBe(0o600);
  });

  it('environment beats files: CONJUR_* over ~/.conjurrc and ~/.netrc, COFFER_* aliases over CONJUR_*', async () => {
    const h = home();
    writeFileSync(join(h, '.conjurrc'), `account: nope\nappliance_url: http://127.0.0.1:1\n`);
    writeFileSync(join(h, '.netrc'), `machine ${srv.url}/authn\n  login alice\n  password ${aliceKey}\n`, { mode: 0o600 });
    const env = { HOME: h, CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account };
    let r = await runCli(['whoami', '--json'], { env });
    expect(JSON.parse(r.out).username).toBe('alice'); // URL and account from env, key from netrc
    r = await runCli(['whoami', '--json'], { env: { ...env, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey } });
    expect(JSON.parse(r.out).username).toBe('admin'); // env key beats netrc
    r = await runCli(['whoami', '--json'], { env: { HOME: h, CONJUR_APPLIANCE_URL: 'http://127.0.0.1:1', COFFER_URL: srv.url, COFFER_ACCOUNT: srv.account } });
    expect(JSON.parse(r.out).username).toBe('alice');
    r = await runCli(['whoami'], { env: { ...env, CONJUR_AUTHN_LOGIN: 'bob' } });
    expect([r.code, r.err]).toEqual([6, expect.stringContaining("no API key for 'bob'")]);
  });

  it('a wrong API key in the environment gives exit 6 without echoing the key', async () => {
    const env = { HOME: home(), CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account, CONJUR_AUTHN_LOGIN: 'alice', CONJUR_AUTHN_API_KEY: 'zzzwrongkey' };
    const r = await runCli(['whoami'], { env });
    expect(r.code).toBe(6);
    expect(r.err).toBe("coffer: authentication as 'alice' failed: the API key from CONJUR_AUTHN_API_KEY was not accepted (wrong key, rotated key or unknown login)\n");
  });

  it('an unreachable server is exit 5', async () => {
    const env = { HOME: home(), CONJUR_APPLIANCE_URL: 'http://127.0.0.1:1', CONJUR_ACCOUNT: 'x', CONJUR_AUTHN_LOGIN: 'a', CONJUR_AUTHN_API_KEY: 'k' };
    const r = await runCli(['whoami'], { env });
    expect([r.code, r.err]).toEqual([5, 'coffer: cannot connect to http://127.0.0.1:1: connection refused (is the server running?)\n']);
  });
});

describe('coffer api-key rotate', () => {
  it('rotates your own key with the stored key, updates ~/.netrc, and the old key stops working', async () => {
    const h = home();
    const key = (await api.request('PUT', `/authn/${srv.account}/api_key?role=user:alice`, { token: admin })).text;
    await runCli(['init', '-u', srv.url, '-a', srv.account], { env: { HOME: h } });
    await runCli(['login', '-i', 'alice'], { env: { HOME: h }, stdin: key });
    const r = await runCli(['api-key', 'rotate'], { env: { HOME: h } });
    expect(r.code).toBe(0);
    expect(r.out).toContain("Rotated the API key of 'alice'; the new key is stored in");
    const stored = /password (\S+)/.exec(readFileSync(join(h, '.netrc'), 'utf8'))![1]!;
    expect(stored).not.toBe(key);
    noSecrets(r, key, stored);
    expect((await api.request('POST', `/authn/${srv.account}/alice/authenticate`, { body: key })).status).toBe(401);
    expect((await runCli(['whoami'], { env: { HOME: h } })).code).toBe(0);
    aliceKey = stored;
  });

  it("rotates another role's key with --role: the key alone on stdout, the shown-once notice on stderr", async () => {
    const env = { HOME: home(), CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey };
    const r = await runCli(['api-key', 'rotate', '--role', 'host:ci/executor-1'], { env });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^[0-9a-z]{40,}\n$/);
    expect(r.err).toContain('New API key of cucumber:host:ci/executor-1 — shown only once');
    expect((await api.request('POST', `/authn/${srv.account}/host%2Fci%2Fexecutor-1/authenticate`, { body: r.out.trim() })).status).toBe(200);
  });

  it('rotating your own key taken from the environment prints the new key once (it is stored nowhere else)', async () => {
    const key = (await api.request('PUT', `/authn/${srv.account}/api_key?role=host:ci/executor-1`, { token: admin })).text;
    const env = { HOME: home(), CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account, CONJUR_AUTHN_LOGIN: 'host/ci/executor-1', CONJUR_AUTHN_API_KEY: key };
    const r = await runCli(['api-key', 'rotate'], { env });
    expect(r.code).toBe(0);
    expect(r.err).toContain("New API key of 'host/ci/executor-1' (the key in CONJUR_AUTHN_API_KEY no longer works) — shown only once");
    const fresh = r.out.trim();
    expect(fresh).toMatch(/^[0-9a-z]{40,}$/);
    expect(r.out + r.err).not.toContain(key);
    const again = await runCli(['whoami'], { env });
    expect(again.code).toBe(6);
    expect((await runCli(['whoami'], { env: { ...env, CONJUR_AUTHN_API_KEY: fresh } })).code).toBe(0);
  });

  it('fails clearly: self-rotation with only a token (6), a role you may not update (4), not a role (2)', async () => {
    const token = await api.login('alice', aliceKey);
    const base = { HOME: home(), CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account };
    let r = await runCli(['api-key', 'rotate'], { env: { ...base, CONJUR_AUTHN_TOKEN: token } });
    expect([r.code, r.err]).toEqual([6, expect.stringContaining('needs your current API key')]);
    r = await runCli(['api-key', 'rotate', '--role', 'user:admin'], { env: { ...base, CONJUR_AUTHN_TOKEN: token } });
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/^coffer: rotating the API key of user:admin: /);
    r = await runCli(['api-key', 'rotate', '--role', 'variable:db/pw'], { env: { ...base, CONJUR_AUTHN_TOKEN: token } });
    expect(r.code).toBe(2);
  });
});

describe('HTTPS with a private CA', () => {
  let tls: TestServer;
  let dir: string;
  beforeAll(async () => {
    dir = home();
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    ], { stdio: 'ignore' });
    tls = await startTestServer({ flags: { 'tls-cert': join(dir, 'cert.pem'), 'tls-key': join(dir, 'key.pem') } });
  });
  afterAll(() => tls.close());

  it('trusts the CA from init --ca-cert, CONJUR_CERT_FILE or CONJUR_SSL_CERTIFICATE, and fails with exit 5 and a hint without it', async () => {
    expect(tls.url).toMatch(/^https:/);
    const creds = { CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: tls.adminKey };
    const h = home();
    const init = await runCli(['init', '-u', tls.url, '-a', tls.account, '--ca-cert', join(dir, 'cert.pem')], { env: { HOME: h } });
    expect([init.code, init.out]).toEqual([0, expect.stringContaining('The server answers')]);
    expect((await runCli(['whoami'], { env: { HOME: h, ...creds } })).code).toBe(0);

    const base = { HOME: home(), CONJUR_APPLIANCE_URL: tls.url, CONJUR_ACCOUNT: tls.account, ...creds };
    const untrusted = await runCli(['whoami'], { env: base });
    expect(untrusted.code).toBe(5);
    expect(untrusted.err).toMatch(/^coffer: TLS error talking to https:\/\/127\.0\.0\.1:\d+: .*CONJUR_CERT_FILE/);
    expect((await runCli(['whoami'], { env: { ...base, CONJUR_CERT_FILE: join(dir, 'cert.pem') } })).code).toBe(0);
    expect((await runCli(['whoami'], { env: { ...base, CONJUR_SSL_CERTIFICATE: readFileSync(join(dir, 'cert.pem'), 'utf8') } })).code).toBe(0);
  });
});

describe('help', () => {
  it('every client command has --help with an example, on stdout, exit 0', async () => {
    const commands = [
      ['init'], ['login'], ['logout'], ['whoami'], ['policy', 'load'], ['policy', 'update'], ['policy', 'replace'],
      ['variable', 'get'], ['variable', 'set'], ['list'], ['resource', 'show'], ['resource', 'permitted-roles'], ['check'],
      ['role', 'members'], ['role', 'memberships'], ['role', 'all'], ['api-key', 'rotate'], ['hostfactory', 'tokens', 'create'],
      ['hostfactory', 'tokens', 'revoke'], ['hostfactory', 'hosts', 'create'], ['audit', 'query'], ['audit', 'verify'],
    ];
    for (const c of commands) {
      const r = await runCli([...c, '--help'], { env: { HOME: home() } });
      expect(r.code, c.join(' ')).toBe(0);
      expect(r.out, c.join(' ')).toMatch(/^usage: coffer /);
      expect(r.out, c.join(' ')).toMatch(/\nExample:\n {2}.*\bcoffer /);
    }
    const top = await runCli(['--help'], { env: {} });
    expect(top.out).toContain('Exit codes: 0 ok');
  });
});
