/** GET /resources… (reference §1.6): listing, show, permission check, permitted roles. */
import { forbidden, recordNotFound, unprocessable } from '../../errors.js';
import { makeFullId } from '../../ids.js';
import { baseResourceJson, conjurTime } from '../../rbac/views.js';
import type { ResourceRow } from '../../store/graph.js';
import type { Services } from '../../services.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';
import { LIST_LIMIT_MAX, isTrue, parsePaging } from '../paging.js';
import { accountSegment, identifierFrom, queryParam, segment, type Ctx } from '../request.js';
import type { Actor } from '../../context.js';
import { hostFactoryExtras } from './host-factory-view.js';

export async function resourceJson(services: Services, r: ResourceRow, viewer: string): Promise<Record<string, unknown>> {
  const { graph } = services.store;
  const out = await baseResourceJson(graph, r);
  switch (r.kind) {
    case 'variable':
      out.secrets = await services.secrets.versions(r.resource_id);
      break;
    case 'policy':
      out.policy_versions = (await services.store.policyVersions.list(r.resource_id)).map((v) => ({
        version: v.version,
        created_at: conjurTime(v.created_at),
        policy_text: v.policy_text,
        policy_sha256: v.policy_sha256,
        finished_at: v.finished_at ? conjurTime(v.finished_at) : null,
        client_ip: v.client_ip,
        id: v.resource_id,
        role: v.role_id,
      }));
      break;
    case 'user':
    case 'host':
      out.restricted_to = JSON.parse((await services.store.credentials.get(r.resource_id))?.restricted_to ?? '[]');
      break;
    case 'host_factory':
      Object.assign(out, await hostFactoryExtras(services, r, viewer));
      break;
  }
  return out;
}

/** `role=`/`acting_as=`: list as another role, which the caller must hold (else 403). */
async function actingRole(c: Ctx, actor: Actor, services: Services): Promise<string> {
  const raw = queryParam(c, 'role') ?? queryParam(c, 'acting_as');
  if (raw === undefined) return actor.roleId;
  const roleId = raw.split(':').length >= 3 ? raw : undefined;
  if (!roleId || !(await services.store.graph.getRole(roleId)) || !(await services.authorizer.allRoles(actor.roleId)).has(roleId)) {
    throw forbidden(`the caller does not hold role ${raw}`);
  }
  return roleId;
}

async function list(c: Ctx, services: Services, account: string | undefined, kindFromPath: string | undefined) {
  const actor = await authenticateRequest(c, services.tokens, services.authorizer);
  const viewer = await actingRole(c, actor, services);
  const kind = kindFromPath ?? queryParam(c, 'kind');
  const search = queryParam(c, 'search');
  const ownerRaw = queryParam(c, 'owner');
  const owner = ownerRaw === undefined ? undefined : makeFullId(ownerRaw, account ?? actor.account);
  const query = {
    account,
    kind,
    ownerId: owner,
    searchTerms: search?.split(/[\s./-]+/).filter(Boolean),
    viewerRoles: [...(await services.authorizer.allRoles(viewer))],
  };
  const countOnly = isTrue(queryParam(c, 'count'));
  // Validate paging before the audit event, so a refused listing is not recorded as a success.
  const paging = countOnly ? {} : parsePaging(c, LIST_LIMIT_MAX);
  const params = { account, kind, search, limit: queryParam(c, 'limit') ?? String(LIST_LIMIT_MAX), offset: queryParam(c, 'offset') };
  await services.audit.record({
    account: account ?? actor.account,
    action: 'list',
    operation: 'list',
    result: 'success',
    roleId: actor.roleId,
    request: actor.request,
    message: `${actor.roleId} successfully listed resources with parameters: ${JSON.stringify(params)}`,
  });
  if (countOnly) return c.json({ count: await services.store.graph.countResources(query) });
  const rows = await services.store.graph.listResources({ ...query, ...paging });
  const out: Record<string, unknown>[] = [];
  for (const r of rows) out.push(await resourceJson(services, r, viewer));
  return c.json(out);
}

export function registerResources({ app, services }: RouteDeps): void {
  app.get('/resources', (c) => list(c, services, undefined, undefined));
  app.get('/resources/:account', (c) => list(c, services, accountSegment(c, 1), undefined));
  app.get('/resources/:account/:kind', (c) => list(c, services, accountSegment(c, 1), segment(c, 2)));

  app.get('/resources/:account/:kind/:id{.+}', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const account = accountSegment(c, 1);
    const kind = segment(c, 2);
    const identifier = identifierFrom(c, 3);
    const resourceId = `${account}:${kind}:${identifier}`;
    const { authorizer } = services;

    if (isTrue(queryParam(c, 'check'))) {
      const privilege = queryParam(c, 'privilege');
      if (!privilege) throw unprocessable("'privilege' is required for a permission check");
      const roleParam = queryParam(c, 'role');
      let subject = actor.roleId;
      if (roleParam !== undefined) {
        subject = makeFullId(roleParam, account);
        if (!(await services.store.graph.getRole(subject)) || !(await authorizer.allRoles(actor.roleId)).has(subject)) {
          throw forbidden(`the caller does not hold role ${roleParam}`);
        }
      }
      const resource = await authorizer.requireVisible(actor.roleId, resourceId);
      const allowed = await authorizer.canOn(subject, privilege, resource);
      const who = subject === actor.roleId ? 'they' : subject;
      await services.audit.record({
        account,
        action: 'check',
        operation: 'check',
        result: allowed ? 'success' : 'failure',
        roleId: actor.roleId,
        resourceId,
        request: actor.request,
        details: { role: subject, privilege },
        reason: allowed ? null : `${subject} does not hold ${privilege}`,
        message: `${actor.roleId} ${allowed ? 'successfully' : 'unsuccessfully'} checked if ${who} can ${privilege} ${resourceId}`,
      });
      if (!allowed) throw recordNotFound(account, kind, identifier);
      return c.body(null, 204);
    }

    const resource = await authorizer.requireVisible(actor.roleId, resourceId);
    if (isTrue(queryParam(c, 'permitted_roles'))) {
      const privilege = queryParam(c, 'privilege');
      if (!privilege) throw unprocessable("'privilege' is required to list permitted roles");
      return c.json(await authorizer.permittedRoles(resource, privilege));
    }
    return c.json(await resourceJson(services, resource, actor.roleId));
  });
}

