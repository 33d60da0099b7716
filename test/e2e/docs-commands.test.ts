/**
 * docs/jenkins.md and docs/github-actions.md, run as written: every fenced
 * block of those pages carries a `<!-- docs-test: KIND NAME -->` marker and
 * is exercised here against the real server and the real `coffer` binary
 * (test/helpers/doc-blocks.ts refuses unmarked blocks; each suite fails if a
 * block was not used).
 *
 * What the test supplies, as Jenkins or GitHub would: the server URL (the
 * docs say https://coffer.example.com), the issuer's keys (a key pair made
 * here, served on loopback, hence the test-only `jwt-allow-http-hosts`
 * server flag), the build's JWT (signed here with Jenkins' or GitHub's
 * claims), the secret values the operator stores, and stand-ins for the
 * job's own scripts (ci/*.sh), which report what they received.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { parse as parseYaml } from 'yaml';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { COFFER_BIN, ROOT, ensureBuilt } from '../helpers/cli-process.js';
import { DocBlocks, envLines, normalizeTable, readJenkinsfile, runShell, type ShellResult } from '../helpers/doc-blocks.js';
import { postgresMissing, postgresRequired, startCluster } from '../helpers/postgres.js';

const ACCOUNT = 'acme';

/** Secret values the operator stores with `--file`. */
const VALUES: Record<string, string> = {
  'db-password.txt': 'pg-Jd83-ks1!',
  'stripe-api-key.txt': 'sk_test_4eC39HqLyjWDarjtT1zdp7dc',
  'npm-token.txt': 'npm_Zx81bTq0',
  'payments-api-key.txt': 'pay-key-7Ty2',
  'payments-db-password.txt': 'pay-pg-Qm4s',
};

/**
 * Stand-in for a job's script: writes what it received (the named variables,
 * and the contents and mode of the files named by *_FILE variables) to
 * $REPORT_DIR/<script>.json.
 */
const SCRIPT_STUB = `#!/bin/sh
exec node -e '
const fs = require("fs");
const names = ["PGHOST","PGUSER","PGPASSWORD","STRIPE_API_KEY_FILE","NPM_TOKEN","PAYMENTS_API_KEY",
  "CONJUR_AUTHN_API_KEY","JWT_TOKEN_PATH","ACTIONS_ID_TOKEN_REQUEST_TOKEN","ACTIONS_ID_TOKEN_REQUEST_URL"];
const r = { env: {}, files: {} };
for (const n of names) if (process.env[n] !== undefined) r.env[n] = process.env[n];
for (const n of names.filter((n) => n.endsWith("_FILE") && process.env[n])) {
  const p = process.env[n];
  r.files[n] = { path: p, text: fs.readFileSync(p, "utf8"), mode: fs.statSync(p).mode & 0o777 };
}
fs.writeFileSync(process.env.REPORT_DIR + "/" + process.argv[1] + ".json", JSON.stringify(r));
' "$(basename "$0" .sh)"
`;

interface Report {
  env: Record<string, string>;
  files: Record<string, { path: string; text: string; mode: number }>;
}

interface Workspace {
  dir: string;
  bin: string;
  home: string;
  reports: string;
  report(script: string): Report;
}

/** A checkout with the docs' files, the operator's value files, script stand-ins and `coffer` on PATH. */
function makeWorkspace(doc: DocBlocks): Workspace {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-docs-'));
  const bin = join(dir, '.bin');
  const home = join(dir, '.home');
  const reports = join(dir, '.reports');
  for (const d of [bin, home, reports, join(dir, 'ci')]) mkdirSync(d, { recursive: true });
  symlinkSync(COFFER_BIN, join(bin, 'coffer'));
  symlinkSync(join(ROOT, 'policy-examples'), join(dir, 'policy-examples'));
  for (const block of doc.all('file')) {
    mkdirSync(dirname(join(dir, block.name)), { recursive: true });
    writeFileSync(join(dir, block.name), block.text);
  }
  for (const [name, value] of Object.entries(VALUES)) writeFileSync(join(dir, name), value, { mode: 0o600 });
  for (const script of ['migrate', 'deploy', 'publish']) {
    writeFileSync(join(dir, 'ci', `${script}.sh`), SCRIPT_STUB);
    chmodSync(join(dir, 'ci', `${script}.sh`), 0o755);
  }
  return {
    dir,
    bin,
    home,
    reports,
    report: (script) => {
      const path = join(reports, `${script}.json`);
      const r = JSON.parse(readFileSync(path, 'utf8')) as Report;
      rmSync(path);
      return r;
    },
  };
}

function baseEnv(ws: Workspace, extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: `${ws.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: ws.home, REPORT_DIR: ws.reports, ...extra };
}

function expectOk(what: string, r: ShellResult): void {
  expect({ what, code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ what, code: 0, stderr: '' });
}

/** The `ROLE  API KEY` rows `coffer policy load` prints for created roles. */
function createdKey(output: string, roleId: string): string {
  const m = new RegExp(`${roleId.replace(/[/.]/g, '\\$&')}\\s+([0-9a-z]+)`).exec(output);
  if (!m) throw new Error(`no API key for ${roleId} in:\n${output}`);
  return m[1]!;
}

async function keyPair(kid: string): Promise<{ key: CryptoKey; jwk: JWK }> {
  const pair = await generateKeyPair('RS256', { extractable: true });
  return { key: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('docs/jenkins.md', () => {
  const doc = new DocBlocks(join(ROOT, 'docs/jenkins.md'));
  const JENKINS_ISSUER = 'https://jenkins.example.com';
  let srv: TestServer;
  let ws: Workspace;
  let jwksServer: Server;
  let signing: { key: CryptoKey; jwk: JWK };
  let admin: NodeJS.ProcessEnv;
  let aliceKey = '';
  let agentKey = '';

  /** A Jenkins build JWT for job `payments/deploy`, as the Conjur Secrets plugin signs it. */
  async function buildJwt(job = 'payments/deploy'): Promise<string> {
    const now = Math.floor(srv.clock.nowMs() / 1000);
    return new SignJWT({
      iss: JENKINS_ISSUER,
      aud: 'coffer',
      sub: job,
      jenkins_full_name: job,
      jenkins_parent_full_name: job.split('/')[0],
      jenkins_build_number: 42,
      iat: now,
      nbf: now - 5,
      exp: now + 120,
      jti: randomUUID(),
    })
      .setProtectedHeader({ alg: 'RS256', kid: signing.jwk.kid! })
      .sign(signing.key);
  }

  /** Runs a Jenkinsfile's stages as Jenkins would, with the given credentials store. */
  async function runPipeline(name: string, credentials: Record<string, () => Promise<string>>): Promise<void> {
    const pipeline = readJenkinsfile(doc.take('jenkinsfile', name).text);
    // The one value the test changes: where the server is.
    expect(pipeline.environment.CONJUR_APPLIANCE_URL).toBe('https://coffer.example.com');
    const env = { ...pipeline.environment, CONJUR_APPLIANCE_URL: srv.url };
    for (const stage of pipeline.stages) {
      const bound: Record<string, string> = {};
      for (const b of stage.bindings) {
        const value = await credentials[b.credentialsId]!();
        if (b.kind === 'file') {
          const path = join(ws.dir, '.tmp', `${b.credentialsId}-${randomUUID()}`);
          mkdirSync(dirname(path), { recursive: true });
          writeFileSync(path, value, { mode: 0o600 });
          bound[b.variable] = path;
        } else bound[b.variable] = value;
      }
      for (const sh of stage.sh) expectOk(`${name} / ${stage.name}: ${sh}`, await runShell('jenkins-sh', sh, { cwd: ws.dir, env: baseEnv(ws, { ...env, ...bound }) }));
    }
  }

  beforeAll(async () => {
    await ensureBuilt();
    signing = await keyPair('jenkins-1');
    jwksServer = createServer((req, res) => {
      if (req.url !== '/jwtauth/conjur-jwk-set') return void res.writeHead(404).end();
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: [signing.jwk] }));
    });
    const jwksBase = await listen(jwksServer);
    srv = await startTestServer({ account: ACCOUNT, env: envLines(doc.take('server-env', 'jenkins').text), flags: { 'jwt-allow-http-hosts': '127.0.0.1' } });
    ws = makeWorkspace(doc);
    admin = baseEnv(ws, {
      CONJUR_APPLIANCE_URL: srv.url,
      CONJUR_ACCOUNT: ACCOUNT,
      CONJUR_AUTHN_LOGIN: 'admin',
      CONJUR_AUTHN_API_KEY: srv.adminKey,
      JENKINS_JWT_ISSUER: JENKINS_ISSUER,
      JENKINS_JWKS_URI: `${jwksBase}/jwtauth/conjur-jwk-set`,
    });
  });

  afterAll(async () => {
    await srv?.close();
    await new Promise<void>((r) => (jwksServer ? jwksServer.close(() => r()) : r()));
    if (ws) rmSync(ws.dir, { recursive: true, force: true });
  });

  it('§2 set-up: loads the policies, configures authn-jwt/jenkins, stores the values; the agent key can be rotated', async () => {
    const setup = await runShell('bash', doc.take('run', 'jenkins-setup').text, { cwd: ws.dir, env: admin });
    expectOk('set-up', setup);
    aliceKey = createdKey(setup.stdout, `${ACCOUNT}:user:alice`);
    const firstAgentKey = createdKey(setup.stdout, `${ACCOUNT}:host:jenkins/agents/agent-01`);
    // No value that went in with --file is ever printed.
    for (const v of Object.values(VALUES)) expect(setup.stdout + setup.stderr).not.toContain(v);

    const rotate = await runShell('bash', doc.take('run', 'jenkins-rotate-agent-key').text, { cwd: ws.dir, env: admin });
    expectOk('rotate', rotate);
    agentKey = rotate.stdout.trim();
    expect(agentKey).toMatch(/^[0-9a-z]{20,}$/);
    const login = (key: string) => fetch(`${srv.url}/authn/${ACCOUNT}/host%2Fjenkins%2Fagents%2Fagent-01/authenticate`, { method: 'POST', body: key });
    expect((await login(firstAgentKey)).status).toBe(401);
    expect((await login(agentKey)).status).toBe(200);
    // Fourteen CLI processes: on a loaded 2-core machine this took over 30 s.
  }, 120_000);

  it('§4 the payments/deploy Jenkinsfile: each stage gets exactly its secret, by env or 0600 file, with a fresh JWT', async () => {
    await runPipeline('payments/deploy', { 'coffer-jwt': () => buildJwt() });
    const migrate = ws.report('migrate');
    expect(migrate.env).toMatchObject({ PGHOST: 'db.payments.internal', PGUSER: 'payments', PGPASSWORD: VALUES['db-password.txt'] });
    expect(Object.keys(migrate.env).sort()).toEqual(['PGHOST', 'PGPASSWORD', 'PGUSER']);
    const deploy = ws.report('deploy');
    expect(Object.keys(deploy.env).sort()).toEqual(['STRIPE_API_KEY_FILE']);
    const keyFile = deploy.files.STRIPE_API_KEY_FILE!;
    expect(keyFile.text).toBe(VALUES['stripe-api-key.txt']);
    expect(keyFile.mode).toBe(0o600);
    expect(existsSync(keyFile.path)).toBe(false);
  });

  it('§4 on a static agent: the API key reaches coffer run, not the script', async () => {
    expect(agentKey).not.toBe('');
    await runPipeline('web/build', { 'coffer-agent-01': async () => agentKey });
    const publish = ws.report('publish');
    expect(publish.env).toEqual({ NPM_TOKEN: VALUES['npm-token.txt'] });
  });

  it('§4 a script asking for another team\'s secret fails with exit 127 and exactly the message shown', async () => {
    const jwtPath = join(ws.dir, '.tmp', 'denied.jwt');
    writeFileSync(jwtPath, await buildJwt(), { mode: 0o600 });
    const env = baseEnv(ws, {
      ...readJenkinsfile(doc.take('jenkinsfile', 'payments/deploy').text).environment,
      CONJUR_APPLIANCE_URL: srv.url,
      JWT_TOKEN_PATH: jwtPath,
    });
    const r = await runShell('bash', doc.take('run', 'jenkins-denied').text, { cwd: ws.dir, env });
    expect(r.code).toBe(127);
    expect(r.stderr).toBe(doc.take('output', 'jenkins-denied').text);
  });

  it('§5 the auditor sees the job\'s authentications, fetches and revocations, as shown', async () => {
    expect(aliceKey).not.toBe('');
    const alice = baseEnv(ws, { CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: ACCOUNT, CONJUR_AUTHN_LOGIN: 'alice', CONJUR_AUTHN_API_KEY: aliceKey });
    const job = await runShell('bash', doc.take('run', 'jenkins-audit-job').text, { cwd: ws.dir, env: alice });
    expectOk('audit query --role', job);
    expect(normalizeTable(job.stdout)).toEqual(normalizeTable(doc.take('output', 'jenkins-audit-job').text));

    const secret = await runShell('bash', doc.take('run', 'jenkins-audit-secret').text, { cwd: ws.dir, env: alice });
    expectOk('audit query --resource / --result failure', secret);
    const lines = normalizeTable(secret.stdout);
    expect(lines.filter((l) => l.includes('fetch/fetch success') && l.includes('secrets/payments/db-password'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('fetch/fetch failure') && l.includes('secrets/web/npm-token'))).toHaveLength(1);
  });

  it('§6 a dynamic variable: the migration gets a login of its own, gone when coffer run exits; the auditor sees issue and revoke', async () => {
    const missing = postgresMissing();
    if (missing !== undefined) {
      for (const [kind, name] of [['run', 'jenkins-dynamic-setup'], ['run', 'jenkins-dynamic-migrate'], ['run', 'jenkins-audit-lease'], ['output', 'jenkins-audit-lease']] as const) doc.take(kind, name);
      if (postgresRequired()) throw new Error(`§6 needs PostgreSQL: ${missing}`);
      console.warn(`*** SKIPPED docs/jenkins.md §6: it needs PostgreSQL: ${missing} ***`);
      return;
    }
    expect(aliceKey).not.toBe('');
    const issuerPw = 'issuer-pw-Xk2-docs';
    const target = await startCluster({ database: 'payments' });
    try {
      await target.psql(`CREATE ROLE coffer_issuer LOGIN CREATEROLE PASSWORD '${issuerPw}'; GRANT pg_signal_backend TO coffer_issuer; CREATE ROLE payments_migrator NOLOGIN`, 'payments');
      // The operator's file (§6 describes its fields), pointing at the throwaway database.
      writeFileSync(join(ws.dir, 'payments-db-issuer.json'), JSON.stringify({ host: '127.0.0.1', port: target.port, database: 'payments', username: 'coffer_issuer', password: issuerPw, sslmode: 'disable', allowed_grant_roles: ['payments_migrator'] }), { mode: 0o600 });
      const setup = await runShell('bash', doc.take('run', 'jenkins-dynamic-setup').text, { cwd: ws.dir, env: admin });
      expectOk('dynamic set-up', setup);
      expect(setup.stdout + setup.stderr).not.toContain(issuerPw);
      expect(existsSync(join(ws.dir, 'payments-db-issuer.json'))).toBe(false);

      const jwtPath = join(ws.dir, '.tmp', 'dynamic.jwt');
      mkdirSync(dirname(jwtPath), { recursive: true });
      writeFileSync(jwtPath, await buildJwt(), { mode: 0o600 });
      const env = baseEnv(ws, { ...readJenkinsfile(doc.take('jenkinsfile', 'payments/deploy').text).environment, CONJUR_APPLIANCE_URL: srv.url, JWT_TOKEN_PATH: jwtPath });
      expectOk('migrate with a dynamic login', await runShell('bash', doc.take('run', 'jenkins-dynamic-migrate').text, { cwd: ws.dir, env }));
      const migrate = ws.report('migrate');
      expect(Object.keys(migrate.env).sort()).toEqual(['PGHOST', 'PGPASSWORD', 'PGUSER']);
      expect(migrate.env.PGHOST).toBe('127.0.0.1');
      expect(migrate.env.PGUSER).toMatch(/^coffer_[0-9a-f]{24}$/);
      expect(migrate.env.PGPASSWORD!.length).toBeGreaterThanOrEqual(32);
      // Gone once coffer run has exited.
      expect(await target.psql(`SELECT count(*) FROM pg_roles WHERE rolname = '${migrate.env.PGUSER}'`, 'payments')).toBe('0');

      const alice = baseEnv(ws, { CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: ACCOUNT, CONJUR_AUTHN_LOGIN: 'alice', CONJUR_AUTHN_API_KEY: aliceKey });
      const audit = await runShell('bash', doc.take('run', 'jenkins-audit-lease').text, { cwd: ws.dir, env: alice });
      expectOk('audit query --resource (dynamic variable)', audit);
      const columns = (text: string) => normalizeTable(text).map((l) => l.split(' ').slice(0, 5).join(' '));
      expect(columns(audit.stdout)).toEqual(columns(doc.take('output', 'jenkins-audit-lease').text));
      expect(audit.stdout).toContain(migrate.env.PGUSER);
      expect(audit.stdout).not.toContain(migrate.env.PGPASSWORD);
    } finally {
      await target.stop();
    }
  }, 120_000);

  it('uses every block of the page', () => {
    expect(doc.unused()).toEqual([]);
  });
});

describe('docs/github-actions.md', () => {
  const doc = new DocBlocks(join(ROOT, 'docs/github-actions.md'));
  const REQUEST_TOKEN = `runner-request-${randomUUID()}`;
  let srv: TestServer;
  let ws: Workspace;
  let idp: Server;
  let issuer = '';
  let signing: { key: CryptoKey; jwk: JWK };
  let ref = 'refs/heads/main';
  let tokensIssued = 0;

  beforeAll(async () => {
    await ensureBuilt();
    signing = await keyPair('gh-1');
    // GitHub's OIDC issuer as a runner sees it: the JWKS, and the token endpoint behind ACTIONS_ID_TOKEN_REQUEST_URL.
    idp = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/.well-known/jwks') {
        return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: [signing.jwk] }));
      }
      if (url.pathname !== '/token' || req.headers.authorization !== `bearer ${REQUEST_TOKEN}`) return void res.writeHead(403).end();
      const now = Math.floor(srv.clock.nowMs() / 1000);
      tokensIssued++;
      void new SignJWT({
        iss: issuer,
        aud: url.searchParams.get('audience') ?? issuer,
        sub: `repo:acme/payments:ref:${ref}`,
        repository: 'acme/payments',
        repository_owner: 'acme',
        workflow: 'deploy',
        ref,
        iat: now,
        nbf: now - 5,
        exp: now + 300,
        jti: randomUUID(),
      })
        .setProtectedHeader({ alg: 'RS256', kid: signing.jwk.kid! })
        .sign(signing.key)
        .then((value) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ count: 1, value })));
    });
    issuer = await listen(idp);
    srv = await startTestServer({ account: ACCOUNT, env: envLines(doc.take('server-env', 'github').text), flags: { 'jwt-allow-http-hosts': '127.0.0.1' } });
    ws = makeWorkspace(doc);
  });

  afterAll(async () => {
    await srv?.close();
    await new Promise<void>((r) => (idp ? idp.close(() => r()) : r()));
    if (ws) rmSync(ws.dir, { recursive: true, force: true });
  });

  const adminEnv = () =>
    baseEnv(ws, { CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: ACCOUNT, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey, GITHUB_OIDC_ISSUER: issuer });

  /** The workflow's job as a runner executes it: job env, then each `run:` with bash -eo pipefail. */
  function workflowJob(name = 'deploy') {
    const wf = parseYaml(doc.take('workflow', name).text) as any;
    expect(wf.permissions['id-token']).toBe('write');
    const job = Object.values(wf.jobs as Record<string, any>)[0];
    const runnerTemp = join(ws.dir, '.runner-temp');
    mkdirSync(runnerTemp, { recursive: true });
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(job.env as Record<string, string>)) env[k] = String(v).replaceAll('${{ runner.temp }}', runnerTemp);
    expect(env.CONJUR_APPLIANCE_URL).toBe('https://coffer.example.com');
    env.CONJUR_APPLIANCE_URL = srv.url;
    const runner = {
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN,
      ACTIONS_ID_TOKEN_REQUEST_URL: `${issuer}/token?api-version=2.0`,
      RUNNER_TEMP: runnerTemp,
    };
    const steps = (job.steps as { name?: string; uses?: string; run?: string }[]).filter((s) => {
      // The only action used is the checkout, which the workspace stands in for.
      if (s.uses) expect(s.uses).toMatch(/^actions\/checkout@/);
      return s.run !== undefined;
    });
    return { steps, run: (script: string) => runShell('bash', script, { cwd: ws.dir, env: baseEnv(ws, { ...env, ...runner }) }) };
  }

  it('§2 set-up: loads the policies, configures authn-jwt/github, stores the values', async () => {
    const setup = await runShell('bash', doc.take('run', 'github-setup').text, { cwd: ws.dir, env: adminEnv() });
    expectOk('set-up', setup);
    for (const v of Object.values(VALUES)) expect(setup.stdout + setup.stderr).not.toContain(v);
    // Eleven CLI processes: near 30 s on the loaded 2-core machine.
  }, 120_000);

  it('§3 the workflow on main: each step fetches its one secret with a fresh OIDC token; the script cannot mint tokens', async () => {
    const { steps, run } = workflowJob();
    expect(steps.map((s) => s.name)).toEqual(['Migrate database', 'Deploy']);
    const before = tokensIssued;
    for (const step of steps) expectOk(step.name!, await run(step.run!));
    expect(tokensIssued - before).toBe(2);
    const migrate = ws.report('migrate');
    expect(migrate.env.PGPASSWORD).toBe(VALUES['payments-db-password.txt']);
    expect(Object.keys(migrate.env).sort()).toEqual(['PGPASSWORD']);
    const deploy = ws.report('deploy');
    expect(Object.keys(deploy.env).sort()).toEqual(['PAYMENTS_API_KEY']);
    expect(deploy.env.PAYMENTS_API_KEY).toBe(VALUES['payments-api-key.txt']);
  });

  it('§4 the auditor sees each step\'s authentication, fetch and revocation, as shown', async () => {
    const r = await runShell('bash', doc.take('run', 'github-audit').text, { cwd: ws.dir, env: adminEnv() });
    expectOk('audit query', r);
    expect(normalizeTable(r.stdout)).toEqual(normalizeTable(doc.take('output', 'github-audit').text));
  });

  it('§3 a spent OIDC token, or the same workflow on a pull request ref, is refused (CONJ00049E on record) and the script never runs', async () => {
    // The token the last step used is spent: a second coffer run with the same file is refused.
    const replay = await runShell('bash', 'coffer run -f ci/deploy.secrets.yml -- ./ci/deploy.sh', { cwd: ws.dir, env: baseEnv(ws, { ...readJob(), CONJUR_APPLIANCE_URL: srv.url }) });
    expect(replay.code).toBe(127);
    expect(replay.stderr).toMatch(/JWT authentication with authn-jwt\/github failed/);
    const { steps, run } = workflowJob();
    ref = 'refs/pull/7/merge';
    try {
      const r = await run(steps[1]!.run!);
      expect(r.code).toBe(127);
    } finally {
      ref = 'refs/heads/main';
    }
    expect(existsSync(join(ws.reports, 'deploy.json'))).toBe(false);
    // Both refusals are on record, with their reasons, as §4 says.
    const r = await runShell('bash', doc.take('run', 'github-audit-failures').text, { cwd: ws.dir, env: adminEnv() });
    expectOk('audit query --result failure', r);
    const rows = normalizeTable(r.stdout).filter((l) => l.includes('authn/authenticate failure'));
    expect(rows).toHaveLength(2);
    expect(rows[0]).toContain('token replay');
    expect(rows[1]).toMatch(/CONJ00049E .*ref/);
  });

  it('§5 a dynamic variable: the migration step gets a login of its own, gone when the step ends; the auditor sees issue and revoke', async () => {
    const missing = postgresMissing();
    if (missing !== undefined) {
      for (const [kind, name] of [['run', 'github-dynamic-setup'], ['workflow', 'migrate-db'], ['run', 'github-audit-lease'], ['output', 'github-audit-lease']] as const) doc.take(kind, name);
      if (postgresRequired()) throw new Error(`§5 needs PostgreSQL: ${missing}`);
      console.warn(`*** SKIPPED docs/github-actions.md §5: it needs PostgreSQL: ${missing} ***`);
      return;
    }
    const issuerPw = 'issuer-pw-Gh7-docs';
    const target = await startCluster({ database: 'payments' });
    try {
      await target.psql(`CREATE ROLE coffer_issuer LOGIN CREATEROLE PASSWORD '${issuerPw}'; GRANT pg_signal_backend TO coffer_issuer; CREATE ROLE payments_migrator NOLOGIN`, 'payments');
      writeFileSync(join(ws.dir, 'payments-db-issuer.json'), JSON.stringify({ host: '127.0.0.1', port: target.port, database: 'payments', username: 'coffer_issuer', password: issuerPw, sslmode: 'disable', allowed_grant_roles: ['payments_migrator'] }), { mode: 0o600 });
      const setup = await runShell('bash', doc.take('run', 'github-dynamic-setup').text, { cwd: ws.dir, env: adminEnv() });
      expectOk('dynamic set-up', setup);
      expect(setup.stdout + setup.stderr).not.toContain(issuerPw);
      const { steps, run } = workflowJob('migrate-db');
      expect(steps.map((st) => st.name)).toEqual(['Migrate database']);
      expectOk('Migrate database (dynamic)', await run(steps[0]!.run!));
      const migrate = ws.report('migrate');
      expect(Object.keys(migrate.env).sort()).toEqual(['PGHOST', 'PGPASSWORD', 'PGUSER']);
      expect(migrate.env.PGUSER).toMatch(/^coffer_[0-9a-f]{24}$/);
      expect(await target.psql(`SELECT count(*) FROM pg_roles WHERE rolname = '${migrate.env.PGUSER}'`, 'payments')).toBe('0');
      const audit = await runShell('bash', doc.take('run', 'github-audit-lease').text, { cwd: ws.dir, env: adminEnv() });
      expectOk('audit query (dynamic variable)', audit);
      const columns = (text: string) => normalizeTable(text).map((l) => l.split(' ').slice(0, 5).join(' '));
      expect(columns(audit.stdout)).toEqual(columns(doc.take('output', 'github-audit-lease').text));
      expect(audit.stdout).toContain(migrate.env.PGUSER);
      expect(audit.stdout).not.toContain(migrate.env.PGPASSWORD);
    } finally {
      await target.stop();
    }
  }, 120_000);

  it('uses every block of the page', () => {
    expect(doc.unused()).toEqual([]);
  });

  /** The job env of the workflow with the runner's temp dir filled in (for the replay check). */
  function readJob(): Record<string, string> {
    const wf = parseYaml(doc.take('workflow', 'deploy').text) as any;
    const runnerTemp = join(ws.dir, '.runner-temp');
    return Object.fromEntries(Object.entries(wf.jobs.deploy.env as Record<string, string>).map(([k, v]) => [k, String(v).replaceAll('${{ runner.temp }}', runnerTemp)]));
  }
});
