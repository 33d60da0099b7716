/** `coffer list`, `coffer resource show|permitted-roles`, `coffer check`: what exists and who may do what. */
import { EXIT } from '../client/exit-codes.js';
import { httpError } from '../client/errors.js';
import { intFlag, parseFlags, str, usageError, withSession, type Ctx, type Help } from './context.js';
import { fullRoleId, idPath, parseId, RESOURCE_KINDS } from './ids.js';
import { keyValues, paint, table } from './ui.js';

const LIST_HELP: Help = {
  usage: 'coffer list [--kind K] [--search S] [--limit N] [--offset N] [--inspect | --json]',
  description: 'Lists the resources this role can see (at most 1000 unless --limit/--offset page further).',
  options:
    `  -k, --kind K       only this kind (${RESOURCE_KINDS.join(', ')})\n` +
    '  -s, --search S     ids or annotation values containing S\n' +
    '  -l, --limit N      at most N results\n' +
    '  -o, --offset N     skip the first N results\n' +
    '  -i, --inspect      full resource objects as JSON\n' +
    '  --json             the full ids as a JSON array (what the Conjur CLI prints)',
  example: 'coffer list --kind variable --search prod',
};

export async function cmdList(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(
    ctx,
    args,
    { kind: { type: 'string', short: 'k' }, search: { type: 'string', short: 's' }, limit: { type: 'string', short: 'l' }, offset: { type: 'string', short: 'o' }, inspect: { type: 'boolean', short: 'i' }, json: { type: 'boolean' } },
    LIST_HELP,
  );
  if (!p) return EXIT.OK;
  const kind = str(p.values.kind);
  if (kind !== undefined && !(RESOURCE_KINDS as readonly string[]).includes(kind)) throw usageError(`unknown kind '${kind}'`, LIST_HELP);
  const limit = intFlag(str(p.values.limit), 'limit', LIST_HELP);
  const offset = intFlag(str(p.values.offset), 'offset', LIST_HELP, 0);
  return withSession(ctx, async (s) => {
    const res = await s.request('GET', `/resources/${encodeURIComponent(s.config.account)}`, {
      query: { kind, search: str(p.values.search), limit: limit?.toString(), offset: offset?.toString() },
    });
    if (res.status !== 200) throw httpError(res, 'listing resources');
    const items = JSON.parse(res.body.toString('utf8')) as { id: string; owner?: string }[];
    if (p.values.inspect) ctx.out(JSON.stringify(items, null, 2));
    else if (p.values.json) ctx.out(JSON.stringify(items.map((i) => i.id), null, 2));
    else if (!items.length) ctx.err('No resources.');
    else {
      const rows = items.map((i) => {
        const [, k = '', ...rest] = i.id.split(':');
        return [k, rest.join(':'), i.owner ?? ''];
      });
      for (const l of table(ctx, ['KIND', 'ID', 'OWNER'], rows)) ctx.out(l);
    }
    // The server answers at most 1000 resources when no page is asked for; say so rather than look complete.
    if (limit === undefined && offset === undefined && items.length >= 1000) ctx.err(`coffer: showing the first ${items.length} resources; page with --limit and --offset`);
    return EXIT.OK;
  });
}

const SHOW_HELP: Help = {
  usage: 'coffer resource show ID [--json]',
  description: 'Shows a resource: owner, policy, annotations, permissions and (per kind) secret versions, policy\nversions or restrictions. Host-factory tokens are not printed (use --json for the raw answer).',
  options: '  ID       KIND:ID, e.g. variable:prod/db/password (or -i ID)\n  --json   the server\'s JSON',
  example: 'coffer resource show variable:prod/db/password',
};
const PERMITTED_HELP: Help = {
  usage: 'coffer resource permitted-roles ID PRIVILEGE [--json]',
  description: 'Lists every role that holds PRIVILEGE on resource ID, directly or through ownership and membership.',
  options: '  ID, PRIVILEGE   (or -i ID -p PRIVILEGE)\n  --json          a JSON array',
  example: 'coffer resource permitted-roles variable:prod/db/password execute',
};
const RESOURCE_HELP: Help = {
  usage: 'coffer resource show|permitted-roles …',
  description: 'Inspects one resource. Run `coffer resource show --help` or `coffer resource permitted-roles --help`.',
  example: 'coffer resource show variable:prod/db/password',
};

export async function cmdResource(args: string[], ctx: Ctx): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'show') return resourceShow(rest, ctx);
  if (sub === 'permitted-roles') return permittedRoles(rest, ctx);
  if (sub === '-h' || sub === '--help') return parseFlags(ctx, ['--help'], {}, RESOURCE_HELP), EXIT.OK;
  throw usageError(sub ? `unknown resource command '${sub}'` : 'resource needs show or permitted-roles', RESOURCE_HELP);
}

async function resourceShow(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { id: { type: 'string', short: 'i' }, json: { type: 'boolean' } }, SHOW_HELP, 1);
  if (!p) return EXIT.OK;
  const raw = str(p.values.id) ?? p.positionals[0];
  if (!raw) throw usageError('resource show needs ID', SHOW_HELP);
  return withSession(ctx, async (s) => {
    const id = parseId(raw, s.config.account);
    const res = await s.request('GET', idPath('resources', id));
    if (res.status !== 200) throw httpError(res, `showing ${id.kind} '${id.identifier}'`);
    if (p.values.json) {
      ctx.out(res.body.toString('utf8'));
      return EXIT.OK;
    }
    const r = JSON.parse(res.body.toString('utf8')) as Record<string, any>;
    const rows: [string, string][] = [['id', r.id]];
    if (r.owner) rows.push(['owner', r.owner]);
    if (r.policy) rows.push(['policy', r.policy]);
    if (r.created_at) rows.push(['created', r.created_at]);
    if (Array.isArray(r.restricted_to)) rows.push(['restricted to', r.restricted_to.length ? r.restricted_to.join(', ') : '(anywhere)']);
    if (Array.isArray(r.secrets)) rows.push(['versions', r.secrets.length ? r.secrets.map((v: any) => v.version).join(', ') : '(no value)']);
    if (Array.isArray(r.layers)) rows.push(['layers', r.layers.join(', ')]);
    if (Array.isArray(r.tokens)) rows.push(['tokens', `${r.tokens.length} (values not shown; --json prints them)`]);
    for (const l of keyValues(ctx, rows)) ctx.out(l);
    const section = (title: string, headers: string[], body: string[][]) => {
      if (!body.length) return;
      ctx.out('');
      ctx.out(paint(ctx, 'bold', title));
      for (const l of table(ctx, headers, body)) ctx.out(`  ${l}`);
    };
    section('annotations', ['NAME', 'VALUE'], (r.annotations ?? []).map((a: any) => [a.name, a.value]));
    section('permissions', ['PRIVILEGE', 'ROLE'], (r.permissions ?? []).map((x: any) => [x.privilege, x.role]));
    section('policy versions', ['VERSION', 'CREATED', 'ROLE', 'SHA256'], (r.policy_versions ?? []).map((v: any) => [String(v.version), v.created_at, v.role, v.policy_sha256]));
    return EXIT.OK;
  });
}

async function permittedRoles(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { id: { type: 'string', short: 'i' }, privilege: { type: 'string', short: 'p' }, json: { type: 'boolean' } }, PERMITTED_HELP, 2);
  if (!p) return EXIT.OK;
  const pos = [...p.positionals];
  const raw = str(p.values.id) ?? pos.shift();
  const privilege = str(p.values.privilege) ?? pos.shift();
  if (!raw || !privilege) throw usageError('resource permitted-roles needs ID and PRIVILEGE', PERMITTED_HELP);
  return withSession(ctx, async (s) => {
    const id = parseId(raw, s.config.account);
    const res = await s.request('GET', idPath('resources', id), { query: { permitted_roles: 'true', privilege } });
    if (res.status !== 200) throw httpError(res, `listing roles permitted to ${privilege} ${id.kind} '${id.identifier}'`);
    const roles = JSON.parse(res.body.toString('utf8')) as string[];
    if (p.values.json) ctx.out(JSON.stringify(roles, null, 2));
    else for (const r of roles) ctx.out(r);
    return EXIT.OK;
  });
}

const CHECK_HELP: Help = {
  usage: 'coffer check ID PRIVILEGE [--role ROLE]',
  description:
    'Asks whether this role (or ROLE, which this role must hold) has PRIVILEGE on resource ID. Prints true\n' +
    'and exits 0, or prints false and exits 1 (also when ID does not exist or is not visible).',
  options: '  ID, PRIVILEGE   (or -i ID -p PRIVILEGE)\n  -r, --role ROLE  check for another role, e.g. host:ci/executor-1',
  example: 'coffer check variable:prod/db/password execute --role host:ci/executor-1',
};

export async function cmdCheck(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { id: { type: 'string', short: 'i' }, privilege: { type: 'string', short: 'p' }, role: { type: 'string', short: 'r' } }, CHECK_HELP, 2);
  if (!p) return EXIT.OK;
  const pos = [...p.positionals];
  const raw = str(p.values.id) ?? pos.shift();
  const privilege = str(p.values.privilege) ?? pos.shift();
  if (!raw || !privilege) throw usageError('check needs ID and PRIVILEGE', CHECK_HELP);
  return withSession(ctx, async (s) => {
    const id = parseId(raw, s.config.account);
    const role = str(p.values.role);
    const res = await s.request('GET', idPath('resources', id), {
      query: { check: 'true', privilege, ...(role ? { role: fullRoleId(role, s.config.account) } : {}) },
    });
    if (res.status === 204) {
      ctx.out('true');
      return EXIT.OK;
    }
    if (res.status === 404) {
      ctx.out('false');
      return EXIT.FAILURE;
    }
    throw httpError(res, role ? `checking for ${role}` : 'checking');
  });
}
