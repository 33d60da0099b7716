/**
 * Conjur's issuers API and Coffer's leases of dynamic secrets (issue 12).
 * Thin: parsing here, every decision in src/dynamic/.
 */
import { CofferError } from '../../errors.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';
import { accountSegment, parseJsonBody, queryParam, rawBody, segment, type Ctx } from '../request.js';

/** An issuer's JSON is small; a CA certificate is the largest part. */
const ISSUER_BODY_LIMIT = 128 * 1024;

const notJsonObject = () => new CofferError('bad_request', 'Request body must be a JSON object');

async function jsonObject(c: Ctx, limit: number): Promise<Record<string, unknown>> {
  const json = parseJsonBody(await rawBody(c, limit), notJsonObject);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw notJsonObject();
  return json as Record<string, unknown>;
}

/** `keep_secrets=false` (conjur-cli-go) or Conjur server's `delete_vars=true` deletes the variables; the default keeps them. */
function keepSecrets(c: Ctx): boolean {
  const keep = queryParam(c, 'keep_secrets');
  const deleteVars = queryParam(c, 'delete_vars');
  if (keep !== undefined && keep !== 'true' && keep !== 'false') throw new CofferError('bad_request', "keep_secrets must be true or false");
  return !(keep === 'false' || deleteVars === 'true');
}

export function registerIssuers({ app, services, config }: RouteDeps): void {
  const auth = (c: Ctx) => authenticateRequest(c, services.tokens, services.authorizer);
  const limit = Math.min(config.bodyLimit, ISSUER_BODY_LIMIT);

  app.post('/issuers/:account', async (c) => {
    const actor = await auth(c);
    const account = accountSegment(c, 1);
    const body = await jsonObject(c, limit);
    return c.json(await services.issuers.create(actor, account, body), 201);
  });

  app.get('/issuers/:account', async (c) => {
    const actor = await auth(c);
    const account = accountSegment(c, 1);
    return c.json({ issuers: await services.issuers.list(actor, account) });
  });

  app.get('/issuers/:account/:id', async (c) => {
    const actor = await auth(c);
    return c.json(await services.issuers.show(actor, accountSegment(c, 1), segment(c, 2)));
  });

  app.patch('/issuers/:account/:id', async (c) => {
    const actor = await auth(c);
    const account = accountSegment(c, 1);
    const id = segment(c, 2);
    const body = await jsonObject(c, limit);
    return c.json(await services.issuers.update(actor, account, id, body));
  });

  app.delete('/issuers/:account/:id', async (c) => {
    const actor = await auth(c);
    const account = accountSegment(c, 1);
    const id = segment(c, 2);
    await services.issuers.delete(actor, account, id, keepSecrets(c));
    // Conjur answers `head :ok`.
    return c.body(null, 200);
  });

  app.get('/leases/:account', async (c) => {
    const actor = await auth(c);
    return c.json({ leases: await services.dynamic.list(actor, accountSegment(c, 1)) });
  });

  app.delete('/leases/:account/:id', async (c) => {
    const actor = await auth(c);
    const result = await services.dynamic.revoke(actor, accountSegment(c, 1), segment(c, 2));
    // 202: the lease is ending but its database could not be reached; the sweeper retries.
    if (result.state === 'pending') return c.json({ lease: result.lease }, 202);
    return c.body(null, 204);
  });
}
