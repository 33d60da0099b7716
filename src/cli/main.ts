/** `coffer` command dispatcher. */
import { parseArgs } from 'node:util';
import { CliError, processIo, type Io } from './io.js';
import { cmdAccountCreate, cmdAuditVerifyOffline, cmdKeygen, cmdKeys, cmdServer, cmdStoreCopy } from './admin.js';
import { CLIENT_COMMANDS, CLIENT_USAGE } from './commands/index.js';
import { makeCtx } from './commands/context.js';
import { cmdRun } from './commands/run.js';
import { cmdProvider } from './commands/provider.js';

const USAGE = `usage: coffer <command> [options]

Server and database (SQLite in --data-dir, or PostgreSQL with --database URL / COFFER_DATABASE_URL):
  server [--dev] [--data-dir DIR] [--database URL] [--host H] [--port P] [--tls-cert F --tls-key F]
  account create NAME (--data-dir DIR | --database URL) [--json]
  keygen
  keys rotate (--data-dir DIR | --database URL)
  keys rekey (--data-dir DIR | --database URL) --new-key-file F
  audit verify (--data-dir DIR | --database URL)
  store copy --from DIR --to URL      copy an SQLite installation whole into an empty PostgreSQL database

${CLIENT_USAGE}

Secrets into a process (Summon-compatible; exit 127 on its own failures, else the command's code):
  run [-f secrets.yml] [--up] [-e ENV] [-D K=V]… [--yaml TEXT] [-i K]… [-I] [--timeout D] [--] COMMAND [ARGS…]
  provider VARIABLE-ID                (also the coffer-provider bin, for summon -p coffer-provider)

Run 'coffer <command> --help' for details.`;

const SERVER_OPTIONS = {
  dev: { type: 'boolean' },
  'data-dir': { type: 'string' },
  database: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  'data-key-file': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'token-ttl': { type: 'string' },
  'max-token-ttl': { type: 'string' },
  'trusted-proxies': { type: 'string' },
  authenticators: { type: 'string' },
  'jwt-allow-http-hosts': { type: 'string' },
  'jwt-allow-private-hosts': { type: 'string' },
  'audit-log': { type: 'string' },
  'audit-format': { type: 'string' },
  'console-idle-minutes': { type: 'string' },
  'new-key-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (!command || command === '--help' || command === '-h' || command === 'help') {
      io.out(USAGE);
      return command ? 0 : 2;
    }
    const admin = () => parseArgs({ args: rest, options: SERVER_OPTIONS, allowPositionals: true, strict: true });
    switch (command) {
      case 'server': {
        const { values } = admin();
        if (values.help) return help(io, 'coffer server --dev   # or: COFFER_DATA_KEY=$(coffer keygen) coffer server --data-dir /var/lib/coffer');
        return await cmdServer(values, env, io);
      }
      case 'account': {
        const { values, positionals } = admin();
        if (values.help || positionals[0] !== 'create') return help(io, 'coffer account create acme --data-dir /var/lib/coffer --json', positionals[0] !== 'create' && !values.help);
        return await cmdAccountCreate(positionals[1], values, env, io);
      }
      case 'store': {
        const { values, positionals } = admin();
        if (values.help || positionals[0] !== 'copy') return help(io, 'coffer store copy --from /var/lib/coffer --to postgres://coffer@db1:5432/coffer', positionals[0] !== 'copy' && !values.help);
        return await cmdStoreCopy(values, env, io);
      }
      case 'keygen':
        return cmdKeygen(io);
      case 'keys': {
        const { values, positionals } = admin();
        if (values.help) return help(io, 'coffer keys rotate --data-dir /var/lib/coffer');
        return await cmdKeys(positionals[0], values, env, io);
      }
      case 'audit': {
        // Offline verification reads the database (a data directory's SQLite file, or --database); everything else asks the server.
        const named = (flag: string) => rest.some((a) => a === flag || a.startsWith(`${flag}=`));
        const offline = rest[0] === 'verify' && (named('--data-dir') || named('--database') || env.COFFER_DATA_DIR || env.COFFER_DATABASE_URL);
        if (!offline) return await CLIENT_COMMANDS.audit!(rest, makeCtx(env, io));
        const { values } = admin();
        return await cmdAuditVerifyOffline(values, env, io);
      }
      case 'run':
        return await cmdRun(rest, env, io);
      case 'provider':
        return await cmdProvider(rest, env, io);
      default: {
        const client = CLIENT_COMMANDS[command];
        if (client) return await client(rest, makeCtx(env, io));
        throw new CliError(`unknown command '${command}'\n${USAGE}`, 2);
      }
    }
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`coffer: ${err.message}`);
      return err.exitCode;
    }
    if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`coffer: ${err.message}`);
      return 2;
    }
    io.err(`coffer: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}

function help(io: Io, example: string, error = false): number {
  io[error ? 'err' : 'out'](`${USAGE}\n\nExample:\n  ${example}`);
  return error ? 2 : 0;
}
