/**
 * The fetcher behind `coffer run`: every variable of a run in one
 * `POST /secrets/{account}/batch` request (chunks of 1000 only beyond that),
 * never one request per variable.
 *
 * @module
 */
import type { ClientSession } from '../client/session.js';
import { httpError } from '../client/session.js';
import { sanitize } from '../client/errors.js';
import type { FetchHints, FetchValues } from './runner.js';

/** Most ids the server takes in one batch request. */
export const BATCH_LIMIT = 1000;

/** A fetch failure that names the variable (as written in secrets.yml) and the server's message. */
export class VariableFetchError extends Error {
  override readonly name = 'VariableFetchError';

  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
  }
}

interface BatchReply {
  values: Record<string, string>;
  base64: string[];
  errors: Record<string, { code?: string; message?: string }>;
}

/**
 * The full id the server gives a secrets.yml path, by the batch endpoint's
 * rule (the same as summon-conjur's): `acct:kind:id` as is, `kind:id` in the
 * session's account, anything else a variable of that account.
 *
 * @throws VariableFetchError for a path with an empty account or kind
 */
export function fullIdOf(path: string, account: string): string {
  if (!path.includes(':')) return `${account}:variable:${path}`;
  const parts = path.split(':');
  if (parts[0] === '' || parts[1] === '') {
    throw new VariableFetchError(path, `'${path}' is not a variable id (expected path, kind:path or account:kind:path)`);
  }
  return parts.length === 2 ? `${account}:${path}` : path;
}

/**
 * A {@link FetchValues} over `session`. A variable the server refuses or does
 * not have fails the run with the server's message, unless the runner marked
 * its path ignorable (`-i`/`-I`); then it is left out of the result.
 *
 * @example
 * runWithSecrets({ specs, command, fetchValues: batchFetcher(session), … });
 */
export function batchFetcher(session: ClientSession): FetchValues {
  return async (paths: string[], hints: FetchHints): Promise<Map<string, Buffer>> => {
    const account = session.config.account;
    // Several spellings (`db/pw`, `variable:db/pw`) may name one variable.
    const pathsById = new Map<string, string[]>();
    for (const path of paths) {
      const id = fullIdOf(path, account);
      pathsById.set(id, [...(pathsById.get(id) ?? []), path]);
    }
    const ids = [...pathsById.keys()];
    const out = new Map<string, Buffer>();
    for (let start = 0; start < ids.length; start += BATCH_LIMIT) {
      const chunk = ids.slice(start, start + BATCH_LIMIT);
      const reply = await postBatch(session, account, chunk);
      const inBase64 = new Set(reply.base64);
      for (const id of chunk) {
        const failure = reply.errors[id];
        const value = reply.values[id];
        for (const path of pathsById.get(id) ?? []) {
          if (typeof value === 'string' && failure === undefined) {
            out.set(path, Buffer.from(value, inBase64.has(id) ? 'base64' : 'utf8'));
          } else if (!hints.ignorable.has(path)) {
            const message = typeof failure?.message === 'string' ? sanitize(failure.message) : `the server returned no value for ${id}`;
            throw new VariableFetchError(path, message);
          }
        }
      }
    }
    return out;
  };
}

async function postBatch(session: ClientSession, account: string, ids: string[]): Promise<BatchReply> {
  const res = await session.request('POST', `/secrets/${encodeURIComponent(account)}/batch`, {
    body: JSON.stringify({ ids }),
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
  });
  if (res.status !== 200) throw httpError(res, 'fetching secrets');
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.body.toString('utf8'));
  } catch {
    // Never quote the body: it is meant to hold secret values.
    throw new Error('fetching secrets: the server answered with something that is not JSON');
  }
  const reply = parsed as Partial<BatchReply> | null;
  if (!reply || typeof reply.values !== 'object' || reply.values === null) {
    throw new Error('fetching secrets: the server answer has no "values" (is this a Coffer server?)');
  }
  return {
    values: reply.values,
    base64: Array.isArray(reply.base64) ? reply.base64 : [],
    errors: typeof reply.errors === 'object' && reply.errors !== null ? reply.errors : {},
  };
}
