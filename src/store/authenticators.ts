/** Authenticators enabled through the API, and single-use JWT ids (authn-jwt replay protection). */
import type { Db } from './db.js';

export function createAuthenticatorsStore(db: Db) {
  const getEnabled = db.prepare<[string], { enabled: number }>('SELECT enabled FROM authenticator_configs WHERE resource_id = ?');
  const setEnabled = db.prepare(
    `INSERT INTO authenticator_configs (resource_id, enabled, updated_at) VALUES (?, ?, ?)
     ON CONFLICT(resource_id) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at`,
  );
  const enabledAll = db.prepare<[], { resource_id: string }>(
    'SELECT resource_id FROM authenticator_configs WHERE enabled = 1 ORDER BY resource_id',
  );
  const jwtWebservices = db.prepare<[], { resource_id: string }>(
    // A range rather than LIKE (case-insensitive, so no index range): '0' follows '/'.
    "SELECT resource_id FROM resources WHERE kind = 'webservice' AND identifier >= 'conjur/authn-jwt/' AND identifier < 'conjur/authn-jwt0' ORDER BY resource_id",
  );
  // Inserts, or takes over a row whose token has expired; a live row is left
  // alone, so `changes` is 1 exactly when this use is the first.
  const markJti = db.prepare(
    `INSERT INTO jwt_jti (service_key, jti, expires_at) VALUES (?, ?, ?)
     ON CONFLICT(service_key, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE jwt_jti.expires_at < ?`,
  );
  const purgeJti = db.prepare('DELETE FROM jwt_jti WHERE expires_at < ?');

  return {
    /** `true`/`false` when set through the API, `undefined` when never set. */
    enabled(webserviceId: string): boolean | undefined {
      const row = getEnabled.get(webserviceId);
      return row === undefined ? undefined : row.enabled === 1;
    },
    setEnabled(webserviceId: string, enabled: boolean, nowIso: string): void {
      setEnabled.run(webserviceId, enabled ? 1 : 0, nowIso);
    },
    /** Webservice ids (all accounts) whose authenticator was enabled through the API. */
    enabledWebservices: () => enabledAll.all().map((r) => r.resource_id),
    /** Webservice ids (all accounts) under conjur/authn-jwt/, the services' own and their status webservices. */
    configuredJwtWebservices: () => jwtWebservices.all().map((r) => r.resource_id),
    /** Records a jti; false when it is already recorded and not yet expired. `nowSec`/`expiresAt` in epoch seconds. */
    markJtiUsed(serviceKey: string, jti: string, expiresAt: number, nowSec: number): boolean {
      return markJti.run(serviceKey, jti, expiresAt, nowSec).changes === 1;
    },
    purgeExpiredJti: (nowSec: number) => purgeJti.run(nowSec).changes,
  };
}

export type AuthenticatorsStore = ReturnType<typeof createAuthenticatorsStore>;
