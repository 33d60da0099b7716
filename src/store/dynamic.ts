/** Issuers and dynamic-secret leases (migration 0010 / postgres 0004). */
import type { Db } from './db.js';

export interface IssuerRow {
  account: string;
  id: string;
  type: string;
  max_ttl: number;
  /** JSON of the non-secret fields of `data`. */
  data_public: string;
  /** Barrier-packed JSON of the secret fields of `data`. */
  data_sealed: Buffer;
  created_at: string;
  modified_at: string;
  /** Set when the issuer was deleted but leases it issued have not all ended yet. */
  deleted_at: string | null;
}

export interface LeaseRow {
  id: string;
  account: string;
  issuer_id: string;
  variable_id: string;
  role_id: string;
  token_jti: string | null;
  db_role: string;
  /** Unix milliseconds. */
  expires_at: number;
  created_at: string;
  /** `creating`: its login is being created and it has not been handed out; `revoking`: being ended (pending). */
  state: 'creating' | 'active' | 'revoking';
  revoke_reason: string | null;
  attempts: number;
  last_error: string | null;
  next_attempt_at: number;
}

/** A lease to insert; `state` defaults to `active`. */
export type NewLease = Omit<LeaseRow, 'state' | 'revoke_reason' | 'attempts' | 'last_error' | 'next_attempt_at'> & Partial<Pick<LeaseRow, 'state' | 'revoke_reason'>>;

export function createDynamicStore(db: Db) {
  const insertIssuer = db.prepare(
    'INSERT INTO issuers (account, id, type, max_ttl, data_public, data_sealed, created_at, modified_at, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)',
  );
  const getIssuer = db.prepare<[string, string], IssuerRow>('SELECT * FROM issuers WHERE account = ? AND id = ?');
  const listIssuers = db.prepare<[string], IssuerRow>('SELECT * FROM issuers WHERE account = ? AND deleted_at IS NULL ORDER BY id');
  const updateIssuer = db.prepare(
    'UPDATE issuers SET max_ttl = ?, data_public = ?, data_sealed = ?, modified_at = ? WHERE account = ? AND id = ? AND deleted_at IS NULL',
  );
  const markIssuerDeleted = db.prepare('UPDATE issuers SET deleted_at = ? WHERE account = ? AND id = ? AND deleted_at IS NULL');
  const purgeIssuer = db.prepare(
    'DELETE FROM issuers WHERE account = ? AND id = ? AND deleted_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM dynamic_leases l WHERE l.account = issuers.account AND l.issuer_id = issuers.id)',
  );
  const deletedIssuers = db.prepare<[], IssuerRow>('SELECT * FROM issuers WHERE deleted_at IS NOT NULL ORDER BY account, id');
  const sealedIssuers = db.prepare<[], { account: string; id: string; data_sealed: Buffer }>('SELECT account, id, data_sealed FROM issuers');
  const resealIssuer = db.prepare('UPDATE issuers SET data_sealed = ? WHERE account = ? AND id = ?');

  const insertLease = db.prepare(
    'INSERT INTO dynamic_leases (id, account, issuer_id, variable_id, role_id, token_jti, db_role, expires_at, created_at, state, revoke_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const getLease = db.prepare<[string], LeaseRow>('SELECT * FROM dynamic_leases WHERE id = ?');
  const leasesOfJti = db.prepare<[string], LeaseRow>("SELECT * FROM dynamic_leases WHERE token_jti = ? AND state IN ('creating', 'active') ORDER BY id");
  const activateLease = db.prepare("UPDATE dynamic_leases SET state = 'active' WHERE id = ? AND state = 'creating'");
  const countIssuerLeases = db.prepare<[string, string], { n: number }>('SELECT count(*) AS n FROM dynamic_leases WHERE account = ? AND issuer_id = ?');
  const leasesOfIssuer = db.prepare<[string, string], LeaseRow>('SELECT * FROM dynamic_leases WHERE account = ? AND issuer_id = ? ORDER BY id');
  const leasesOfAccount = db.prepare<[string], LeaseRow>('SELECT * FROM dynamic_leases WHERE account = ? ORDER BY created_at, id');
  const expired = db.prepare<[number, number], LeaseRow>(
    "SELECT * FROM dynamic_leases WHERE state IN ('creating', 'active') AND expires_at <= ? ORDER BY expires_at LIMIT ?",
  );
  const retry = db.prepare<[number, number], LeaseRow>(
    "SELECT * FROM dynamic_leases WHERE state = 'revoking' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
  );
  const markRevoking = db.prepare(
    "UPDATE dynamic_leases SET state = 'revoking', revoke_reason = coalesce(revoke_reason, ?) WHERE id = ?",
  );
  const noteFailure = db.prepare(
    'UPDATE dynamic_leases SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?',
  );
  const deleteLease = db.prepare('DELETE FROM dynamic_leases WHERE id = ?');
  const variablesOfIssuer = db.prepare<[string, string, string], { resource_id: string }>(
    "SELECT resource_id FROM annotations WHERE name = 'dynamic/issuer' AND value = ? AND resource_id >= ? AND resource_id < ? ORDER BY resource_id",
  );
  const countLeases = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM dynamic_leases WHERE account = ?');

  return {
    insertIssuer(row: Omit<IssuerRow, 'deleted_at'>): void {
      insertIssuer.run(row.account, row.id, row.type, row.max_ttl, row.data_public, row.data_sealed, row.created_at, row.modified_at);
    },
    /** The issuer row, a deleted one included (check deleted_at). */
    getIssuer: (account: string, id: string) => getIssuer.get(account, id),
    listIssuers: (account: string) => listIssuers.all(account),
    /** false when there is no such (undeleted) issuer. */
    updateIssuer: (account: string, id: string, maxTtl: number, dataPublic: string, dataSealed: Buffer, modifiedAt: string) =>
      updateIssuer.run(maxTtl, dataPublic, dataSealed, modifiedAt, account, id).changes > 0,
    markIssuerDeleted: (account: string, id: string, deletedAt: string) => markIssuerDeleted.run(deletedAt, account, id).changes > 0,
    /** Removes a deleted issuer's row once no lease of it is left; true when it did. */
    purgeIssuer: (account: string, id: string) => purgeIssuer.run(account, id).changes > 0,
    deletedIssuers: () => deletedIssuers.all(),
    sealedIssuers: () => sealedIssuers.all(),
    resealIssuer: (account: string, id: string, sealed: Buffer) => void resealIssuer.run(sealed, account, id),

    insertLease(row: NewLease): void {
      insertLease.run(row.id, row.account, row.issuer_id, row.variable_id, row.role_id, row.token_jti, row.db_role, row.expires_at, row.created_at, row.state ?? 'active', row.revoke_reason ?? null);
    },
    /** Its login was created: `creating` becomes `active`. false when it was marked or ended meanwhile. */
    activateLease: (id: string) => activateLease.run(id).changes > 0,
    /** Every lease of the issuer, ending ones included (each is a login on its database). */
    countIssuerLeases: (account: string, issuerId: string) => countIssuerLeases.get(account, issuerId)!.n,
    getLease: (id: string) => getLease.get(id),
    /** Leases fetched with the token `jti` that are not already ending. */
    activeLeasesOfToken: (jti: string) => leasesOfJti.all(jti),
    leasesOfIssuer: (account: string, issuerId: string) => leasesOfIssuer.all(account, issuerId),
    leasesOfAccount: (account: string) => leasesOfAccount.all(account),
    /** Leases not already ending whose expiry is at or before `nowMs`, soonest first. */
    expiredLeases: (nowMs: number, limit: number) => expired.all(nowMs, limit),
    /** Leases being revoked whose next attempt is due. */
    retryDueLeases: (nowMs: number, limit: number) => retry.all(nowMs, limit),
    /** Marks the lease as ending (keeps the first reason). */
    markRevoking: (id: string, reason: string) => void markRevoking.run(reason, id),
    noteRevokeFailure: (id: string, error: string, nextAttemptAt: number) => void noteFailure.run(error, nextAttemptAt, id),
    /** Deletes the lease; false when it was already gone (another node ended it). */
    deleteLease: (id: string) => deleteLease.run(id).changes > 0,
    countLeases: (account: string) => countLeases.get(account)!.n,
    /** The dynamic variables (under data/dynamic/) whose `dynamic/issuer` annotation names the issuer. */
    variablesOfIssuer: (account: string, issuerId: string) =>
      variablesOfIssuer.all(issuerId, `${account}:variable:data/dynamic/`, `${account}:variable:data/dynamic0`).map((r) => r.resource_id),
  };
}

export type DynamicStore = ReturnType<typeof createDynamicStore>;
