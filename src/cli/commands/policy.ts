/** `coffer policy load|update|replace`: POST/PATCH/PUT a YAML policy, with a readable dry-run plan. */
import { readFileSync } from 'node:fs';
import { CliError } from '../io.js';
import { EXIT } from '../client/exit-codes.js';
import { httpError, sanitize } from '../client/errors.js';
import { parseFlags, str, usageError, withSession, type Ctx, type Help } from './context.js';
import { renderPlan, type DryRunReport } from './plan.js';
import { readStdin, shownOnce, startProgress, table } from './ui.js';

const MODES = {
  load: { method: 'POST', what: 'Adds the records of FILE to the policy BRANCH (never changes or deletes existing ones).' },
  update: { method: 'PATCH', what: 'Adds and updates records of FILE in the policy BRANCH and applies !delete, !revoke and !deny.' },
  replace: { method: 'PUT', what: 'Replaces the policy BRANCH with FILE: records of BRANCH that FILE does not declare are deleted.' },
} as const;

function helpFor(mode: keyof typeof MODES): Help {
  return {
    usage: `coffer policy ${mode} -b BRANCH -f FILE|- [--dry-run] [--json]`,
    description: `${MODES[mode].what}\nAPI keys of users and hosts it creates are printed once.`,
    options:
      '  -b, --branch BRANCH  policy to load into (root, or e.g. ci/jenkins)\n' +
      '  -f, --file FILE      the YAML policy; - reads stdin\n' +
      '  --dry-run            show what would be created, updated and deleted; change nothing\n' +
      "  --json               print the server's JSON answer",
    example: `coffer policy ${mode} -b root -f policy.yml${mode === 'load' ? '' : ' --dry-run'}`,
  };
}

const POLICY_HELP: Help = {
  usage: 'coffer policy load|update|replace -b BRANCH -f FILE|- [--dry-run] [--json]',
  description: 'Loads a YAML policy: load adds (POST), update changes (PATCH), replace replaces (PUT).',
  example: 'coffer policy update -b ci -f ci.yml --dry-run',
};

export async function cmdPolicy(args: string[], ctx: Ctx): Promise<number> {
  const [mode, ...rest] = args;
  if (mode === '-h' || mode === '--help') return parseFlags(ctx, ['--help'], {}, POLICY_HELP), EXIT.OK;
  if (mode === undefined || !(mode in MODES)) throw usageError(mode ? `unknown policy command '${mode}'` : 'policy needs load, update or replace', POLICY_HELP);
  const m = mode as keyof typeof MODES;
  const help = helpFor(m);
  const p = parseFlags(ctx, rest, { branch: { type: 'string', short: 'b' }, file: { type: 'string', short: 'f' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } }, help);
  if (!p) return EXIT.OK;
  const branch = str(p.values.branch);
  const file = str(p.values.file);
  if (!branch || !file) throw usageError(`policy ${m} needs -b BRANCH and -f FILE`, help);
  let text: Buffer;
  try {
    text = file === '-' ? await readStdin(ctx) : readFileSync(file);
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.USAGE);
  }
  const dryRun = Boolean(p.values['dry-run']);
  return withSession(ctx, async (s) => {
    const progress = startProgress(ctx, `${dryRun ? 'Checking' : 'Loading'} policy '${branch}'`);
    let res;
    try {
      res = await s.request(MODES[m].method, `/policies/${encodeURIComponent(s.config.account)}/policy/${encodeURIComponent(branch)}`, {
        body: text,
        headers: { 'Content-Type': 'application/x-yaml' },
        ...(dryRun ? { query: { dryRun: 'true' } } : {}),
      });
    } finally {
      progress.stop();
    }
    if (res.status !== 200 && res.status !== 201) throw httpError(res, `${dryRun ? 'checking' : 'loading'} policy '${branch}'`);
    const body = res.body.toString('utf8');
    if (p.values.json) {
      ctx.out(body);
      return EXIT.OK;
    }
    const json = JSON.parse(body) as Record<string, any>;
    if (dryRun) {
      for (const l of renderPlan(ctx, `policy ${m} -b ${branch}`, json as unknown as DryRunReport)) ctx.out(l);
      return EXIT.OK;
    }
    ctx.out(`Loaded policy '${branch}' (version ${json.version}).`);
    for (const w of (json.warnings ?? []) as unknown[]) ctx.err(`coffer: warning: ${sanitize(String(w))}`);
    const created = Object.values((json.created_roles ?? {}) as Record<string, { id: string; api_key: string }>);
    if (created.length) {
      ctx.out(shownOnce(ctx, `API key${created.length === 1 ? '' : 's'} of the ${created.length} role${created.length === 1 ? '' : 's'} created`, created.length > 1));
      for (const l of table(ctx, ['ROLE', 'API KEY'], created.map((r) => [r.id, r.api_key]))) ctx.out(`  ${l}`);
    }
    return EXIT.OK;
  });
}
