/**
 * The graph as one policy load sees it: rows the load will look at are read
 * up front in a few statements, inserts are queued and written together,
 * and every other change goes straight through.
 *
 * Why: on PostgreSQL each statement is a network round trip, and applying a
 * 20,000-record policy one row at a time costs ~60,000 of them. Here the
 * same load is a handful of bulk reads and one multi-row INSERT per table.
 *
 * Correctness rests on two facts: a load runs inside one write transaction
 * (nothing else changes the graph meanwhile — SQLite's single writer,
 * PostgreSQL's cluster-wide write lock), and every read this class cannot
 * answer exactly from what it has read or queued goes to the store after the
 * queue is written. A row is answered from memory only when its absence is
 * known too: for memberships, every membership of that role was read; for
 * permissions, every permission on that resource; for annotations, every
 * annotation of that resource. A deletion can cascade (a role owns
 * resources, a resource has annotations), so after one everything read is
 * forgotten and reads go to the store again.
 */
import type { AnnotationRow, MembershipRow, NewGraphRows, PermissionRow, ResourceRow, RoleRow } from '../store/graph.js';
import type { GraphStore } from '../store/index.js';
import type { Statement } from './types.js';

/** What applying a policy uses of the graph. */
export type PolicyGraph = Pick<
  GraphStore,
  | 'getRole'
  | 'getResource'
  | 'insertRole'
  | 'insertResource'
  | 'setOwner'
  | 'deleteRole'
  | 'deleteResource'
  | 'resourcesOwnedBy'
  | 'membersOf'
  | 'membershipsOf'
  | 'getMembership'
  | 'insertMembership'
  | 'setAdminOption'
  | 'deleteMembership'
  | 'getPermission'
  | 'insertPermission'
  | 'deletePermission'
  | 'getAnnotation'
  | 'insertAnnotation'
  | 'updateAnnotation'
  | 'deleteAnnotation'
  | 'rowsOfPolicy'
>;

const membershipKey = (role: string, member: string, ownership: boolean | number) => `${role}\u0000${member}\u0000${ownership ? 1 : 0}`;
const permissionKey = (resource: string, privilege: string, role: string) => `${resource}\u0000${privilege}\u0000${role}`;
const emptyRows = (): NewGraphRows => ({ roles: [], resources: [], memberships: [], permissions: [], annotations: [] });

export class GraphSession implements PolicyGraph {
  /** id → row, or null when known not to exist. */
  private roles = new Map<string, RoleRow | null>();
  private resources = new Map<string, ResourceRow | null>();
  /** Resources whose every annotation is in `annotations`. */
  private annotations = new Map<string, Map<string, AnnotationRow>>();
  /** Roles whose every membership (as the role members belong to) is in `memberships`. */
  private membershipRoles = new Set<string>();
  private memberships = new Map<string, MembershipRow>();
  /** Resources whose every permission is in `permissions`. */
  private permissionResources = new Set<string>();
  private permissions = new Map<string, PermissionRow>();
  private queued = emptyRows();

  constructor(private readonly g: GraphStore) {}

  /** Reads, in a few statements, every row the statements name. */
  async prefetch(statements: Statement[]): Promise<void> {
    const ids = new Set<string>();
    const annotated = new Set<string>();
    const grantRoles = new Set<string>();
    const permitResources = new Set<string>();
    for (const s of statements) {
      switch (s.type) {
        case 'record':
          ids.add(s.id);
          ids.add(s.owner);
          grantRoles.add(s.id);
          for (const layer of s.layers ?? []) {
            ids.add(layer);
            grantRoles.add(layer);
          }
          if (Object.keys(s.annotations).length > 0) annotated.add(s.id);
          break;
        case 'grant':
        case 'revoke':
          ids.add(s.role);
          ids.add(s.member);
          grantRoles.add(s.role);
          break;
        case 'permit':
        case 'deny':
          ids.add(s.role);
          ids.add(s.resource);
          permitResources.add(s.resource);
          break;
        case 'delete':
          ids.add(s.id);
          break;
      }
    }
    const list = [...ids];
    const [roles, resources, annotations, memberships, permissions] = [
      await this.g.rolesIn(list),
      await this.g.resourcesIn(list),
      await this.g.annotationsOnAny([...annotated]),
      await this.g.membershipsOfRoles([...grantRoles]),
      await this.g.permissionsOnAny([...permitResources]),
    ];
    for (const id of list) {
      this.roles.set(id, null);
      this.resources.set(id, null);
    }
    for (const r of roles) this.roles.set(r.role_id, r);
    for (const r of resources) this.resources.set(r.resource_id, r);
    for (const id of annotated) this.annotations.set(id, new Map());
    for (const a of annotations) this.annotations.get(a.resource_id)!.set(a.name, a);
    for (const id of grantRoles) this.membershipRoles.add(id);
    for (const m of memberships) this.memberships.set(membershipKey(m.role_id, m.member_id, m.ownership), m);
    for (const id of permitResources) this.permissionResources.add(id);
    for (const p of permissions) this.permissions.set(permissionKey(p.resource_id, p.privilege, p.role_id), p);
  }

  /** Writes the queued inserts. Call before anything else reads the graph in this transaction. */
  async flush(): Promise<void> {
    const q = this.queued;
    if (q.roles.length + q.resources.length + q.memberships.length + q.permissions.length + q.annotations.length === 0) return;
    this.queued = emptyRows();
    await this.g.insertRows(q);
  }

  private forget(): void {
    this.roles.clear();
    this.resources.clear();
    this.annotations.clear();
    this.membershipRoles.clear();
    this.memberships.clear();
    this.permissionResources.clear();
    this.permissions.clear();
  }

  async getRole(id: string): Promise<RoleRow | undefined> {
    if (this.roles.has(id)) return this.roles.get(id) ?? undefined;
    await this.flush();
    const row = await this.g.getRole(id);
    this.roles.set(id, row ?? null);
    return row;
  }

  async getResource(id: string): Promise<ResourceRow | undefined> {
    if (this.resources.has(id)) return this.resources.get(id) ?? undefined;
    await this.flush();
    const row = await this.g.getResource(id);
    this.resources.set(id, row ?? null);
    return row;
  }

  async insertRole(id: string, account: string, kind: string, identifier: string, policyId: string | null): Promise<void> {
    const row = { role_id: id, account, kind, identifier, policy_id: policyId };
    this.queued.roles.push(row);
    this.roles.set(id, { ...row, created_at: new Date().toISOString() });
    // A role that did not exist has no members yet.
    this.membershipRoles.add(id);
  }

  async insertResource(id: string, account: string, kind: string, identifier: string, ownerId: string, policyId: string | null, policyVersion: number | null = null): Promise<void> {
    const row = { resource_id: id, account, kind, identifier, owner_id: ownerId, policy_id: policyId, policy_version: policyVersion };
    this.queued.resources.push(row);
    this.resources.set(id, { ...row, created_at: new Date().toISOString() });
    // A new resource has no annotations or permissions yet.
    this.annotations.set(id, new Map());
    this.permissionResources.add(id);
  }

  async setOwner(resourceId: string, ownerId: string, policyVersion: number | null = null): Promise<void> {
    await this.flush();
    await this.g.setOwner(resourceId, ownerId, policyVersion);
    const row = this.resources.get(resourceId);
    if (row) this.resources.set(resourceId, { ...row, owner_id: ownerId, policy_version: policyVersion ?? row.policy_version });
  }

  async deleteRole(id: string): Promise<void> {
    await this.flush();
    await this.g.deleteRole(id);
    this.forget();
  }

  async deleteResource(id: string): Promise<void> {
    await this.flush();
    await this.g.deleteResource(id);
    this.forget();
  }

  async resourcesOwnedBy(roleId: string): Promise<ResourceRow[]> {
    await this.flush();
    return this.g.resourcesOwnedBy(roleId);
  }

  async membersOf(roleId: string): Promise<MembershipRow[]> {
    await this.flush();
    return this.g.membersOf(roleId);
  }

  async membershipsOf(memberId: string): Promise<MembershipRow[]> {
    await this.flush();
    return this.g.membershipsOf(memberId);
  }

  async getMembership(roleId: string, memberId: string, ownership: boolean): Promise<MembershipRow | undefined> {
    if (this.membershipRoles.has(roleId)) return this.memberships.get(membershipKey(roleId, memberId, ownership));
    await this.flush();
    return this.g.getMembership(roleId, memberId, ownership);
  }

  async insertMembership(roleId: string, memberId: string, adminOption: boolean, ownership: boolean, policyId: string | null, policyVersion: number | null = null): Promise<void> {
    const row: MembershipRow = { role_id: roleId, member_id: memberId, admin_option: adminOption ? 1 : 0, ownership: ownership ? 1 : 0, policy_id: policyId, policy_version: policyVersion };
    this.queued.memberships.push(row);
    // ON CONFLICT DO NOTHING: an existing row stays as it was.
    const key = membershipKey(roleId, memberId, ownership);
    if (this.membershipRoles.has(roleId) && !this.memberships.has(key)) this.memberships.set(key, row);
  }

  async setAdminOption(roleId: string, memberId: string, ownership: boolean, adminOption: boolean, policyVersion: number | null = null): Promise<void> {
    await this.flush();
    await this.g.setAdminOption(roleId, memberId, ownership, adminOption, policyVersion);
    const key = membershipKey(roleId, memberId, ownership);
    const row = this.memberships.get(key);
    if (row) this.memberships.set(key, { ...row, admin_option: adminOption ? 1 : 0, policy_version: policyVersion ?? row.policy_version });
  }

  async deleteMembership(roleId: string, memberId: string, ownership: boolean): Promise<boolean> {
    await this.flush();
    const deleted = await this.g.deleteMembership(roleId, memberId, ownership);
    this.memberships.delete(membershipKey(roleId, memberId, ownership));
    return deleted;
  }

  async getPermission(resourceId: string, privilege: string, roleId: string): Promise<PermissionRow | undefined> {
    if (this.permissionResources.has(resourceId)) return this.permissions.get(permissionKey(resourceId, privilege, roleId));
    await this.flush();
    return this.g.getPermission(resourceId, privilege, roleId);
  }

  async insertPermission(resourceId: string, privilege: string, roleId: string, policyId: string | null, policyVersion: number | null = null): Promise<void> {
    const row: PermissionRow = { resource_id: resourceId, privilege, role_id: roleId, policy_id: policyId, policy_version: policyVersion };
    this.queued.permissions.push(row);
    const key = permissionKey(resourceId, privilege, roleId);
    if (this.permissionResources.has(resourceId) && !this.permissions.has(key)) this.permissions.set(key, row);
  }

  async deletePermission(resourceId: string, privilege: string, roleId: string): Promise<boolean> {
    await this.flush();
    const deleted = await this.g.deletePermission(resourceId, privilege, roleId);
    this.permissions.delete(permissionKey(resourceId, privilege, roleId));
    return deleted;
  }

  async getAnnotation(resourceId: string, name: string): Promise<AnnotationRow | undefined> {
    const known = this.annotations.get(resourceId);
    if (known) return known.get(name);
    await this.flush();
    return this.g.getAnnotation(resourceId, name);
  }

  async insertAnnotation(resourceId: string, name: string, value: string, policyId: string | null): Promise<void> {
    const row: AnnotationRow = { resource_id: resourceId, name, value, policy_id: policyId };
    this.queued.annotations.push(row);
    this.annotations.get(resourceId)?.set(name, row);
  }

  async updateAnnotation(resourceId: string, name: string, value: string): Promise<void> {
    await this.flush();
    await this.g.updateAnnotation(resourceId, name, value);
    const known = this.annotations.get(resourceId);
    const row = known?.get(name);
    if (row) known!.set(name, { ...row, value });
  }

  async deleteAnnotation(resourceId: string, name: string): Promise<void> {
    await this.flush();
    await this.g.deleteAnnotation(resourceId, name);
    this.annotations.get(resourceId)?.delete(name);
  }

  async rowsOfPolicy(policyId: string) {
    await this.flush();
    return this.g.rowsOfPolicy(policyId);
  }
}
