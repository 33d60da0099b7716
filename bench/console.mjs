#!/usr/bin/env node
// Console benchmark (npm run bench:console; issue 11). Starts the built
// server (production settings) on a temporary SQLite data dir and measures,
// server side (the domain call the route makes, median of BENCH_REPS runs)
// and through HTTP:
//  1) GET /audit/{account}/histogram over BENCH_AUDIT_EVENTS (default
//     1,000,000) events spread over 30 days, for an account-wide auditor
//     (served by the audit_counts rollup of migration 0009), next to the
//     same-run baseline: the same counts by one GROUP BY over the account's
//     time index (what the histogram would cost without the rollup); and the
//     shapes served by the audit read (a resource, a role filter).
//  2) GET /explain/{account} over a graph of BENCH_ROLES (default 100,000)
//     hosts in layers, groups and top groups, cold (the authorizer's caches
//     dropped before each run) and warm.
// BENCH_DATABASE=postgres://… runs the same on PostgreSQL (an empty
// database; the events and the graph are seeded with generate_series).
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { loadServerConfig } from '../dist/config.js';
import { startServer, createAccountIn } from '../dist/server.js';
import { explainPermission } from '../dist/rbac/explain.js';

const EVENTS = Number(process.env.BENCH_AUDIT_EVENTS ?? 1_000_000);
const ROLES = Number(process.env.BENCH_ROLES ?? 100_000);
const REPS = Number(process.env.BENCH_REPS ?? 7);
const dataDir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'coffer-bench-console-'));
const database = process.env.BENCH_DATABASE;
const config = loadServerConfig(
  { 'data-dir': dataDir, host: '127.0.0.1', port: '0', ...(database ? { database } : {}) },
  { COFFER_DATA_KEY: randomBytes(32).toString('base64') },
);
const server = await startServer(config, { log: () => {} });
const account = 'bench';
const { api_key } = await createAccountIn(server.vault, account);
const url = server.url;
const services = server.vault.services;
const store = services.store;
const db = store.db;
const pg = store.backend === 'postgres' ? store.sql : undefined;
/** One row of a counting query, on either backend. */
const one = async (text) => (pg ? (await pg.unsafe(text))[0] : db.prepare(text).get());
const load = () => `load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => `${x.toFixed(1).padStart(7)} ms`;

async function timed(fn, before, reps = REPS) {
  const runs = [];
  let result;
  for (let i = 0; i < reps; i++) {
    before?.();
    const t = performance.now();
    result = await fn();
    runs.push(performance.now() - t);
  }
  return { median: median(runs), result };
}

async function call(path, token) {
  const headers = token ? { Authorization: `Token token="${Buffer.from(token).toString('base64')}"` } : {};
  // A kept-alive socket may have been closed by the server while a baseline held its event loop: retry once.
  await fetch(url + path, { headers }).then((r) => r.arrayBuffer()).catch(() => undefined);
  const t = performance.now();
  const res = await fetch(url + path, { headers });
  const text = await res.text();
  const elapsed = performance.now() - t;
  if (res.status >= 400) throw new Error(`${path}: ${res.status} ${text}`);
  return { elapsed, json: JSON.parse(text) };
}

/** PostgreSQL: events [from, to) as the SQLite seed writes them, in one statement (its rollup trigger is per statement). */
async function pgSeedEvents(from, to, firstSeq, start, step) {
  const a = account;
  await pg.unsafe(
    `INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, message, prev_hash, hash)
     SELECT $1::bigint + i,
       to_char(to_timestamp($2::float8 / 1000 + i * $3::float8) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       '${a}', CASE WHEN i % 3 = 0 THEN 'authn' ELSE 'fetch' END, CASE WHEN i % 3 = 0 THEN 'authenticate' ELSE 'fetch' END,
       CASE WHEN i % 3 <> 0 AND i % 17 = 0 THEN 'failure' ELSE 'success' END,
       '${a}:host:h' || (i % 2000),
       CASE WHEN i % 3 = 0 THEN '${a}:host:h' || (i % 2000) ELSE '${a}:variable:app' || (i % 100) || '/secret' || (i % 20000) END,
       'seeded event ' || i, decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex')
     FROM generate_series($4::bigint, $5::bigint - 1) AS i`,
    [firstSeq, start, step, from, to],
  );
}

/** PostgreSQL: the same role graph as the SQLite seed, with generate_series. */
async function pgSeedGraph(layers, groups, tops) {
  const a = account;
  const policy = `${a}:policy:root`;
  const owner = `${a}:user:admin`;
  await pg.begin(async (t) => {
    const kinds = [
      ['group', 'top', tops],
      ['group', 'g', groups],
      ['layer', 'l', layers],
      ['host', 'h', ROLES],
    ];
    for (const [kind, prefix, n] of kinds) {
      await t.unsafe(
        `INSERT INTO roles (role_id, account, kind, identifier, policy_id, created_at)
         SELECT '${a}:${kind}:${prefix}' || i, '${a}', '${kind}', '${prefix}' || i, '${policy}', now()::text FROM generate_series(0, ${n - 1}) AS i`,
      );
      await t.unsafe(
        `INSERT INTO resources (resource_id, account, kind, identifier, owner_id, policy_id, created_at, policy_version)
         SELECT '${a}:${kind}:${prefix}' || i, '${a}', '${kind}', '${prefix}' || i, '${owner}', '${policy}', now()::text, 1 FROM generate_series(0, ${n - 1}) AS i`,
      );
    }
    await t.unsafe(
      `INSERT INTO resources (resource_id, account, kind, identifier, owner_id, policy_id, created_at, policy_version)
       SELECT '${a}:variable:secret' || i, '${a}', 'variable', 'secret' || i, '${owner}', '${policy}', now()::text, 1 FROM generate_series(0, ${tops - 1}) AS i`,
    );
    await t.unsafe(
      `INSERT INTO permissions (resource_id, privilege, role_id, policy_id, policy_version)
       SELECT '${a}:variable:secret' || i, 'execute', '${a}:group:top' || i, '${policy}', 1 FROM generate_series(0, ${tops - 1}) AS i
       UNION ALL SELECT '${a}:variable:secret0', 'execute', '${a}:host:h42', '${policy}', 1`,
    );
    for (const [parent, child, n, per] of [['group:top', 'group:g', groups, 10], ['group:g', 'layer:l', layers, 10], ['layer:l', 'host:h', ROLES, 100]]) {
      await t.unsafe(
        `INSERT INTO role_memberships (role_id, member_id, admin_option, ownership, policy_id, policy_version)
         SELECT '${a}:${parent}' || (i / ${per}), '${a}:${child}' || i, 0, 0, '${policy}', 1 FROM generate_series(0, ${n - 1}) AS i`,
      );
    }
  });
}

try {
  let admin = await (await fetch(`${url}/authn/${account}/admin/authenticate`, { method: 'POST', body: api_key })).text();
  const adminRole = `${account}:user:admin`;

  // 1) Seed the events: 30 days starting a minute from now (after every event logged so far: seeding times
  // older than the log's newest would make each row a clock regression, which PostgreSQL's audit_time_state
  // trigger records with one UPDATE per row), one every 2.592 s per million; 1 in 3 an authn, else a fetch,
  // 1 in 17 fetches failing.
  const span = 30 * 86_400_000;
  const start = Math.ceil((Date.now() + 60_000) / 60_000) * 60_000 + 1_234;
  const end = start + span;
  const seed = pg ? undefined : db.prepare(`WITH RECURSIVE n(i) AS (SELECT CAST(? AS INTEGER) UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
    INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, message, prev_hash, hash)
    SELECT ? + i,
      strftime('%Y-%m-%dT%H:%M:%fZ', ? / 1000.0 + i * ?, 'unixepoch'),
      '${account}', CASE WHEN i % 3 = 0 THEN 'authn' ELSE 'fetch' END, CASE WHEN i % 3 = 0 THEN 'authenticate' ELSE 'fetch' END,
      CASE WHEN i % 3 <> 0 AND i % 17 = 0 THEN 'failure' ELSE 'success' END,
      '${account}:host:h' || (i % 2000),
      CASE WHEN i % 3 = 0 THEN '${account}:host:h' || (i % 2000) ELSE '${account}:variable:app' || (i % 100) || '/secret' || (i % 20000) END,
      'seeded event ' || i, zeroblob(32), zeroblob(32)
    FROM n`);
  const t0 = performance.now();
  const step = span / 1000 / EVENTS;
  const firstSeq = Number((await one('SELECT coalesce(max(seq), 0) AS s FROM audit_events')).s) + 1;
  for (let done = 0; done < EVENTS; done += 250_000) {
    const n = Math.min(250_000, EVENTS - done);
    if (pg) await pgSeedEvents(done, done + n, firstSeq, start, step);
    else await store.tx(async () => seed.run(done, done + n, firstSeq, start, step));
  }
  console.log(`${store.backend}: seeded ${EVENTS.toLocaleString()} events over 30 days in ${((performance.now() - t0) / 1000).toFixed(1)} s (the rollup trigger included); audit_counts rows: ${Number((await one('SELECT count(*) AS n FROM audit_counts')).n).toLocaleString()}   (${load()})`);

  const iso = (t) => new Date(t).toISOString();
  const baseline = (since, until, bucketLen) =>
    pg
      ? pg.unsafe(
          `SELECT left(time, ${bucketLen}) AS b, action, result, count(*) AS n FROM audit_events WHERE account = $1 AND time >= $2 AND time < $3 GROUP BY 1, 2, 3`,
          [account, since, until],
        )
      : db
      .prepare(
        `SELECT substr(time, 1, ${bucketLen}) AS b, action, result, count(*) AS n FROM audit_events INDEXED BY audit_events_account_time ` +
          'WHERE account = ? AND time >= ? AND time < ? GROUP BY b, action, result',
      )
      .all(account, since, until);
  const shapes = [
    { name: 'day buckets, 30 days', bucket: 'day', since: iso(start), until: iso(end), len: 10 },
    { name: 'hour buckets, 30 days (720)', bucket: 'hour', since: iso(start), until: iso(end), len: 13 },
    { name: 'minute buckets, last 24 h (1,440)', bucket: 'minute', since: iso(end - 86_400_000), until: iso(end), len: 16 },
    { name: 'hour buckets, 30 days, action=fetch&result=failure', bucket: 'hour', since: iso(start), until: iso(end), len: 13, action: 'fetch', result: 'failure' },
    { name: 'day buckets, 60 days unaligned (7 s past the minute)', bucket: 'day', since: iso(end - 60 * 86_400_000 + 7_123), until: iso(end + 1), len: 10 },
  ];
  console.log(`\nGET /audit/${account}/histogram over ${EVENTS.toLocaleString()} events (median of ${REPS}; server side = AuditReader.histogram, the route's call)`);
  for (const s of shapes) {
    const q = { bucket: s.bucket, since: s.since, until: s.until, action: s.action, result: s.result };
    const server = await timed(() => services.auditReader.histogram(account, adminRole, q));
    const total = server.result.buckets.reduce((n, b) => n + b.total, 0);
    const qs = new URLSearchParams(Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined)));
    const http = await timed(async () => (await call(`/audit/${account}/histogram?${qs}`, admin)).elapsed);
    const fresh = await (await fetch(`${url}/authn/${account}/admin/authenticate`, { method: 'POST', body: api_key })).text();
    admin = fresh;
    // The baseline holds the event loop for seconds over a million events: run once.
    const base = s.action ? undefined : await timed(() => baseline(s.since, s.until, s.len), undefined, Number(process.env.BENCH_BASELINE_REPS ?? 1));
    console.log(
      `  ${s.name.padEnd(56)} server ${ms(server.median)}   HTTP ${ms(http.median)}   ` +
        `${base ? `baseline GROUP BY over the time index ${ms(base.median)}` : ''}   (${server.result.buckets.length} buckets, ${total.toLocaleString()} events)`,
    );
  }
  console.log('  served by the audit read (page by page), for comparison:');
  for (const s of [
    { name: 'resource=variable:app7/secret1207, day, 30 days', resource: `${account}:variable:app7/secret1207` },
    { name: 'role=host:h42, day, 30 days', role: `${account}:host:h42` },
  ]) {
    const q = { bucket: 'day', since: iso(start), until: iso(end), resource: s.resource, role: s.role };
    const r = await timed(() => services.auditReader.histogram(account, adminRole, q));
    console.log(`  ${s.name.padEnd(56)} server ${ms(r.median)}   (${r.result.buckets.reduce((n, b) => n + b.total, 0).toLocaleString()} events)`);
  }
  console.log(`  (${load()})`);

  // 2) The role graph: ROLES hosts, 100 per layer, 10 layers per group, 10 groups per top group; each top group has
  // execute on its own variable, and a few hosts also a direct permit (two paths).
  const now = new Date().toISOString();
  const prep = (text) => (pg ? undefined : db.prepare(text));
  const role = prep('INSERT INTO roles (role_id, account, kind, identifier, policy_id, created_at) VALUES (?, ?, ?, ?, ?, ?)');
  const resource = prep('INSERT INTO resources (resource_id, account, kind, identifier, owner_id, policy_id, created_at, policy_version) VALUES (?, ?, ?, ?, ?, ?, ?, 1)');
  const member = prep('INSERT INTO role_memberships (role_id, member_id, admin_option, ownership, policy_id, policy_version) VALUES (?, ?, 0, 0, ?, 1)');
  const permit = prep('INSERT INTO permissions (resource_id, privilege, role_id, policy_id, policy_version) VALUES (?, ?, ?, ?, 1)');
  const policy = `${account}:policy:root`;
  const id = (kind, name) => `${account}:${kind}:${name}`;
  const add = (kind, name) => {
    role.run(id(kind, name), account, kind, name, policy, now);
    resource.run(id(kind, name), account, kind, name, id('user', 'admin'), policy, now);
  };
  const t1 = performance.now();
  const layers = Math.ceil(ROLES / 100);
  const groups = Math.ceil(layers / 10);
  const tops = Math.ceil(groups / 10);
  if (pg) await pgSeedGraph(layers, groups, tops);
  else await store.tx(async () => {
    for (let t = 0; t < tops; t++) {
      add('group', `top${t}`);
      resource.run(id('variable', `secret${t}`), account, 'variable', `secret${t}`, id('user', 'admin'), policy, now);
      permit.run(id('variable', `secret${t}`), 'execute', id('group', `top${t}`), policy);
    }
    for (let g = 0; g < groups; g++) {
      add('group', `g${g}`);
      member.run(id('group', `top${Math.floor(g / 10)}`), id('group', `g${g}`), policy);
    }
    for (let l = 0; l < layers; l++) {
      add('layer', `l${l}`);
      member.run(id('group', `g${Math.floor(l / 10)}`), id('layer', `l${l}`), policy);
    }
    for (let h = 0; h < ROLES; h++) {
      add('host', `h${h}`);
      member.run(id('layer', `l${Math.floor(h / 100)}`), id('host', `h${h}`), policy);
    }
    permit.run(id('variable', 'secret0'), 'execute', id('host', 'h42'), policy);
  });
  services.authorizer.invalidate();
  const roleCount = Number((await one('SELECT count(*) AS n FROM roles')).n);
  console.log(`\nGET /explain/${account} over ${roleCount.toLocaleString()} roles (${layers} layers, ${groups} groups, ${tops} top groups; seeded in ${((performance.now() - t1) / 1000).toFixed(1)} s; median of ${REPS})`);
  const deps = { graph: store.graph, authorizer: services.authorizer };
  for (const c of [
    { name: 'host → layer → group → top group ⇒ permit, plus a direct permit (2 paths)', role: id('host', 'h42'), resource: id('variable', 'secret0') },
    { name: 'host → layer → group → top group ⇒ permit (1 path)', role: id('host', `h${ROLES - 1}`), resource: id('variable', `secret${tops - 1}`) },
    { name: 'no_permit (another top group’s variable)', role: id('host', `h${ROLES - 1}`), resource: id('variable', 'secret0') },
    { name: 'top group (its 10,000 members below it are not walked)', role: id('group', 'top0'), resource: id('variable', 'secret0') },
  ]) {
    const cold = await timed(() => explainPermission(deps, adminRole, c.role, 'execute', c.resource), () => services.authorizer.invalidate());
    const warm = await timed(() => explainPermission(deps, adminRole, c.role, 'execute', c.resource));
    const qs = new URLSearchParams({ role: c.role, privilege: 'execute', resource: c.resource });
    const http = await timed(async () => (await call(`/explain/${account}?${qs}`, admin)).elapsed);
    console.log(
      `  ${c.name.padEnd(76)} cold ${ms(cold.median)}   warm ${ms(warm.median)}   HTTP ${ms(http.median)}   (allowed ${cold.result.allowed}, ${cold.result.paths.length} paths)`,
    );
  }
  console.log(`  (${load()})`);
} finally {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
