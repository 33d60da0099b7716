/**
 * Reading the audit log for auditors. A role may read the events about a
 * resource (or a role) when it holds `audit` on that resource or on any
 * policy containing it — policies nest by path, so `audit` on `ci` covers
 * `ci/…` and users `name@ci`, and `audit` on root (held by admin, its owner)
 * covers the whole account.
 */
import type { AuditFilter, AuditRow, AuditScope, AuditStore } from '../store/audit.js';
import type { GraphStore } from '../store/graph.js';
import type { Authorizer } from '../rbac/authorizer.js';
import { fullId } from '../ids.js';
import { verifyChain, type VerifyResult } from './chain.js';
import { forbidden } from '../errors.js';

export interface AuditReaderDeps {
  store: AuditStore;
  graph: GraphStore;
  authorizer: Authorizer;
}

export type AuditQuery = Omit<AuditFilter, 'account' | 'scopes'>;

export class AuditReader {
  constructor(private readonly d: AuditReaderDeps) {}

  /** The scopes of events `roleId` may read in `account`. */
  scopesFor(account: string, roleId: string): AuditScope[] {
    const { authorizer, graph } = this.d;
    if (authorizer.can(roleId, 'audit', fullId(account, 'policy', 'root'))) return [{ type: 'all', account }];
    const scopes: AuditScope[] = [];
    for (const policy of graph.policiesOfAccount(account)) {
      if (authorizer.canOn(roleId, 'audit', policy)) {
        scopes.push({ type: 'subtree', account, path: policy.identifier, userSuffix: policy.identifier.replace(/\//g, '-') });
      }
    }
    const roles = [...authorizer.allRoles(roleId)];
    for (const id of graph.resourcesWithPrivilege(roles, 'audit', account)) scopes.push({ type: 'resource', resourceId: id });
    return scopes;
  }

  query(account: string, roleId: string, q: AuditQuery): AuditRow[] {
    return this.d.store.query({ ...q, account, scopes: this.scopesFor(account, roleId) });
  }

  /** Whole-chain verification; only for roles that may audit the whole account. */
  verify(account: string, roleId: string): VerifyResult {
    if (!this.d.authorizer.can(roleId, 'audit', fullId(account, 'policy', 'root'))) {
      throw forbidden('audit privilege on the root policy is required to verify the audit chain');
    }
    return verifyChain(this.d.store.iterate());
  }
}
