/**
 * Runs the real `coffer` binaries (bin/*.js over dist/) as child processes,
 * the way a CI job does: no terminal, own session, output captured.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const COFFER_BIN = join(ROOT, 'bin/coffer.js');
export const PROVIDER_BIN = join(ROOT, 'bin/coffer-provider.js');

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path, ext));
    else if (entry.name.endsWith(ext)) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * Compiles src/ to dist/ (`tsc -p tsconfig.json`, as `npm test` does first)
 * when a source file is newer than the compiled CLI. Type errors elsewhere in
 * the tree do not stop tsc from emitting; only a missing output fails.
 */
export function ensureBuilt(): void {
  const marker = join(ROOT, 'dist/cli/main.js');
  const stale = !existsSync(marker) || newestMtime(join(ROOT, 'src'), '.ts') > newestMtime(join(ROOT, 'dist'), '.js');
  if (stale) {
    spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json')], { cwd: ROOT, stdio: 'ignore' });
  }
  for (const file of ['dist/cli/main.js', 'dist/cli/commands/run.js', 'dist/cli/commands/provider.js']) {
    if (!existsSync(join(ROOT, file))) throw new Error(`${relative(ROOT, join(ROOT, file))} missing after tsc`);
  }
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface Running {
  proc: ChildProcess;
  done: Promise<Finished>;
}

export interface SpawnOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Data written to stdin (stdin is closed afterwards; ignored when absent). */
  stdin?: string;
}

/**
 * Starts `node <bin> …args` in a new session (no controlling terminal, like
 * a CI agent), capturing stdout as bytes and stderr as text.
 */
export function spawnBin(bin: string, args: string[], opts: SpawnOptions): Running {
  const proc = spawn(process.execPath, [bin, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: opts.env,
    detached: true,
    stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (opts.stdin !== undefined) proc.stdin!.end(opts.stdin);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout!.on('data', (c: Buffer) => out.push(c));
  proc.stderr!.on('data', (c: Buffer) => err.push(c));
  const done = new Promise<Finished>((resolveDone, reject) => {
    proc.on('error', reject);
    proc.on('close', (code, signal) =>
      resolveDone({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }),
    );
  });
  return { proc, done };
}

/** Runs `coffer …` to the end. */
export function coffer(args: string[], opts: SpawnOptions): Promise<Finished> {
  return spawnBin(COFFER_BIN, args, opts).done;
}
