/**
 * `coffer issuer create|list|show|update|delete` (conjur-cli-go's `conjur
 * issuer …` flags and JSON) and `coffer leases list|revoke` (dynamic secrets).
 * The issuer's `data` holds an administrative password: prefer `--data-file`
 * or `--data -` (stdin) to `--data` on the command line.
 */
import { readFileSync } from 'node:fs';
import { CliError } from '../io.js';
import { EXIT } from '../client/exit-codes.js';
import { httpError } from '../client/errors.js';
import { intFlag, parseFlags, str, usageError, withSession, type Ctx, type Help } from './context.js';
import { readSecret, table } from './ui.js';

const CREATE_HELP: Help = {
  usage: 'coffer issuer create -i ID -t TYPE -m MAX_TTL (--data JSON | --data-file F | --data -)',
  description:
    'Creates an issuer of dynamic secrets (needs create on policy conjur/issuers). TYPE postgresql takes\n' +
    'data {"host","port","database","username","password"[,"sslmode"][,"ca_cert"]}: a login allowed to create roles.\n' +
    'The password is sealed by the server and shown as ***** ever after.',
  options:
    '  -i, --id ID            issuer id (A-Z, a-z, 0-9, +, -, _)\n' +
    '  -t, --type TYPE        postgresql\n' +
    '  -m, --max-ttl SECONDS  longest lease a dynamic variable of this issuer gets\n' +
    '  --data JSON            the connection data (visible in the process list: prefer the next two)\n' +
    '  --data-file F          read the data from file F\n' +
    '  --data -               read the data from stdin',
  example: 'coffer issuer create -i pg-ci -t postgresql -m 3600 --data-file pg-issuer.json',
};
const UPDATE_HELP: Help = {
  usage: 'coffer issuer update -i ID [-m MAX_TTL] [--data JSON | --data-file F | --data -]',
  description: 'Updates an issuer (needs update on policy conjur/issuers). max_ttl may not shrink; a password left out, or sent as *****, is kept.',
  options: '  -i, --id ID   issuer id\n  -m, --max-ttl SECONDS\n  --data JSON | --data-file F | --data -',
  example: 'coffer issuer update -i pg-ci -m 7200',
};
const SHOW_HELP: Help = { usage: 'coffer issuer show -i ID', description: 'Shows an issuer (password masked).', options: '  -i, --id ID   issuer id', example: 'coffer issuer show -i pg-ci' };
const LIST_HELP: Help = { usage: 'coffer issuer list', description: 'Lists the issuers of the account (needs update on policy conjur/issuers).', example: 'coffer issuer list' };
const DELETE_HELP: Help = {
  usage: 'coffer issuer delete -i ID [-k|--keep-secrets]',
  description: 'Deletes an issuer and ends every lease it issued. Without --keep-secrets the dynamic variables that use it are deleted too (as conjur-cli-go).',
  options: '  -i, --id ID            issuer id\n  -k, --keep-secrets     keep the dynamic variables',
  example: 'coffer issuer delete -i pg-ci --keep-secrets',
};
const ISSUER_HELP: Help = { usage: 'coffer issuer create|list|show|update|delete …', description: 'Issuers of dynamic secrets. Run each subcommand with --help.', example: 'coffer issuer list' };
const LEASES_LIST_HELP: Help = {
  usage: 'coffer leases list [--json]',
  description: 'Lists the live leases of dynamic secrets whose variable you can see; PENDING ones have ended but their login is not dropped yet.',
  example: 'coffer leases list',
};
const LEASES_REVOKE_HELP: Help = {
  usage: 'coffer leases revoke LEASE_ID',
  description: 'Ends a lease now: its database login is dropped and its sessions terminated (needs update on the variable).',
  options: '  LEASE_ID   the lease_id of the credential (or -i LEASE_ID)',
  example: 'coffer leases revoke 0b5a…',
};
const LEASES_HELP: Help = { usage: 'coffer leases list|revoke …', description: 'Leases of dynamic secrets.', example: 'coffer leases list' };

const issuersPath = (account: string, id?: string) => `/issuers/${encodeURIComponent(account)}${id === undefined ? '' : `/${encodeURIComponent(id)}`}`;

async function readData(ctx: Ctx, inline: string | undefined, file: string | undefined, help: Help): Promise<unknown> {
  if (inline !== undefined && file !== undefined) throw usageError('give --data or --data-file, not both', help);
  let text: string | undefined;
  if (file !== undefined) text = readFileSync(file, 'utf8');
  else if (inline === '-') text = await readSecret(ctx, 'Issuer data (JSON): ');
  else text = inline;
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    // Never echo it: it holds a password.
    throw new CliError("Failed to parse 'data' flag JSON", EXIT.USAGE);
  }
}

function printJson(ctx: Ctx, body: Buffer): void {
  ctx.out(JSON.stringify(JSON.parse(body.toString('utf8')), null, 2));
}

export async function cmdIssuer(args: string[], ctx: Ctx): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create': {
      const p = parseFlags(ctx, rest, { id: { type: 'string', short: 'i' }, type: { type: 'string', short: 't' }, 'max-ttl': { type: 'string', short: 'm' }, data: { type: 'string' }, 'data-file': { type: 'string' } }, CREATE_HELP);
      if (!p) return EXIT.OK;
      const id = str(p.values.id);
      const type = str(p.values.type);
      const maxTtl = intFlag(str(p.values['max-ttl']), 'max-ttl', CREATE_HELP);
      if (!id || !type || maxTtl === undefined) throw usageError('issuer create needs --id, --type and --max-ttl', CREATE_HELP);
      const data = await readData(ctx, str(p.values.data), str(p.values['data-file']), CREATE_HELP);
      if (data === undefined) throw usageError('issuer create needs --data, --data-file or --data -', CREATE_HELP);
      return withSession(ctx, async (s) => {
        const res = await s.request('POST', issuersPath(s.config.account), { body: JSON.stringify({ id, type, max_ttl: maxTtl, data }), headers: { 'Content-Type': 'application/json' } });
        if (res.status !== 201) throw httpError(res, `creating issuer '${id}'`);
        printJson(ctx, res.body);
        return EXIT.OK;
      });
    }
    case 'list': {
      const p = parseFlags(ctx, rest, {}, LIST_HELP);
      if (!p) return EXIT.OK;
      return withSession(ctx, async (s) => {
        const res = await s.request('GET', issuersPath(s.config.account));
        if (res.status !== 200) throw httpError(res, 'listing issuers');
        printJson(ctx, res.body);
        return EXIT.OK;
      });
    }
    case 'show':
    case 'get': {
      const p = parseFlags(ctx, rest, { id: { type: 'string', short: 'i' } }, SHOW_HELP, 1);
      if (!p) return EXIT.OK;
      const id = str(p.values.id) ?? p.positionals[0];
      if (!id) throw usageError('issuer show needs --id', SHOW_HELP);
      return withSession(ctx, async (s) => {
        const res = await s.request('GET', issuersPath(s.config.account, id));
        if (res.status !== 200) throw httpError(res, `showing issuer '${id}'`);
        printJson(ctx, res.body);
        return EXIT.OK;
      });
    }
    case 'update': {
      const p = parseFlags(ctx, rest, { id: { type: 'string', short: 'i' }, 'max-ttl': { type: 'string', short: 'm' }, data: { type: 'string' }, 'data-file': { type: 'string' } }, UPDATE_HELP);
      if (!p) return EXIT.OK;
      const id = str(p.values.id);
      if (!id) throw usageError('issuer update needs --id', UPDATE_HELP);
      const maxTtl = intFlag(str(p.values['max-ttl']), 'max-ttl', UPDATE_HELP);
      const data = await readData(ctx, str(p.values.data), str(p.values['data-file']), UPDATE_HELP);
      if (maxTtl === undefined && data === undefined) throw usageError('issuer update needs --max-ttl, --data or both', UPDATE_HELP);
      const body: Record<string, unknown> = {};
      if (maxTtl !== undefined) body.max_ttl = maxTtl;
      if (data !== undefined) body.data = data;
      return withSession(ctx, async (s) => {
        const res = await s.request('PATCH', issuersPath(s.config.account, id), { body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
        if (res.status !== 200) throw httpError(res, `updating issuer '${id}'`);
        printJson(ctx, res.body);
        return EXIT.OK;
      });
    }
    case 'delete': {
      const p = parseFlags(ctx, rest, { id: { type: 'string', short: 'i' }, 'keep-secrets': { type: 'boolean', short: 'k' } }, DELETE_HELP);
      if (!p) return EXIT.OK;
      const id = str(p.values.id);
      if (!id) throw usageError('issuer delete needs --id', DELETE_HELP);
      return withSession(ctx, async (s) => {
        const res = await s.request('DELETE', issuersPath(s.config.account, id), { query: { keep_secrets: p.values['keep-secrets'] ? 'true' : 'false' } });
        if (res.status !== 200 && res.status !== 204) throw httpError(res, `deleting issuer '${id}'`);
        ctx.out(`The issuer '${id}' was deleted`);
        return EXIT.OK;
      });
    }
    case '-h':
    case '--help':
      return parseFlags(ctx, ['--help'], {}, ISSUER_HELP), EXIT.OK;
    default:
      throw usageError(sub ? `unknown issuer command '${sub}'` : 'issuer needs create, list, show, update or delete', ISSUER_HELP);
  }
}

interface LeaseJson {
  id: string;
  variable: string;
  username: string;
  role: string;
  expires_at: string;
  state: string;
  attempts: number;
  last_error: string | null;
}

export async function cmdLeases(args: string[], ctx: Ctx): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'list') {
    const p = parseFlags(ctx, rest, { json: { type: 'boolean' } }, LEASES_LIST_HELP);
    if (!p) return EXIT.OK;
    return withSession(ctx, async (s) => {
      const res = await s.request('GET', `/leases/${encodeURIComponent(s.config.account)}`);
      if (res.status !== 200) throw httpError(res, 'listing leases');
      if (p.values.json) {
        printJson(ctx, res.body);
        return EXIT.OK;
      }
      const leases = (JSON.parse(res.body.toString('utf8')) as { leases: LeaseJson[] }).leases;
      if (leases.length === 0) {
        ctx.err('No leases.');
        return EXIT.OK;
      }
      const rows = leases.map((l) => [l.id, l.variable, l.username, l.role, l.expires_at, l.state === 'pending' ? `PENDING (${l.attempts} attempts: ${l.last_error ?? ''})` : 'active']);
      for (const line of table(ctx, ['LEASE', 'VARIABLE', 'LOGIN', 'FETCHED BY', 'EXPIRES', 'STATE'], rows)) ctx.out(line);
      return EXIT.OK;
    });
  }
  if (sub === 'revoke') {
    const p = parseFlags(ctx, rest, { id: { type: 'string', short: 'i' } }, LEASES_REVOKE_HELP, 1);
    if (!p) return EXIT.OK;
    const id = str(p.values.id) ?? p.positionals[0];
    if (!id) throw usageError('leases revoke needs LEASE_ID', LEASES_REVOKE_HELP);
    return withSession(ctx, async (s) => {
      const res = await s.request('DELETE', `/leases/${encodeURIComponent(s.config.account)}/${encodeURIComponent(id)}`);
      if (res.status === 204) {
        ctx.out(`Lease ${id} ended: its login is dropped`);
        return EXIT.OK;
      }
      if (res.status === 202) {
        ctx.err(`Lease ${id} ended, but its database could not drop the login yet: it is pending and will be retried (coffer leases list)`);
        return EXIT.FAILURE;
      }
      throw httpError(res, `revoking lease ${id}`);
    });
  }
  if (sub === '-h' || sub === '--help') return parseFlags(ctx, ['--help'], {}, LEASES_HELP), EXIT.OK;
  throw usageError(sub ? `unknown leases command '${sub}'` : 'leases needs list or revoke', LEASES_HELP);
}
