#!/usr/bin/env node
// Dynamic secrets benchmark (npm run bench:dynamic; issue 12). Starts a
// throwaway PostgreSQL 15 cluster as the TARGET database (initdb in a temporary
// directory, loopback port; as the `postgres` OS user when run as root) — or
// uses BENCH_TARGET_URL (a superuser URL) — and the built Coffer server in
// production mode on a temporary data dir, then measures:
//  1. dynamic fetch latency (GET /secrets/…/data/dynamic/pg: lease row, CREATE
//     ROLE + GRANT on the target, audit event), sequential and 8 at a time,
//     next to the same-run baselines: a static variable fetch, and the bare
//     CREATE ROLE + GRANT transaction sent straight to the target;
//  2. sweeping 1,000 expired leases (terminate + DROP ROLE each, lease row and
//     audit event), next to the same-run baseline of dropping 1,000 roles
//     straight on the target.
import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, appendFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { loadServerConfig } from '../dist/config.js';
import { startServer, createAccountIn } from '../dist/server.js';

const N = Number(process.env.BENCH_FETCHES ?? 300);
const SWEEP = Number(process.env.BENCH_SWEEP_LEASES ?? 1000);
const PG_BIN = process.env.COFFER_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const isRoot = process.getuid?.() === 0;

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

function pg(bin, args) {
  const cmd = isRoot ? 'runuser' : join(PG_BIN, bin);
  const full = isRoot ? ['-u', 'postgres', '--', join(PG_BIN, bin), ...args] : args;
  return execFileSync(cmd, full, { encoding: 'utf8', env: { ...process.env, LANG: 'C', LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] });
}

let clusterDir;
async function startTarget() {
  if (process.env.BENCH_TARGET_URL) return { url: process.env.BENCH_TARGET_URL, stop: () => undefined };
  clusterDir = mkdtempSync(join(tmpdir(), 'coffer-bench-target-'));
  if (isRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    chownSync(clusterDir, uid, gid);
  }
  const data = join(clusterDir, 'data');
  pg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions']);
  const port = await freePort();
  appendFileSync(join(data, 'postgresql.conf'), `\nlisten_addresses = '127.0.0.1'\nport = ${port}\nunix_socket_directories = '${clusterDir}'\nfsync = on\nsynchronous_commit = on\nmax_connections = 200\n`);
  pg('pg_ctl', ['-D', data, '-l', join(clusterDir, 'server.log'), '-w', '-s', 'start']);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    stop: () => {
      try {
        pg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(clusterDir, { recursive: true, force: true });
      }
    },
  };
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const stats = (xs) => `p50 ${pct(xs, 50).toFixed(1)} ms  p99 ${pct(xs, 99).toFixed(1)} ms  max ${Math.max(...xs).toFixed(1)} ms  (n=${xs.length})`;

const target = await startTarget();
const admin = postgres(target.url, { max: 4, onnotice: () => undefined });
await admin`CREATE ROLE app_read NOLOGIN`.catch(() => undefined);
const u = new URL(target.url);

const dataDir = mkdtempSync(join(tmpdir(), 'coffer-bench-dyn-'));
const config = loadServerConfig({ 'data-dir': dataDir, host: '127.0.0.1', port: '0' }, { COFFER_DATA_KEY: randomBytes(32).toString('base64'), COFFER_LEASE_SWEEP_INTERVAL_MS: '10000' });
const server = await startServer(config, { log: () => {} });
const account = 'bench';
const { api_key } = await createAccountIn(server.vault, account);
const url = server.url;

async function call(method, path, { token, body, headers = {} } = {}) {
  if (token) headers.Authorization = `Token token="${Buffer.from(token).toString('base64')}"`;
  const res = await fetch(url + path, { method, body, headers });
  const text = await res.text();
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return text;
}
const login = (l, key) => call('POST', `/authn/${account}/${encodeURIComponent(l)}/authenticate`, { body: key });
async function timed(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

try {
  const adminToken = await login('admin', api_key);
  const created = JSON.parse(
    await call('POST', `/policies/${account}/policy/root`, {
      token: adminToken,
      body: `
- !policy
  id: conjur/issuers
- !host executor
- !variable static
- !policy
  id: data/dynamic
  body:
  - !variable
    id: pg
    annotations: { dynamic/issuer: pg, dynamic/ttl: "600", dynamic/grant-roles: app_read }
  - !variable
    id: short
    annotations: { dynamic/issuer: pg, dynamic/ttl: "1", dynamic/grant-roles: app_read }
- !permit
  role: !host executor
  privilege: [ read, execute ]
  resource: [ !variable static, !variable data/dynamic/pg, !variable data/dynamic/short ]
`,
    }),
  );
  await call('POST', `/secrets/${account}/variable/static`, { token: adminToken, body: 'value' });
  await call('POST', `/issuers/${account}`, {
    token: adminToken,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ id: 'pg', type: 'postgresql', max_ttl: 3600, data: { host: u.hostname, port: Number(u.port), database: u.pathname.slice(1) || 'postgres', username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) || 'unused-with-trust', sslmode: 'disable', allowed_grant_roles: ['app_read'] } }),
  });
  const hostKey = created.created_roles[`${account}:host:executor`].api_key;
  const host = await login('host/executor', hostKey);
  const get = (path) => call('GET', path, { token: host });
  const staticPath = `/secrets/${account}/variable/static`;
  const dynPath = `/secrets/${account}/variable/${encodeURIComponent('data/dynamic/pg')}`;
  // Warm-up (pools, caches).
  for (let i = 0; i < 20; i++) {
    await get(staticPath);
    await get(dynPath);
  }

  console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`dynamic fetch (${N} sequential, then ${N} with 8 at a time), target PostgreSQL on loopback:`);
  const baseStatic = [];
  for (let i = 0; i < N; i++) baseStatic.push(await timed(() => get(staticPath)));
  const baseRaw = [];
  for (let i = 0; i < N; i++) {
    const name = `bench_raw_${i}`;
    baseRaw.push(await timed(() => admin.begin(async (t) => {
      await t`CREATE ROLE ${t(name)} WITH LOGIN PASSWORD ${t.unsafe(`'${randomBytes(24).toString('base64url')}'`)} VALID UNTIL ${t.unsafe(`'${new Date(Date.now() + 600_000).toISOString()}'`)}`;
      await t`GRANT app_read TO ${t(name)}`;
    })));
  }
  const dyn = [];
  for (let i = 0; i < N; i++) dyn.push(await timed(() => get(dynPath)));
  const dynPar = [];
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next++ < N) dynPar.push(await timed(() => get(dynPath)));
  }));
  console.log(`  baseline static variable fetch (audited)       ${stats(baseStatic)}`);
  console.log(`  baseline CREATE ROLE + GRANT straight on target ${stats(baseRaw)}`);
  console.log(`  dynamic fetch, sequential                       ${stats(dyn)}   [target: p99 ≤ 50 ms]`);
  console.log(`  dynamic fetch, 8 concurrent                     ${stats(dynPar)}`);

  // Clean the slate: end every lease made so far (and the raw roles).
  const services = server.vault.services;
  for (const l of await services.store.dynamic.leasesOfAccount(account)) await services.dynamic.end(l, 'bench cleanup');
  for (let i = 0; i < N; i++) await admin`DROP ROLE IF EXISTS ${admin(`bench_raw_${i}`)}`;

  console.log(`\nsweep of ${SWEEP} expired leases:`);
  // The periodic sweeper would end them while they are issued: stop it, and time one sweep by hand.
  await services.dynamic.stop();
  const shortPath = `/secrets/${account}/variable/${encodeURIComponent('data/dynamic/short')}`;
  next = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next++ < SWEEP) await get(shortPath);
  }));
  console.log(`  issued ${SWEEP} leases in ${((Date.now() - t0) / 1000).toFixed(1)} s (16 concurrent)`);
  await new Promise((r) => setTimeout(r, 1500));
  const sweepMs = await timed(async () => {
    while ((await services.store.dynamic.countLeases(account)) > 0) await services.dynamic.sweep();
  });
  const left = Number((await admin`SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'coffer\\_%'`)[0].n);
  // Baseline: the same number of logins created, then dropped straight on the target.
  for (let i = 0; i < SWEEP; i++) await admin`CREATE ROLE ${admin(`bench_drop_${i}`)} LOGIN`;
  const rawDrop = await timed(async () => {
    for (let i = 0; i < SWEEP; i++) await admin`DROP ROLE ${admin(`bench_drop_${i}`)}`;
  });
  console.log(`  baseline: ${SWEEP} DROP ROLE straight on target, sequential   ${(rawDrop / 1000).toFixed(2)} s`);
  console.log(`  sweeper: ${SWEEP} leases ended (DROP ROLE, terminate sessions, row + audit)   ${(sweepMs / 1000).toFixed(2)} s   [target: ≤ 10 s]; coffer_ roles left: ${left}`);
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  await server.close();
  await admin.end({ timeout: 1 });
  target.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
