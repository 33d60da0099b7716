/** `coffer explain ROLE PRIVILEGE RESOURCE`: why a role holds (or lacks) a privilege — GET /explain/{account}. */
import { EXIT } from '../client/exit-codes.js';
import { httpError, sanitize } from '../client/errors.js';
import { parseFlags, usageError, withSession, type Ctx, type Help } from './context.js';
import { parseId, ROLE_KINDS } from './ids.js';
import { paint } from './ui.js';

const HELP: Help = {
  usage: 'coffer explain ROLE PRIVILEGE RESOURCE [--json]',
  description:
    'Explains whether ROLE holds PRIVILEGE on RESOURCE: every path of memberships from ROLE to a role\n' +
    'holding a permit of PRIVILEGE on RESOURCE or owning it, each step labelled with the policy and\n' +
    'version that declared it; or why there is none. You must be able to see both ROLE and RESOURCE.\n' +
    'Exits 0 when ROLE holds PRIVILEGE, 1 when it does not, 4 when ROLE or RESOURCE is not found.',
  options: '  ROLE, RESOURCE   KIND:ID (in this account) or ACCOUNT:KIND:ID\n  --json           the server\'s JSON answer',
  example: 'coffer explain host:ci/executor-01 execute variable:ci/db/password',
};

interface PolicyRef {
  id: string;
  version: number | null;
}
interface Explanation {
  role: string;
  privilege: string;
  resource: string;
  allowed: boolean;
  paths: { grant: { type: 'permit' | 'ownership'; role: string; policy: PolicyRef | null }; edges: { member: string; role: string; ownership?: boolean; policy: PolicyRef | null }[] }[];
  paths_truncated: boolean;
  reason: string | null;
  message: string;
}

export async function cmdExplain(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { json: { type: 'boolean' } }, HELP, 3);
  if (!p) return EXIT.OK;
  const [rawRole, privilege, rawResource] = p.positionals;
  if (!rawRole || !privilege || !rawResource) throw usageError('explain needs ROLE, PRIVILEGE and RESOURCE', HELP);
  return withSession(ctx, async (s) => {
    const account = s.config.account;
    const role = parseId(rawRole, account, undefined, ROLE_KINDS);
    const resource = parseId(rawResource, account);
    const res = await s.request('GET', `/explain/${encodeURIComponent(account)}`, { query: { role: role.full, privilege, resource: resource.full } });
    if (res.status !== 200) throw httpError(res, `explaining ${rawRole} ${privilege} ${rawResource}`);
    const body = res.body.toString('utf8');
    const answer = JSON.parse(body) as Explanation;
    if (p.values.json) {
      ctx.out(body);
      return answer.allowed ? EXIT.OK : EXIT.FAILURE;
    }
    // Ids are shown as the user types them (kind:id in this account), cleaned of control characters.
    const short = (id: string) => sanitize(id.startsWith(`${account}:`) ? id.slice(account.length + 1) : id, 4096);
    const policy = (ref: PolicyRef | null) => {
      if (!ref) return '';
      const name = ref.id.startsWith(`${account}:policy:`) ? ref.id.slice(`${account}:policy:`.length) : ref.id;
      return ` (policy ${sanitize(name, 4096)} ${ref.version === null ? 'version unknown' : `v${ref.version}`})`;
    };
    const what = `${short(answer.role)} ${sanitize(answer.privilege)} ${short(answer.resource)}`;
    if (!answer.allowed) {
      ctx.out(`${paint(ctx, 'red', 'no path')}: ${short(answer.role)} cannot ${sanitize(answer.privilege)} ${short(answer.resource)} (${sanitize(answer.reason ?? 'no_permit')})`);
      ctx.out(`  ${sanitize(answer.message, 2000)}`);
      return EXIT.FAILURE;
    }
    const n = answer.paths.length;
    ctx.out(`${paint(ctx, 'green', 'allowed')}: ${what} — ${answer.paths_truncated ? `the first ${n} paths` : n === 1 ? '1 path' : `${n} paths`}`);
    answer.paths.forEach((path, i) => {
      const steps = [short(answer.role)];
      for (const e of path.edges) steps.push(`${short(e.role)}${e.ownership ? ' [owner]' : ''}${policy(e.policy)}`);
      const grant =
        path.grant.type === 'permit'
          ? `permit ${sanitize(answer.privilege)}${policy(path.grant.policy)}`
          : `owns ${short(answer.resource)}${policy(path.grant.policy)}`;
      ctx.out(`  ${i + 1}. ${steps.join(' → ')} ⇒ ${grant}`);
    });
    if (answer.paths_truncated) ctx.out('  … more paths exist (the server lists at most 100)');
    return EXIT.OK;
  });
}
