#!/usr/bin/env node
/**
 * Prints the mutation score per module from Stryker's JSON reports
 * (reports/mutation/<module>/mutation.json) and lists every surviving or
 * uncovered mutant as file:line  mutator  original → replacement.
 * `node scripts/mutation-summary.mjs [module…]` (default: every module with a report).
 */
import { existsSync, readFileSync } from 'node:fs';
import { MODULES, reportDir } from './mutation-modules.mjs';

const wanted = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(MODULES);
const one = (s) => s.replace(/\s+/g, ' ').trim();
const clip = (s, n = 70) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function originalText(source, loc) {
  const lines = source.split('\n');
  const { start, end } = loc;
  if (start.line === end.line) return lines[start.line - 1]?.slice(start.column - 1, end.column - 1) ?? '';
  const parts = [lines[start.line - 1]?.slice(start.column - 1) ?? ''];
  for (let l = start.line; l < end.line - 1; l++) parts.push(lines[l] ?? '');
  parts.push(lines[end.line - 1]?.slice(0, end.column - 1) ?? '');
  return parts.join('\n');
}

const rows = [];
const survivors = [];
for (const module of wanted) {
  const file = `${reportDir(module)}/mutation.json`;
  if (!existsSync(file)) {
    rows.push({ module, missing: true });
    continue;
  }
  const report = JSON.parse(readFileSync(file, 'utf8'));
  const c = { Killed: 0, Survived: 0, NoCoverage: 0, Timeout: 0, CompileError: 0, RuntimeError: 0, Ignored: 0, Pending: 0 };
  for (const [path, f] of Object.entries(report.files)) {
    for (const m of f.mutants) {
      c[m.status] = (c[m.status] ?? 0) + 1;
      if (m.status === 'Survived' || m.status === 'NoCoverage') {
        survivors.push({
          module,
          where: `${path}:${m.location.start.line}`,
          status: m.status === 'NoCoverage' ? 'no-cov' : 'survived',
          mutator: m.mutatorName,
          change: `${clip(one(originalText(f.source, m.location)), 50)} → ${clip(one(m.replacement ?? ''), 50)}`,
        });
      }
    }
  }
  // Stryker's score: detected (killed + timeout) over valid mutants (compile/runtime errors and ignored excluded).
  const detected = c.Killed + c.Timeout;
  const valid = detected + c.Survived + c.NoCoverage;
  rows.push({ module, ...c, score: valid ? (100 * detected) / valid : NaN, covered: detected + c.Survived ? (100 * detected) / (detected + c.Survived) : NaN });
}

const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
console.log('\nMutation score per module: (killed + timeout) / (killed + timeout + survived + no-cov); invalid = type errors, ignored = message text and static');
console.log(`${pad('module', 16)}${lpad('score', 8)}${lpad('killed', 8)}${lpad('timeout', 9)}${lpad('survived', 10)}${lpad('no-cov', 8)}${lpad('invalid', 9)}${lpad('ignored', 9)}`);
for (const r of rows) {
  if (r.missing) {
    console.log(`${pad(r.module, 16)}  (no report: run npm run mutation -- --module ${r.module})`);
    continue;
  }
  console.log(
    `${pad(r.module, 16)}${lpad(`${r.score.toFixed(1)}%`, 8)}${lpad(r.Killed, 8)}${lpad(r.Timeout, 9)}${lpad(r.Survived, 10)}${lpad(r.NoCoverage, 8)}${lpad(r.CompileError + r.RuntimeError, 9)}${lpad(r.Ignored, 9)}`,
  );
}
if (survivors.length) {
  console.log(`\nSurviving / uncovered mutants (${survivors.length}):`);
  for (const s of survivors) console.log(`  ${pad(s.where, 34)} ${pad(s.status, 9)} ${pad(s.mutator, 22)} ${s.change}`);
} else if (rows.some((r) => !r.missing)) {
  console.log('\nNo surviving mutants.');
}
