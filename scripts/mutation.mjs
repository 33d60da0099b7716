#!/usr/bin/env node
/**
 * `npm run mutation [-- --module <name>[,<name>…]]`: one Stryker run per
 * module of scripts/mutation-modules.mjs (all of them by default; also
 * MUTATION_MODULES=a,b), then the per-module summary. Exits non-zero when a
 * Stryker run failed (a low score alone does not fail it).
 */
import { spawnSync } from 'node:child_process';
import { MODULES } from './mutation-modules.mjs';

const args = process.argv.slice(2);
const selected = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--module' || a === '-m') selected.push(...(args[++i] ?? '').split(','));
  else if (a.startsWith('--module=')) selected.push(...a.slice('--module='.length).split(','));
  else if (a === '--help' || a === '-h') {
    console.log(`usage: npm run mutation [-- --module <${Object.keys(MODULES).join('|')}>[,…]]`);
    process.exit(0);
  } else {
    console.error(`unknown argument: ${a}`);
    process.exit(2);
  }
}
if (selected.length === 0 && process.env.MUTATION_MODULES) selected.push(...process.env.MUTATION_MODULES.split(','));
const modules = (selected.length ? selected : Object.keys(MODULES)).map((m) => m.trim()).filter(Boolean);
const unknown = modules.filter((m) => !(m in MODULES));
if (unknown.length) {
  console.error(`unknown module(s): ${unknown.join(', ')} (known: ${Object.keys(MODULES).join(', ')})`);
  process.exit(2);
}

let failed = false;
for (const module of modules) {
  const started = Date.now();
  console.log(`\n=== mutation: ${module} (${MODULES[module].mutate.join(' ')}) ===`);
  const r = spawnSync('npx', ['stryker', 'run', 'stryker.config.mjs'], {
    stdio: 'inherit',
    env: { ...process.env, MUTATION_MODULE: module },
  });
  const secs = Math.round((Date.now() - started) / 1000);
  console.log(`=== ${module}: stryker exited ${r.status ?? r.signal} after ${Math.floor(secs / 60)}m${secs % 60}s ===`);
  if (r.status !== 0) failed = true;
}

const summary = spawnSync(process.execPath, ['scripts/mutation-summary.mjs', ...modules], { stdio: 'inherit' });
process.exit(failed || summary.status !== 0 ? 1 : 0);
