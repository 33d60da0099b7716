/**
 * GET /explain/{account}?role=&privilege=&resource= (Coffer's own, issue 11):
 * whether a role holds a privilege on a resource, and every path that grants
 * it. The logic is src/rbac/explain.ts; this reads and checks the query,
 * audits the explanation (as a permission check is audited) and renders it.
 */
import { unprocessable } from '../../errors.js';
import { makeFullId, parseFullId, validateIdentifier } from '../../ids.js';
import { explainPermission } from '../../rbac/explain.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';
import { accountSegment, queryParam, type Ctx } from '../request.js';

/** A role or resource id: `account:kind:id`, or `kind:id` in the path's account. */
function idParam(c: Ctx, name: string, account: string): string {
  const raw = queryParam(c, name);
  if (raw === undefined || raw === '') throw unprocessable(`'${name}' is required: a full id such as ${account}:host:ci/executor-01`);
  const id = makeFullId(raw, account);
  const p = parseFullId(id);
  if (!p) throw unprocessable(`'${name}' must be of the form account:kind:identifier`);
  validateIdentifier(p.identifier, `'${name}' identifier`);
  return id;
}

export function registerExplain({ app, services }: RouteDeps): void {
  app.get('/explain/:account', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const account = accountSegment(c, 1);
    const roleId = idParam(c, 'role', account);
    const resourceId = idParam(c, 'resource', account);
    const rawPrivilege = queryParam(c, 'privilege');
    if (rawPrivilege === undefined || rawPrivilege === '') throw unprocessable("'privilege' is required, e.g. execute");
    const privilege = validateIdentifier(rawPrivilege, "'privilege'");
    const answer = await explainPermission({ graph: services.store.graph, authorizer: services.authorizer }, actor.roleId, roleId, privilege, resourceId);
    await services.audit.record({
      account,
      action: 'explain',
      operation: 'explain',
      result: 'success',
      roleId: actor.roleId,
      resourceId: answer.resource,
      request: actor.request,
      details: { role: roleId, privilege, allowed: answer.allowed, paths: answer.paths.length },
      message: `${actor.roleId} explained whether ${roleId} can ${privilege} ${answer.resource}: ${answer.allowed ? 'yes' : 'no'}`,
    });
    return c.json(answer);
  });
}
