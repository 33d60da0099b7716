/**
 * Policy loading (reference §1.4, §2.4): authorization per mode, parse,
 * resolve, apply in one transaction with a policy version and an audit event,
 * or rehearse it (dry run) and roll everything back.
 *
 * The YAML is parsed first, in the parser worker (`parse-pool.ts`), so the
 * event loop keeps serving while a large policy is parsed; the privilege
 * checks run before the parse (an unauthorized caller costs no parsing) and
 * again after it, inside the apply's transaction, since the graph may have
 * changed meanwhile. The transaction serializes loads: the store holds its
 * write lock until the load commits or rolls back, so no other write can
 * interleave with it and no other request reads its uncommitted rows.
 */
import { createHash } from 'node:crypto';
import type { AuditLog } from '../audit/log.js';
import type { Actor } from '../context.js';
import { CofferError, auditReasonOf, PolicyError, forbidden } from '../errors.js';
import { fullId } from '../ids.js';
import type { Authorizer } from '../rbac/authorizer.js';
import { dryRunItem } from '../rbac/views.js';
import type { Store } from '../store/index.js';
import { applyStatements, type ApplyResult, type LoadMode } from './apply.js';
import type { ParsedDocument } from './parse.js';
import { resolvePolicy } from './resolve.js';
import type { Statement } from './types.js';

export type { LoadMode };

export interface LoaderDeps {
  store: Store;
  authorizer: Authorizer;
  audit: AuditLog;
  createCredentials: (roleId: string, restrictedTo: string[]) => Promise<string>;
  writeSecret: (resourceId: string, value: Buffer) => Promise<void>;
  /** Policy versions kept per policy (Conjur: 20). */
  versionLimit: number;
  /** Called after a committed load (e.g. to drop caches that depend on the graph). */
  onGraphChanged?: () => void;
  /** Called after a committed load that deleted roles or resources, with their ids (ends their dynamic-secret leases). */
  onRemoved?: (account: string, ids: string[]) => Promise<void>;
  /** Parses policy YAML within the configured limits (the parser worker pool in the server). */
  parse: (text: string) => Promise<ParsedDocument>;
}

export interface LoadResponse {
  created_roles: Record<string, { id: string; api_key: string }>;
  version: number;
  warnings?: string[];
}

export interface DryRunResponse {
  status: 'Valid YAML';
  created: { items: unknown[] };
  updated: { before: { items: unknown[] }; after: { items: unknown[] } };
  deleted: { items: unknown[] };
}

class DryRunRollback extends Error {
  constructor(readonly report: DryRunResponse) {
    super('dry run');
  }
}

const PRIVILEGE: Record<LoadMode, string> = { add: 'create', update: 'update', replace: 'update' };
const OPERATION: Record<LoadMode, string> = { add: 'create', update: 'update', replace: 'replace' };

export class PolicyLoader {
  constructor(private readonly d: LoaderDeps) {}

  async load(actor: Actor, policyIdentifier: string, mode: LoadMode, text: string, dryRun: boolean): Promise<LoadResponse | DryRunResponse> {
    const policyId = fullId(actor.account, 'policy', policyIdentifier);
    const event = {
      account: actor.account,
      action: 'policy',
      roleId: actor.roleId,
      resourceId: policyId,
      request: actor.request,
    };
    try {
      await this.authorize(actor, policyIdentifier, policyId, mode);
      requireText(text);
      const parsed = await this.d.parse(text);
      const { response, rows, removedIds } = await this.run(actor, policyIdentifier, policyId, mode, text, parsed, dryRun);
      this.d.audit.publish(rows);
      if (removedIds.length > 0) await this.d.onRemoved?.(actor.account, removedIds).catch(() => undefined);
      return response;
    } catch (err) {
      if (err instanceof DryRunRollback) return err.report;
      const reason = auditReasonOf(err);
      await this.d.audit.record({
        ...event,
        operation: OPERATION[mode],
        result: 'failure',
        reason,
        message: `${actor.roleId} failed to load policy ${policyId}: Failed to load policy: ${reason}`,
      });
      throw err;
    }
  }

  /** The privileges a load needs (reference §1.4); returns the policy row. */
  private async authorize(actor: Actor, identifier: string, policyId: string, mode: LoadMode) {
    const policy = await this.d.authorizer.requireVisible(actor.roleId, policyId);
    if (!(await this.d.authorizer.canOn(actor.roleId, PRIVILEGE[mode], policy))) throw forbidden();
    if (mode === 'replace') await this.requireUpdateBeneath(actor, identifier);
    return policy;
  }

  private async run(actor: Actor, identifier: string, policyId: string, mode: LoadMode, text: string, parsed: ParsedDocument, dryRun: boolean) {
    const store = this.d.store;
    try {
      return await store.tx(async () => {
        // Again, inside the transaction: privileges may have changed while the policy was being parsed.
        const policy = await this.authorize(actor, identifier, policyId, mode);
        const resolved = resolvePolicy(parsed, {
          account: actor.account,
          policyId: identifier,
          policyOwner: policy.owner_id,
        });
        if (mode === 'add' && resolved.statements.some(isDeletion)) {
          throw new PolicyError('validation_failed', 'policy_text may not contain deletion statements', undefined, {
            details: [{ code: 'validation_failed', target: 'policy_text', message: 'may not contain deletion statements' }],
          });
        }
        const before = dryRun ? await this.snapshot(actor, await this.dryRunCandidates(resolved.statements, policyId, mode)) : undefined;
        // The version this load becomes (this transaction holds the write lock): the rows it writes record it.
        const version = await store.policyVersions.nextVersion(policyId);
        const applied = await applyStatements(
          { graph: store.graph, credentials: store.credentials, createCredentials: this.d.createCredentials, writeSecret: this.d.writeSecret },
          policyId,
          resolved.statements,
          mode,
          version,
        );
        this.d.authorizer.invalidate();
        if (dryRun) throw new DryRunRollback(await this.report(actor, before!, applied));
        const now = new Date().toISOString();
        await store.policyVersions.insert({
          resource_id: policyId,
          version,
          role_id: actor.roleId,
          client_ip: actor.request.clientIp ?? null,
          policy_text: text,
          policy_sha256: createHash('sha256').update(text).digest('hex'),
          created_at: now,
          finished_at: now,
        });
        await store.policyVersions.prune(policyId, this.d.versionLimit);
        const { added, changed, removed } = applied.changes;
        const rows = await this.d.audit.recordInTransaction([
          {
            account: actor.account,
            action: 'policy',
            operation: OPERATION[mode],
            result: 'success',
            roleId: actor.roleId,
            resourceId: policyId,
            version,
            request: actor.request,
            message: `${actor.roleId} loaded policy ${policyId} version ${version}: ${added.length} added, ${changed.length} changed, ${removed.length} removed`,
            details: applied.changes,
          },
        ]);
        const response: LoadResponse = { created_roles: applied.createdRoles, version };
        if (resolved.warnings.length) response.warnings = resolved.warnings;
        const removedIds = [...applied.removed];
        return { response, rows, removedIds };
      });
    } finally {
      // The rollback of a dry run (or a failure) must also drop what the cache learnt inside it.
      this.d.authorizer.invalidate();
      this.d.onGraphChanged?.();
    }
  }

  /** PUT needs `update` on every resource beneath the policy path (reference §1.4). */
  private async requireUpdateBeneath(actor: Actor, identifier: string) {
    const prefix = identifier === 'root' ? '' : identifier;
    for (const r of await this.d.store.graph.resourcesUnderPath(actor.account, prefix)) {
      if (!(await this.d.authorizer.can(actor.roleId, 'update', r.resource_id))) {
        throw forbidden(`Forbidden: update privilege on ${r.resource_id} is required to replace policy ${identifier}`);
      }
    }
  }

  /** Ids to show before and after: what the statements name, what deletions cascade to, and (PUT) the policy's own rows. */
  private async dryRunCandidates(statements: Statement[], policyId: string, mode: LoadMode): Promise<Set<string>> {
    const g = this.d.store.graph;
    const ids = candidateIds(statements);
    const pending = statements.filter((s) => s.type === 'delete').map((s) => s.id);
    if (mode === 'replace') {
      const rows = await g.rowsOfPolicy(policyId);
      pending.push(...rows.resources.map((r) => r.resource_id), ...rows.roles.map((r) => r.role_id));
      for (const m of rows.memberships) ids.add(m.role_id).add(m.member_id);
      for (const p of rows.permissions) ids.add(p.role_id).add(p.resource_id);
      // An annotation this policy put on another policy's record (a shadowed
      // PATCH) goes with the replace: that record is updated, not created.
      for (const a of rows.annotations) ids.add(a.resource_id);
    }
    const expanded = new Set<string>();
    while (pending.length > 0) {
      const id = pending.pop()!;
      if (expanded.has(id)) continue;
      expanded.add(id);
      ids.add(id);
      const owner = (await g.getResource(id))?.owner_id;
      if (owner) ids.add(owner);
      for (const m of await g.membershipsOf(id)) ids.add(m.role_id);
      for (const m of await g.membersOf(id)) ids.add(m.member_id);
      for (const owned of await g.resourcesOwnedBy(id)) pending.push(owned.resource_id);
    }
    return ids;
  }

  private async snapshot(actor: Actor, ids: Set<string>): Promise<Map<string, Record<string, unknown>>> {
    const out = new Map<string, Record<string, unknown>>();
    for (const id of ids) {
      const item = await this.item(actor, id);
      if (item) out.set(id, item);
    }
    return out;
  }

  private item(actor: Actor, id: string) {
    const restricted = async (roleId: string) => JSON.parse((await this.d.store.credentials.get(roleId))?.restricted_to ?? '[]') as string[];
    return dryRunItem(this.d.store.graph, this.d.authorizer, actor.roleId, id, restricted);
  }

  private async report(actor: Actor, before: Map<string, Record<string, unknown>>, applied: ApplyResult): Promise<DryRunResponse> {
    const ids = [...new Set([...before.keys(), ...applied.touched])].sort();
    const created: unknown[] = [];
    const deleted: unknown[] = [];
    const updatedBefore: unknown[] = [];
    const updatedAfter: unknown[] = [];
    for (const id of ids) {
      const b = before.get(id);
      const a = await this.item(actor, id);
      if (!b && a) created.push(a);
      else if (b && !a) deleted.push(b);
      else if (b && a && JSON.stringify(a) !== JSON.stringify(b)) {
        updatedBefore.push(b);
        updatedAfter.push(a);
      }
    }
    return {
      status: 'Valid YAML',
      created: { items: created },
      updated: { before: { items: updatedBefore }, after: { items: updatedAfter } },
      deleted: { items: deleted },
    };
  }
}

function requireText(text: string): void {
  if (text.trim() === '') {
    throw new PolicyError('validation_failed', 'policy_text is not present', undefined, {
      details: [{ code: 'validation_failed', target: 'policy_text', message: 'is not present' }],
    });
  }
}

function isDeletion(s: Statement): boolean {
  return s.type === 'delete' || s.type === 'revoke' || s.type === 'deny';
}

/** Every id a statement can change, so the dry run can show it before and after. */
function candidateIds(statements: Statement[]): Set<string> {
  const ids = new Set<string>();
  for (const s of statements) {
    switch (s.type) {
      case 'record':
        ids.add(s.id);
        ids.add(s.owner);
        for (const l of s.layers ?? []) ids.add(l);
        break;
      case 'grant':
      case 'revoke':
        ids.add(s.role);
        ids.add(s.member);
        break;
      case 'permit':
      case 'deny':
        ids.add(s.role);
        ids.add(s.resource);
        break;
      case 'delete':
        ids.add(s.id);
        break;
    }
  }
  return ids;
}
