/**
 * Permission checks over the role graph (reference §3): a role may do P on R
 * when any role it holds (transitively, itself included) owns R or holds a
 * permission (R, P). There is no superuser and no privilege hierarchy.
 *
 * Role closures and decisions are cached until the graph changes; every
 * writer of memberships or ownership calls `invalidate()`. Inside a store
 * transaction the cache is neither read nor filled: the transaction sees rows
 * no other request may see until it commits (and a dry run never commits).
 */
import type { ResourceRow } from '../store/graph.js';
import type { GraphStore } from '../store/index.js';
import { forbidden, recordNotFound } from '../errors.js';
import { parseFullId } from '../ids.js';

const MAX_CACHED_CLOSURES = 50_000;
const MAX_CACHED_DECISIONS = 200_000;

export class Authorizer {
  private closures = new Map<string, ReadonlySet<string>>();
  private decisions = new Map<string, boolean>();
  private generation = 0;

  constructor(
    private readonly graph: GraphStore,
    /** Whether the caller runs inside a store transaction (Store.inTransaction). */
    private readonly inTransaction: () => boolean = () => false,
  ) {}

  /** Role existence and annotation values read on every request (a token's role; a value's MIME type; a TTL). */
  private facts = new Map<string, string | null>();

  /** Drops cached closures, decisions and facts; call after any change to the graph or its annotations. */
  invalidate(): void {
    this.closures.clear();
    this.decisions.clear();
    this.facts.clear();
    this.generation++;
  }

  get graphGeneration(): number {
    return this.generation;
  }

  /** Every role `roleId` holds, itself included (Conjur's `all_roles`). */
  async allRoles(roleId: string): Promise<ReadonlySet<string>> {
    const cacheable = !this.inTransaction();
    const cached = cacheable ? this.closures.get(roleId) : undefined;
    if (cached) return cached;
    const generation = this.generation;
    const seen = new Set(await this.graph.roleClosure(roleId));
    seen.add(roleId);
    // A graph change while the closure was read: answer it, but do not cache a mix of before and after.
    if (cacheable && generation === this.generation) {
      if (this.closures.size >= MAX_CACHED_CLOSURES) this.closures.clear();
      this.closures.set(roleId, seen);
    }
    return seen;
  }

  /** Whether the role exists (cached like decisions). */
  async roleExists(roleId: string): Promise<boolean> {
    return (await this.fact(`role\u0000${roleId}`, async () => ((await this.graph.getRole(roleId)) ? '' : null))) !== null;
  }

  /** An annotation's value, or undefined (cached like decisions). */
  async annotation(resourceId: string, name: string): Promise<string | undefined> {
    return (await this.fact(`annotation\u0000${resourceId}\u0000${name}`, async () => (await this.graph.getAnnotation(resourceId, name))?.value ?? null)) ?? undefined;
  }

  private async fact(key: string, read: () => Promise<string | null>): Promise<string | null> {
    const cacheable = !this.inTransaction();
    if (cacheable && this.facts.has(key)) return this.facts.get(key)!;
    const generation = this.generation;
    const value = await read();
    if (cacheable && generation === this.generation) {
      if (this.facts.size >= MAX_CACHED_DECISIONS) this.facts.clear();
      this.facts.set(key, value);
    }
    return value;
  }

  /** True when `roleId` holds `privilege` on the resource (owner holds every privilege). */
  async can(roleId: string, privilege: string, resourceId: string): Promise<boolean> {
    const key = `${roleId}\u0000${privilege}\u0000${resourceId}`;
    const cacheable = !this.inTransaction();
    const cached = cacheable ? this.decisions.get(key) : undefined;
    if (cached !== undefined) return cached;
    const generation = this.generation;
    const resource = await this.graph.getResource(resourceId);
    const decision = resource !== undefined && (await this.canOn(roleId, privilege, resource));
    if (cacheable && generation === this.generation) {
      if (this.decisions.size >= MAX_CACHED_DECISIONS) this.decisions.clear();
      this.decisions.set(key, decision);
    }
    return decision;
  }

  async canOn(roleId: string, privilege: string, resource: ResourceRow): Promise<boolean> {
    const roles = await this.allRoles(roleId);
    if (roles.has(resource.owner_id)) return true;
    return (await this.graph.rolesWithPrivilege(resource.resource_id, privilege)).some((r) => roles.has(r));
  }

  /** Visible: owned (transitively) or any privilege held on it. */
  async isVisible(roleId: string, resource: ResourceRow): Promise<boolean> {
    const roles = await this.allRoles(roleId);
    if (roles.has(resource.owner_id)) return true;
    return (await this.graph.permissionsOn(resource.resource_id)).some((p) => roles.has(p.role_id));
  }

  /**
   * Loads a resource the caller must be able to see: a missing or invisible
   * resource is Conjur's 404 (existence is never revealed).
   */
  async requireVisible(roleId: string, resourceId: string): Promise<ResourceRow> {
    const resource = await this.graph.getResource(resourceId);
    if (!resource || !(await this.isVisible(roleId, resource))) throw notFoundFor(resourceId);
    return resource;
  }

  /** requireVisible, then 403 (empty body) when the privilege is missing. */
  async require(roleId: string, privilege: string, resourceId: string): Promise<ResourceRow> {
    const resource = await this.requireVisible(roleId, resourceId);
    if (!(await this.canOn(roleId, privilege, resource))) throw forbidden();
    return resource;
  }

  /** Roles holding `privilege` on the resource, including the owner and everyone holding the owner role. */
  async permittedRoles(resource: ResourceRow, privilege: string): Promise<string[]> {
    const direct = [resource.owner_id, ...(await this.graph.rolesWithPrivilege(resource.resource_id, privilege))];
    // Members of a permitted role are permitted: the members' closure of every direct holder.
    return [...new Set(await this.graph.memberClosure(direct))].sort();
  }
}

export function notFoundFor(fullId: string) {
  const p = parseFullId(fullId);
  return p ? recordNotFound(p.account, p.kind, p.identifier) : recordNotFound('', 'resource', fullId);
}
