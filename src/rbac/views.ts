/** JSON shapes of resources, roles and grants, exactly as Conjur renders them (reference §1.6, §1.7). */
import type { MembershipRow, ResourceRow } from '../store/graph.js';
import type { GraphStore } from '../store/index.js';
import { isRoleKind, parseFullId } from '../ids.js';
import type { Authorizer } from './authorizer.js';

/** Conjur prints timestamps as `2021-03-23T16:37:14.455+00:00`. */
export function conjurTime(iso: string): string {
  return iso.endsWith('Z') ? `${iso.slice(0, -1)}+00:00` : iso;
}

export function grantJson(m: MembershipRow) {
  const out: Record<string, unknown> = {
    admin_option: m.admin_option === 1,
    ownership: m.ownership === 1,
    role: m.role_id,
    member: m.member_id,
  };
  if (m.policy_id) out.policy = m.policy_id;
  return out;
}

/** The common part of every resource's JSON; kind-specific fields are added by the caller. */
export async function baseResourceJson(graph: GraphStore, r: ResourceRow): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { created_at: conjurTime(r.created_at), id: r.resource_id, owner: r.owner_id };
  if (r.policy_id) out.policy = r.policy_id;
  out.permissions = (await graph.permissionsOn(r.resource_id)).map((p) => {
    const perm: Record<string, unknown> = { privilege: p.privilege, role: p.role_id };
    if (p.policy_id) perm.policy = p.policy_id;
    return perm;
  });
  out.annotations = (await graph.annotationsOn(r.resource_id)).map((a) => {
    const ann: Record<string, unknown> = { name: a.name, value: a.value };
    if (a.policy_id) ann.policy = a.policy_id;
    return ann;
  });
  return out;
}

export async function roleJson(graph: GraphStore, roleId: string) {
  const role = await graph.getRole(roleId);
  if (!role) return undefined;
  const out: Record<string, unknown> = { created_at: conjurTime(role.created_at), id: role.role_id };
  if (role.policy_id) out.policy = role.policy_id;
  out.members = (await graph.membersOf(roleId)).map(grantJson);
  return out;
}

export const REDACTED = '[REDACTED]';

/**
 * A record as the dry-run report shows it. Roles list `permissions`
 * (privilege → resources), `members`, `memberships` and `restricted_to`;
 * resource-only records list `permitted` (privilege → roles). Ids the viewer
 * cannot see are replaced by `[REDACTED]`.
 */
export async function dryRunItem(
  graph: GraphStore,
  authorizer: Authorizer,
  viewerRoleId: string,
  id: string,
  restrictedTo: (roleId: string) => Promise<string[]>,
): Promise<Record<string, unknown> | undefined> {
  const resource = await graph.getResource(id);
  const role = await graph.getRole(id);
  if (!resource && !role) return undefined;
  const parsed = parseFullId(id)!;
  const show = async (other: string) => {
    const r = await graph.getResource(other);
    return r && (await authorizer.isVisible(viewerRoleId, r)) ? other : REDACTED;
  };
  const showAll = async (ids: string[]) => (await Promise.all(ids.map(show))).sort();
  const item: Record<string, unknown> = {
    identifier: id,
    id: parsed.identifier,
    type: parsed.kind,
    owner: resource ? await show(resource.owner_id) : undefined,
    policy: resource?.policy_id ?? role?.policy_id ?? undefined,
  };
  if (role && isRoleKind(parsed.kind)) {
    const perms: Record<string, string[]> = {};
    for (const p of await graph.permissionsOf(id)) (perms[p.privilege] ??= []).push(await show(p.resource_id));
    item.permissions = sortValues(perms);
    item.annotations = await annotationsMap(graph, id);
    item.members = await showAll((await graph.membersOf(id)).map((m) => m.member_id));
    item.memberships = await showAll((await graph.membershipsOf(id)).map((m) => m.role_id));
    item.restricted_to = await restrictedTo(id);
  } else {
    const permitted: Record<string, string[]> = {};
    for (const p of await graph.permissionsOn(id)) (permitted[p.privilege] ??= []).push(await show(p.role_id));
    item.permitted = sortValues(permitted);
    item.annotations = await annotationsMap(graph, id);
  }
  return item;
}

async function annotationsMap(graph: GraphStore, id: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const a of await graph.annotationsOn(id)) out[a.name] = a.value;
  return out;
}

function sortValues(m: Record<string, string[]>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const k of Object.keys(m).sort()) out[k] = m[k]!.sort();
  return out;
}
