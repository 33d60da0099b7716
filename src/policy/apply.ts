/**
 * Applies resolved statements to the graph, inside the caller's transaction,
 * following Conjur's load modes (reference §2.4):
 *  - add (POST): insert rows whose key is new; never update; merge restricted_to;
 *  - update (PATCH): also update rows of this policy; apply deletions;
 *  - replace (PUT): first remove rows of this policy absent from the new text.
 * Every row written belongs to the policy being loaded; rows another policy
 * load created ("shadowed") are never changed or removed.
 */
import { PolicyError, kindTitle } from '../errors.js';
import { fullId, parseFullId } from '../ids.js';
import type { CredentialsStore, GraphStore } from '../store/index.js';
import { GraphSession, type PolicyGraph } from './graph-session.js';
import type { RecordStatement, Statement } from './types.js';

export type LoadMode = 'add' | 'update' | 'replace';

export interface ApplyDeps {
  graph: GraphStore;
  credentials: CredentialsStore;
  /** Creates credentials for a new user or host; returns its API key. */
  createCredentials: (roleId: string, restrictedTo: string[]) => Promise<string>;
  /** Stores a value for a public-key resource. */
  writeSecret: (resourceId: string, value: Buffer) => Promise<void>;
}

export interface ChangeLog {
  added: string[];
  changed: string[];
  removed: string[];
}

export interface ApplyResult {
  createdRoles: Record<string, { id: string; api_key: string }>;
  changes: ChangeLog;
  /** Ids of records whose rows were touched (for the dry-run report). */
  touched: Set<string>;
  /** Ids of the roles and resources deleted (their dynamic-secret leases end after the load commits). */
  removed: Set<string>;
}

const CREDENTIAL_KINDS = new Set(['user', 'host']);

/** What a record's `public_keys` lines become: `acct:public_key:user/<login>/<key name>`. */
function publicKeyResources(record: RecordStatement): { id: string; value: string }[] {
  const p = parseFullId(record.id)!;
  return (record.publicKeys ?? []).map((line) => {
    const name = line.trim().split(/\s+/)[2] ?? 'key';
    return { id: fullId(p.account, 'public_key', `user/${p.identifier}/${name}`), value: line.trim() };
  });
}

/**
 * `version` is the policy version this load becomes: every membership,
 * permission and resource ownership it writes records it (GET /explain
 * labels each edge with the version that declared it).
 */
export async function applyStatements(
  d: ApplyDeps,
  policyId: string,
  statements: Statement[],
  mode: LoadMode,
  version: number | null = null,
): Promise<ApplyResult> {
  const g = new GraphSession(d.graph);
  const result: ApplyResult = { createdRoles: {}, changes: { added: [], changed: [], removed: [] }, touched: new Set(), removed: new Set() };
  const log = result.changes;
  const records = statements.filter((s): s is RecordStatement => s.type === 'record');

  if (mode === 'replace') await removeAbsentRows(d.graph, policyId, statements, result);
  await g.prefetch(statements);

  // Records: roles, resources, annotations, ownership.
  for (const r of records) {
    result.touched.add(r.id);
    result.touched.add(r.owner);
    const p = parseFullId(r.id)!;
    let newRole = false;
    if (r.hasRole && !await g.getRole(r.id)) {
      await g.insertRole(r.id, p.account, p.kind, p.identifier, policyId);
      newRole = true;
      log.added.push(`added role ${r.id}`);
    }
    const existing = r.hasResource ? await g.getResource(r.id) : undefined;
    if (r.hasResource && !existing) {
      await g.insertResource(r.id, p.account, p.kind, p.identifier, r.owner, policyId, version);
      log.added.push(`added resource ${r.id}`);
      if (r.hasRole) {
        await g.insertMembership(r.id, r.owner, true, true, policyId, version);
        log.added.push(`added ownership of ${r.owner} in ${r.id}`);
      }
    } else if (existing && mode !== 'add' && existing.policy_id === policyId && existing.owner_id !== r.owner) {
      await g.setOwner(r.id, r.owner, version);
      log.changed.push(`changed owner of ${r.id} from ${existing.owner_id} to ${r.owner}`);
      if (await g.getRole(r.id)) {
        await g.deleteMembership(r.id, existing.owner_id, true);
        await g.insertMembership(r.id, r.owner, true, true, policyId, version);
      }
      result.touched.add(existing.owner_id);
    }
    if (r.hasResource) await applyAnnotations(g, r, policyId, mode, log);
    if (CREDENTIAL_KINDS.has(p.kind) && r.hasRole) await applyCredentials(d, g, r, newRole, policyId, mode, result);
    for (const layer of r.layers ?? []) {
      if (!await g.getMembership(layer, r.id, false)) {
        await g.insertMembership(layer, r.id, false, false, policyId, version);
        log.added.push(`added membership of ${r.id} in ${layer}`);
        result.touched.add(layer);
      }
    }
    for (const key of publicKeyResources(r)) {
      if (!await g.getResource(key.id)) {
        const kp = parseFullId(key.id)!;
        await g.insertResource(key.id, kp.account, 'public_key', kp.identifier, r.id, policyId, version);
        log.added.push(`added resource ${key.id}`);
      }
      await d.writeSecret(key.id, Buffer.from(key.value, 'utf8'));
    }
  }

  await checkReferences(g, statements, records);

  for (const s of statements) {
    switch (s.type) {
      case 'grant': {
        result.touched.add(s.role);
        result.touched.add(s.member);
        const existing = await g.getMembership(s.role, s.member, false);
        if (!existing) {
          await g.insertMembership(s.role, s.member, s.adminOption, false, policyId, version);
          log.added.push(`added membership of ${s.member} in ${s.role}`);
        } else if (mode !== 'add' && existing.policy_id === policyId && (existing.admin_option === 1) !== s.adminOption) {
          await g.setAdminOption(s.role, s.member, false, s.adminOption, version);
          log.changed.push(`changed admin option of ${s.member} in ${s.role}`);
        }
        break;
      }
      case 'permit':
        result.touched.add(s.role);
        result.touched.add(s.resource);
        if (!await g.getPermission(s.resource, s.privilege, s.role)) {
          await g.insertPermission(s.resource, s.privilege, s.role, policyId, version);
          log.added.push(`added permission of ${s.role} to ${s.privilege} on ${s.resource}`);
        }
        break;
      case 'revoke': {
        const existing = await g.getMembership(s.role, s.member, false);
        if (existing && existing.policy_id === policyId) {
          await g.deleteMembership(s.role, s.member, false);
          log.removed.push(`removed membership of ${s.member} in ${s.role}`);
          result.touched.add(s.role);
          result.touched.add(s.member);
        }
        break;
      }
      case 'deny': {
        const existing = await g.getPermission(s.resource, s.privilege, s.role);
        if (existing && existing.policy_id === policyId) {
          await g.deletePermission(s.resource, s.privilege, s.role);
          log.removed.push(`removed permission of ${s.role} to ${s.privilege} on ${s.resource}`);
          result.touched.add(s.role);
          result.touched.add(s.resource);
        }
        break;
      }
      case 'delete':
        await deleteRecord(g, s.id, log, result);
        break;
      case 'record':
        break;
    }
  }
  await g.flush();
  return result;
}

async function applyAnnotations(g: PolicyGraph, r: RecordStatement, policyId: string, mode: LoadMode, log: ChangeLog) {
  for (const [name, value] of Object.entries(r.annotations)) {
    const existing = await g.getAnnotation(r.id, name);
    if (!existing) {
      await g.insertAnnotation(r.id, name, value, policyId);
      log.added.push(`added annotation ${name} on ${r.id}`);
    } else if (mode !== 'add' && existing.policy_id === policyId && existing.value !== value) {
      await g.updateAnnotation(r.id, name, value);
      log.changed.push(`changed annotation ${name} on ${r.id}`);
    }
  }
}

async function applyCredentials(d: ApplyDeps, g: PolicyGraph, r: RecordStatement, newRole: boolean, policyId: string, mode: LoadMode, result: ApplyResult) {
  // A role that did not exist has no credentials (they are deleted with their role).
  const cred = newRole ? undefined : await d.credentials.get(r.id);
  const wanted = r.restrictedTo ?? [];
  if (!cred) {
    result.createdRoles[r.id] = { id: r.id, api_key: await d.createCredentials(r.id, wanted) };
    if (!newRole) result.changes.added.push(`added credentials of ${r.id}`);
    return;
  }
  const role = await g.getRole(r.id);
  if (role && role.policy_id !== policyId && !newRole) return;
  const current = JSON.parse(cred.restricted_to) as string[];
  const next = mode === 'add' ? [...new Set([...current, ...wanted])] : wanted;
  if (JSON.stringify(next) !== JSON.stringify(current)) {
    await d.credentials.setRestrictedTo(r.id, next);
    result.changes.changed.push(`changed restricted_to of ${r.id}`);
  }
}

/**
 * A host enrolled through a host factory belongs to no policy and is owned by
 * the factory, whose token holders know its API key and may re-key it. A
 * policy that declared the same id would silently adopt it — grants and
 * permits landing on a role an enrolment-token holder controls — so the load
 * is refused until the operator deletes the enrolled host (Conjur adopts it).
 */
async function refuseEnrolledHost(g: PolicyGraph, r: RecordStatement): Promise<void> {
  if (!r.hasRole) return;
  const role = await g.getRole(r.id);
  if (!role || role.policy_id !== null) return;
  const owner = (await g.getResource(r.id))?.owner_id;
  if (owner === undefined || parseFullId(owner)?.kind !== 'host_factory') return;
  const p = parseFullId(r.id)!;
  throw new PolicyError(
    'policy_invalid',
    `${kindTitle(p.kind)} '${p.identifier}' was enrolled through host factory '${parseFullId(owner)!.identifier}' and cannot be ` +
      'declared by a policy: delete it first (its API key is known to whoever held an enrolment token)',
    r.position,
  );
}

/** Conjur: "User 'bob' not found in account 'acme'" for any reference to a missing record. */
function missing(id: string, position?: { line: number; column: number }): PolicyError {
  const p = parseFullId(id);
  const message = p ? `${kindTitle(p.kind)} '${p.identifier}' not found in account '${p.account}'` : `Record '${id}' not found`;
  return new PolicyError('policy_invalid', message, position);
}

async function checkReferences(g: PolicyGraph, statements: Statement[], records: RecordStatement[]) {
  const roleExists = async (id: string) => await g.getRole(id) !== undefined;
  const resourceExists = async (id: string) => await g.getResource(id) !== undefined;
  for (const r of records) {
    await refuseEnrolledHost(g, r);
    if (!await roleExists(r.owner)) throw missing(r.owner, r.position);
    for (const layer of r.layers ?? []) if (!await roleExists(layer)) throw missing(layer, r.position);
  }
  for (const s of statements) {
    if (s.type === 'grant' || s.type === 'revoke') {
      if (!await roleExists(s.role)) throw missing(s.role, s.position);
      if (!await roleExists(s.member)) throw missing(s.member, s.position);
    } else if (s.type === 'permit' || s.type === 'deny') {
      if (!await roleExists(s.role)) throw missing(s.role, s.position);
      if (!await resourceExists(s.resource)) throw missing(s.resource, s.position);
    }
  }
}

/** `!delete`: the role and resource, and recursively everything the record owns. */
export async function deleteRecord(g: PolicyGraph, id: string, log: ChangeLog, { touched, removed }: Pick<ApplyResult, 'touched' | 'removed'>): Promise<void> {
  const pending = [id];
  const seen = new Set<string>();
  while (pending.length > 0) {
    const current = pending.pop()!;
    if (seen.has(current)) continue;
    seen.add(current);
    for (const owned of await g.resourcesOwnedBy(current)) if (owned.resource_id !== current) pending.push(owned.resource_id);
  }
  for (const current of seen) {
    const resource = await g.getResource(current);
    const role = await g.getRole(current);
    if (resource) {
      touched.add(resource.owner_id);
      await g.deleteResource(current);
      log.removed.push(`removed resource ${current}`);
      removed.add(current);
    }
    if (role) {
      for (const m of await g.membershipsOf(current)) touched.add(m.role_id);
      for (const m of await g.membersOf(current)) touched.add(m.member_id);
      await g.deleteRole(current);
      log.removed.push(`removed role ${current}`);
      removed.add(current);
    }
    touched.add(current);
  }
}

/** PUT: rows of this policy that the new text does not declare are removed first. */
async function removeAbsentRows(g: PolicyGraph, policyId: string, statements: Statement[], result: ApplyResult) {
  const declared = new Set<string>();
  const grants = new Set<string>();
  const permits = new Set<string>();
  const annotations = new Set<string>();
  for (const s of statements) {
    if (s.type === 'record') {
      declared.add(s.id);
      for (const name of Object.keys(s.annotations)) annotations.add(`${s.id}\u0000${name}`);
      for (const layer of s.layers ?? []) grants.add(`${layer}\u0000${s.id}`);
      for (const k of publicKeyResources(s)) declared.add(k.id);
    } else if (s.type === 'grant') grants.add(`${s.role}\u0000${s.member}`);
    else if (s.type === 'permit') permits.add(`${s.resource}\u0000${s.privilege}\u0000${s.role}`);
  }
  const rows = await g.rowsOfPolicy(policyId);
  const log = result.changes;
  for (const r of rows.resources) {
    if (!declared.has(r.resource_id) && await g.getResource(r.resource_id)) await deleteRecord(g, r.resource_id, log, result);
  }
  for (const r of rows.roles) {
    if (!declared.has(r.role_id) && await g.getRole(r.role_id)) await deleteRecord(g, r.role_id, log, result);
  }
  for (const m of rows.memberships) {
    if (m.ownership === 1 || grants.has(`${m.role_id}\u0000${m.member_id}`)) continue;
    if (await g.deleteMembership(m.role_id, m.member_id, false)) {
      log.removed.push(`removed membership of ${m.member_id} in ${m.role_id}`);
      result.touched.add(m.role_id);
      result.touched.add(m.member_id);
    }
  }
  for (const p of rows.permissions) {
    if (permits.has(`${p.resource_id}\u0000${p.privilege}\u0000${p.role_id}`)) continue;
    if (await g.deletePermission(p.resource_id, p.privilege, p.role_id)) {
      log.removed.push(`removed permission of ${p.role_id} to ${p.privilege} on ${p.resource_id}`);
      result.touched.add(p.role_id);
      result.touched.add(p.resource_id);
    }
  }
  for (const a of rows.annotations) {
    if (annotations.has(`${a.resource_id}\u0000${a.name}`) || !await g.getResource(a.resource_id)) continue;
    await g.deleteAnnotation(a.resource_id, a.name);
    log.removed.push(`removed annotation ${a.name} on ${a.resource_id}`);
    result.touched.add(a.resource_id);
  }
}

