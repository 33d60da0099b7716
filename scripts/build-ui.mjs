#!/usr/bin/env node
/**
 * Builds the console (web/) into dist/ui/: one JavaScript bundle (Preact,
 * minified by esbuild), one stylesheet and index.html. Prints each file's
 * size and the first-load JavaScript gzipped, and fails above the budget
 * (150 KB gzipped, issue 11).
 *
 *   node scripts/build-ui.mjs [--out DIR]
 */
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

export const FIRST_LOAD_JS_BUDGET = 150 * 1024;
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Builds into `out` and returns the sizes: { files: {name: {bytes, gzip}}, firstLoadJsGzip }. */
export async function buildConsole(out = join(root, 'dist', 'ui'), { quiet = false } = {}) {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: [join(root, 'web', 'src', 'main.tsx'), join(root, 'web', 'styles.css')],
    entryNames: '[name]',
    outdir: out,
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2022'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'none',
    sourcemap: false,
    logLevel: 'warning',
  });
  copyFileSync(join(root, 'web', 'index.html'), join(out, 'index.html'));
  copyFileSync(join(root, 'web', 'favicon.svg'), join(out, 'favicon.svg'));
  const files = {};
  for (const name of readdirSync(out).sort()) {
    const body = readFileSync(join(out, name));
    files[name] = { bytes: statSync(join(out, name)).size, gzip: gzipSync(body, { level: 9 }).length };
  }
  // index.html loads main.js only (no dynamic imports): that is the first-load JavaScript.
  const firstLoadJsGzip = files['main.js'].gzip;
  if (!quiet) {
    for (const [name, s] of Object.entries(files)) console.log(`console: ${name.padEnd(12)} ${String(s.bytes).padStart(8)} B  ${String(s.gzip).padStart(7)} B gzipped`);
    console.log(`console: first-load JavaScript ${(firstLoadJsGzip / 1024).toFixed(1)} KB gzipped (budget ${FIRST_LOAD_JS_BUDGET / 1024} KB)`);
  }
  if (firstLoadJsGzip > FIRST_LOAD_JS_BUDGET) throw new Error(`console first-load JavaScript is ${firstLoadJsGzip} B gzipped, over the ${FIRST_LOAD_JS_BUDGET} B budget`);
  return { files, firstLoadJsGzip };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--out');
  buildConsole(i > 0 ? resolve(process.argv[i + 1]) : undefined).catch((err) => {
    console.error(`console build failed: ${err.message}`);
    process.exit(1);
  });
}
