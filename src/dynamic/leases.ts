/**
 * Dynamic variables and their leases (issue 12, items 2–5).
 *
 * A dynamic variable is a variable under `data/dynamic/` annotated with
 * `dynamic/issuer`. Fetching one (any secrets route, after the usual
 * `execute` check made by the secrets service) mints a credential:
 *
 *  1. the lease row is written first — so no database login can exist that
 *     no lease row will end (a crash after step 2 leaves a lease the sweeper
 *     ends at expiry);
 *  2. the login is created on the target database, in one transaction;
 *     if that fails, the lease row is taken back (with a failure event) and
 *     the caller gets 502 naming the issuer — unless the connection broke
 *     after the statements were sent: then the lease stays, pending, and
 *     the sweeper drops the login if it exists;
 *  3. the audit event of the issue is committed; only then do the
 *     credentials leave (if the audit log cannot be written, the lease is
 *     ended at once and the caller gets 503).
 *
 * A lease ends when it expires (the sweeper), when the access token that
 * fetched it is revoked, when its issuer is deleted, or on request (`update`
 * on the variable). Ending drops the login after terminating its sessions;
 * if the database cannot be reached the lease is kept as pending (state
 * `revoking`, the error and the attempts visible) and retried every ≤ 10 s.
 * The row goes, with its audit event, once the login is gone.
 */
import { randomUUID } from 'node:crypto';
import sodium from 'libsodium-wrappers';
import type { AuditLog } from '../audit/log.js';
import type { Actor, Clock } from '../context.js';
import { CofferError, forbidden, unauthorized, unprocessable } from '../errors.js';
import { parseFullId } from '../ids.js';
import type { Authorizer } from '../rbac/authorizer.js';
import type { IssuerRow, LeaseRow } from '../store/dynamic.js';
import type { Store } from '../store/index.js';
import { allowedGrantRoles, MAX_GRANT_ROLES, PG_NAME_MAX, type IssuerService } from './issuers.js';
import { PostgresTargets, ROLE_PREFIX, TARGET_CALL_DEADLINE_MS, TargetError } from './postgresql.js';

export const DYNAMIC_PREFIX = 'data/dynamic/';
export const METHODS = ['login-role'] as const;
/** Retry interval of a failed revocation: doubling from 1 s, at most 10 s. */
export const RETRY_MAX_MS = 10_000;
export const DEFAULT_SWEEP_INTERVAL_MS = 5_000;
/** Leases ended at once by the sweeper. */
const SWEEP_CONCURRENCY = 8;
const SWEEP_BATCH = 500;
/**
 * Most leases one issuer may have at once: each is a login on the target
 * database, and a caller looping on fetches must not fill it with logins.
 */
export const MAX_LEASES_PER_ISSUER = 10_000;

/** What a dynamic variable's annotations say. */
export interface DynamicSpec {
  variableId: string;
  account: string;
  issuerId: string;
  method: string;
  ttlSeconds?: number;
  grantRoles: string[];
}

export interface IssuedCredential {
  value: Buffer;
  leaseId: string;
}

/** The JSON of a lease in GET /leases/{account}. */
export interface LeaseJson {
  id: string;
  variable: string;
  issuer: string;
  role: string;
  username: string;
  created_at: string;
  expires_at: string;
  /** `creating`: its login is being created; `pending`: being ended, retrying. */
  state: 'creating' | 'active' | 'pending';
  revoke_reason: string | null;
  attempts: number;
  last_error: string | null;
}

export interface DynamicDeps {
  store: Store;
  audit: AuditLog;
  authorizer: Authorizer;
  clock: Clock;
  issuers: IssuerService;
  targets?: PostgresTargets;
  sweepIntervalMs?: number;
  /** Most leases one issuer may have at once (default MAX_LEASES_PER_ISSUER). */
  maxLeasesPerIssuer?: number;
  /** Whether the caller's access token was revoked (or its role's credentials changed) since it was checked. */
  isTokenRevoked?: (actor: Actor) => Promise<boolean>;
}

/** An error whose failure event the dynamic service has already recorded. */
export class AuditedError extends CofferError {
  readonly audited = true;
}

export function isAudited(err: unknown): boolean {
  return (err as { audited?: unknown })?.audited === true;
}

const poolKey = (row: IssuerRow) => `${row.account}:${row.id}`;
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

export class DynamicSecrets {
  readonly targets: PostgresTargets;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<unknown> | undefined;
  /** Leases this process is ending right now (the sweeper skips them). */
  private ending = new Map<string, Promise<'revoked' | 'pending'>>();

  constructor(private readonly d: DynamicDeps) {
    this.targets = d.targets ?? new PostgresTargets();
  }

  /** The dynamic spec of a variable, or undefined for an ordinary one. */
  async specOf(resourceId: string): Promise<DynamicSpec | undefined> {
    const id = parseFullId(resourceId);
    if (!id || id.kind !== 'variable' || !id.identifier.startsWith(DYNAMIC_PREFIX)) return undefined;
    const issuerId = await this.d.authorizer.annotation(resourceId, 'dynamic/issuer');
    if (!issuerId) return undefined;
    const method = (await this.d.authorizer.annotation(resourceId, 'dynamic/method')) || 'login-role';
    const ttlText = await this.d.authorizer.annotation(resourceId, 'dynamic/ttl');
    let ttlSeconds: number | undefined;
    if (ttlText) {
      if (!/^\d{1,9}$/.test(ttlText.trim()) || Number(ttlText) <= 0) {
        throw unprocessable(`Dynamic variable ${resourceId}: annotation dynamic/ttl must be a positive number of seconds`);
      }
      ttlSeconds = Number(ttlText);
    }
    const grantText = (await this.d.authorizer.annotation(resourceId, 'dynamic/grant-roles')) ?? '';
    const grantRoles = grantText.split(',').map((g) => g.trim()).filter((g) => g !== '');
    return { variableId: resourceId, account: id.account, issuerId, method, ttlSeconds, grantRoles };
  }

  /**
   * Mints one credential for `actor` (authorization already checked by the
   * caller). Resolves only once the lease row and the audit event are committed.
   */
  async issue(actor: Actor, spec: DynamicSpec): Promise<IssuedCredential> {
    const event = {
      account: spec.account,
      action: 'fetch',
      operation: 'fetch',
      roleId: actor.roleId,
      resourceId: spec.variableId,
      version: null,
      request: actor.request,
    };
    const fail = async (err: CofferError): Promise<never> => {
      const reason = err.auditReason ?? err.message;
      await this.d.audit.record({ ...event, result: 'failure', reason, message: `${actor.roleId} tried to fetch ${spec.variableId}: ${reason}` });
      throw new AuditedError(err.code, err.message, { cause: err.cause, retryAfter: err.retryAfter });
    };
    if (!(METHODS as readonly string[]).includes(spec.method)) {
      return fail(unprocessable(`Dynamic variable ${spec.variableId}: method '${spec.method}' is not supported (use ${METHODS.join(', ')})`));
    }
    if (spec.grantRoles.length > MAX_GRANT_ROLES) {
      return fail(unprocessable(`Dynamic variable ${spec.variableId}: dynamic/grant-roles names ${spec.grantRoles.length} roles; at most ${MAX_GRANT_ROLES} are allowed`));
    }
    const bad = spec.grantRoles.find((g) => g.length > PG_NAME_MAX || g.includes('\0'));
    if (bad !== undefined) return fail(unprocessable(`Dynamic variable ${spec.variableId}: a role in dynamic/grant-roles is longer than ${PG_NAME_MAX} characters`));
    const issuer = await this.d.store.dynamic.getIssuer(spec.account, spec.issuerId);
    if (!issuer || issuer.deleted_at) {
      return fail(unprocessable(`Dynamic variable ${spec.variableId} names issuer '${spec.issuerId}', which does not exist`));
    }
    // Whoever writes policy chooses the grant roles; the issuer's administrator chooses which may be granted.
    const allowed = allowedGrantRoles(issuer);
    const notAllowed = spec.grantRoles.filter((g) => !allowed.includes(g));
    if (notAllowed.length > 0) {
      return fail(
        unprocessable(
          `Dynamic variable ${spec.variableId}: issuer '${issuer.id}' does not allow granting ${notAllowed.map((g) => JSON.stringify(g)).join(', ')} ` +
            `(its data.allowed_grant_roles: ${allowed.length > 0 ? allowed.join(', ') : 'none'})`,
        ),
      );
    }
    const maxLeases = this.d.maxLeasesPerIssuer ?? MAX_LEASES_PER_ISSUER;
    if ((await this.d.store.dynamic.countIssuerLeases(issuer.account, issuer.id)) >= maxLeases) {
      return fail(
        new CofferError('too_many_requests', `Issuer '${issuer.id}' already has ${maxLeases} leases, its limit (COFFER_MAX_LEASES_PER_ISSUER): fetch again once some have ended`, {
          retryAfter: 10,
        }),
      );
    }
    const ttl = Math.min(spec.ttlSeconds ?? issuer.max_ttl, issuer.max_ttl);
    const conn = await this.d.issuers.connectionOf(issuer);
    await sodium.ready;
    const dbRole = `${ROLE_PREFIX}${hex(sodium.randombytes_buf(12))}`;
    const password = Buffer.from(sodium.randombytes_buf(24)).toString('base64url');
    const nowMs = this.d.clock.nowMs();
    const expiresAt = nowMs + ttl * 1000;
    const lease: LeaseRow = {
      id: randomUUID(),
      account: spec.account,
      issuer_id: issuer.id,
      variable_id: spec.variableId,
      role_id: actor.roleId,
      token_jti: actor.claims?.jti ?? null,
      db_role: dbRole,
      expires_at: expiresAt,
      created_at: new Date(nowMs).toISOString(),
      state: 'creating',
      revoke_reason: null,
      attempts: 0,
      last_error: null,
      next_attempt_at: 0,
    };
    await this.d.store.dynamic.insertLease(lease);
    try {
      await this.targets.createLogin(poolKey(issuer), issuer.modified_at, conn, dbRole, password, new Date(expiresAt), spec.grantRoles);
    } catch (err) {
      const reason = err instanceof TargetError ? err.message : 'unexpected error';
      const failure = new CofferError('bad_gateway', `Issuer '${issuer.id}' could not create a database login for ${spec.variableId}: ${reason}`);
      if (err instanceof TargetError && err.maybeApplied) {
        // The login may exist: keep the lease, pending, so that the sweeper drops it.
        await this.markPending(lease, 'creation failed', reason);
      } else {
        const rows = await this.d.store.tx(async () => {
          await this.d.store.dynamic.deleteLease(lease.id);
          return this.d.audit.recordInTransaction([
            { ...event, result: 'failure', reason: failure.message, message: `${actor.roleId} tried to fetch ${spec.variableId}: ${failure.message}`, details: { issuer: issuer.id } },
          ]);
        });
        this.d.audit.publish(rows);
        throw new AuditedError('bad_gateway', failure.message);
      }
      return fail(failure);
    }
    // The lease may have been ended while its login was being created (its token revoked, its role deleted, it
    // expired): those who ended it only marked it, and the login must not leave — drop it here instead.
    if (!(await this.d.store.dynamic.activateLease(lease.id)) || (await this.d.isTokenRevoked?.(actor))) {
      const reason = 'it was ended while its login was being created';
      let current = await this.d.store.dynamic.getLease(lease.id);
      if (!current) {
        // Whoever ended it found no login yet and removed the row: put it back, so that a drop refused now is retried.
        current = { ...lease, state: 'revoking', revoke_reason: reason };
        await this.d.store.dynamic.insertLease(current);
      }
      // Not end(): a concurrent end of this lease may have looked for the login before it was committed.
      const state = await this.endNow(current, current.revoke_reason ?? reason);
      const outcome = state === 'revoked' ? `login ${dbRole} dropped` : `login ${dbRole} not dropped yet (retrying)`;
      // Answered as any revoked token is (text/plain 401); the audit event says what happened.
      return fail(unauthorized('Unauthorized: Invalid token', { auditReason: `the lease was ended while its login was being created (${current.revoke_reason ?? 'token revoked'}); ${outcome}` }));
    }
    const expiresIso = new Date(expiresAt).toISOString();
    try {
      await this.d.audit.record({
        ...event,
        result: 'success',
        message: `${actor.roleId} fetched ${spec.variableId}: issuer ${issuer.id} created login ${dbRole} until ${expiresIso} (lease ${lease.id})`,
        details: { lease_id: lease.id, issuer: issuer.id, username: dbRole, expires_at: expiresIso },
      });
    } catch (err) {
      void this.end(lease, 'the audit log could not record the issue');
      throw err;
    }
    const value = Buffer.from(
      JSON.stringify({ username: dbRole, password, host: conn.host, port: conn.port, database: conn.database, expires_at: expiresIso, lease_id: lease.id }),
      'utf8',
    );
    return { value, leaseId: lease.id };
  }

  /** Ends leases this request issued and could not hand out (a batch that failed later). */
  async takeBack(leaseIds: string[]): Promise<void> {
    for (const id of leaseIds) {
      const lease = await this.d.store.dynamic.getLease(id);
      if (lease) await this.end(lease, 'the request that fetched it failed');
    }
  }

  /** GET /leases/{account}: the leases of variables the caller can see. */
  async list(actor: Actor, account: string): Promise<LeaseJson[]> {
    if (actor.account !== account) return [];
    const out: LeaseJson[] = [];
    const visible = new Map<string, boolean>();
    for (const l of await this.d.store.dynamic.leasesOfAccount(account)) {
      let ok = visible.get(l.variable_id);
      if (ok === undefined) {
        const resource = await this.d.store.graph.getResource(l.variable_id);
        ok = resource ? await this.d.authorizer.isVisible(actor.roleId, resource) : false;
        visible.set(l.variable_id, ok);
      }
      if (ok || l.role_id === actor.roleId) out.push(leaseJson(l));
    }
    return out;
  }

  /** DELETE /leases/{account}/{id}: `update` on the lease's variable. */
  async revoke(actor: Actor, account: string, leaseId: string): Promise<{ state: 'revoked' | 'pending'; lease: LeaseJson }> {
    const event = { account, action: 'lease', operation: 'revoke', roleId: actor.roleId, resourceId: null as string | null, request: actor.request };
    const notFound = new CofferError('not_found', `Lease '${leaseId}' not found in account '${account}'`, {
      target: 'lease',
      details: { code: 'not_found', target: 'id', message: leaseId },
    });
    try {
      const lease = await this.d.store.dynamic.getLease(leaseId);
      if (!lease || lease.account !== account || actor.account !== account) throw notFound;
      event.resourceId = lease.variable_id;
      const resource = await this.d.store.graph.getResource(lease.variable_id);
      if (!resource || !(await this.d.authorizer.isVisible(actor.roleId, resource))) throw notFound;
      if (!(await this.d.authorizer.canOn(actor.roleId, 'update', resource))) throw forbidden();
      const state = await this.end(lease, `revoked by ${actor.roleId}`);
      const after = await this.d.store.dynamic.getLease(leaseId);
      return { state, lease: leaseJson(after ?? lease) };
    } catch (err) {
      if (err instanceof CofferError && err.code !== 'service_unavailable') {
        await this.d.audit.record({ ...event, result: 'failure', reason: err.auditReason ?? err.message, message: `${actor.roleId} tried to revoke lease ${leaseId}: ${err.auditReason ?? err.message}` });
      }
      throw err;
    }
  }

  /** The access token `jti` was revoked: end every lease fetched with it. */
  async endLeasesOfToken(jti: string): Promise<void> {
    const leases = await this.d.store.dynamic.activeLeasesOfToken(jti);
    await Promise.all(leases.map((l) => this.end(l, 'the access token that fetched it was revoked')));
  }

  /**
   * Roles or variables were deleted (a policy load), or a role's credentials
   * changed (its API key rotated: the tokens it held no longer work): end the
   * leases they held or were fetched from.
   */
  async endLeasesOf(account: string, ids: Iterable<string>, reason: string): Promise<void> {
    const gone = new Set(ids);
    if (gone.size === 0) return;
    const leases = (await this.d.store.dynamic.leasesOfAccount(account)).filter((l) => (gone.has(l.role_id) || gone.has(l.variable_id)) && l.state !== 'revoking');
    if (leases.length === 0) return;
    // Marked first, durably (due at once): whatever happens to this process, the sweeper ends them. Then ended in
    // the background — a key rotation or a policy load does not wait for target databases that may be slow or down.
    await this.d.store.tx(async () => {
      for (const l of leases) if (l.state === 'active') await this.d.store.dynamic.markRevoking(l.id, reason);
    });
    void runLimited(leases, SWEEP_CONCURRENCY, (l) => this.end(l, reason));
  }

  /** The issuer was deleted: end its leases; its row goes once none is left. */
  async endLeasesOfIssuer(account: string, issuerId: string): Promise<void> {
    const leases = await this.d.store.dynamic.leasesOfIssuer(account, issuerId);
    await runLimited(leases, SWEEP_CONCURRENCY, (l) => this.end(l, 'its issuer was deleted'));
    if (await this.d.store.dynamic.purgeIssuer(account, issuerId)) await this.targets.close(`${account}:${issuerId}`);
  }

  /**
   * Ends one lease: drops its login, then deletes the row with its audit
   * event. A failure keeps the row as pending, with the error and the time of
   * the next attempt. Concurrent calls for one lease share the work.
   */
  end(lease: LeaseRow, reason: string): Promise<'revoked' | 'pending'> {
    const running = this.ending.get(lease.id);
    if (running) return running;
    const work = this.endNow(lease, reason).finally(() => this.ending.delete(lease.id));
    this.ending.set(lease.id, work);
    return work;
  }

  private async endNow(lease: LeaseRow, reason: string): Promise<'revoked' | 'pending'> {
    const current = await this.d.store.dynamic.getLease(lease.id);
    if (current?.state === 'creating') {
      // Its login is still being created (here or on another node): mark it; the issuing request sees the mark
      // once its CREATE ROLE committed and drops the login itself, and the sweeper retries if that node died.
      await this.markPending(current, reason, 'its login was still being created');
      return 'pending';
    }
    const issuer = await this.d.store.dynamic.getIssuer(lease.account, lease.issuer_id);
    try {
      if (!issuer) throw new TargetError(`issuer '${lease.issuer_id}' no longer exists`, true);
      const found = await this.targets.dropLogin(poolKey(issuer), issuer.modified_at, await this.d.issuers.connectionOf(issuer), lease.db_role);
      // No login yet, on a young lease: a CREATE ROLE may still be on its way (queued, or committing when its
      // caller gave up). Look again until its deadline has surely passed, so a late login is not left without a lease.
      if (found === 'absent' && this.d.clock.nowMs() - Date.parse(lease.created_at) < TARGET_CALL_DEADLINE_MS + 5_000) {
        throw new TargetError('no login yet: its creation may still commit; checking again', true);
      }
    } catch (err) {
      const message = err instanceof TargetError ? err.message : (err as Error).message;
      await this.markPending(lease, reason, message);
      return 'pending';
    }
    const rows = await this.d.store.tx(async () => {
      if (!(await this.d.store.dynamic.deleteLease(lease.id))) return [];
      return this.d.audit.recordInTransaction([
        {
          account: lease.account,
          action: 'lease',
          operation: 'revoke',
          result: 'success',
          roleId: lease.role_id,
          resourceId: lease.variable_id,
          message: `lease ${lease.id} of ${lease.variable_id} ended (${reason}): login ${lease.db_role} dropped by issuer ${lease.issuer_id}`,
          details: { lease_id: lease.id, issuer: lease.issuer_id, username: lease.db_role, reason, attempts: lease.attempts },
        },
      ]);
    });
    this.d.audit.publish(rows);
    if (issuer?.deleted_at && (await this.d.store.dynamic.purgeIssuer(issuer.account, issuer.id))) await this.targets.close(poolKey(issuer));
    return 'revoked';
  }

  /** Records a failed attempt: the lease stays, pending; its first failure is audited. */
  private async markPending(lease: LeaseRow, reason: string, error: string): Promise<void> {
    const current = (await this.d.store.dynamic.getLease(lease.id)) ?? lease;
    const delay = Math.min(1000 * 2 ** current.attempts, RETRY_MAX_MS);
    const rows = await this.d.store.tx(async () => {
      await this.d.store.dynamic.markRevoking(lease.id, reason);
      await this.d.store.dynamic.noteRevokeFailure(lease.id, error, this.d.clock.nowMs() + delay);
      if (current.attempts > 0) return [];
      return this.d.audit.recordInTransaction([
        {
          account: lease.account,
          action: 'lease',
          operation: 'revoke',
          result: 'failure',
          roleId: lease.role_id,
          resourceId: lease.variable_id,
          reason: error,
          message: `lease ${lease.id} of ${lease.variable_id} could not be ended yet (${reason}): ${error}; retrying`,
          details: { lease_id: lease.id, issuer: lease.issuer_id, username: lease.db_role },
        },
      ]);
    });
    this.d.audit.publish(rows);
  }

  /**
   * One pass: ends expired leases and retries pending ones that are due;
   * removes deleted issuers left without leases. Never two passes at once.
   */
  sweep(): Promise<{ ended: number; pending: number }> {
    if (this.sweeping) return this.sweeping as Promise<{ ended: number; pending: number }>;
    const run = this.sweepOnce().finally(() => {
      this.sweeping = undefined;
    });
    this.sweeping = run;
    return run;
  }

  private async sweepOnce(): Promise<{ ended: number; pending: number }> {
    let ended = 0;
    let pending = 0;
    const count = (r: 'revoked' | 'pending') => (r === 'revoked' ? ended++ : pending++);
    const now = this.d.clock.nowMs();
    const seen = new Set<string>();
    for (;;) {
      const batch = (await this.d.store.dynamic.expiredLeases(now, SWEEP_BATCH)).filter((l) => !seen.has(l.id));
      if (batch.length === 0) break;
      for (const l of batch) seen.add(l.id);
      await runLimited(batch, SWEEP_CONCURRENCY, async (l) => count(await this.end(l, 'expired')));
    }
    const retries = (await this.d.store.dynamic.retryDueLeases(now, SWEEP_BATCH)).filter((l) => !seen.has(l.id));
    await runLimited(retries, SWEEP_CONCURRENCY, async (l) => count(await this.end(l, l.revoke_reason ?? 'retry')));
    for (const issuer of await this.d.store.dynamic.deletedIssuers()) {
      if (await this.d.store.dynamic.purgeIssuer(issuer.account, issuer.id)) await this.targets.close(poolKey(issuer));
    }
    return { ended, pending };
  }

  /** Starts the periodic sweeper (server only); the first pass runs at once (leases left by a restart). */
  start(): void {
    if (this.timer) return;
    const interval = this.d.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    const tick = () => void this.sweep().catch(() => undefined);
    this.timer = setInterval(tick, interval);
    this.timer.unref();
    tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping?.catch(() => undefined);
    await Promise.allSettled([...this.ending.values()]);
    await this.targets.closeAll();
  }

  /** Drops the issuer's pool (its connection data changed, or it was deleted). */
  closeIssuer(account: string, issuerId: string): Promise<void> {
    return this.targets.close(`${account}:${issuerId}`);
  }
}

export function leaseJson(l: LeaseRow): LeaseJson {
  return {
    id: l.id,
    variable: l.variable_id,
    issuer: l.issuer_id,
    role: l.role_id,
    username: l.db_role,
    created_at: l.created_at,
    expires_at: new Date(l.expires_at).toISOString(),
    state: l.state === 'revoking' ? 'pending' : l.state,
    revoke_reason: l.revoke_reason,
    attempts: l.attempts,
    last_error: l.last_error,
  };
}

async function runLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

