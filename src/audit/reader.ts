/**
 * Reading the audit log for auditors. A role may read the events about a
 * resource (or a role) when it holds `audit` on that resource or on any
 * policy containing it — policies nest by path, so `audit` on `ci` covers
 * `ci/…` and the users of `ci` and of the policies beneath it (`name@ci`,
 * `name@ci-sub`), and `audit` on root (held by admin, its owner) covers the
 * whole account.
 */
import type { AuditFilter, AuditRow, AuditScope } from '../store/audit.js';
import type { AuditStore, GraphStore } from '../store/index.js';
import type { Authorizer } from '../rbac/authorizer.js';
import { fullId } from '../ids.js';
import { ChainVerifier } from './chain.js';
import { forbidden } from '../errors.js';
import { auditHistogram, type Histogram, type HistogramQuery } from './histogram.js';

export interface AuditReaderDeps {
  store: AuditStore;
  graph: GraphStore;
  authorizer: Authorizer;
}

export type AuditQuery = Omit<AuditFilter, 'account' | 'scopes'>;

/** Shortest `q` the full-text index serves (the API refuses shorter ones). */
export { MIN_Q_CHARS } from '../store/audit.js';

/**
 * The online verification as one account sees it. The chain is server-wide
 * (one sequence for all accounts), so the walk checks every event, but the
 * counts name only this account's events: another account's activity volume
 * is not this account's business.
 */
export interface AccountChainReport {
  ok: boolean;
  account: string;
  /** This account's events among those read. */
  events: number;
  /** Sequence number of this account's last event read, if any. */
  lastSeq: number | null;
  /** First bad sequence number of the server-wide chain. */
  firstBadSeq?: number;
  reason?: string;
  /** Broken sequence numbers of the server-wide chain (the first MAX_LISTED_BAD_SEQS). */
  badSeqs: number[];
  /** How many sequence numbers are broken in all. */
  badCount: number;
}

/** Events verified between two turns of the event loop, so a long walk does not stall fetches. */
const VERIFY_PAGE = 1000;

export class AuditReader {
  constructor(private readonly d: AuditReaderDeps) {}

  /** The scopes of events `roleId` may read in `account`. */
  async scopesFor(account: string, roleId: string): Promise<AuditScope[]> {
    const { authorizer, graph } = this.d;
    if (await this.canAuditAccount(account, roleId)) return [{ type: 'all', account }];
    const scopes: AuditScope[] = [];
    const policies = await graph.policiesOfAccount(account);
    for (const policy of policies) {
      if (!(await authorizer.canOn(roleId, 'audit', policy))) continue;
      const path = policy.identifier;
      scopes.push({ type: 'subtree', account, path });
      for (const p of policies) {
        if (p.identifier === path || p.identifier.startsWith(`${path}/`)) {
          scopes.push({ type: 'users', account, suffix: p.identifier.replace(/\//g, '-') });
        }
      }
    }
    const roles = [...(await authorizer.allRoles(roleId))];
    for (const id of await graph.resourcesWithPrivilege(roles, 'audit', account)) scopes.push({ type: 'resource', resourceId: id });
    return scopes;
  }

  /**
   * A page of the events `roleId` may read. The store walks its indexes in
   * bounded slices and lets other requests run between them, so a query
   * that has to walk many events does not hold them up.
   */
  async query(account: string, roleId: string, q: AuditQuery): Promise<AuditRow[]> {
    return this.d.store.query({ ...q, account, scopes: await this.scopesFor(account, roleId) });
  }

  /**
   * Counts per minute, hour or day the events `query` would return to
   * `roleId` for the same filters (the same scopes).
   */
  async histogram(account: string, roleId: string, q: HistogramQuery): Promise<Histogram> {
    return auditHistogram(this.d.store, account, await this.scopesFor(account, roleId), q);
  }

  /**
   * Verifies the whole chain up to its current head, for a role that may
   * audit the whole account, and reports it in this account's terms.
   */
  async verify(account: string, roleId: string): Promise<AccountChainReport> {
    if (!(await this.canAuditAccount(account, roleId))) {
      throw forbidden('audit privilege on the root policy is required to verify the audit chain');
    }
    const head = (await this.d.store.head())?.seq ?? 0;
    const verifier = new ChainVerifier();
    let events = 0;
    let lastSeq: number | null = null;
    let after = 0;
    walk: while (after < head) {
      const rows = await this.d.store.page(after, VERIFY_PAGE);
      if (rows.length === 0) break;
      for (const row of rows) {
        if (row.seq > head) break walk;
        verifier.push(row);
        if (row.account === account) {
          events++;
          lastSeq = row.seq;
        }
      }
      after = rows[rows.length - 1]!.seq;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const { ok, firstBadSeq, reason, badSeqs, badCount } = verifier.result();
    return { ok, account, events, lastSeq, ...(ok ? {} : { firstBadSeq, reason }), badSeqs, badCount };
  }

  private canAuditAccount(account: string, roleId: string): Promise<boolean> {
    return this.d.authorizer.can(roleId, 'audit', fullId(account, 'policy', 'root'));
  }
}
