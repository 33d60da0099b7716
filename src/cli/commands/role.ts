/** `coffer role members|memberships|all ID`: the role graph around one role. */
import { EXIT } from '../client/exit-codes.js';
import { httpError } from '../client/errors.js';
import { parseFlags, str, usageError, withSession, type Ctx, type Help } from './context.js';
import { idPath, parseId, ROLE_KINDS } from './ids.js';
import { table } from './ui.js';

const SUBS = {
  members: { flag: 'members', what: 'Lists the direct members of role ID (who holds it).' },
  memberships: { flag: 'memberships', what: 'Lists the roles that role ID is directly granted.' },
  all: { flag: 'all', what: 'Lists every role that role ID holds, directly or transitively (itself included).' },
} as const;

const ROLE_HELP: Help = {
  usage: 'coffer role members|memberships|all ID [--json]',
  description: 'The role graph around role ID (KIND:ID with KIND one of ' + ROLE_KINDS.join(', ') + ').',
  example: 'coffer role members group:ci/operators',
};

export async function cmdRole(args: string[], ctx: Ctx): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === '-h' || sub === '--help') return parseFlags(ctx, ['--help'], {}, ROLE_HELP), EXIT.OK;
  if (!sub || !(sub in SUBS)) throw usageError(sub ? `unknown role command '${sub}'` : 'role needs members, memberships or all', ROLE_HELP);
  const s = SUBS[sub as keyof typeof SUBS];
  const help: Help = {
    usage: `coffer role ${sub} ID [--json]`,
    description: s.what,
    options: "  ID       KIND:ID, e.g. group:ci/operators (or -i ID)\n  --json   the server's JSON",
    example: `coffer role ${sub} ${sub === 'members' ? 'group:ci/operators' : 'host:ci/executor-1'}`,
  };
  const p = parseFlags(ctx, rest, { id: { type: 'string', short: 'i' }, json: { type: 'boolean' } }, help, 1);
  if (!p) return EXIT.OK;
  const raw = str(p.values.id) ?? p.positionals[0];
  if (!raw) throw usageError(`role ${sub} needs ID`, help);
  return withSession(ctx, async (session) => {
    const id = parseId(raw, session.config.account, undefined, ROLE_KINDS);
    const res = await session.request('GET', idPath('roles', id), { query: { [s.flag]: 'true' } });
    if (res.status !== 200) throw httpError(res, `listing ${sub} of ${id.kind} '${id.identifier}'`);
    const body = res.body.toString('utf8');
    if (p.values.json) {
      ctx.out(body);
      return EXIT.OK;
    }
    const json = JSON.parse(body) as unknown[];
    if (sub === 'all') {
      for (const r of json as string[]) ctx.out(r);
      return EXIT.OK;
    }
    const grants = json as { role: string; member: string; admin_option: boolean; ownership: boolean; policy?: string }[];
    const rows = grants.map((g) => [sub === 'members' ? g.member : g.role, g.admin_option ? 'yes' : 'no', g.ownership ? 'yes' : 'no', g.policy ?? '']);
    if (!rows.length) ctx.err(`No ${sub}.`);
    else for (const l of table(ctx, [sub === 'members' ? 'MEMBER' : 'ROLE', 'ADMIN', 'OWNER', 'POLICY'], rows)) ctx.out(l);
    return EXIT.OK;
  });
}
