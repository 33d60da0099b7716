/**
 * PostgreSQL implementations of the simple table families: the same
 * statements as the SQLite modules (src/store/<family>.ts), the same return
 * values and rows (same field names; BYTEA → Buffer, BIGINT → number, see
 * client.ts). Each factory takes `db`, called for every statement, which
 * answers the connection to run it on: the pool, or the connection of the
 * transaction the caller is in (the routing layer decides).
 *
 * Differences from the SQLite statements, all without change of meaning:
 *  - `changes` is the driver's `count` (rows inserted, updated or deleted);
 *    for INSERT … ON CONFLICT DO UPDATE … WHERE it counts the row only when
 *    it was inserted or the WHERE let the update happen, as SQLite does.
 *  - `x''` (empty blob) is `'\x'::bytea`.
 *  - `.get()` is the first row or undefined; `.all()` a plain array.
 */
import type {
  AccountsStore,
  AuthenticatorsStore,
  CredentialsStore,
  HostFactoriesStore,
  KeyringStore,
  PolicyVersionsStore,
  SecretsStore,
  TokensStore,
} from '../types.js';
import type { CredentialsRow } from '../credentials.js';
import type { HostFactoryTokenRow } from '../host-factories.js';
import type { KeyringRow } from '../keyring.js';
import type { PolicyVersionRow } from '../policy-versions.js';
import type { SecretRow, SigningKeyRow } from '../secrets.js';
import { rowsOf, type PgConnection } from './client.js';
import { createPgDynamicStore } from './dynamic.js';
import { createReadBatch } from './read-batch.js';

export function createPgAccountsStore(db: PgConnection): AccountsStore {
  return {
    async exists(name) {
      const rows = await db()`SELECT name FROM accounts WHERE name = ${name}`;
      return rows.length > 0;
    },
    async list() {
      const rows = await db()<{ name: string }[]>`SELECT name FROM accounts ORDER BY name`;
      return rows.map((r) => r.name);
    },
    async insert(name) {
      await db()`INSERT INTO accounts (name, created_at) VALUES (${name}, ${new Date().toISOString()})`;
    },
  };
}

export function createPgAuthenticatorsStore(db: PgConnection): AuthenticatorsStore {
  return {
    async enabled(webserviceId) {
      const [row] = await db()<{ enabled: number }[]>`SELECT enabled FROM authenticator_configs WHERE resource_id = ${webserviceId}`;
      return row === undefined ? undefined : row.enabled === 1;
    },
    async setEnabled(webserviceId, enabled, nowIso) {
      await db()`INSERT INTO authenticator_configs (resource_id, enabled, updated_at) VALUES (${webserviceId}, ${enabled ? 1 : 0}, ${nowIso})
        ON CONFLICT (resource_id) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at`;
    },
    async enabledWebservices() {
      const rows = await db()<{ resource_id: string }[]>`SELECT resource_id FROM authenticator_configs WHERE enabled = 1 ORDER BY resource_id`;
      return rows.map((r) => r.resource_id);
    },
    async configuredJwtWebservices() {
      // A range, as for SQLite; resources.identifier is COLLATE "C", so '0' follows '/' here too.
      const rows = await db()<{ resource_id: string }[]>`SELECT resource_id FROM resources
        WHERE kind = 'webservice' AND identifier >= 'conjur/authn-jwt/' AND identifier < 'conjur/authn-jwt0' ORDER BY resource_id`;
      return rows.map((r) => r.resource_id);
    },
    async markJtiUsed(serviceKey, jti, expiresAt, nowSec) {
      // Inserts, or takes over a row whose token has expired; a live row is
      // left alone (the conflicting insert waits for a concurrent one to
      // commit, then sees its row), so count is 1 exactly when this use is the first.
      const r = await db()`INSERT INTO jwt_jti (service_key, jti, expires_at) VALUES (${serviceKey}, ${jti}, ${expiresAt})
        ON CONFLICT (service_key, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE jwt_jti.expires_at < ${nowSec}`;
      return r.count === 1;
    },
    async purgeExpiredJti(nowSec) {
      return (await db()`DELETE FROM jwt_jti WHERE expires_at < ${nowSec}`).count;
    },
  };
}

export function createPgCredentialsStore(db: PgConnection): CredentialsStore {
  return {
    async get(roleId) {
      const [row] = await db()<CredentialsRow[]>`SELECT * FROM credentials WHERE role_id = ${roleId}`;
      return row;
    },
    async insert(roleId, apiKeyHash, apiKeySealed, restrictedTo, notBeforeMs) {
      await db()`INSERT INTO credentials (role_id, api_key_hash, api_key_sealed, restricted_to, updated_at, tokens_not_before)
        VALUES (${roleId}, ${apiKeyHash}, ${apiKeySealed}, ${JSON.stringify(restrictedTo)}, ${new Date().toISOString()}, ${notBeforeMs})`;
    },
    async setApiKey(roleId, apiKeyHash, apiKeySealed, notBeforeMs) {
      await db()`UPDATE credentials SET api_key_hash = ${apiKeyHash}, api_key_sealed = ${apiKeySealed},
        updated_at = ${new Date().toISOString()}, tokens_not_before = ${notBeforeMs} WHERE role_id = ${roleId}`;
    },
    async setPasswordHash(roleId, hash) {
      await db()`UPDATE credentials SET password_hash = ${hash}, updated_at = ${new Date().toISOString()} WHERE role_id = ${roleId}`;
    },
    async setRestrictedTo(roleId, cidrs) {
      await db()`UPDATE credentials SET restricted_to = ${JSON.stringify(cidrs)} WHERE role_id = ${roleId}`;
    },
    async allNotBefore() {
      return rowsOf(
        await db()<{ role_id: string; tokens_not_before: number }[]>`SELECT role_id, tokens_not_before FROM credentials WHERE tokens_not_before > 0`,
      );
    },
    async sealedApiKeys() {
      return rowsOf(
        await db()<{ role_id: string; api_key_sealed: Buffer }[]>`SELECT role_id, api_key_sealed FROM credentials WHERE api_key_sealed IS NOT NULL`,
      );
    },
    async resealApiKey(roleId, sealed) {
      await db()`UPDATE credentials SET api_key_sealed = ${sealed} WHERE role_id = ${roleId}`;
    },
  };
}

export function createPgTokensStore(db: PgConnection): TokensStore {
  return {
    async revoke(jti, expiresAt) {
      await db()`INSERT INTO revoked_tokens (jti, expires_at) VALUES (${jti}, ${expiresAt}) ON CONFLICT (jti) DO NOTHING`;
    },
    async liveRevocations(now) {
      return rowsOf(await db()<{ jti: string; expires_at: number }[]>`SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > ${now}`);
    },
    async purgeExpired(now) {
      return (await db()`DELETE FROM revoked_tokens WHERE expires_at <= ${now}`).count;
    },
    async isRevoked(jti) {
      const [row] = await db()<{ n: number }[]>`SELECT count(*)::int AS n FROM revoked_tokens WHERE jti = ${jti}`;
      return row!.n > 0;
    },
  };
}

export function createPgKeyringStore(db: PgConnection): KeyringStore {
  return {
    async getMeta(name) {
      const [row] = await db()<{ value: Buffer }[]>`SELECT value FROM server_meta WHERE name = ${name}`;
      return row?.value;
    },
    async putMeta(name, value) {
      await db()`INSERT INTO server_meta (name, value) VALUES (${name}, ${value}) ON CONFLICT (name) DO UPDATE SET value = excluded.value`;
    },
    async listKeys() {
      return rowsOf(await db()<KeyringRow[]>`SELECT * FROM keyring ORDER BY version`);
    },
    async insertKey(version, nonce, wrapped, state) {
      await db()`INSERT INTO keyring (version, nonce, wrapped_key, state, created_at)
        VALUES (${version}, ${nonce}, ${wrapped}, ${state}, ${new Date().toISOString()})`;
    },
    async setKeyState(version, state) {
      await db()`UPDATE keyring SET state = ${state} WHERE version = ${version}`;
    },
    async rewrapKey(version, nonce, wrapped) {
      await db()`UPDATE keyring SET nonce = ${nonce}, wrapped_key = ${wrapped} WHERE version = ${version}`;
    },
    async retireKey(version) {
      await db()`UPDATE keyring SET state = 'retired', wrapped_key = '\\x'::bytea, nonce = '\\x'::bytea WHERE version = ${version}`;
    },
  };
}

export function createPgPolicyVersionsStore(db: PgConnection): PolicyVersionsStore {
  return {
    async nextVersion(resourceId) {
      const [row] = await db()<{ v: number | null }[]>`SELECT max(version) AS v FROM policy_versions WHERE resource_id = ${resourceId}`;
      return (row?.v ?? 0) + 1;
    },
    async insert(row: PolicyVersionRow) {
      await db()`INSERT INTO policy_versions (resource_id, version, role_id, client_ip, policy_text, policy_sha256, created_at, finished_at)
        VALUES (${row.resource_id}, ${row.version}, ${row.role_id}, ${row.client_ip}, ${row.policy_text}, ${row.policy_sha256}, ${row.created_at}, ${row.finished_at})`;
    },
    async prune(resourceId, keep) {
      await db()`DELETE FROM policy_versions WHERE resource_id = ${resourceId}
        AND version <= (SELECT max(version) FROM policy_versions WHERE resource_id = ${resourceId}) - ${keep}::int`;
    },
    async list(resourceId) {
      return rowsOf(await db()<PolicyVersionRow[]>`SELECT * FROM policy_versions WHERE resource_id = ${resourceId} ORDER BY version`);
    },
  };
}

/**
 * `outsideTransaction`: whether db() is the pool (no transaction open in this context). There, `latest` — the read
 * of every audited fetch — is batched with the other fetches of the same event-loop turn (read-batch.ts).
 */
export function createPgSecretsStore(db: PgConnection, outsideTransaction: () => boolean = () => false): SecretsStore {
  const latestOne = async (resourceId: string) => {
    const [row] = await db()<SecretRow[]>`SELECT * FROM secrets WHERE resource_id = ${resourceId} ORDER BY version DESC LIMIT 1`;
    return row;
  };
  const latestBatched = createReadBatch<string, SecretRow>(async (ids) => {
    const rows = await db()<SecretRow[]>`SELECT DISTINCT ON (resource_id) * FROM secrets WHERE resource_id = ANY(${ids}::text[])
      ORDER BY resource_id, version DESC`;
    return new Map(rows.map((row) => [row.resource_id, row]));
  });
  return {
    latest: (resourceId) => (outsideTransaction() ? latestBatched(resourceId) : latestOne(resourceId)),
    async byVersion(resourceId, version) {
      const [row] = await db()<SecretRow[]>`SELECT * FROM secrets WHERE resource_id = ${resourceId} AND version = ${version}`;
      return row;
    },
    async versions(resourceId) {
      return rowsOf(
        await db()<{ version: number; expires_at: string | null }[]>`SELECT version, expires_at FROM secrets WHERE resource_id = ${resourceId} ORDER BY version`,
      );
    },
    async insert(row) {
      await db()`INSERT INTO secrets (resource_id, version, key_version, nonce, ciphertext, expires_at, created_at)
        VALUES (${row.resource_id}, ${row.version}, ${row.key_version}, ${row.nonce}, ${row.ciphertext}, NULL, ${new Date().toISOString()})`;
    },
    async prune(resourceId, keep) {
      await db()`DELETE FROM secrets WHERE resource_id = ${resourceId}
        AND version <= (SELECT max(version) FROM secrets WHERE resource_id = ${resourceId}) - ${keep}::int`;
    },
    async clearExpirations(resourceId) {
      await db()`UPDATE secrets SET expires_at = NULL WHERE resource_id = ${resourceId}`;
    },
    async notUnderKey(keyVersion, limit) {
      return rowsOf(await db()<SecretRow[]>`SELECT * FROM secrets WHERE key_version <> ${keyVersion} ORDER BY resource_id, version LIMIT ${limit}`);
    },
    async reseal(resourceId, version, keyVersion, nonce, ciphertext) {
      await db()`UPDATE secrets SET key_version = ${keyVersion}, nonce = ${nonce}, ciphertext = ${ciphertext}
        WHERE resource_id = ${resourceId} AND version = ${version}`;
    },
    async countUnderKey(keyVersion) {
      const [row] = await db()<{ n: number }[]>`SELECT count(*) AS n FROM secrets WHERE key_version = ${keyVersion}`;
      return row!.n;
    },
    async signingKey(account) {
      const [row] = await db()<SigningKeyRow[]>`SELECT * FROM signing_keys WHERE account = ${account}`;
      return row;
    },
    async signingKeyByKid(kid) {
      const [row] = await db()<SigningKeyRow[]>`SELECT * FROM signing_keys WHERE kid = ${kid}`;
      return row;
    },
    async allSigningKeys() {
      return rowsOf(await db()<SigningKeyRow[]>`SELECT * FROM signing_keys`);
    },
    async insertSigningKey(row) {
      await db()`INSERT INTO signing_keys (account, kid, public_key, key_version, nonce, ciphertext, created_at)
        VALUES (${row.account}, ${row.kid}, ${row.public_key}, ${row.key_version}, ${row.nonce}, ${row.ciphertext}, ${new Date().toISOString()})`;
    },
    async resealSigningKey(account, keyVersion, nonce, ciphertext) {
      await db()`UPDATE signing_keys SET key_version = ${keyVersion}, nonce = ${nonce}, ciphertext = ${ciphertext} WHERE account = ${account}`;
    },
  };
}

export function createPgHostFactoriesStore(db: PgConnection): HostFactoriesStore {
  return {
    async insert(row: HostFactoryTokenRow) {
      await db()`INSERT INTO host_factory_tokens (token_hash, host_factory_id, token_sealed, expires_at, cidr, created_at)
        VALUES (${row.token_hash}, ${row.host_factory_id}, ${row.token_sealed}, ${row.expires_at}, ${row.cidr}, ${row.created_at})`;
    },
    async byHash(hash) {
      const [row] = await db()<HostFactoryTokenRow[]>`SELECT * FROM host_factory_tokens WHERE token_hash = ${hash}`;
      return row;
    },
    async liveFor(hostFactoryId, nowMs) {
      return rowsOf(
        await db()<HostFactoryTokenRow[]>`SELECT * FROM host_factory_tokens WHERE host_factory_id = ${hostFactoryId} AND expires_at > ${nowMs}
          ORDER BY expires_at, created_at, token_hash`,
      );
    },
    async countFor(hostFactoryId) {
      const [row] = await db()<{ n: number }[]>`SELECT count(*) AS n FROM host_factory_tokens WHERE host_factory_id = ${hostFactoryId}`;
      return row!.n;
    },
    async delete(hash) {
      return (await db()`DELETE FROM host_factory_tokens WHERE token_hash = ${hash}`).count > 0;
    },
    async purgeExpired(beforeMs) {
      return (await db()`DELETE FROM host_factory_tokens WHERE expires_at <= ${beforeMs}`).count;
    },
    async sealedTokens() {
      return rowsOf(
        await db()<{ token_hash: Buffer; host_factory_id: string; token_sealed: Buffer }[]>`SELECT token_hash, host_factory_id, token_sealed FROM host_factory_tokens`,
      );
    },
    async reseal(hash, sealed) {
      await db()`UPDATE host_factory_tokens SET token_sealed = ${sealed} WHERE token_hash = ${hash}`;
    },
  };
}

/** The simple families on one connection getter (graph and audit are not here). */
export function createPgFamilies(db: PgConnection, outsideTransaction?: () => boolean) {
  return {
    accounts: createPgAccountsStore(db),
    authenticators: createPgAuthenticatorsStore(db),
    credentials: createPgCredentialsStore(db),
    dynamic: createPgDynamicStore(db),
    hostFactories: createPgHostFactoriesStore(db),
    keyring: createPgKeyringStore(db),
    policyVersions: createPgPolicyVersionsStore(db),
    secrets: createPgSecretsStore(db, outsideTransaction),
    tokens: createPgTokensStore(db),
  };
}
