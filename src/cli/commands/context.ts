/**
 * What a client command gets: the environment, where to write, how to read
 * stdin, whether we are on a terminal — and helpers built on those so that
 * every command parses flags, shows --help and opens its session the same way.
 */
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { CliError, processIo, type Io } from '../io.js';
import { EXIT } from '../client/exit-codes.js';
import { openSession, type ClientSession } from '../client/session.js';

/** Io plus the raw streams a client command may need; tests supply these, the real CLI uses the process's. */
export interface CliIo extends Io {
  /** Raw bytes to stdout, no newline added (secret values). */
  write?(chunk: string | Uint8Array): void;
  /** Raw text to stderr without a newline (progress line). */
  writeErr?(chunk: string): void;
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?(mode: boolean): unknown };
  stdinIsTTY?: boolean;
  stdoutIsTTY?: boolean;
  stderrIsTTY?: boolean;
  /** Ends long-running commands (`audit query --follow`); SIGINT in the real CLI. */
  signal?: AbortSignal;
}

export interface Ctx {
  env: NodeJS.ProcessEnv;
  io: Io;
  out(line: string): void;
  err(line: string): void;
  write(chunk: string | Uint8Array): void;
  writeErr(chunk: string): void;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?(mode: boolean): unknown };
  tty: { stdin: boolean; stdout: boolean; stderr: boolean };
  /** Colours on stdout: only on a terminal, and never with NO_COLOR set. */
  color: boolean;
  signal: AbortSignal | undefined;
}

export function makeCtx(env: NodeJS.ProcessEnv, io: Io): Ctx {
  const x = io as CliIo;
  const real = io === processIo;
  // Tests that give no stdin get an empty one, never the test runner's own.
  const stdin = x.stdin ?? (real ? process.stdin : Readable.from([]));
  const tty = {
    stdin: x.stdinIsTTY ?? (real ? Boolean(process.stdin.isTTY) : false),
    stdout: x.stdoutIsTTY ?? (real ? Boolean(process.stdout.isTTY) : false),
    stderr: x.stderrIsTTY ?? (real ? Boolean(process.stderr.isTTY) : false),
  };
  return {
    env,
    io,
    out: (l) => io.out(l),
    err: (l) => io.err(l),
    write: x.write ?? (real ? (c) => void process.stdout.write(c) : (c) => io.out(typeof c === 'string' ? c : Buffer.from(c).toString('utf8'))),
    writeErr: x.writeErr ?? (real ? (c) => void process.stderr.write(c) : () => undefined),
    stdin,
    tty,
    color: tty.stdout && !env.NO_COLOR,
    signal: x.signal,
  };
}

/** A command's --help text: usage, description, options and an example. */
export interface Help {
  usage: string;
  description: string;
  options?: string;
  example: string;
}

export function renderHelp(h: Help): string {
  return [`usage: ${h.usage}`, '', h.description, ...(h.options ? ['', 'Options:', h.options] : []), '', 'Example:', `  ${h.example}`].join('\n');
}

type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/**
 * Parses flags strictly; `-h/--help` prints the help and returns undefined.
 * Unknown flags are usage errors (exit 2) that name the flag and the usage.
 */
export function parseFlags(ctx: Ctx, args: string[], options: OptionSpec, help: Help, maxPositionals = 0): Parsed | undefined {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(`${(err as Error).message.split('\n')[0]}\nusage: ${help.usage}`, EXIT.USAGE);
  }
  if (parsed.values.help) {
    ctx.out(renderHelp(help));
    return undefined;
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new CliError(`unexpected argument '${parsed.positionals[maxPositionals]}'\nusage: ${help.usage}`, EXIT.USAGE);
  }
  return { values: parsed.values as Parsed['values'], positionals: parsed.positionals };
}

export function usageError(message: string, help: Help): CliError {
  return new CliError(`${message}\nusage: ${help.usage}`, EXIT.USAGE);
}

export function str(v: Parsed['values'][string]): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Runs `fn` with an authenticated session and always revokes the session's token afterwards. */
export async function withSession<T>(ctx: Ctx, fn: (s: ClientSession) => Promise<T>): Promise<T> {
  const session = await openSession(ctx.env, { warn: (l) => ctx.err(l) });
  try {
    return await fn(session);
  } finally {
    await session.close();
  }
}

/** A positive integer flag, or a usage error naming it. */
export function intFlag(value: string | undefined, name: string, help: Help, min = 1): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min) throw usageError(`--${name} must be an integer ≥ ${min}`, help);
  return Number(value);
}
