#!/usr/bin/env node
// Benchmark (npm run bench:path): the cost of unauthenticated requests with
// long many-segment paths (issue 9, item 2), against GET /health in the same
// run, and /health's latency while such requests arrive at full speed.
import autocannon from 'autocannon';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadServerConfig } from '../dist/config.js';
import { startServer, createAccountIn } from '../dist/server.js';

const dataDir = mkdtempSync(join(tmpdir(), 'coffer-bench-path-'));
const config = loadServerConfig({ 'data-dir': dataDir, host: '127.0.0.1', port: '0' }, { COFFER_DATA_KEY: randomBytes(32).toString('base64') });
const server = await startServer(config, { log: () => {} });
await createAccountIn(server.vault, 'bench');

async function median(path, method = 'GET', runs = 15) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = await fetch(server.url + path, { method, body: method === 'POST' ? 'not-a-key' : undefined });
    await r.arrayBuffer();
    times.push({ ms: performance.now() - t0, status: r.status });
  }
  times.sort((a, b) => a.ms - b.ms);
  return times[Math.floor(runs / 2)];
}

try {
  const health = await median('/health');
  console.log(`baseline GET /health: ${health.ms.toFixed(2)} ms (median of 15)`);
  for (const n of [100, 1000, 2000, 2096, 4000, 7000]) {
    for (const base of ['/authn/bench/', '/authn-jwt/x/bench/']) {
      const m = await median(`${base}${'a/'.repeat(n)}authenticate`, 'POST');
      console.log(`POST ${base}${'a/'.repeat(2)}…(${n} segments)/authenticate: ${m.ms.toFixed(2)} ms, ${m.status} (${(m.ms / health.ms).toFixed(1)}× /health)`);
    }
  }
  // /health while 16 connections send failing authentications: short logins
  // (the same-run baseline) versus the longest path the bound lets through.
  const healthDuring = async (path) => {
    const flood = autocannon({ url: server.url + path, method: 'POST', body: 'x', connections: 16, duration: 6 });
    const busy = await new Promise((res, rej) => autocannon({ url: `${server.url}/health`, connections: 4, duration: 5 }, (e, r) => (e ? rej(e) : res(r))));
    const f = await flood;
    return `GET /health ${busy.requests.average.toFixed(0)} req/s, p99 ${busy.latency.p99} ms (flood ${f.requests.average.toFixed(0)} req/s)`;
  };
  console.log(`during a flood of short-path authentications (baseline): ${await healthDuring('/authn/bench/a/authenticate')}`);
  console.log(`during a flood of 2,099-segment authentications:         ${await healthDuring(`/authn/bench/${'a/'.repeat(2096)}authenticate`)}`);
  console.log(`during a flood of 7,000-segment authentications (414):   ${await healthDuring(`/authn/bench/${'a/'.repeat(7000)}authenticate`)}`);
} finally {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
