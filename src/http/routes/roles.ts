/** GET/POST/DELETE /roles/{account}/{kind}/{id} (reference §1.7). */
import { forbidden, notFound, recordNotFound } from '../../errors.js';
import { fullId, isRoleKind, makeFullId, parseFullId } from '../../ids.js';
import { grantJson, roleJson } from '../../rbac/views.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';
import { isTrue, page, parsePaging } from '../paging.js';
import { accountSegment, hasQueryFlag, identifierFrom, queryParam, requestUrl, segment, type Ctx } from '../request.js';
import type { MembershipRow } from '../../store/graph.js';

function filterList(c: Ctx): string[] {
  const url = requestUrl(c);
  return [...url.searchParams.getAll('filter[]'), ...url.searchParams.getAll('filter')].flatMap((f) => f.split(',')).filter(Boolean);
}

export function registerRoles({ app, services }: RouteDeps): void {
  const { authorizer } = services;
  const graph = services.store.graph;

  async function target(c: Ctx) {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const account = accountSegment(c, 1);
    const kind = segment(c, 2);
    const identifier = identifierFrom(c, 3);
    const roleId = fullId(account, kind, identifier);
    if (!isRoleKind(kind) || !(await graph.getRole(roleId))) throw recordNotFound(account, kind, identifier);
    await authorizer.requireVisible(actor.roleId, roleId);
    return { actor, account, kind, identifier, roleId };
  }

  function listGrants(c: Ctx, rows: MembershipRow[], side: 'member_id' | 'role_id') {
    const search = queryParam(c, 'search');
    const kind = queryParam(c, 'kind');
    const filters = filterList(c).map((f) => f);
    let out = rows;
    if (search) out = out.filter((m) => m[side].includes(search));
    if (kind) out = out.filter((m) => parseFullId(m[side])?.kind === kind);
    if (filters.length) out = out.filter((m) => filters.some((f) => m[side] === f || m[side].endsWith(`:${f}`)));
    if (isTrue(queryParam(c, 'count')) || hasQueryFlag(c, 'count')) return c.json({ count: out.length });
    return c.json(page(out, parsePaging(c, undefined)).map(grantJson));
  }

  app.get('/roles/:account/:kind/:id{.+}', async (c) => {
    const { actor, roleId } = await target(c);
    if (hasQueryFlag(c, 'graph')) {
      const edges: { parent: string; child: string }[] = [];
      const seen = new Set<string>();
      const visible = async (id: string) => {
        const r = await graph.getResource(id);
        return r !== undefined && (await authorizer.isVisible(actor.roleId, r));
      };
      // Ancestors: what this role is a member of, transitively; descendants: its members.
      const walk = async (start: string, up: boolean) => {
        const queue = [start];
        const done = new Set<string>();
        while (queue.length) {
          const id = queue.pop()!;
          if (done.has(id)) continue;
          done.add(id);
          const rows = up ? await graph.membershipsOf(id) : await graph.membersOf(id);
          for (const m of rows) {
            const key = `${m.role_id}\u0000${m.member_id}`;
            if (!seen.has(key) && (await visible(m.role_id))) {
              seen.add(key);
              edges.push({ parent: m.role_id, child: m.member_id });
            }
            queue.push(up ? m.role_id : m.member_id);
          }
        }
      };
      await walk(roleId, true);
      await walk(roleId, false);
      return c.json(edges);
    }
    if (hasQueryFlag(c, 'all')) {
      let roles = [...(await authorizer.allRoles(roleId))].sort();
      const filters = filterList(c);
      if (filters.length) roles = roles.filter((r) => filters.some((f) => r === f || r.endsWith(`:${f}`)));
      if (hasQueryFlag(c, 'count')) return c.json({ count: roles.length });
      return c.json(roles);
    }
    if (hasQueryFlag(c, 'memberships')) return listGrants(c, await graph.membershipsOf(roleId), 'role_id');
    if (hasQueryFlag(c, 'members')) return listGrants(c, await graph.membersOf(roleId), 'member_id');
    return c.json(await roleJson(graph, roleId));
  });

  async function changeMembers(c: Ctx, add: boolean) {
    const { actor, account, roleId } = await target(c);
    if (!hasQueryFlag(c, 'members')) throw notFound('Only ?members&member= changes are supported on roles');
    const memberRaw = queryParam(c, 'member');
    if (!memberRaw) throw notFound("'member' is required");
    const memberId = makeFullId(memberRaw, account);
    const policyId = (await graph.getRole(roleId))?.policy_id ?? fullId(account, 'policy', 'root');
    const privilege = add ? 'create' : 'update';
    if (!(await authorizer.can(actor.roleId, privilege, policyId))) throw forbidden(`${privilege} privilege on ${policyId} is required`);
    if (add) {
      // One transaction, so that a policy load deleting the member between the
      // check and the insert cannot fail the insert's foreign key (a 500).
      await services.store.tx(async () => {
        if (!(await graph.getRole(memberId))) {
          const p = parseFullId(memberId);
          throw recordNotFound(p?.account ?? account, p?.kind ?? 'role', p?.identifier ?? memberRaw);
        }
        await graph.insertMembership(roleId, memberId, false, false, policyId);
      });
    } else if (!(await graph.deleteMembership(roleId, memberId, false))) {
      throw notFound(`Membership of ${memberId} in ${roleId} not found`);
    }
    authorizer.invalidate();
    await services.audit.record({
      account,
      action: 'membership',
      operation: add ? 'add' : 'remove',
      result: 'success',
      roleId: actor.roleId,
      resourceId: roleId,
      request: actor.request,
      message: `${actor.roleId} ${add ? 'added' : 'removed'} membership of ${memberId} in ${roleId}`,
    });
    return c.body(null, 204);
  }

  app.post('/roles/:account/:kind/:id{.+}', (c) => changeMembers(c, true));
  app.delete('/roles/:account/:kind/:id{.+}', (c) => changeMembers(c, false));
}
