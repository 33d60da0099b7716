/**
 * `coffer variable get|set`. A value is written to stdout exactly as stored
 * (no newline added, binary intact); several ids are fetched in one batch
 * request. A value is never part of an error message.
 */
import { readFileSync } from 'node:fs';
import { CliError } from '../io.js';
import { EXIT } from '../client/exit-codes.js';
import { httpError, sanitize } from '../client/errors.js';
import { intFlag, parseFlags, str, usageError, withSession, type Ctx, type Help } from './context.js';
import { idPath, parseId } from './ids.js';
import { readSecret, readStdin } from './ui.js';

const GET_HELP: Help = {
  usage: 'coffer variable get -i ID[,ID…] [--version N] [--json]',
  description:
    'Prints the value of variable ID to stdout, byte for byte, without adding a newline. Several ids\n' +
    '(comma-separated or -i repeated) are fetched in one request and printed as JSON {full id: value}.',
  options:
    '  -i, --id ID          variable id (prod/db/password, variable:prod/db/password or account:variable:…)\n' +
    '  --version N          an older version (single id only)\n' +
    '  --json               print {full id: value} JSON, also for one id',
  example: 'coffer variable get -i prod/db/password > pw.txt     # or: coffer variable get -i a,b --json',
};

const SET_HELP: Help = {
  usage: 'coffer variable set -i ID (-v VALUE | --file FILE | < stdin)',
  description:
    'Stores a new value for variable ID. Without -v or --file the value is read from stdin exactly as given\n' +
    '(prompted without echo on a terminal). Prefer --file or stdin: -v leaves the value in shell history and\n' +
    'makes it visible to other users in the process list.',
  options: '  -i, --id ID          variable id\n  -v, --value VALUE    the value\n  --file FILE          read the value from FILE (binary OK)',
  example: 'coffer variable set -i prod/db/password --file ./pw.txt     # or: printf %s "$PW" | coffer variable set -i prod/db/password',
};

const VARIABLE_HELP: Help = {
  usage: 'coffer variable get|set …',
  description: 'Reads or writes secret values. Run `coffer variable get --help` or `coffer variable set --help`.',
  example: 'coffer variable get -i prod/db/password',
};

export async function cmdVariable(args: string[], ctx: Ctx): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'get') return variableGet(rest, ctx);
  if (sub === 'set') return variableSet(rest, ctx);
  if (sub === '-h' || sub === '--help') return parseFlags(ctx, ['--help'], {}, VARIABLE_HELP), EXIT.OK;
  throw usageError(sub ? `unknown variable command '${sub}'` : 'variable needs get or set', VARIABLE_HELP);
}

function utf8(b: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return undefined;
  }
}

async function variableGet(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { id: { type: 'string', short: 'i', multiple: true }, version: { type: 'string' }, json: { type: 'boolean' } }, GET_HELP);
  if (!p) return EXIT.OK;
  const raw = ((p.values.id as string[] | undefined) ?? []).flatMap((v) => v.split(',')).map((v) => v.trim());
  if (!raw.length || raw.some((v) => !v)) throw usageError('variable get needs -i ID', GET_HELP);
  const version = intFlag(str(p.values.version), 'version', GET_HELP);
  if (version !== undefined && raw.length > 1) throw usageError('--version works with a single id only', GET_HELP);
  return withSession(ctx, async (s) => {
    const ids = raw.map((r) => parseId(r, s.config.account, 'variable'));
    if (ids.length === 1) {
      const id = ids[0]!;
      const res = await s.request('GET', idPath('secrets', id), version !== undefined ? { query: { version: String(version) } } : {});
      if (res.status !== 200) throw httpError(res, `fetching ${id.kind} '${id.identifier}'`);
      if (!p.values.json) {
        ctx.write(res.body);
        return EXIT.OK;
      }
      const text = utf8(res.body);
      if (text === undefined) throw new CliError(`${id.full} holds binary data, which JSON cannot carry; fetch it without --json`, EXIT.FAILURE);
      ctx.out(JSON.stringify({ [id.full]: text }));
      return EXIT.OK;
    }
    const res = await s.request('POST', `/secrets/${encodeURIComponent(s.config.account)}/batch`, {
      body: JSON.stringify({ ids: ids.map((i) => i.full) }),
      headers: { 'Content-Type': 'application/json' },
    });
    if (res.status !== 200) throw httpError(res, 'fetching variables');
    let result: { values: Record<string, string>; base64?: string[]; errors?: Record<string, { code: string; message: string }> };
    try {
      result = JSON.parse(res.body.toString('utf8')) as typeof result;
    } catch {
      // Never quote the body: it holds secret values.
      throw new CliError('the server\'s answer to the batch fetch is not valid JSON', EXIT.FAILURE);
    }
    const errors = Object.entries(result.errors ?? {});
    if (errors.length) {
      // All or nothing on stdout: a script must not mistake a partial answer for a complete one.
      for (const [id, e] of errors.slice(0, -1)) ctx.err(`coffer: fetching '${sanitize(id)}': ${sanitize(e.message)}`);
      const [lastId, last] = errors[errors.length - 1]!;
      throw new CliError(`fetching '${sanitize(lastId)}': ${sanitize(last.message)}`, errors.some(([, e]) => e.code === 'forbidden' || e.code === 'not_found') ? EXIT.NOT_FOUND : EXIT.FAILURE);
    }
    const binary = result.base64 ?? [];
    if (binary.length) throw new CliError(`${sanitize(binary[0]!)} holds binary data, which JSON cannot carry; fetch it alone`, EXIT.FAILURE);
    ctx.out(JSON.stringify(result.values));
    return EXIT.OK;
  });
}

async function variableSet(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { id: { type: 'string', short: 'i' }, value: { type: 'string', short: 'v' }, file: { type: 'string' } }, SET_HELP);
  if (!p) return EXIT.OK;
  const rawId = str(p.values.id);
  if (!rawId) throw usageError('variable set needs -i ID', SET_HELP);
  const inline = str(p.values.value);
  const file = str(p.values.file);
  if (inline !== undefined && file !== undefined) throw usageError('give the value with -v or --file, not both', SET_HELP);
  let value: Buffer;
  if (inline !== undefined) value = Buffer.from(inline);
  else if (file !== undefined) {
    try {
      value = readFileSync(file);
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.USAGE);
    }
  } else value = ctx.tty.stdin ? Buffer.from(await readSecret(ctx, `Value for ${rawId}: `)) : await readStdin(ctx);
  return withSession(ctx, async (s) => {
    const id = parseId(rawId, s.config.account, 'variable');
    const res = await s.request('POST', idPath('secrets', id), { body: value, headers: { 'Content-Type': 'application/octet-stream' } });
    value.fill(0);
    if (res.status !== 201 && res.status !== 204) throw httpError(res, `setting ${id.kind} '${id.identifier}'`);
    ctx.out(`Stored a new value for ${id.kind} '${id.identifier}'.`);
    return EXIT.OK;
  });
}
