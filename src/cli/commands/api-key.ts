/**
 * `coffer api-key rotate [--role R]`. Your own key is rotated with HTTP Basic
 * and your current key (Conjur refuses an access token for that); another
 * role's with your token and `update` on it. The new key goes to stdout alone
 * (so `KEY=$(coffer api-key rotate --role …)` works) with a shown-once notice
 * on stderr — except when it replaces the key stored in ~/.netrc, where it is
 * stored instead of printed.
 */
import { CliError } from '../io.js';
import { EXIT } from '../client/exit-codes.js';
import { httpError } from '../client/errors.js';
import { readPrivateFile, writePrivateFile } from '../client/files.js';
import { findEntry, upsertEntry } from '../client/netrc.js';
import { netrcMachines } from '../client/config.js';
import { plainRequest, resolveConfig } from '../client/session.js';
import { parseFlags, str, usageError, withSession, type Ctx, type Help } from './context.js';
import { fullRoleId } from './ids.js';
import { shownOnce } from './ui.js';

const HELP: Help = {
  usage: 'coffer api-key rotate [--role ROLE]',
  description:
    'Replaces an API key; the old one stops working at once and tokens issued with it are invalidated.\n' +
    'Without --role rotates your own key (and updates ~/.netrc when the key came from there); with --role\n' +
    'rotates ROLE\'s key (needs update on ROLE) and prints the new key once.',
  options: '  -r, --role ROLE   user:alice or host:ci/executor-1',
  example: 'coffer api-key rotate --role host:ci/executor-1',
};

function isApiKey(s: string): boolean {
  return /^[0-9a-z]+$/i.test(s);
}

export async function cmdApiKey(args: string[], ctx: Ctx): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === '-h' || sub === '--help') return parseFlags(ctx, ['--help'], {}, HELP), EXIT.OK;
  if (sub !== 'rotate') throw usageError(sub ? `unknown api-key command '${sub}'` : 'api-key needs rotate', HELP);
  const p = parseFlags(ctx, rest, { role: { type: 'string', short: 'r' } }, HELP);
  if (!p) return EXIT.OK;
  const role = str(p.values.role);
  if (role) {
    return withSession(ctx, async (s) => {
      const full = fullRoleId(role, s.config.account);
      const res = await s.request('PUT', `/authn/${encodeURIComponent(s.config.account)}/api_key`, { query: { role: full.split(':').slice(1).join(':') } });
      if (res.status !== 200) throw httpError(res, `rotating the API key of ${role}`);
      const key = res.body.toString('utf8').trim();
      if (!isApiKey(key)) throw new CliError('the server did not answer with an API key', EXIT.FAILURE);
      ctx.err(shownOnce(ctx, `New API key of ${full}`));
      ctx.out(key);
      return EXIT.OK;
    });
  }
  const resolved = resolveConfig(ctx.env, { warn: (l) => ctx.err(l) });
  const c = resolved.credentials;
  if (!c || c.kind !== 'api-key') {
    throw new CliError('rotating your own API key needs your current API key (coffer login, or CONJUR_AUTHN_LOGIN and CONJUR_AUTHN_API_KEY)', EXIT.UNAUTHENTICATED);
  }
  const { config } = resolved;
  const res = await plainRequest(config, 'PUT', `/authn/${encodeURIComponent(config.account)}/api_key`, {
    headers: { Authorization: `Basic ${Buffer.from(`${c.login}:${c.apiKey}`).toString('base64')}` },
  });
  if (res.status === 401) throw new CliError(`rotating the API key of '${c.login}' failed: the current key from ${c.origin} was not accepted`, EXIT.UNAUTHENTICATED);
  if (res.status !== 200) throw httpError(res, `rotating the API key of '${c.login}'`);
  const key = res.body.toString('utf8').trim();
  if (!isApiKey(key)) throw new CliError('the server did not answer with an API key', EXIT.FAILURE);
  const text = c.origin.startsWith(resolved.netrcPath) ? readPrivateFile(resolved.netrcPath, (l) => ctx.err(l)) : undefined;
  if (text !== undefined) {
    let next = text;
    for (const machine of netrcMachines(config.applianceUrl)) {
      if (findEntry(next, machine)?.login === c.login) next = upsertEntry(next, { machine, login: c.login, password: key });
    }
    writePrivateFile(resolved.netrcPath, next);
    ctx.out(`Rotated the API key of '${c.login}'; the new key is stored in ${resolved.netrcPath}.`);
    return EXIT.OK;
  }
  ctx.err(shownOnce(ctx, `New API key of '${c.login}' (the key in ${c.origin} no longer works)`));
  ctx.out(key);
  return EXIT.OK;
}
