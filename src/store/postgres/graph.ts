/**
 * The RBAC graph tables on PostgreSQL: the same statements, rows and return
 * values as src/store/graph.ts. Ids are TEXT COLLATE "C" in the schema, so
 * ordering and the `[prefix/, prefix0)` subtree ranges compare bytes, as
 * SQLite does.
 */
import type { AnnotationRow, MembershipRow, PermissionRow, ResourceQuery, ResourceRow, RoleRow } from '../graph.js';
import type { GraphStore } from '../types.js';
import { rowsOf, type PgConnection, type PgQueryable } from './client.js';

const nowIso = () => new Date().toISOString();
const escapeLike = (term: string) => term.replace(/[\\%_]/g, (c) => `\\${c}`);

/** The filtered resource list as one statement: `$n` placeholders, numbered as they are pushed. */
function listResourcesSql(sql: PgQueryable, q: ResourceQuery, countOnly: boolean): { text: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  if (q.account !== undefined) where.push(`r.account = ${p(q.account)}`);
  if (q.kind !== undefined) where.push(`r.kind = ${p(q.kind)}`);
  if (q.ownerId !== undefined) where.push(`r.owner_id = ${p(q.ownerId)}`);
  const viewer = p(sql.array(q.viewerRoles));
  where.push(
    `(r.owner_id = ANY(${viewer}::text[]) OR EXISTS (SELECT 1 FROM permissions p ` +
      `WHERE p.resource_id = r.resource_id AND p.role_id = ANY(${viewer}::text[])))`,
  );
  for (const term of q.searchTerms ?? []) {
    // As SQLite: '.', '/' and '-' separate words; LIKE ignores ASCII case there, so ILIKE here (see README for non-ASCII).
    const like = p(`%${escapeLike(term)}%`);
    where.push(
      `(replace(replace(replace(r.identifier, '/', ' '), '-', ' '), '.', ' ') ILIKE ${like} OR ` +
        `EXISTS (SELECT 1 FROM annotations a WHERE a.resource_id = r.resource_id AND a.value ILIKE ${like}))`,
    );
  }
  const whereSql = where.length ? `WHERE ${where.join(' AND ')}` : '';
  if (countOnly) return { text: `SELECT count(*)::int8 AS n FROM resources r ${whereSql}`, params };
  let text = `SELECT r.* FROM resources r ${whereSql} ORDER BY r.resource_id`;
  if (q.limit !== undefined) text += ` LIMIT ${p(q.limit)}`;
  if (q.offset !== undefined) text += ` OFFSET ${p(q.offset)}`;
  return { text, params };
}

export function createPgGraphStore(db: PgConnection): GraphStore {
  const first = async <T>(rows: Promise<T[]>): Promise<T | undefined> => (await rows)[0];
  const all = async <T>(rows: Promise<Iterable<T>>): Promise<T[]> => rowsOf(await rows);
  const unsafe = <T>(sql: PgQueryable, text: string, params: unknown[]) => sql.unsafe(text, params as never[]) as unknown as Promise<T[]>;
  return {
    getRole: (id) => first(db()<RoleRow[]>`SELECT * FROM roles WHERE role_id = ${id}`),
    getResource: (id) => first(db()<ResourceRow[]>`SELECT * FROM resources WHERE resource_id = ${id}`),
    async insertRole(id, account, kind, identifier, policyId) {
      await db()`INSERT INTO roles (role_id, account, kind, identifier, policy_id, created_at)
        VALUES (${id}, ${account}, ${kind}, ${identifier}, ${policyId}, ${nowIso()})`;
    },
    async insertResource(id, account, kind, identifier, ownerId, policyId, policyVersion = null) {
      await db()`INSERT INTO resources (resource_id, account, kind, identifier, owner_id, policy_id, created_at, policy_version)
        VALUES (${id}, ${account}, ${kind}, ${identifier}, ${ownerId}, ${policyId}, ${nowIso()}, ${policyVersion})`;
    },
    async setOwner(resourceId, ownerId, policyVersion = null) {
      await db()`UPDATE resources SET owner_id = ${ownerId}, policy_version = coalesce(${policyVersion}::bigint, policy_version)
        WHERE resource_id = ${resourceId}`;
    },
    async deleteRole(id) {
      await db()`DELETE FROM roles WHERE role_id = ${id}`;
    },
    async deleteResource(id) {
      await db()`DELETE FROM resources WHERE resource_id = ${id}`;
    },
    resourcesOwnedBy: (roleId) => all(db()<ResourceRow[]>`SELECT * FROM resources WHERE owner_id = ${roleId}`),
    async roleClosure(roleId) {
      // UNION (not UNION ALL) drops rows already produced, so a membership cycle ends the recursion.
      const rows = await db()<{ id: string }[]>`WITH RECURSIVE c(id) AS (
          SELECT ${roleId}::text COLLATE "C" UNION SELECT m.role_id FROM role_memberships m JOIN c ON m.member_id = c.id)
        SELECT id FROM c`;
      return rows.map((r) => r.id);
    },
    async memberClosure(roleIds) {
      const sql = db();
      const rows = await sql<{ id: string }[]>`WITH RECURSIVE c(id) AS (
          SELECT unnest(${sql.array(roleIds)}::text[]) COLLATE "C" UNION SELECT m.member_id FROM role_memberships m JOIN c ON m.role_id = c.id)
        SELECT id FROM c`;
      return rows.map((r) => r.id);
    },
    async parentRoles(memberId) {
      const rows = await db()<{ role_id: string }[]>`SELECT role_id FROM role_memberships WHERE member_id = ${memberId}`;
      return rows.map((r) => r.role_id);
    },
    membersOf: (roleId) => all(db()<MembershipRow[]>`SELECT * FROM role_memberships WHERE role_id = ${roleId} ORDER BY member_id`),
    membershipsOf: (memberId) => all(db()<MembershipRow[]>`SELECT * FROM role_memberships WHERE member_id = ${memberId} ORDER BY role_id`),
    getMembership: (roleId, memberId, ownership) =>
      first(db()<MembershipRow[]>`SELECT * FROM role_memberships WHERE role_id = ${roleId} AND member_id = ${memberId} AND ownership = ${ownership ? 1 : 0}`),
    async insertMembership(roleId, memberId, adminOption, ownership, policyId, policyVersion = null) {
      await db()`INSERT INTO role_memberships (role_id, member_id, admin_option, ownership, policy_id, policy_version)
        VALUES (${roleId}, ${memberId}, ${adminOption ? 1 : 0}, ${ownership ? 1 : 0}, ${policyId}, ${policyVersion})
        ON CONFLICT (role_id, member_id, ownership) DO NOTHING`;
    },
    async setAdminOption(roleId, memberId, ownership, adminOption, policyVersion = null) {
      await db()`UPDATE role_memberships SET admin_option = ${adminOption ? 1 : 0}, policy_version = coalesce(${policyVersion}::bigint, policy_version)
        WHERE role_id = ${roleId} AND member_id = ${memberId} AND ownership = ${ownership ? 1 : 0}`;
    },
    async membershipsOfAny(memberIds) {
      const sql = db();
      return all(sql<MembershipRow[]>`SELECT * FROM role_memberships WHERE member_id = ANY(${sql.array(memberIds)}::text[])
        ORDER BY member_id, role_id, ownership`);
    },
    async deleteMembership(roleId, memberId, ownership) {
      const r = await db()`DELETE FROM role_memberships WHERE role_id = ${roleId} AND member_id = ${memberId} AND ownership = ${ownership ? 1 : 0}`;
      return r.count > 0;
    },
    async deleteOwnershipMemberships(roleId) {
      await db()`DELETE FROM role_memberships WHERE role_id = ${roleId} AND ownership = 1`;
    },
    permissionsOn: (resourceId) => all(db()<PermissionRow[]>`SELECT * FROM permissions WHERE resource_id = ${resourceId} ORDER BY privilege, role_id`),
    permissionsOf: (roleId) => all(db()<PermissionRow[]>`SELECT * FROM permissions WHERE role_id = ${roleId} ORDER BY privilege, resource_id`),
    async rolesWithPrivilege(resourceId, privilege) {
      const rows = await db()<{ role_id: string }[]>`SELECT role_id FROM permissions WHERE resource_id = ${resourceId} AND privilege = ${privilege}`;
      return rows.map((r) => r.role_id);
    },
    getPermission: (resourceId, privilege, roleId) =>
      first(db()<PermissionRow[]>`SELECT * FROM permissions WHERE resource_id = ${resourceId} AND privilege = ${privilege} AND role_id = ${roleId}`),
    async insertPermission(resourceId, privilege, roleId, policyId, policyVersion = null) {
      await db()`INSERT INTO permissions (resource_id, privilege, role_id, policy_id, policy_version)
        VALUES (${resourceId}, ${privilege}, ${roleId}, ${policyId}, ${policyVersion})
        ON CONFLICT (resource_id, privilege, role_id) DO NOTHING`;
    },
    async deletePermission(resourceId, privilege, roleId) {
      const r = await db()`DELETE FROM permissions WHERE resource_id = ${resourceId} AND privilege = ${privilege} AND role_id = ${roleId}`;
      return r.count > 0;
    },
    annotationsOn: (resourceId) => all(db()<AnnotationRow[]>`SELECT * FROM annotations WHERE resource_id = ${resourceId} ORDER BY name`),
    getAnnotation: (resourceId, name) => first(db()<AnnotationRow[]>`SELECT * FROM annotations WHERE resource_id = ${resourceId} AND name = ${name}`),
    async insertAnnotation(resourceId, name, value, policyId) {
      await db()`INSERT INTO annotations (resource_id, name, value, policy_id) VALUES (${resourceId}, ${name}, ${value}, ${policyId})`;
    },
    async updateAnnotation(resourceId, name, value) {
      await db()`UPDATE annotations SET value = ${value} WHERE resource_id = ${resourceId} AND name = ${name}`;
    },
    async deleteAnnotation(resourceId, name) {
      await db()`DELETE FROM annotations WHERE resource_id = ${resourceId} AND name = ${name}`;
    },
    async rowsOfPolicy(policyId) {
      const sql = db();
      return {
        roles: rowsOf(await sql<RoleRow[]>`SELECT * FROM roles WHERE policy_id = ${policyId}`),
        resources: rowsOf(await sql<ResourceRow[]>`SELECT * FROM resources WHERE policy_id = ${policyId}`),
        memberships: rowsOf(await sql<MembershipRow[]>`SELECT * FROM role_memberships WHERE policy_id = ${policyId}`),
        permissions: rowsOf(await sql<PermissionRow[]>`SELECT * FROM permissions WHERE policy_id = ${policyId}`),
        annotations: rowsOf(await sql<AnnotationRow[]>`SELECT * FROM annotations WHERE policy_id = ${policyId}`),
      };
    },
    async resourcesUnderPath(account, prefix) {
      type Row = { resource_id: string; owner_id: string };
      if (prefix === '') return all(db()<Row[]>`SELECT resource_id, owner_id FROM resources WHERE account = ${account}`);
      // '0' sorts right after '/', so [prefix/, prefix0) is exactly the subtree (bytewise: COLLATE "C").
      return all(db()<Row[]>`SELECT resource_id, owner_id FROM resources
        WHERE account = ${account} AND identifier >= ${`${prefix}/`} AND identifier < ${`${prefix}0`} AND identifier <> ${prefix}`);
    },
    policiesOfAccount: (account) => all(db()<ResourceRow[]>`SELECT * FROM resources WHERE account = ${account} AND kind = 'policy' ORDER BY identifier`),
    async resourcesWithPrivilege(roles, privilege, account) {
      const sql = db();
      const rows = await sql<{ id: string }[]>`SELECT p.resource_id AS id FROM permissions p JOIN resources r ON r.resource_id = p.resource_id
          WHERE p.privilege = ${privilege} AND r.account = ${account} AND p.role_id = ANY(${sql.array(roles)}::text[])
        UNION SELECT resource_id AS id FROM resources WHERE account = ${account} AND owner_id = ANY(${sql.array(roles)}::text[])`;
      return rows.map((r) => r.id);
    },
    async listResources(q) {
      const sql = db();
      const { text, params } = listResourcesSql(sql, q, false);
      return rowsOf(await unsafe<ResourceRow>(sql, text, params));
    },
    async countResources(q) {
      const sql = db();
      const { text, params } = listResourcesSql(sql, q, true);
      return (await unsafe<{ n: number }>(sql, text, params))[0]!.n;
    },
  };
}
