/**
 * The RBAC graph tables: roles, resources, role_memberships, permissions,
 * annotations. Small typed functions; no policy or visibility logic here.
 */
import type { Db } from './db.js';

export interface RoleRow {
  role_id: string;
  account: string;
  kind: string;
  identifier: string;
  policy_id: string | null;
  created_at: string;
}

export interface ResourceRow {
  resource_id: string;
  account: string;
  kind: string;
  identifier: string;
  owner_id: string;
  policy_id: string | null;
  /** Version of `policy_id` that added the resource or last changed its owner (null: unknown, migration 0009). */
  policy_version?: number | null;
  created_at: string;
}

export interface MembershipRow {
  role_id: string;
  member_id: string;
  admin_option: number;
  ownership: number;
  policy_id: string | null;
  /** Version of `policy_id` that added the membership or last changed its admin option (null: unknown). */
  policy_version?: number | null;
}

export interface PermissionRow {
  resource_id: string;
  privilege: string;
  role_id: string;
  policy_id: string | null;
  /** Version of `policy_id` that added the permission (null: unknown). */
  policy_version?: number | null;
}

export interface AnnotationRow {
  resource_id: string;
  name: string;
  value: string;
  policy_id: string | null;
}

export interface ResourceQuery {
  /** Restrict to one account; undefined lists every account. */
  account?: string;
  kind?: string;
  ownerId?: string;
  /** Words that must each appear in the id or an annotation value. */
  searchTerms?: string[];
  /** Role ids the viewer holds; only resources they own or have any privilege on are returned. */
  viewerRoles: string[];
  limit?: number;
  offset?: number;
}

function nowIso(): string {
  return new Date().toISOString();
}

export function createGraphStore(db: Db) {
  const s = {
    getRole: db.prepare<[string], RoleRow>('SELECT * FROM roles WHERE role_id = ?'),
    getResource: db.prepare<[string], ResourceRow>('SELECT * FROM resources WHERE resource_id = ?'),
    insertRole: db.prepare(
      'INSERT INTO roles (role_id, account, kind, identifier, policy_id, created_at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    insertResource: db.prepare(
      'INSERT INTO resources (resource_id, account, kind, identifier, owner_id, policy_id, created_at, policy_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    setOwner: db.prepare('UPDATE resources SET owner_id = ?, policy_version = coalesce(?, policy_version) WHERE resource_id = ?'),
    deleteRole: db.prepare('DELETE FROM roles WHERE role_id = ?'),
    deleteResource: db.prepare('DELETE FROM resources WHERE resource_id = ?'),
    ownedBy: db.prepare<[string], ResourceRow>('SELECT * FROM resources WHERE owner_id = ?'),
    parentsOf: db.prepare<[string], { role_id: string }>('SELECT role_id FROM role_memberships WHERE member_id = ?'),
    membersOf: db.prepare<[string], MembershipRow>('SELECT * FROM role_memberships WHERE role_id = ? ORDER BY member_id'),
    membershipsOf: db.prepare<[string], MembershipRow>(
      'SELECT * FROM role_memberships WHERE member_id = ? ORDER BY role_id',
    ),
    membershipsOfAny: db.prepare<[string], MembershipRow>(
      'SELECT * FROM role_memberships WHERE member_id IN (SELECT value FROM json_each(?)) ORDER BY member_id, role_id, ownership',
    ),
    getMembership: db.prepare<[string, string, number], MembershipRow>(
      'SELECT * FROM role_memberships WHERE role_id = ? AND member_id = ? AND ownership = ?',
    ),
    insertMembership: db.prepare(
      'INSERT INTO role_memberships (role_id, member_id, admin_option, ownership, policy_id, policy_version) VALUES (?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT(role_id, member_id, ownership) DO NOTHING',
    ),
    updateAdminOption: db.prepare(
      'UPDATE role_memberships SET admin_option = ?, policy_version = coalesce(?, policy_version) WHERE role_id = ? AND member_id = ? AND ownership = ?',
    ),
    deleteMembership: db.prepare(
      'DELETE FROM role_memberships WHERE role_id = ? AND member_id = ? AND ownership = ?',
    ),
    deleteOwnershipOf: db.prepare('DELETE FROM role_memberships WHERE role_id = ? AND ownership = 1'),
    permissionsOf: db.prepare<[string], PermissionRow>(
      'SELECT * FROM permissions WHERE role_id = ? ORDER BY privilege, resource_id',
    ),
    permissionsOn: db.prepare<[string], PermissionRow>(
      'SELECT * FROM permissions WHERE resource_id = ? ORDER BY privilege, role_id',
    ),
    rolesWithPrivilege: db.prepare<[string, string], { role_id: string }>(
      'SELECT role_id FROM permissions WHERE resource_id = ? AND privilege = ?',
    ),
    getPermission: db.prepare<[string, string, string], PermissionRow>(
      'SELECT * FROM permissions WHERE resource_id = ? AND privilege = ? AND role_id = ?',
    ),
    insertPermission: db.prepare(
      'INSERT INTO permissions (resource_id, privilege, role_id, policy_id, policy_version) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT(resource_id, privilege, role_id) DO NOTHING',
    ),
    deletePermission: db.prepare('DELETE FROM permissions WHERE resource_id = ? AND privilege = ? AND role_id = ?'),
    annotationsOn: db.prepare<[string], AnnotationRow>('SELECT * FROM annotations WHERE resource_id = ? ORDER BY name'),
    getAnnotation: db.prepare<[string, string], AnnotationRow>(
      'SELECT * FROM annotations WHERE resource_id = ? AND name = ?',
    ),
    insertAnnotation: db.prepare(
      'INSERT INTO annotations (resource_id, name, value, policy_id) VALUES (?, ?, ?, ?)',
    ),
    updateAnnotation: db.prepare('UPDATE annotations SET value = ? WHERE resource_id = ? AND name = ?'),
    deleteAnnotation: db.prepare('DELETE FROM annotations WHERE resource_id = ? AND name = ?'),
    rolesOfPolicy: db.prepare<[string], RoleRow>('SELECT * FROM roles WHERE policy_id = ?'),
    resourcesOfPolicy: db.prepare<[string], ResourceRow>('SELECT * FROM resources WHERE policy_id = ?'),
    membershipsOfPolicy: db.prepare<[string], MembershipRow>('SELECT * FROM role_memberships WHERE policy_id = ?'),
    permissionsOfPolicy: db.prepare<[string], PermissionRow>('SELECT * FROM permissions WHERE policy_id = ?'),
    annotationsOfPolicy: db.prepare<[string], AnnotationRow>('SELECT * FROM annotations WHERE policy_id = ?'),
    resourcesUnder: db.prepare<[string, string, string, string], { resource_id: string; owner_id: string }>(
      "SELECT resource_id, owner_id FROM resources WHERE account = ? AND identifier >= ? AND identifier < ? AND identifier <> ?",
    ),
    resourcesOfAccount: db.prepare<[string], { resource_id: string; owner_id: string }>(
      'SELECT resource_id, owner_id FROM resources WHERE account = ?',
    ),
    // UNION (not UNION ALL) drops rows already produced, so a membership cycle ends the recursion.
    roleClosure: db.prepare<[string], { id: string }>(
      'WITH RECURSIVE c(id) AS (SELECT ? UNION SELECT m.role_id FROM role_memberships m JOIN c ON m.member_id = c.id) SELECT id FROM c',
    ),
    memberClosure: db.prepare<[string], { id: string }>(
      'WITH RECURSIVE c(id) AS (SELECT value FROM json_each(?) UNION SELECT m.member_id FROM role_memberships m JOIN c ON m.role_id = c.id) SELECT id FROM c',
    ),
    policiesOfAccount: db.prepare<[string], ResourceRow>(
      "SELECT * FROM resources WHERE account = ? AND kind = 'policy' ORDER BY identifier",
    ),
  };

  function listResourcesSql(q: ResourceQuery, countOnly: boolean): { sql: string; params: unknown[] } {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.account !== undefined) {
      where.push('r.account = ?');
      params.push(q.account);
    }
    if (q.kind !== undefined) {
      where.push('r.kind = ?');
      params.push(q.kind);
    }
    if (q.ownerId !== undefined) {
      where.push('r.owner_id = ?');
      params.push(q.ownerId);
    }
    const viewer = JSON.stringify(q.viewerRoles);
    where.push(
      '(r.owner_id IN (SELECT value FROM json_each(?)) OR EXISTS (SELECT 1 FROM permissions p ' +
        'WHERE p.resource_id = r.resource_id AND p.role_id IN (SELECT value FROM json_each(?))))',
    );
    params.push(viewer, viewer);
    for (const term of q.searchTerms ?? []) {
      // Conjur's full-text search treats '.', '/' and '-' as word separators,
      // so a term matches the id or any annotation value containing it.
      const like = `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      where.push(
        "(replace(replace(replace(r.identifier, '/', ' '), '-', ' '), '.', ' ') LIKE ? ESCAPE '\\' OR " +
          "EXISTS (SELECT 1 FROM annotations a WHERE a.resource_id = r.resource_id AND a.value LIKE ? ESCAPE '\\'))",
      );
      params.push(like, like);
    }
    const whereSql = where.length ? `WHERE ${where.join(' AND ')}` : '';
    if (countOnly) return { sql: `SELECT count(*) AS n FROM resources r ${whereSql}`, params };
    let sql = `SELECT r.* FROM resources r ${whereSql} ORDER BY r.resource_id`;
    if (q.limit !== undefined) {
      sql += ' LIMIT ?';
      params.push(q.limit);
      if (q.offset !== undefined) {
        sql += ' OFFSET ?';
        params.push(q.offset);
      }
    } else if (q.offset !== undefined) {
      sql += ' LIMIT -1 OFFSET ?';
      params.push(q.offset);
    }
    return { sql, params };
  }

  return {
    getRole: (id: string) => s.getRole.get(id),
    getResource: (id: string) => s.getResource.get(id),
    insertRole(id: string, account: string, kind: string, identifier: string, policyId: string | null): void {
      s.insertRole.run(id, account, kind, identifier, policyId, nowIso());
    },
    insertResource(
      id: string,
      account: string,
      kind: string,
      identifier: string,
      ownerId: string,
      policyId: string | null,
      policyVersion: number | null = null,
    ): void {
      s.insertResource.run(id, account, kind, identifier, ownerId, policyId, nowIso(), policyVersion);
    },
    /** Changes the owner; `policyVersion`, when given, becomes the resource's policy_version. */
    setOwner: (resourceId: string, ownerId: string, policyVersion: number | null = null) => void s.setOwner.run(ownerId, policyVersion, resourceId),
    deleteRole: (id: string) => void s.deleteRole.run(id),
    deleteResource: (id: string) => void s.deleteResource.run(id),
    resourcesOwnedBy: (roleId: string) => s.ownedBy.all(roleId),
    /** Every role `roleId` holds through memberships (ownership included), itself included. */
    roleClosure: (roleId: string) => s.roleClosure.all(roleId).map((r) => r.id),
    /** `roleIds` and every role that is (transitively) a member of one of them. */
    memberClosure: (roleIds: string[]) => s.memberClosure.all(JSON.stringify(roleIds)).map((r) => r.id),
    /** Role ids that `memberId` is directly a member of (ownership included). */
    parentRoles: (memberId: string) => s.parentsOf.all(memberId).map((r) => r.role_id),
    membersOf: (roleId: string) => s.membersOf.all(roleId),
    membershipsOf: (memberId: string) => s.membershipsOf.all(memberId),
    getMembership: (roleId: string, memberId: string, ownership: boolean) =>
      s.getMembership.get(roleId, memberId, ownership ? 1 : 0),
    insertMembership(roleId: string, memberId: string, adminOption: boolean, ownership: boolean, policyId: string | null, policyVersion: number | null = null) {
      s.insertMembership.run(roleId, memberId, adminOption ? 1 : 0, ownership ? 1 : 0, policyId, policyVersion);
    },
    /** Changes the admin option; `policyVersion`, when given, becomes the membership's policy_version. */
    setAdminOption(roleId: string, memberId: string, ownership: boolean, adminOption: boolean, policyVersion: number | null = null) {
      s.updateAdminOption.run(adminOption ? 1 : 0, policyVersion, roleId, memberId, ownership ? 1 : 0);
    },
    /** Memberships (ownership included) whose member is one of `memberIds`, in (member, role) order. */
    membershipsOfAny(memberIds: string[]): MembershipRow[] {
      return s.membershipsOfAny.all(JSON.stringify(memberIds));
    },
    deleteMembership: (roleId: string, memberId: string, ownership: boolean) =>
      s.deleteMembership.run(roleId, memberId, ownership ? 1 : 0).changes > 0,
    deleteOwnershipMemberships: (roleId: string) => void s.deleteOwnershipOf.run(roleId),
    permissionsOn: (resourceId: string) => s.permissionsOn.all(resourceId),
    /** Permissions held directly by a role. */
    permissionsOf: (roleId: string) => s.permissionsOf.all(roleId),
    rolesWithPrivilege: (resourceId: string, privilege: string) =>
      s.rolesWithPrivilege.all(resourceId, privilege).map((r) => r.role_id),
    getPermission: (resourceId: string, privilege: string, roleId: string) =>
      s.getPermission.get(resourceId, privilege, roleId),
    insertPermission(resourceId: string, privilege: string, roleId: string, policyId: string | null, policyVersion: number | null = null) {
      s.insertPermission.run(resourceId, privilege, roleId, policyId, policyVersion);
    },
    deletePermission: (resourceId: string, privilege: string, roleId: string) =>
      s.deletePermission.run(resourceId, privilege, roleId).changes > 0,
    annotationsOn: (resourceId: string) => s.annotationsOn.all(resourceId),
    getAnnotation: (resourceId: string, name: string) => s.getAnnotation.get(resourceId, name),
    insertAnnotation(resourceId: string, name: string, value: string, policyId: string | null) {
      s.insertAnnotation.run(resourceId, name, value, policyId);
    },
    updateAnnotation: (resourceId: string, name: string, value: string) =>
      void s.updateAnnotation.run(value, resourceId, name),
    deleteAnnotation: (resourceId: string, name: string) => void s.deleteAnnotation.run(resourceId, name),
    rowsOfPolicy(policyId: string) {
      return {
        roles: s.rolesOfPolicy.all(policyId),
        resources: s.resourcesOfPolicy.all(policyId),
        memberships: s.membershipsOfPolicy.all(policyId),
        permissions: s.permissionsOfPolicy.all(policyId),
        annotations: s.annotationsOfPolicy.all(policyId),
      };
    },
    /** Resources whose identifier starts with `prefix/` in the account (all resources for the empty prefix). */
    resourcesUnderPath(account: string, prefix: string): { resource_id: string; owner_id: string }[] {
      if (prefix === '') return s.resourcesOfAccount.all(account);
      // '0' sorts right after '/', so [prefix/, prefix0) is exactly the subtree.
      return s.resourcesUnder.all(account, `${prefix}/`, `${prefix}0`, prefix);
    },
    policiesOfAccount: (account: string) => s.policiesOfAccount.all(account),
    /** Resources of the account on which any of `roles` holds `privilege` directly or as owner. */
    resourcesWithPrivilege(roles: string[], privilege: string, account: string): string[] {
      const rows = db
        .prepare(
          'SELECT p.resource_id AS id FROM permissions p JOIN resources r ON r.resource_id = p.resource_id ' +
            'WHERE p.privilege = ? AND r.account = ? AND p.role_id IN (SELECT value FROM json_each(?)) ' +
            'UNION SELECT resource_id AS id FROM resources WHERE account = ? AND owner_id IN (SELECT value FROM json_each(?))',
        )
        .all(privilege, account, JSON.stringify(roles), account, JSON.stringify(roles)) as { id: string }[];
      return rows.map((r) => r.id);
    },
    listResources(q: ResourceQuery): ResourceRow[] {
      const { sql, params } = listResourcesSql(q, false);
      return db.prepare(sql).all(...params) as ResourceRow[];
    },
    countResources(q: ResourceQuery): number {
      const { sql, params } = listResourcesSql(q, true);
      return (db.prepare(sql).get(...params) as { n: number }).n;
    },
  };
}

export type GraphStore = ReturnType<typeof createGraphStore>;
