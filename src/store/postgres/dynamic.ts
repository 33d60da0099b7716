/** PostgreSQL form of src/store/dynamic.ts: the same statements, rows and answers. */
import type { DynamicStore } from '../types.js';
import type { IssuerRow, LeaseRow } from '../dynamic.js';
import { rowsOf, type PgConnection } from './client.js';

export function createPgDynamicStore(db: PgConnection): DynamicStore {
  return {
    async insertIssuer(row) {
      await db()`INSERT INTO issuers (account, id, type, max_ttl, data_public, data_sealed, created_at, modified_at, deleted_at)
        VALUES (${row.account}, ${row.id}, ${row.type}, ${row.max_ttl}, ${row.data_public}, ${row.data_sealed}, ${row.created_at}, ${row.modified_at}, NULL)`;
    },
    async getIssuer(account, id) {
      const [row] = await db()<IssuerRow[]>`SELECT * FROM issuers WHERE account = ${account} AND id = ${id}`;
      return row;
    },
    async listIssuers(account) {
      return rowsOf(await db()<IssuerRow[]>`SELECT * FROM issuers WHERE account = ${account} AND deleted_at IS NULL ORDER BY id`);
    },
    async updateIssuer(account, id, maxTtl, dataPublic, dataSealed, modifiedAt) {
      const r = await db()`UPDATE issuers SET max_ttl = ${maxTtl}, data_public = ${dataPublic}, data_sealed = ${dataSealed}, modified_at = ${modifiedAt}
        WHERE account = ${account} AND id = ${id} AND deleted_at IS NULL`;
      return r.count > 0;
    },
    async markIssuerDeleted(account, id, deletedAt) {
      return (await db()`UPDATE issuers SET deleted_at = ${deletedAt} WHERE account = ${account} AND id = ${id} AND deleted_at IS NULL`).count > 0;
    },
    async purgeIssuer(account, id) {
      const r = await db()`DELETE FROM issuers WHERE account = ${account} AND id = ${id} AND deleted_at IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM dynamic_leases l WHERE l.account = issuers.account AND l.issuer_id = issuers.id)`;
      return r.count > 0;
    },
    async deletedIssuers() {
      return rowsOf(await db()<IssuerRow[]>`SELECT * FROM issuers WHERE deleted_at IS NOT NULL ORDER BY account, id`);
    },
    async sealedIssuers() {
      return rowsOf(await db()<{ account: string; id: string; data_sealed: Buffer }[]>`SELECT account, id, data_sealed FROM issuers`);
    },
    async resealIssuer(account, id, sealed) {
      await db()`UPDATE issuers SET data_sealed = ${sealed} WHERE account = ${account} AND id = ${id}`;
    },
    async insertLease(row) {
      await db()`INSERT INTO dynamic_leases (id, account, issuer_id, variable_id, role_id, token_jti, db_role, expires_at, created_at, state, revoke_reason)
        VALUES (${row.id}, ${row.account}, ${row.issuer_id}, ${row.variable_id}, ${row.role_id}, ${row.token_jti}, ${row.db_role}, ${row.expires_at}, ${row.created_at},
          ${row.state ?? 'active'}, ${row.revoke_reason ?? null})`;
    },
    async activateLease(id) {
      return (await db()`UPDATE dynamic_leases SET state = 'active' WHERE id = ${id} AND state = 'creating'`).count > 0;
    },
    async countIssuerLeases(account, issuerId) {
      const [row] = await db()<{ n: number }[]>`SELECT count(*)::int AS n FROM dynamic_leases WHERE account = ${account} AND issuer_id = ${issuerId}`;
      return row!.n;
    },
    async getLease(id) {
      const [row] = await db()<LeaseRow[]>`SELECT * FROM dynamic_leases WHERE id = ${id}`;
      return row;
    },
    async activeLeasesOfToken(jti) {
      return rowsOf(await db()<LeaseRow[]>`SELECT * FROM dynamic_leases WHERE token_jti = ${jti} AND state IN ('creating', 'active') ORDER BY id`);
    },
    async leasesOfIssuer(account, issuerId) {
      return rowsOf(await db()<LeaseRow[]>`SELECT * FROM dynamic_leases WHERE account = ${account} AND issuer_id = ${issuerId} ORDER BY id`);
    },
    async leasesOfAccount(account) {
      return rowsOf(await db()<LeaseRow[]>`SELECT * FROM dynamic_leases WHERE account = ${account} ORDER BY created_at, id`);
    },
    async expiredLeases(nowMs, limit) {
      return rowsOf(await db()<LeaseRow[]>`SELECT * FROM dynamic_leases WHERE state IN ('creating', 'active') AND expires_at <= ${nowMs} ORDER BY expires_at LIMIT ${limit}`);
    },
    async retryDueLeases(nowMs, limit) {
      return rowsOf(await db()<LeaseRow[]>`SELECT * FROM dynamic_leases WHERE state = 'revoking' AND next_attempt_at <= ${nowMs} ORDER BY next_attempt_at LIMIT ${limit}`);
    },
    async markRevoking(id, reason) {
      await db()`UPDATE dynamic_leases SET state = 'revoking', revoke_reason = coalesce(revoke_reason, ${reason}) WHERE id = ${id}`;
    },
    async noteRevokeFailure(id, error, nextAttemptAt) {
      await db()`UPDATE dynamic_leases SET attempts = attempts + 1, last_error = ${error}, next_attempt_at = ${nextAttemptAt} WHERE id = ${id}`;
    },
    async deleteLease(id) {
      return (await db()`DELETE FROM dynamic_leases WHERE id = ${id}`).count > 0;
    },
    async variablesOfIssuer(account, issuerId) {
      const rows = await db()<{ resource_id: string }[]>`SELECT resource_id FROM annotations WHERE name = 'dynamic/issuer' AND value = ${issuerId}
        AND resource_id >= ${`${account}:variable:data/dynamic/`} AND resource_id < ${`${account}:variable:data/dynamic0`} ORDER BY resource_id`;
      return rows.map((r) => r.resource_id);
    },
    async countLeases(account) {
      const [row] = await db()<{ n: number }[]>`SELECT count(*) AS n FROM dynamic_leases WHERE account = ${account}`;
      return row!.n;
    },
  };
}
