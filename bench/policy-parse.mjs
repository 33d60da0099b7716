#!/usr/bin/env node
// Policy parsing bench (issue 9 item 4): starts the built server (dist/) on a
// temporary data dir and loads the issue's hostile policy bodies and the
// 20,000-variable / 2,000-host legitimate policy, printing for each the
// answer, its wall time, the longest event-loop stall while it ran, /health
// round trips answered meanwhile, and the process's peak RSS so far.
//   npm run build && node bench/policy-parse.mjs
// (COFFER_DIST=path picks another build.)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const dist = pathToFileURL(resolve(process.env.COFFER_DIST ?? new URL('../dist', import.meta.url).pathname) + '/').href;
const { loadServerConfig } = await import(dist + 'config.js');
const { startServer, createAccountIn } = await import(dist + 'server.js');

const dataDir = mkdtempSync(join(tmpdir(), 'coffer-bench-parse-'));
const config = loadServerConfig({ 'data-dir': dataDir, host: '127.0.0.1', port: '0' }, { COFFER_DATA_KEY: randomBytes(32).toString('base64') });
const server = await startServer(config, { log: () => {} });
const account = 'bench';
const { api_key } = await createAccountIn(server.vault, account);
const url = server.url;

async function login() {
  const res = await fetch(`${url}/authn/${account}/admin/authenticate`, { method: 'POST', body: api_key });
  return `Token token="${Buffer.from(await res.text()).toString('base64')}"`;
}

function legit() {
  const lines = ['- !layer fleet'];
  for (let h = 0; h < 2000; h++) lines.push(`- !host h${h}`, `- !grant\n  role: !layer fleet\n  member: !host h${h}`);
  for (let v = 0; v < 20000; v++) lines.push(`- !variable\n  id: app${v % 100}/secret${v}\n  annotations:\n    team: t${v % 10}`);
  return lines.join('\n') + '\n';
}

const bodies = [
  ['flow sequence of 1.4M items', '- !user {id: a, annotations: {x: [' + Array.from({ length: 1_400_000 }, () => '1').join(',') + ']}}\n'],
  ["600k lines of '- {a: 1}'", Array.from({ length: 600_000 }, () => '- {a: 1}').join('\n') + '\n'],
  ['100k nested [', '['.repeat(100_000) + ']'.repeat(100_000)],
  ['10M blank lines', '- !user a\n' + '\n'.repeat(10_000_000)],
  ['!!set', '- !!set {a, b}\n'],
  ['20,000 variables, 2,000 hosts (legitimate)', legit()],
];

// BENCH_ONLY=regexp picks bodies by name (e.g. to time a build that still parses on the event loop).
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined;
try {
  for (const [name, body] of bodies.filter(([name]) => !only || only.test(name))) {
    const auth = await login();
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    let healthOk = 0;
    let done = false;
    const t0 = performance.now();
    const load = fetch(`${url}/policies/${account}/policy/root`, { method: 'POST', body, headers: { Authorization: auth } }).then(async (r) => {
      done = true;
      return { status: r.status, text: await r.text() };
    });
    while (!done) {
      try {
        const r = await fetch(`${url}/health`);
        await r.arrayBuffer();
        if (!done && r.status === 200) healthOk++;
      } catch {
        // a keep-alive socket the stalled server closed; try again
      }
      await new Promise((res) => setTimeout(res, 20));
    }
    const { status, text } = await load;
    const ms = performance.now() - t0;
    h.disable();
    let what = text.slice(0, 110);
    try {
      const j = JSON.parse(text);
      what = j.error ? `${j.error.message}${j.error.innererror ? ` @${j.error.innererror.line}:${j.error.innererror.column}` : ''}` : `version ${j.version}`;
    } catch {}
    const rss = process.resourceUsage().maxRSS / 1024;
    console.log(
      `${name.padEnd(44)} ${(body.length / 1e6).toFixed(1).padStart(5)} MB  ${status}  ${(ms / 1000).toFixed(2).padStart(6)} s  ` +
        `longest event-loop stall ${(h.max / 1e6).toFixed(0).padStart(5)} ms  /health answered ${String(healthOk).padStart(4)}x  peak RSS ${rss.toFixed(0)} MB  ${what}`,
    );
  }
} finally {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
