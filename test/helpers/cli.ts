/** Runs the real `coffer` CLI entry (main) in-process with captured output, a given stdin and a private HOME. */
import { Readable } from 'node:stream';
import { main } from '../../src/cli/main.js';
import { tempDir } from './tmp.js';
import type { CliIo } from '../../src/cli/commands/context.js';

export interface CliResult {
  code: number;
  /** stdout as text. */
  out: string;
  /** stdout bytes exactly as written. */
  bytes: Buffer;
  err: string;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  stdin?: string | Buffer;
  tty?: boolean;
  signal?: AbortSignal;
  /** Called with each stdout line as it is written (for --follow). */
  onOut?: (line: string) => void;
}

/** A private HOME, removed after the test file (sooner if the test removes it itself). */
export function tempHome(): string {
  return tempDir('coffer-cli-home-');
}

export async function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const out: Buffer[] = [];
  const err: string[] = [];
  const io: CliIo = {
    out: (l) => {
      out.push(Buffer.from(`${l}\n`));
      opts.onOut?.(l);
    },
    err: (l) => void err.push(`${l}\n`),
    write: (c) => void out.push(Buffer.from(c)),
    writeErr: (c) => void err.push(c),
    stdin: Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]),
    stdinIsTTY: false,
    stdoutIsTTY: opts.tty ?? false,
    stderrIsTTY: opts.tty ?? false,
    ...(opts.signal ? { signal: opts.signal } : {}),
  };
  const code = await main(args, opts.env ?? {}, io);
  const bytes = Buffer.concat(out);
  return { code, out: bytes.toString('utf8'), bytes, err: err.join('') };
}
