/**
 * `coffer provider ID` and the `coffer-provider` bin: Summon's provider
 * protocol (cyberark/summon `provider/`): called as `PROVIDER <variable id>`,
 * print the value on stdout with nothing added and exit 0, or print the error
 * on stderr and exit non-zero. Summon then reports
 * `Error fetching variable NAME: <that error>`. `--version` prints the
 * version, as `summon -V` asks every provider.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { CliError, type Io } from '../io.js';
import { EXIT } from '../client/exit-codes.js';
import { openSession, type ClientSession } from '../client/session.js';
import { batchFetcher } from '../run/batch-fetch.js';

export const PROVIDER_USAGE = `usage: coffer provider VARIABLE-ID
       coffer-provider VARIABLE-ID       (for summon -p coffer-provider)

Prints the value of one variable with no newline added: Summon's provider
protocol. VARIABLE-ID is a path (ci/db/password), kind:path or account:kind:path.
Configuration and credentials as for every coffer command (CONJUR_* variables,
~/.conjurrc, ~/.netrc); the access token is revoked afterwards.

Example:
  summon -p coffer-provider --yaml 'DB_PASS: !var ci/db/password' ./migrate.sh`;

/** Where the raw value goes (process.stdout in the CLI). */
export interface ValueSink {
  write(data: Buffer, done: (err?: Error | null) => void): unknown;
}

/**
 * `coffer provider …` (or `coffer-provider …` when `name` says so).
 * Resolves with the exit code; errors go to `io.err` as one line.
 */
export async function cmdProvider(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: Io,
  opts: { name?: string; stdout?: ValueSink; home?: string } = {},
): Promise<number> {
  const name = opts.name ?? 'coffer provider';
  const [first, ...rest] = argv;
  if (first === '-h' || first === '--help') {
    io.out(PROVIDER_USAGE);
    return 0;
  }
  if (first === '--version' || first === '-v') {
    io.out(packageVersion());
    return 0;
  }
  // `--` lets an id that starts with '-' through.
  const id = first === '--' ? rest[0] : first;
  const extra = first === '--' ? rest.slice(1) : rest;
  if (id === undefined || id === '' || extra.length > 0 || (first !== '--' && id.startsWith('-'))) {
    io.err(`${name}: expected exactly one variable id\n${PROVIDER_USAGE}`);
    return EXIT.USAGE;
  }
  let session: ClientSession | undefined;
  try {
    session = await openSession(env, opts.home ? { home: opts.home } : {});
    const values = await batchFetcher(session)([id], { ignorable: new Set() });
    const value = values.get(id);
    if (value === undefined) throw new CliError(`the server returned no value for ${id}`, EXIT.NOT_FOUND);
    await writeValue(opts.stdout ?? process.stdout, value);
    return 0;
  } catch (err) {
    io.err(`${name}: ${err instanceof Error ? err.message : String(err)}`);
    if (err instanceof CliError) return err.exitCode;
    // A variable the server refused or lacks (VariableFetchError).
    return (err as { variable?: unknown }).variable !== undefined ? EXIT.NOT_FOUND : EXIT.FAILURE;
  } finally {
    await session?.close();
  }
}

function writeValue(sink: ValueSink, value: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    sink.write(value, (err) => {
      // Our copy is no longer needed once it has been handed to the pipe.
      value.fill(0);
      if (err) reject(err);
      else resolve();
    });
  });
}

function packageVersion(): string {
  try {
    // dist/cli/commands/provider.js → package.json at the package root.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
