/**
 * `coffer init`, `login`, `logout`, `whoami`: where the server is and who we
 * are. Files are written the way the Conjur CLIs write them (~/.conjurrc
 * YAML, ~/.netrc `machine <url>/authn`), so either tool can use them.
 */
import { isAbsolute, resolve } from 'node:path';
import { readFileSync, existsSync } from 'node:fs';
import { stringify as stringifyYaml } from 'yaml';
import { CliError } from '../io.js';
import { EXIT } from '../client/exit-codes.js';
import { conjurrcPath, homeOf, netrcMachines, netrcPathOf, normalizeApplianceUrl, readConjurrc } from '../client/config.js';
import { httpError, sanitize } from '../client/errors.js';
import { readPrivateFile, writePrivateFile } from '../client/files.js';
import { findEntry, removeEntries, upsertEntry } from '../client/netrc.js';
import { openSessionFrom, plainRequest, resolveConfig } from '../client/session.js';
import { parseFlags, str, usageError, withSession, type Ctx, type Help } from './context.js';
import { keyValues, readSecret } from './ui.js';

const INIT_HELP: Help = {
  usage: 'coffer init -u URL -a ACCOUNT [--ca-cert FILE] [--force]',
  description:
    'Writes ~/.conjurrc (or $CONJURRC): the server URL, the account and, for HTTPS with a private CA, the CA\n' +
    'certificate to trust (the only root trusted for this server). Checks that the server answers.',
  options:
    '  -u, --url URL        appliance URL, e.g. https://coffer.example.com\n' +
    '  -a, --account NAME   account\n' +
    '  --ca-cert FILE       PEM CA certificate of the server (stored as cert_file)\n' +
    '  --force              overwrite an existing ~/.conjurrc',
  example: 'coffer init -u https://coffer.example.com -a acme --ca-cert ./coffer-ca.pem',
};

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/;

export async function cmdInit(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { url: { type: 'string', short: 'u' }, account: { type: 'string', short: 'a' }, 'ca-cert': { type: 'string' }, force: { type: 'boolean' } }, INIT_HELP);
  if (!p) return 0;
  const rawUrl = str(p.values.url);
  const account = str(p.values.account)?.trim();
  if (!rawUrl || !account) throw usageError('init needs -u URL and -a ACCOUNT', INIT_HELP);
  const url = normalizeApplianceUrl(rawUrl, '-u');
  if (!/^[^\s/:?#%]+$/.test(account)) throw usageError(`invalid account name '${account}'`, INIT_HELP);
  let certFile: string | undefined;
  let caCert: Buffer | undefined;
  const ca = str(p.values['ca-cert']);
  if (ca) {
    certFile = isAbsolute(ca) ? ca : resolve(ca);
    try {
      caCert = readFileSync(certFile);
    } catch (err) {
      throw new CliError(`cannot read --ca-cert ${certFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.USAGE);
    }
    if (!caCert.includes('-----BEGIN CERTIFICATE-----')) throw new CliError(`--ca-cert ${certFile} holds no PEM certificate`, EXIT.USAGE);
  }
  const home = homeOf(ctx.env);
  const rcPath = conjurrcPath(ctx.env, home);
  if (existsSync(rcPath) && !p.values.force) {
    const old = readConjurrc(rcPath);
    throw new CliError(`${rcPath} already exists${old.appliance_url ? ` (for ${old.appliance_url}, account ${old.account ?? '?'})` : ''}; use --force to overwrite it`, EXIT.FAILURE);
  }
  const host = new URL(url).hostname;
  if (url.startsWith('http://') && !LOOPBACK.test(host)) {
    ctx.err(`coffer: warning: ${url} is plain HTTP: API keys and tokens will cross the network unencrypted`);
  }
  const doc: Record<string, string> = { account, appliance_url: url, ...(certFile ? { cert_file: certFile } : {}) };
  writePrivateFile(rcPath, `---\n${stringifyYaml(doc)}`);
  ctx.out(`Wrote ${rcPath} (server ${url}, account ${account}).`);
  try {
    const res = await plainRequest({ applianceUrl: url, account, ...(caCert ? { caCert } : {}) }, 'GET', '/', { headers: { Accept: 'application/json' }, idleTimeoutMs: 10_000 });
    const info = res.status === 200 ? (JSON.parse(res.body.toString('utf8')) as { version?: unknown; coffer_version?: unknown }) : {};
    // Coffer reports the Conjur API release it implements as `version` and its own beside it.
    const version =
      typeof info.coffer_version === 'string'
        ? `Coffer ${sanitize(info.coffer_version, 40)}${typeof info.version === 'string' ? `, Conjur API ${sanitize(info.version, 40)}` : ''}`
        : typeof info.version === 'string'
          ? `version ${sanitize(info.version, 40)}`
          : undefined;
    if (res.status === 200) ctx.out(`The server answers${version ? ` (${version})` : ''}. Next: coffer login -i LOGIN`);
    else ctx.err(`coffer: warning: ${url} answered HTTP ${res.status}; is it a Coffer or Conjur server?`);
  } catch (err) {
    ctx.err(`coffer: warning: ${(err as Error).message} (the configuration was written anyway)`);
  }
  return EXIT.OK;
}

const LOGIN_HELP: Help = {
  usage: 'coffer login -i LOGIN [--api-key-stdin]',
  description:
    "Exchanges LOGIN's password (or API key) for its API key and stores the key in ~/.netrc (mode 0600) as\n" +
    '`machine <url>/authn`, as the Conjur CLI does. The password is prompted without echo on a terminal, or\n' +
    'read from stdin otherwise; it is never taken from the command line.',
  options: '  -i, --id LOGIN       user (alice) or host (host/ci/executor-1)\n  --api-key-stdin      read the API key (or password) from stdin',
  example: 'coffer login -i alice          # or: printf %s "$KEY" | coffer login -i host/ci/executor-1 --api-key-stdin',
};

export async function cmdLogin(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { id: { type: 'string', short: 'i' }, 'api-key-stdin': { type: 'boolean' } }, LOGIN_HELP);
  if (!p) return 0;
  const resolved = resolveConfig(ctx.env, { warn: (l) => ctx.err(l) });
  const login = str(p.values.id) ?? ctx.env.COFFER_LOGIN ?? ctx.env.CONJUR_AUTHN_LOGIN;
  if (!login) throw usageError('login needs -i LOGIN', LOGIN_HELP);
  if (/[\s:]/.test(login)) throw usageError(`invalid login '${login}'`, LOGIN_HELP);
  const secret = await readSecret(ctx, `Password or API key for ${login}: `);
  if (!secret) throw new CliError('no password or API key given on stdin', EXIT.USAGE);
  const { config } = resolved;
  const res = await plainRequest(config, 'GET', `/authn/${encodeURIComponent(config.account)}/login`, {
    headers: { Authorization: `Basic ${Buffer.from(`${login}:${secret}`).toString('base64')}` },
  });
  if (res.status === 401) throw new CliError(`login failed for '${login}': wrong password or API key, or unknown login`, EXIT.UNAUTHENTICATED);
  if (res.status !== 200) throw httpError(res, `logging in as '${login}'`);
  const apiKey = res.body.toString('utf8').trim();
  if (!/^[0-9a-z]+$/i.test(apiKey)) throw new CliError('the server did not answer with an API key', EXIT.FAILURE);
  const [goMachine, pyMachine] = netrcMachines(config.applianceUrl);
  let text = readPrivateFile(resolved.netrcPath, (l) => ctx.err(l)) ?? '';
  text = upsertEntry(text, { machine: goMachine, login, password: apiKey });
  // Keep a Python-CLI style entry in step instead of leaving it stale.
  if (findEntry(text, pyMachine)) text = upsertEntry(text, { machine: pyMachine, login, password: apiKey });
  writePrivateFile(resolved.netrcPath, text);
  ctx.out(`Logged in as '${login}' to ${config.applianceUrl} (account ${config.account}); API key stored in ${resolved.netrcPath}.`);
  if (ctx.env.CONJUR_AUTHN_API_KEY || ctx.env.COFFER_API_KEY) ctx.err('coffer: warning: CONJUR_AUTHN_API_KEY is set in the environment and takes precedence over the stored key');
  return EXIT.OK;
}

const LOGOUT_HELP: Help = {
  usage: 'coffer logout',
  description:
    'Revokes the access token given in CONJUR_AUTHN_TOKEN(_FILE), if any, and removes the stored API key for this\n' +
    "server from ~/.netrc. (Every other coffer command already revokes its own token when it ends.)",
  example: 'coffer logout',
};

export async function cmdLogout(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, {}, LOGOUT_HELP);
  if (!p) return 0;
  const resolved = resolveConfig(ctx.env, { warn: (l) => ctx.err(l) });
  const { config } = resolved;
  let did = false;
  const c = resolved.credentials;
  if (c && (c.kind === 'token' || c.kind === 'token-file')) {
    const session = openSessionFrom(resolved);
    const res = await plainRequest(config, 'DELETE', `/authn/${encodeURIComponent(config.account)}/token`, { headers: { Authorization: await session.authorization() } });
    if (res.status === 204) ctx.out('Revoked the access token from the environment.');
    else if (res.status === 401) ctx.out('The access token from the environment was already invalid.');
    else throw httpError(res, 'revoking the access token');
    did = true;
  }
  const text = readPrivateFile(resolved.netrcPath, (l) => ctx.err(l));
  if (text !== undefined) {
    const { text: rest, removed } = removeEntries(text, netrcMachines(config.applianceUrl));
    if (removed) {
      writePrivateFile(resolved.netrcPath, rest);
      ctx.out(`Removed the stored credentials for ${config.applianceUrl} from ${resolved.netrcPath}.`);
      did = true;
    }
  }
  if (!did) ctx.out(`Not logged in to ${config.applianceUrl}; nothing to remove.`);
  if (ctx.env.CONJUR_AUTHN_API_KEY || ctx.env.COFFER_API_KEY) ctx.err('coffer: warning: CONJUR_AUTHN_API_KEY is still set in the environment');
  return EXIT.OK;
}

const WHOAMI_HELP: Help = {
  usage: 'coffer whoami [--json]',
  description: 'Authenticates and shows who the server thinks you are (GET /whoami).',
  options: '  --json   the server\'s JSON',
  example: 'coffer whoami',
};

export async function cmdWhoami(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { json: { type: 'boolean' } }, WHOAMI_HELP);
  if (!p) return 0;
  return withSession(ctx, async (s) => {
    const res = await s.request('GET', '/whoami');
    if (res.status !== 200) throw httpError(res, 'whoami');
    if (p.values.json) {
      ctx.out(res.body.toString('utf8'));
      return EXIT.OK;
    }
    const w = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
    const rows: [string, string][] = [
      ['login', String(w.username)],
      ['account', String(w.account)],
      ['server', s.config.applianceUrl],
      ['client ip', String(w.client_ip)],
      ['token issued', String(w.token_issued_at)],
    ];
    for (const line of keyValues(ctx, rows)) ctx.out(line);
    return EXIT.OK;
  });
}
