#!/usr/bin/env node
// A/B of two builds (npm run bench:ab -- --against DIR): one node process of each build, each on a fresh
// installation of its own seeded the same way (100 variables and a host allowed to fetch them), driven in alternation
// by this process's autocannon at 64 connections on one audited fetch — the order reversed every other pair — and
// the medians. Per run it also reads the CPU time each process spent from /proc: the node, the database's processes
// (PostgreSQL) and this load generator, divided by the fetches served. This machine's throughput drifts by a quarter
// within minutes, so only alternating pairs of the same load say which build is faster.
//
//   --against DIR   the other build: a checkout with node_modules and a built dist/ (this checkout is "this")
//   --database URL  PostgreSQL (a server where the URL's user may CREATE DATABASE); without it, SQLite
//   --pairs N (5)   --seconds S (10)   --warmup S (2)   --connections C (64)
//   --after-write   each node writes a secret before it is measured (as a node that has run a transaction)
import autocannon from 'autocannon';
import postgres from 'postgres';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startNodeProcess } from './node-process.mjs';

const { values: opts } = parseArgs({
  options: {
    against: { type: 'string' },
    database: { type: 'string' },
    pairs: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
    'after-write': { type: 'boolean', default: false },
  },
});
if (!opts.against) {
  console.error('usage: npm run bench:ab -- --against DIR [--database postgres://…] [--pairs N] [--seconds S] [--after-write]');
  process.exit(2);
}
const builds = { this: fileURLToPath(new URL('..', import.meta.url)), other: resolve(opts.against) };
const [PAIRS, SECONDS, WARMUP, CONNECTIONS] = [opts.pairs, opts.seconds, opts.warmup, opts.connections].map(Number);
const account = 'ab';
const fetchPath = `/secrets/${account}/variable/s%2Fv42`;

/** CPU ticks (1/100 s) spent so far: by the node process `nodePid`, by PostgreSQL's processes, by this process. */
function cpuTicks(nodePid) {
  const out = { node: 0, database: 0, loadGenerator: 0 };
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      if (Number(pid) === nodePid) out.node += ticks;
      else if (Number(pid) === process.pid) out.loadGenerator += ticks;
      else if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('postgres:')) out.database += ticks;
    } catch {
      // The process ended while being read.
    }
  }
  return out;
}

/** A fresh installation for `build`, seeded through its own in-process server, then served by a node process of it. */
async function prepare(name, root) {
  const dataDir = mkdtempSync(join(tmpdir(), `coffer-ab-${name}-`));
  let database;
  let dbName;
  if (opts.database) {
    dbName = `coffer_ab_${name}_${Date.now()}`;
    const admin = postgres(opts.database, { max: 1, onnotice: () => {} });
    await admin.unsafe(`CREATE DATABASE ${dbName}`);
    await admin.end();
    const url = new URL(opts.database);
    url.pathname = `/${dbName}`;
    database = url.toString();
  }
  const dataKey = randomBytes(32).toString('base64');
  const { loadServerConfig } = await import(pathToFileURL(join(root, 'dist/config.js')).href);
  const { startServer, createAccountIn } = await import(pathToFileURL(join(root, 'dist/server.js')).href);
  const server = await startServer(loadServerConfig({ 'data-dir': dataDir, host: '127.0.0.1', port: '0', ...(database ? { database } : {}) }, { COFFER_DATA_KEY: dataKey }), { log: () => {} });
  let hostKey;
  let adminKey;
  try {
    ({ api_key: adminKey } = await createAccountIn(server.vault, account));
    const admin = await login(server.url, 'admin', adminKey);
    const seed = ['- !host executor', '- !policy\n  id: s\n  body:'];
    for (let i = 0; i < 100; i++) seed.push(`  - !variable v${i}`);
    seed.push('- !permit\n  role: !host executor\n  privilege: [ read, execute ]\n  resource: [' + Array.from({ length: 100 }, (_, i) => `!variable s/v${i}`).join(', ') + ']');
    const created = JSON.parse(await call(server.url, 'POST', `/policies/${account}/policy/root`, { token: admin, body: seed.join('\n') + '\n' }));
    for (let i = 0; i < 100; i++) await call(server.url, 'POST', `/secrets/${account}/variable/s%2Fv${i}`, { token: admin, body: `value-${i}` });
    hostKey = created.created_roles[`${account}:host:executor`].api_key;
  } finally {
    await server.close();
  }
  const node = await startNodeProcess({ root, dataDir, database, dataKey, ownsDataDir: true });
  const url = node.url;
  if (opts['after-write']) await call(url, 'POST', `/secrets/${account}/variable/s%2Fv1`, { token: await login(url, 'admin', adminKey), body: 'written by the node' });
  const stop = async () => {
    await node.stop();
    if (dbName) {
      const admin = postgres(opts.database, { max: 1, onnotice: () => {} });
      await admin.unsafe(`DROP DATABASE ${dbName}`).finally(() => admin.end());
    }
  };
  return { name, url, hostKey, pid: node.pid, stop };
}

async function call(base, method, path, { token, body } = {}) {
  const headers = token ? { Authorization: `Token token="${Buffer.from(token).toString('base64')}"` } : {};
  const res = await fetch(base + path, { method, body, headers });
  const text = await res.text();
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text;
}
const login = (base, id, key) => call(base, 'POST', `/authn/${account}/${encodeURIComponent(id)}/authenticate`, { body: key });

function drive(node, token, duration) {
  const headers = { Authorization: `Token token="${Buffer.from(token).toString('base64')}"` };
  return new Promise((done, fail) => autocannon({ url: node.url + fetchPath, connections: CONNECTIONS, duration, headers }, (err, r) => (err ? fail(err) : done(r))));
}

const nodes = [];
try {
  for (const [name, root] of Object.entries(builds)) nodes.push(await prepare(name, root));
  for (const node of nodes) if (WARMUP > 0) await drive(node, await login(node.url, 'host/executor', node.hostKey), WARMUP);
  const results = Object.fromEntries(nodes.map((n) => [n.name, []]));
  for (let pair = 0; pair < PAIRS; pair++) {
    for (const node of pair % 2 ? [...nodes].reverse() : nodes) {
      const token = await login(node.url, 'host/executor', node.hostKey);
      const before = cpuTicks(node.pid);
      const r = await drive(node, token, SECONDS);
      const after = cpuTicks(node.pid);
      const bad = r.non2xx + r.errors;
      if (bad > 0) throw new Error(`${node.name}: ${bad} requests failed or were refused`);
      const perFetch = Object.fromEntries(Object.keys(before).map((k) => [k, ((after[k] - before[k]) * 10_000) / r.requests.total]));
      results[node.name].push({ rate: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, ...perFetch });
      console.log(
        `pair ${pair + 1} ${node.name.padEnd(6)} ${r.requests.average.toFixed(0).padStart(6)} fetches/s   p50 ${r.latency.p50} ms   p99 ${r.latency.p99} ms   ` +
          `CPU µs per fetch: node ${perFetch.node.toFixed(0)}, database ${perFetch.database.toFixed(0)}, load generator ${perFetch.loadGenerator.toFixed(0)}`,
      );
    }
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  for (const [name, rs] of Object.entries(results)) {
    const m = (k) => median(rs.map((r) => r[k]));
    console.log(
      `${name.padEnd(6)} medians of ${PAIRS}: ${m('rate').toFixed(0)} fetches/s, p99 ${m('p99')} ms, node CPU ${m('node').toFixed(0)} µs per fetch, database ${m('database').toFixed(0)}` +
        `   (fetches/s by pair: ${rs.map((r) => r.rate.toFixed(0)).join(', ')})`,
    );
  }
  const rate = (name) => median(results[name].map((r) => r.rate));
  console.log(`this/other: ${(rate('this') / rate('other')).toFixed(2)}x; this ahead in ${results.this.filter((r, i) => r.rate > results.other[i].rate).length} of ${PAIRS} pairs`);
} finally {
  for (const node of nodes) await node.stop();
}
