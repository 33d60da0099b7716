/**
 * The `postgresql` issuer's side of the target database: creating one login
 * per fetch and dropping it when its lease ends.
 *
 * SQL safety: every name is sent as an identifier through the driver's
 * identifier escaping (`sql(name)`), never pasted: the generated role name
 * and the grant roles of the variable's `dynamic/grant-roles` annotation
 * alike. CREATE ROLE takes no bind parameters, so the two literals it needs
 * (the password and VALID UNTIL) are pasted — both are generated here, and
 * checked against a strict pattern before use.
 *
 * One small pool per issuer (at most POOL_MAX connections), keyed by the
 * issuer row's modified_at: an updated issuer gets a new pool and the old one
 * is closed; `close(key)` ends an issuer's pool (deleted issuer).
 */
import postgres from 'postgres';

/** How to reach the target database (an issuer's data, password unsealed). */
export interface TargetConnection {
  host: string;
  port: number;
  database: string;
  username: string;
  password: string;
  sslmode?: string;
  ca_cert?: string;
}

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

const POOL_MAX = 4;
const CONNECT_TIMEOUT_SEC = 5;
/** Generated role names: the prefix, then 24 hex digits. */
export const ROLE_PREFIX = 'coffer_';
const ROLE_NAME = /^coffer_[0-9a-f]{24}$/;
const PASSWORD = /^[A-Za-z0-9_-]{32,}$/;
const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * A failure of the target database. `message` is the driver's (PostgreSQL's
 * error text or the network error): it never contains the issuer's password.
 * `maybeApplied`: the statement may have been committed anyway (the
 * connection broke after it was sent), so a created role cannot be ruled out.
 */
export class TargetError extends Error {
  constructor(
    message: string,
    readonly maybeApplied: boolean,
    readonly pgCode?: string,
  ) {
    super(message);
    this.name = 'TargetError';
  }
}

function describe(err: unknown): { message: string; pgCode?: string; serverSide: boolean } {
  const e = err as { name?: string; code?: string; message?: string };
  if (e?.name === 'PostgresError') return { message: `${e.message ?? 'error'} (SQLSTATE ${e.code ?? '?'})`, pgCode: e.code, serverSide: true };
  const code = typeof e?.code === 'string' ? ` (${e.code})` : '';
  return { message: `${e?.message ?? String(err)}${code}`, serverSide: false };
}

function sslOption(c: TargetConnection): postgres.Options<Record<string, never>>['ssl'] {
  switch (c.sslmode ?? 'prefer') {
    case 'disable':
      return false;
    case 'allow':
    case 'prefer':
      return 'prefer';
    case 'require':
      return c.ca_cert ? { ca: c.ca_cert, rejectUnauthorized: true, checkServerIdentity: () => undefined } : 'require';
    case 'verify-ca':
      return { ca: c.ca_cert, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    default:
      return { ca: c.ca_cert, rejectUnauthorized: true };
  }
}

interface Pool {
  version: string;
  sql: postgres.Sql;
}

export class PostgresTargets {
  private pools = new Map<string, Pool>();

  /** The pool of issuer `key` at `version` (its modified_at); an older pool is closed. */
  private pool(key: string, version: string, c: TargetConnection): postgres.Sql {
    const current = this.pools.get(key);
    if (current && current.version === version) return current.sql;
    if (current) void current.sql.end({ timeout: 5 }).catch(() => undefined);
    const sql = postgres({
      host: c.host,
      port: c.port,
      database: c.database,
      username: c.username,
      password: c.password,
      ssl: sslOption(c),
      max: POOL_MAX,
      idle_timeout: 60,
      connect_timeout: CONNECT_TIMEOUT_SEC,
      onnotice: () => undefined,
      connection: { application_name: 'coffer-dynamic-secrets' },
    });
    this.pools.set(key, { version, sql });
    return sql;
  }

  /**
   * Creates login `role` with `password`, valid until `validUntil`, member of
   * `grants` — in one transaction: either all of it or nothing.
   */
  async createLogin(key: string, version: string, c: TargetConnection, role: string, password: string, validUntil: Date, grants: string[]): Promise<void> {
    const until = validUntil.toISOString();
    if (!ROLE_NAME.test(role) || !PASSWORD.test(password) || !TIMESTAMP.test(until)) throw new Error('refusing to create a login from unexpected generated values');
    const sql = this.pool(key, version, c);
    let started = false;
    try {
      await sql.begin(async (t) => {
        started = true;
        // Not waiting for this commit to reach the target's disk is safe in this direction only: a crash
        // that loses it loses the login, so the credential just does not work. (Drops are synchronous.)
        await t`SET LOCAL synchronous_commit TO OFF`;
        await t`CREATE ROLE ${t(role)} WITH LOGIN INHERIT PASSWORD ${t.unsafe(`'${password}'`)} VALID UNTIL ${t.unsafe(`'${until}'`)}`;
        for (const g of grants) await t`GRANT ${t(g)} TO ${t(role)}`;
      });
    } catch (err) {
      const d = describe(err);
      // An error the server raised rolled the transaction back; a broken connection after BEGIN leaves it open to doubt.
      throw new TargetError(d.message, started && !d.serverSide, d.pgCode);
    }
  }

  /**
   * Ends login `role`: the role dropped (no new session can start), then
   * its existing sessions terminated. Idempotent: a role already gone is fine.
   */
  async dropLogin(key: string, version: string, c: TargetConnection, role: string): Promise<void> {
    if (!ROLE_NAME.test(role)) throw new Error('refusing to drop a role Coffer did not name');
    const sql = this.pool(key, version, c);
    try {
      const [found] = await sql<{ oid: number }[]>`SELECT oid::int8 AS oid FROM pg_roles WHERE rolname = ${role}`;
      if (!found) return;
      // Dropped first, so that no new session can start; then every session it still has (found by the role's
      // oid: a dropped role has no name any more) is terminated.
      try {
        await sql`DROP ROLE IF EXISTS ${sql(role)}`;
      } catch (err) {
        // 2BP01: the login owns objects or holds privileges: hand them to the issuer's login, then drop.
        if ((err as { code?: string }).code !== '2BP01') throw err;
        await sql`ALTER ROLE ${sql(role)} NOLOGIN`;
        await sql.begin(async (t) => {
          await t`REASSIGN OWNED BY ${t(role)} TO CURRENT_USER`;
          await t`DROP OWNED BY ${t(role)}`;
          await t`DROP ROLE IF EXISTS ${t(role)}`;
        });
      }
      await sql`SELECT pg_terminate_backend(pid, 2000) FROM pg_stat_activity WHERE usesysid = ${found.oid} AND pid <> pg_backend_pid()`;
    } catch (err) {
      const d = describe(err);
      throw new TargetError(d.message, true, d.pgCode);
    }
  }

  /** Closes the pool of issuer `key` (deleted or replaced). */
  async close(key: string): Promise<void> {
    const p = this.pools.get(key);
    this.pools.delete(key);
    if (p) await p.sql.end({ timeout: 5 }).catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.sql.end({ timeout: 5 }).catch(() => undefined)));
  }
}
