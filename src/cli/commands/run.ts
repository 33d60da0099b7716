/**
 * `coffer run`: Summon's command line and secrets.yml, fetching from Coffer
 * in one batch request and revoking the access token when the command ends.
 *
 * Failures of the runner itself print one `coffer run: …` line on stderr and
 * exit 127 (Summon's code); otherwise the exit code is the command's.
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import type { Io } from '../io.js';
import { openSession, type ClientSession } from '../client/session.js';
import { parseRunArgs, type RunArgs } from '../run/args.js';
import { batchFetcher } from '../run/batch-fetch.js';
import { EXIT_RUNNER_FAILURE, hasControllingTerminal, runWithSecrets, type SignalSource } from '../run/runner.js';
import { findSecretsFile, parseSecretsYml, type SecretSpec } from '../run/secrets-yml.js';

export const RUN_USAGE = `usage: coffer run [options] [--] COMMAND [ARGS...]

Runs COMMAND with the secrets named in secrets.yml (Summon's format) in its
environment, fetched from Coffer in one request; removes secret files and
revokes the access token when COMMAND ends.

Options:
  -f FILE            secrets file (default: secrets.yml)
  --up               search for the secrets file in parent directories too
  -e, --environment ENV
                     use section ENV of the secrets file, merged over common/default;
                     exported to COMMAND as SUMMON_ENV
  -D NAME=VALUE      value for $NAME in the secrets file (repeatable)
  --yaml TEXT        secrets file contents given inline instead of -f
  -i, --ignore NAME  tolerate a failed fetch of NAME (env var or variable path; repeatable)
  -I, --ignore-all   tolerate every failed fetch
  --timeout DURATION kill COMMAND's process group after DURATION (90, 90s, 15m, 1h30m):
                     SIGTERM, then SIGKILL 10 s later; exit 124
  -h, --help         this help

Never put secret values in -D or --yaml: arguments are visible to other users (ps).

Exit codes: COMMAND's own; 128+n when it died of signal n; 124 after --timeout;
127 when coffer run itself fails (bad options or secrets file, configuration,
authentication, a variable that cannot be fetched, COMMAND not found).

Example:
  coffer run -f ci/secrets.yml -e production --timeout 20m -- ./deploy.sh --verbose`;

/**
 * Credentials the runner itself used: the child gets none of them, so a
 * script can only use the secrets its secrets.yml grants (a deliberate
 * difference from Summon, which passes its whole environment on).
 */
export const CREDENTIAL_ENV_VARS = [
  'CONJUR_AUTHN_API_KEY',
  'COFFER_API_KEY',
  'CONJUR_AUTHN_TOKEN',
  'COFFER_TOKEN',
  // Paths to credentials: the files stay readable by the same user, but the
  // child is not pointed at them.
  'CONJUR_AUTHN_TOKEN_FILE',
  'COFFER_TOKEN_FILE',
  'JWT_TOKEN_PATH',
  'COFFER_JWT_FILE',
] as const;

/** Test and embedding hooks; the CLI uses the defaults. */
export interface RunCommandDeps {
  signalSource?: SignalSource;
  home?: string;
  cwd?: string;
}

/** `coffer run …`; resolves with the exit code, never rejects. */
export async function cmdRun(argv: string[], env: NodeJS.ProcessEnv, io: Io, deps: RunCommandDeps = {}): Promise<number> {
  const fail = (message: string): number => {
    io.err(`coffer run: ${message}`);
    return EXIT_RUNNER_FAILURE;
  };
  let args: RunArgs;
  let specs: SecretSpec[];
  let session: ClientSession | undefined;
  try {
    args = parseRunArgs(argv);
    if (args.help) {
      io.out(RUN_USAGE);
      return 0;
    }
    if (args.command.length === 0) return fail('no command given (usage: coffer run [options] [--] COMMAND [ARGS...])');
    specs = parseSecretsYml(await secretsText(args, deps.cwd ?? process.cwd()), {
      defines: args.defines,
      ...(args.environment !== undefined ? { env: args.environment } : {}),
    });
    // Only a run that fetches needs a server (a secrets.yml of literals works offline).
    if (specs.some((s) => s.kind === 'var')) session = await openSession(env, deps.home ? { home: deps.home } : {});
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
  const open = session;
  return runWithSecrets({
    specs,
    command: args.command,
    fetchValues: open ? batchFetcher(open) : async () => new Map(),
    ignore: new Set(args.ignore),
    ignoreAll: args.ignoreAll,
    ...(args.environment ? { environment: args.environment } : {}),
    ...(args.timeoutMs !== undefined ? { timeoutMs: args.timeoutMs } : {}),
    // Revokes the token the session obtained; runs on every exit path.
    onCleanup: async () => {
      await open?.close();
    },
    stderr: { write: (chunk: string) => io.err(chunk.replace(/\n$/, '')) },
    baseEnv: childBaseEnv(env),
    // Its own process group lets --timeout and signals reach the whole tree; an interactive
    // run keeps the terminal instead so that ssh, sudo and prompts still work.
    detached: !hasControllingTerminal(),
    ...(deps.signalSource ? { signalSource: deps.signalSource } : {}),
  });
}

async function secretsText(args: RunArgs, cwd: string): Promise<string> {
  // As in Summon, --yaml wins over -f.
  if (args.yaml !== undefined && args.yaml !== '') return args.yaml;
  const path = findSecretsFile(cwd, args.file, args.up);
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (code ?? 'error');
    throw new Error(`cannot read secrets file ${path}: ${why}`);
  }
}

/** The runner's environment without its own credentials. */
export function childBaseEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const name of CREDENTIAL_ENV_VARS) delete out[name];
  return out;
}
