/**
 * Runs the real `coffer` binary (bin/coffer.js → dist/) as child processes:
 * one-shot commands and a server that is started, waited for and stopped.
 * (test/helpers/cli.ts runs the CLI in-process instead.)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'bin', 'coffer.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

const isStale = () => {
  const built = join(ROOT, 'dist', 'cli', 'main.js');
  return !existsSync(built) || statSync(built).mtimeMs < newestMtime(join(ROOT, 'src'));
};

/**
 * `npm test` compiles dist/ before vitest runs; a lone `vitest run` of these
 * files may find it older than src/, so it is rebuilt here (one build at a
 * time across test workers). Type errors do not stop tsc from emitting.
 */
export async function ensureBuilt(): Promise<void> {
  if (!isStale()) return;
  // In the OS temp directory, not this run's own (test/helpers/global-tmp.ts), so concurrent runs take turns too.
  const lock = join(process.env.COFFER_TEST_SHARED_TMPDIR ?? tmpdir(), `coffer-build-${ROOT.replace(/[^A-Za-z0-9]/g, '_')}.lock`);
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`timed out waiting for another build (${lock})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    if (isStale()) spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'ignore' });
    if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('building dist/ failed: run `npm run build`');
  } finally {
    rmdirSync(lock);
  }
}

/** Only what the command needs: no COFFER_* variable leaks in from the test runner's environment. */
export function processEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C' };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  /** Called with each chunk of stderr while the command runs (e.g. to kill it mid-way). */
  onStderr?: (chunk: string, child: ChildProcess) => void;
}

/** Runs `coffer ARGS…` to completion. */
export function runCoffer(args: string[], opts: RunOptions = {}): Promise<ProcessResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: processEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
      opts.onStderr?.(c, child);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolveRun({ code, signal, stdout, stderr }));
  });
}

export interface CofferProcess {
  url: string;
  pid: number;
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `coffer server ARGS…` on an ephemeral loopback port and waits for
 * its "listening on" line. Rejects with the output (and `code`, `stderr`)
 * when it exits instead.
 */
export function startCofferServer(args: string[], env: Record<string, string | undefined> = {}): Promise<CofferProcess> {
  return new Promise((resolveStart, reject) => {
    const child = spawn(process.execPath, [BIN, 'server', '--host', '127.0.0.1', '--port', '0', ...args], {
      cwd: ROOT,
      env: processEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let started = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
      const m = /listening on (\S+)/.exec(stderr);
      if (m && !started) {
        started = true;
        resolveStart({
          url: m[1]!,
          pid: child.pid!,
          child,
          stdout: () => stdout,
          stderr: () => stderr,
          stop: () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            return exited;
          },
        });
      }
    });
    child.on('error', reject);
    void exited.then(({ code, signal }) => {
      if (!started) reject(Object.assign(new Error(`coffer server exited (${code ?? signal}) before listening:\n${stderr}`), { code, stdout, stderr }));
    });
  });
}
