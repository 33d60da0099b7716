/**
 * Permission checks over the role graph (reference §3): a role may do P on R
 * when any role it holds (transitively, itself included) owns R or holds a
 * permission (R, P). There is no superuser and no privilege hierarchy.
 *
 * Role closures are cached until the graph changes; every writer of
 * memberships or ownership calls `invalidate()`.
 */
import type { GraphStore, ResourceRow } from '../store/graph.js';
import { forbidden, recordNotFound } from '../errors.js';
import { parseFullId } from '../ids.js';

const MAX_CACHED_CLOSURES = 50_000;
const MAX_CACHED_DECISIONS = 200_000;

export class Authorizer {
  private closures = new Map<string, ReadonlySet<string>>();
  private decisions = new Map<string, boolean>();
  private generation = 0;

  constructor(private readonly graph: GraphStore) {}

  /** Drops cached closures and decisions; call after any change to the graph. */
  invalidate(): void {
    this.closures.clear();
    this.decisions.clear();
    this.generation++;
  }

  get graphGeneration(): number {
    return this.generation;
  }

  /** Every role `roleId` holds, itself included (Conjur's `all_roles`). */
  allRoles(roleId: string): ReadonlySet<string> {
    const cached = this.closures.get(roleId);
    if (cached) return cached;
    const seen = new Set<string>([roleId]);
    const queue = [roleId];
    while (queue.length > 0) {
      const current = queue.pop()!;
      for (const parent of this.graph.parentRoles(current)) {
        if (!seen.has(parent)) {
          seen.add(parent);
          queue.push(parent);
        }
      }
    }
    if (this.closures.size >= MAX_CACHED_CLOSURES) this.closures.clear();
    this.closures.set(roleId, seen);
    return seen;
  }

  /** True when `roleId` holds `privilege` on the resource (owner holds every privilege). */
  can(roleId: string, privilege: string, resourceId: string): boolean {
    const key = `${roleId}\u0000${privilege}\u0000${resourceId}`;
    const cached = this.decisions.get(key);
    if (cached !== undefined) return cached;
    const resource = this.graph.getResource(resourceId);
    const decision = resource !== undefined && this.canOn(roleId, privilege, resource);
    if (this.decisions.size >= MAX_CACHED_DECISIONS) this.decisions.clear();
    this.decisions.set(key, decision);
    return decision;
  }

  canOn(roleId: string, privilege: string, resource: ResourceRow): boolean {
    const roles = this.allRoles(roleId);
    if (roles.has(resource.owner_id)) return true;
    return this.graph.rolesWithPrivilege(resource.resource_id, privilege).some((r) => roles.has(r));
  }

  /** Visible: owned (transitively) or any privilege held on it. */
  isVisible(roleId: string, resource: ResourceRow): boolean {
    const roles = this.allRoles(roleId);
    if (roles.has(resource.owner_id)) return true;
    return this.graph.permissionsOn(resource.resource_id).some((p) => roles.has(p.role_id));
  }

  /**
   * Loads a resource the caller must be able to see: a missing or invisible
   * resource is Conjur's 404 (existence is never revealed).
   */
  requireVisible(roleId: string, resourceId: string): ResourceRow {
    const resource = this.graph.getResource(resourceId);
    if (!resource || !this.isVisible(roleId, resource)) throw notFoundFor(resourceId);
    return resource;
  }

  /** requireVisible, then 403 (empty body) when the privilege is missing. */
  require(roleId: string, privilege: string, resourceId: string): ResourceRow {
    const resource = this.requireVisible(roleId, resourceId);
    if (!this.canOn(roleId, privilege, resource)) throw forbidden();
    return resource;
  }

  /** Roles holding `privilege` on the resource, including the owner and everyone holding the owner role. */
  permittedRoles(resource: ResourceRow, privilege: string): string[] {
    const direct = new Set<string>([resource.owner_id, ...this.graph.rolesWithPrivilege(resource.resource_id, privilege)]);
    const result = new Set<string>();
    // Walk down the membership graph: members of a permitted role are permitted.
    const queue = [...direct];
    while (queue.length > 0) {
      const role = queue.pop()!;
      if (result.has(role)) continue;
      result.add(role);
      for (const m of this.graph.membersOf(role)) if (!result.has(m.member_id)) queue.push(m.member_id);
    }
    return [...result].sort();
  }
}

export function notFoundFor(fullId: string) {
  const p = parseFullId(fullId);
  return p ? recordNotFound(p.account, p.kind, p.identifier) : recordNotFound('', 'resource', fullId);
}
