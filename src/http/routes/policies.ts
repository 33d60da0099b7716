/** POST/PATCH/PUT/GET /policies/{account}/policy/{id} (reference §1.4). */
import { fullId } from '../../ids.js';
import type { LoadMode } from '../../policy/loader.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';
import { isTrue } from '../paging.js';
import { accountSegment, identifierFrom, queryParam, rawBody, type Ctx } from '../request.js';
import { effectivePolicyYaml } from './effective-policy.js';

export function registerPolicies({ app, services, config }: RouteDeps): void {
  /**
   * The Go CLI sends '+' for a space in the branch segment; '+' is taken as a
   * space only when no policy with a literal '+' exists.
   */
  async function branch(c: Ctx, account: string): Promise<string> {
    const id = identifierFrom(c, 3);
    if (!id.includes('+') || (await services.store.graph.getResource(fullId(account, 'policy', id)))) return id;
    return id.replace(/\+/g, ' ');
  }

  const load = (mode: LoadMode) => async (c: Ctx) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const account = accountSegment(c, 1);
    const id = await branch(c, account);
    const body = await rawBody(c, config.policyBodyLimit);
    const dryRun = isTrue(queryParam(c, 'dryRun')) || isTrue(queryParam(c, 'dryrun'));
    const result = await services.policies.load({ ...actor, account }, id, mode, body.toString('utf8'), dryRun);
    return c.json(result, dryRun ? 200 : 201);
  };

  app.post('/policies/:account/policy/:id{.+}', load('add'));
  app.patch('/policies/:account/policy/:id{.+}', load('update'));
  app.put('/policies/:account/policy/:id{.+}', load('replace'));

  app.get('/policies/:account/policy/:id{.+}', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const account = accountSegment(c, 1);
    const id = await branch(c, account);
    const asJson = (c.req.header('content-type') ?? '').includes('application/json');
    const out = await effectivePolicyYaml(services, actor.roleId, account, id, {
      depth: queryParam(c, 'depth'),
      limit: queryParam(c, 'limit'),
      json: asJson,
    });
    return asJson ? c.json(out) : c.body(out as string, 200, { 'Content-Type': 'application/x-yaml' });
  });
}
