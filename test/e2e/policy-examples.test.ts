/**
 * Every policy example loads, and the JWT examples work as their READMEs say:
 * the README's `coffer variable set` lines configure the service (the JWKS URL
 * swapped for a loopback one) and the README's job script, run with bash and
 * curl, prints the secret.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

const EXAMPLES = join(import.meta.dirname, '..', '..', 'policy-examples');
const readme = (dir: string) => readFileSync(join(EXAMPLES, dir, 'README.md'), 'utf8');

/** The fenced sh block right after `<!-- example: name -->`. */
function exampleScript(dir: string, name: string): string {
  const m = new RegExp(`<!-- example: ${name} -->\\s*\`\`\`sh\\n([\\s\\S]*?)\`\`\``).exec(readme(dir));
  if (!m) throw new Error(`${dir}/README.md has no example '${name}'`);
  return m[1]!;
}

/** `coffer variable set -i ID -v VALUE` lines of a README. */
function variableSettings(dir: string): [string, string][] {
  return [...readme(dir).matchAll(/^coffer variable set -i (\S+) -v (\S+)$/gm)].map((m) => [m[1]!, m[2]!]);
}

function bash(script: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', ['--norc', '-euo', 'pipefail', '-c', script], { env: { PATH: process.env.PATH!, SHLVL: '2', ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

let srv: TestServer;
let api: Client;
let admin: string;
let jwksServer: Server;
let jwksUrl: string;
let key: CryptoKey;
const nowSec = () => Math.floor(srv.clock.nowMs() / 1000);

beforeAll(async () => {
  const pair = await generateKeyPair('RS256', { extractable: true });
  key = pair.privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256' };
  jwksServer = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks`;
  srv = await startTestServer({
    flags: { authenticators: 'authn,authn-jwt/jenkins,authn-jwt/github', 'jwt-allow-http-hosts': '127.0.0.1' },
  });
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
});
afterAll(async () => {
  await srv?.close();
  await new Promise<void>((r) => (jwksServer ? jwksServer.close(() => r()) : r()));
});

async function loadExample(dir: string): Promise<void> {
  const files = readdirSync(join(EXAMPLES, dir)).filter((f) => f.endsWith('.yml')).sort();
  expect(files.length).toBeGreaterThan(0);
  for (const f of files) {
    const r = await api.loadPolicy(admin, 'POST', 'root', readFileSync(join(EXAMPLES, dir, f), 'utf8'));
    expect(r.status, `${dir}/${f}: ${r.text}`).toBe(201);
  }
}

async function configure(dir: string): Promise<void> {
  const settings = variableSettings(dir);
  expect(settings.length).toBeGreaterThan(3);
  for (const [id, value] of settings) {
    const v = id.endsWith('/jwks-uri') ? jwksUrl : value;
    expect((await api.setSecret(admin, id, v)).status).toBe(201);
  }
}

describe('policy examples', () => {
  it.each(['one-secret', 'jenkins'])('%s loads into root', async (dir) => {
    await loadExample(dir);
  });

  it('jenkins-jwt: a job exchanges its JWT and fetches its own secret, exactly as the README shows', async () => {
    await loadExample('jenkins-jwt');
    await configure('jenkins-jwt');
    expect((await api.setSecret(admin, 'secrets/payments/db-password', 'pg-pass-1')).status).toBe(201);
    const claims = (name: string, folder: string) => ({
      iss: 'https://jenkins.example.com',
      aud: 'coffer',
      sub: name,
      jenkins_full_name: name,
      jenkins_parent_full_name: folder,
      iat: nowSec(),
      exp: nowSec() + 120,
      jti: randomUUID(),
    });
    const jwt = await new SignJWT(claims('payments/deploy', 'payments')).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(key);
    const env = { COFFER_URL: srv.url, ACCOUNT: srv.account, JWT: jwt };
    const ok = await bash(exampleScript('jenkins-jwt', 'jenkins-jwt job'), env);
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toBe('pg-pass-1');
    // The same JWT again: refused (jti), so curl -f fails.
    expect((await bash(exampleScript('jenkins-jwt', 'jenkins-jwt job'), env)).code).not.toBe(0);
    // A job of the same name in another folder cannot pose as it.
    const impostor = await new SignJWT(claims('payments/deploy', 'web')).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(key);
    expect((await bash(exampleScript('jenkins-jwt', 'jenkins-jwt job'), { ...env, JWT: impostor })).code).not.toBe(0);
  });

  it('github-actions: a deploy workflow on main gets its secret; another ref does not', async () => {
    await loadExample('github-actions');
    await configure('github-actions');
    expect((await api.setSecret(admin, 'deploy/payments/api-key', 'gh-key-1')).status).toBe(201);
    let ref = 'refs/heads/main';
    // GitHub's ID-token endpoint, as the runner sees it.
    const idp = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      if (req.headers.authorization !== 'bearer runner-request-token' || url.searchParams.get('audience') !== 'coffer') {
        res.writeHead(403).end();
        return;
      }
      const claims = {
        iss: 'https://token.actions.githubusercontent.com',
        aud: 'coffer',
        sub: `repo:acme/payments:ref:${ref}`,
        repository: 'acme/payments',
        workflow: 'deploy',
        ref,
        iat: nowSec(),
        exp: nowSec() + 300,
        jti: randomUUID(),
      };
      void new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .sign(key)
        .then((value) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ value })));
    });
    await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
    try {
      const env = {
        COFFER_URL: srv.url,
        ACCOUNT: srv.account,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'runner-request-token',
        ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${(idp.address() as AddressInfo).port}/token?api-version=2.0`,
      };
      const ok = await bash(exampleScript('github-actions', 'github-actions step'), env);
      expect(ok.stderr).toBe('');
      expect(ok.stdout).toBe('gh-key-1');
      ref = 'refs/pull/7/merge';
      expect((await bash(exampleScript('github-actions', 'github-actions step'), env)).code).not.toBe(0);
      const events = await api.request('GET', `/audit/${srv.account}?action=authn&result=failure&limit=1`, { token: admin });
      expect(events.json.events[0].reason).toMatch(/^CONJ00049E/);
    } finally {
      await new Promise<void>((r) => idp.close(() => r()));
    }
  });
});
