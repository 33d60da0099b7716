/** Secrets (reference §1.5) plus Coffer's per-variable batch endpoint. */
import { CofferError, argumentError, recordNotFound, unprocessable } from '../../errors.js';
import { makeFullId, validateIdentifier } from '../../ids.js';
import { Barrier } from '../../secrets/barrier.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';
import { integerParam } from '../paging.js';
import { accountSegment, hasQueryFlag, identifierFrom, parseJsonBody, queryParam, rawBody, segment, type Ctx } from '../request.js';

const SETTABLE_KINDS = new Set(['variable', 'public_key']);
export const BATCH_MAX_IDS = 1000;

const utf8 = new TextDecoder('utf-8', { fatal: true });
function asUtf8(value: Buffer): string | undefined {
  try {
    return utf8.decode(value);
  } catch {
    return undefined;
  }
}

/** Ruby's Base64.encode64: 60 characters per line, each line ending in a newline. */
function mimeBase64(value: Buffer): string {
  const b64 = value.toString('base64');
  let out = '';
  for (let i = 0; i < b64.length; i += 60) out += `${b64.slice(i, i + 60)}\n`;
  return out;
}

function parseVersion(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  return integerParam(raw, 0, Number.MAX_SAFE_INTEGER, `'version' must be a positive integer, got '${raw.length > 40 ? `${raw.slice(0, 40)}…` : raw}'`);
}

export function registerSecrets({ app, services, config }: RouteDeps): void {
  const { secrets } = services;
  const auth = (c: Ctx) => authenticateRequest(c, services.tokens, services.authorizer);

  app.post('/secrets/:account/batch', async (c) => {
    const actor = await auth(c);
    const account = accountSegment(c, 1);
    const body = await rawBody(c, config.bodyLimit);
    const json = parseJsonBody(body, () => unprocessable('Request body must be JSON: {"ids": ["account:variable:id", …]}'));
    const ids = json !== null && typeof json === 'object' ? (json as { ids?: unknown }).ids : undefined;
    if (!Array.isArray(ids) || ids.length === 0 || ids.some((i) => typeof i !== 'string' || i.trim() === '')) {
      throw unprocessable("'ids' must be a non-empty array of variable ids");
    }
    if (ids.length > BATCH_MAX_IDS) throw unprocessable(`'ids' may list at most ${BATCH_MAX_IDS} variables, got ${ids.length}`);
    (ids as string[]).forEach((id, n) => validateIdentifier(id, `ids[${n}]`));
    const fullIds = (ids as string[]).map((i) => (i.includes(':') ? makeFullId(i, account) : `${account}:variable:${i}`));
    const outcomes = await secrets.fetchEach(actor, fullIds);
    const allBase64 = (c.req.header('accept-encoding') ?? '').trim().toLowerCase() === 'base64';
    const values: Record<string, string> = {};
    const base64: string[] = [];
    const errors: Record<string, { code: string; message: string }> = {};
    for (const [id, o] of outcomes) {
      if (!o.ok) {
        errors[id] = { code: o.code, message: o.message };
        continue;
      }
      const text = allBase64 ? undefined : asUtf8(o.value);
      if (text === undefined) {
        values[id] = o.value.toString('base64');
        base64.push(id);
      } else values[id] = text;
      Barrier.wipe(o.value);
    }
    if (allBase64) c.header('Content-Encoding', 'base64');
    return c.json({ values, base64, errors });
  });

  app.post('/secrets/:account/:kind/:id{.+}', async (c) => {
    const actor = await auth(c);
    const account = accountSegment(c, 1);
    const kind = segment(c, 2);
    const identifier = identifierFrom(c, 3);
    if (!SETTABLE_KINDS.has(kind)) throw recordNotFound(account, kind, identifier);
    const resourceId = `${account}:${kind}:${identifier}`;
    if (hasQueryFlag(c, 'expirations')) {
      await secrets.clearExpirations(actor, resourceId);
      return c.body(null, 201);
    }
    const value = await rawBody(c, config.bodyLimit);
    try {
      await secrets.setValue(actor, resourceId, value);
    } finally {
      Barrier.wipe(value);
    }
    return c.body(null, 201);
  });

  app.get('/secrets/:account/:kind/:id{.+}', async (c) => {
    const actor = await auth(c);
    const account = accountSegment(c, 1);
    const kind = segment(c, 2);
    const identifier = identifierFrom(c, 3);
    const resourceId = `${account}:${kind}:${identifier}`;
    const version = parseVersion(queryParam(c, 'version'));
    if (kind !== 'variable') {
      throw new CofferError('not_found', `CONJ00076E Variable ${resourceId} is empty or not found.`);
    }
    const fetched = await secrets.fetch(actor, resourceId, version);
    // Hono sends the bytes as they are; the buffer is wiped once copied into the response.
    const bytes = new Uint8Array(fetched.value);
    Barrier.wipe(fetched.value);
    return c.body(bytes, 200, { 'Content-Type': fetched.mimeType });
  });

  app.get('/secrets', async (c) => {
    const actor = await auth(c);
    const raw = queryParam(c, 'variable_ids');
    const ids = raw === undefined ? [] : raw.split(',');
    if (ids.length === 0 || ids.some((i) => i.trim() === '')) {
      throw argumentError('variable_ids', { details: { code: 'argument_error', target: 'variable_ids', message: 'variable_ids must list full variable ids separated by commas' } });
    }
    const base64 = (c.req.header('accept-encoding') ?? '').trim().toLowerCase() === 'base64';
    const values = await secrets.fetchAllOrNothing(actor, ids.map((i) => i.trim()));
    const out: Record<string, string> = {};
    try {
      for (const [id, value] of values) {
        if (base64) {
          out[id] = mimeBase64(value);
          continue;
        }
        const text = asUtf8(value);
        if (text === undefined) {
          throw new CofferError(
            'not_acceptable',
            "CONJ00074E Issue encoding secret into JSON format, try including 'Accept-Encoding: base64' header in the request.",
          );
        }
        out[id] = text;
      }
    } finally {
      for (const v of values.values()) Barrier.wipe(v);
    }
    if (base64) c.header('Content-Encoding', 'base64');
    return c.json(out);
  });
}
