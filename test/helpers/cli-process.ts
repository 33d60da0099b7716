/**
 * Runs the real `coffer` binaries (bin/*.js over dist/) as child processes,
 * the way a CI job does: no terminal, own session, stdout kept as bytes
 * (provider output may be binary). test/helpers/coffer-process.ts has the
 * build step and helpers for server processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const COFFER_BIN = join(ROOT, 'bin/coffer.js');
export const PROVIDER_BIN = join(ROOT, 'bin/coffer-provider.js');

/** Rebuilds dist/ when it is older than src/ (one build at a time across test workers). */
export { ensureBuilt } from './coffer-process.js';

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
