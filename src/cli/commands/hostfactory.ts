/**
 * `coffer hostfactory tokens create|revoke`, `coffer hostfactory hosts create`.
 * Host-factory tokens and the API keys of enrolled hosts are credentials: the
 * token can be given on stdin instead of the command line, and a new host's
 * API key goes to stdout alone with a shown-once notice on stderr.
 */
import { CliError } from '../io.js';
import { EXIT } from '../client/exit-codes.js';
import { httpError, sanitize } from '../client/errors.js';
import { plainRequest, resolveConfig } from '../client/session.js';
import { intFlag, parseFlags, str, usageError, withSession, type Ctx, type Help } from './context.js';
import { parseId } from './ids.js';
import { parseDuration } from './time.js';
import { readSecret, shownOnce, table } from './ui.js';

const TOKENS_CREATE_HELP: Help = {
  usage: 'coffer hostfactory tokens create -i HOST_FACTORY [--duration D | --expiration TIME] [--cidr CIDR,…] [-c N] [--json]',
  description: 'Creates N host-factory tokens (needs execute on the host factory). Tokens are credentials: anyone holding\none can enrol hosts into the factory\'s layers until it expires.',
  options:
    '  -i, --hostfactory-id ID   host factory, e.g. ci/executors (or host_factory:ci/executors)\n' +
    '  --duration D              lifetime: 30m, 1h (default), 2d\n' +
    '  --expiration TIME         absolute expiry (ISO 8601) instead of --duration\n' +
    '  --cidr CIDR,…             only usable from these networks\n' +
    '  -c, --count N             how many tokens (default 1)\n' +
    "  --json                    the server's JSON",
  example: 'coffer hostfactory tokens create -i ci/executors --duration 2h --cidr 10.0.0.0/8',
};
const TOKENS_REVOKE_HELP: Help = {
  usage: 'coffer hostfactory tokens revoke [-t TOKEN]',
  description: 'Revokes a host-factory token (needs update on its host factory). Without -t the token is read from stdin.',
  options: '  -t, --token TOKEN   the token (prefer stdin: arguments are visible in the process list)',
  example: 'printf %s "$HF_TOKEN" | coffer hostfactory tokens revoke',
};
const HOSTS_CREATE_HELP: Help = {
  usage: 'coffer hostfactory hosts create -i HOST_ID [-t TOKEN] [--annotation NAME=VALUE]… [--json]',
  description:
    'Enrols host HOST_ID with a host-factory token (no login needed; the token is the credential) and prints\n' +
    'its API key once. Without -t the token is read from stdin.',
  options:
    '  -i, --id HOST_ID            host id, e.g. ci/executor-7\n' +
    '  -t, --token TOKEN           host-factory token (prefer stdin)\n' +
    '  --annotation NAME=VALUE     annotate the host (repeatable)\n' +
    "  --json                      the server's JSON (includes the API key)",
  example: 'printf %s "$HF_TOKEN" | coffer hostfactory hosts create -i ci/executor-7',
};
const HF_HELP: Help = {
  usage: 'coffer hostfactory tokens create|revoke … | coffer hostfactory hosts create …',
  description: 'Host-factory tokens and host enrolment. Run each subcommand with --help for its options.',
  example: 'coffer hostfactory tokens create -i ci/executors --duration 1h',
};

export async function cmdHostFactory(args: string[], ctx: Ctx): Promise<number> {
  const [group, sub, ...rest] = args;
  if (group === '-h' || group === '--help') return parseFlags(ctx, ['--help'], {}, HF_HELP), EXIT.OK;
  if (group === 'tokens' && sub === 'create') return tokensCreate(rest, ctx);
  if (group === 'tokens' && sub === 'revoke') return tokensRevoke(rest, ctx);
  if (group === 'hosts' && sub === 'create') return hostsCreate(rest, ctx);
  throw usageError(`unknown hostfactory command '${[group, sub].filter(Boolean).join(' ')}'`, HF_HELP);
}

async function tokenFromArgsOrStdin(ctx: Ctx, given: string | undefined): Promise<string> {
  const token = (given ?? (await readSecret(ctx, 'Host-factory token: '))).trim();
  if (!token) throw new CliError('no host-factory token given (use -t or stdin)', EXIT.USAGE);
  if (/[\s"]/.test(token)) throw new CliError('a host-factory token contains no whitespace or quotes', EXIT.USAGE);
  return token;
}

async function tokensCreate(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(
    ctx,
    args,
    { 'hostfactory-id': { type: 'string', short: 'i' }, duration: { type: 'string' }, expiration: { type: 'string' }, cidr: { type: 'string', multiple: true }, count: { type: 'string', short: 'c' }, json: { type: 'boolean' } },
    TOKENS_CREATE_HELP,
  );
  if (!p) return EXIT.OK;
  const raw = str(p.values['hostfactory-id']);
  if (!raw) throw usageError('tokens create needs -i HOST_FACTORY', TOKENS_CREATE_HELP);
  const duration = str(p.values.duration);
  const expirationFlag = str(p.values.expiration);
  if (duration && expirationFlag) throw usageError('give --duration or --expiration, not both', TOKENS_CREATE_HELP);
  let expiration: string;
  if (expirationFlag) {
    const t = Date.parse(expirationFlag);
    if (Number.isNaN(t)) throw usageError(`--expiration '${expirationFlag}' is not a time`, TOKENS_CREATE_HELP);
    expiration = new Date(t).toISOString();
  } else {
    const ms = parseDuration(duration ?? '1h');
    if (!ms) throw usageError(`--duration '${duration}' is not a duration like 30m, 1h or 2d`, TOKENS_CREATE_HELP);
    expiration = new Date(Date.now() + ms).toISOString();
  }
  const count = intFlag(str(p.values.count), 'count', TOKENS_CREATE_HELP) ?? 1;
  const cidrs = ((p.values.cidr as string[] | undefined) ?? []).flatMap((c) => c.split(',')).map((c) => c.trim()).filter(Boolean);
  return withSession(ctx, async (s) => {
    const hf = parseId(raw, s.config.account, 'host_factory');
    const form = new URLSearchParams({ host_factory: hf.full, expiration, count: String(count) });
    for (const c of cidrs) form.append('cidr[]', c);
    const res = await s.request('POST', '/host_factory_tokens', { body: form.toString(), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    if (res.status !== 200 && res.status !== 201) throw httpError(res, `creating tokens for host factory '${hf.identifier}'`);
    const body = res.body.toString('utf8');
    if (p.values.json) {
      ctx.out(body);
      return EXIT.OK;
    }
    const tokens = JSON.parse(body) as { token: string; expiration: string; cidr: string[] }[];
    ctx.err(shownOnce(ctx, `${tokens.length} host-factory token${tokens.length === 1 ? '' : 's'} for ${hf.full} (credentials: keep them secret)`, tokens.length > 1));
    for (const l of table(ctx, ['TOKEN', 'EXPIRATION', 'CIDR'], tokens.map((t) => [t.token, t.expiration, t.cidr.join(',') || '(any)']))) ctx.out(l);
    return EXIT.OK;
  });
}

async function tokensRevoke(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { token: { type: 'string', short: 't' } }, TOKENS_REVOKE_HELP);
  if (!p) return EXIT.OK;
  const token = await tokenFromArgsOrStdin(ctx, str(p.values.token));
  return withSession(ctx, async (s) => {
    const res = await s.request('DELETE', `/host_factory_tokens/${encodeURIComponent(token)}`);
    if (res.status !== 204) throw httpError(res, 'revoking the host-factory token');
    ctx.out('Revoked the host-factory token.');
    return EXIT.OK;
  });
}

async function hostsCreate(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { id: { type: 'string', short: 'i' }, token: { type: 'string', short: 't' }, annotation: { type: 'string', multiple: true }, json: { type: 'boolean' } }, HOSTS_CREATE_HELP);
  if (!p) return EXIT.OK;
  const id = str(p.values.id);
  if (!id) throw usageError('hosts create needs -i HOST_ID', HOSTS_CREATE_HELP);
  const form = new URLSearchParams({ id });
  for (const a of (p.values.annotation as string[] | undefined) ?? []) {
    const eq = a.indexOf('=');
    if (eq < 1) throw usageError(`--annotation '${a}' is not NAME=VALUE`, HOSTS_CREATE_HELP);
    form.append(`annotations[${a.slice(0, eq)}]`, a.slice(eq + 1));
  }
  // The host-factory token is the credential here, so no login is needed — only the server's address.
  const { config } = resolveConfig(ctx.env, { warn: (l) => ctx.err(l) });
  const token = await tokenFromArgsOrStdin(ctx, str(p.values.token));
  const res = await plainRequest(config, 'POST', '/host_factories/hosts', {
    body: form.toString(),
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Token token="${token}"` },
  });
  if (res.status === 401) throw new CliError('creating the host: the host-factory token was not accepted (wrong, expired, revoked, or used from outside its CIDR)', EXIT.UNAUTHENTICATED);
  if (res.status !== 201 && res.status !== 200) throw httpError(res, `creating host '${id}'`);
  const body = res.body.toString('utf8');
  if (p.values.json) {
    ctx.out(body);
    return EXIT.OK;
  }
  const host = JSON.parse(body) as { id: string; api_key: string };
  ctx.err(shownOnce(ctx, `Created ${sanitize(host.id)}; its API key`));
  ctx.out(host.api_key);
  return EXIT.OK;
}
