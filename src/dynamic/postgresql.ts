/**
 * The `postgresql` issuer's side of the target database: creating one login
 * per fetch and ending it when its lease ends.
 *
 * SQL safety: every name is sent as an identifier through the driver's
 * identifier escaping (`sql(name)`), never pasted: the generated role name
 * and the grant roles of the variable's `dynamic/grant-roles` annotation
 * alike. CREATE ROLE takes no bind parameters, so the two literals it needs
 * are pasted — both generated here and checked against a strict pattern: the
 * password goes as a SCRAM-SHA-256 verifier computed here (the plaintext
 * never reaches the target, so it cannot land in its statement log), and
 * VALID UNTIL as an ISO timestamp.
 *
 * Bounded work: every connection carries statement_timeout, lock_timeout and
 * idle_in_transaction_session_timeout, and every call has a deadline, so a
 * target that hangs (a lock held on pg_authid, a network black hole) costs a
 * failed attempt — retried later — never a stuck fetch or sweeper.
 *
 * One small pool per issuer (at most POOL_MAX connections), keyed by the
 * issuer row's modified_at: an updated issuer gets a new pool and the old one
 * is closed; `close(key)` ends an issuer's pool (deleted issuer).
 */
import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
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
/** Server-side bounds of every statement Coffer runs on a target (milliseconds). */
export const TARGET_STATEMENT_TIMEOUT_MS = 10_000;
export const TARGET_LOCK_TIMEOUT_MS = 5_000;
const TARGET_IDLE_IN_TX_TIMEOUT_MS = 30_000;
/** Longest one createLogin or dropLogin may take, connecting included. */
export const TARGET_CALL_DEADLINE_MS = 30_000;
/** How long dropLogin waits for a terminated session to go. */
const TERMINATE_WAIT_MS = 3_000;
/**
 * Roles made by initdb — the bootstrap superuser and every predefined role
 * (pg_read_server_files, pg_read_all_data, pg_signal_backend, …) — have oids
 * below FirstNormalObjectId; each reaches beyond one database's tables (the
 * server's files and programs, every database, other sessions). None is ever
 * granted to a generated login, directly or through another role.
 */
const FIRST_NORMAL_OBJECT_ID = 16_384;
/** PostgreSQL reserves this prefix for predefined roles (CREATE ROLE refuses it). */
export const PREDEFINED_ROLE_PREFIX = 'pg_';
/** Generated role names: the prefix, then 24 hex digits. */
export const ROLE_PREFIX = 'coffer_';
const ROLE_NAME = /^coffer_[0-9a-f]{24}$/;
const PASSWORD = /^[A-Za-z0-9_-]{32,}$/;
const SCRAM_VERIFIER = /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*:[A-Za-z0-9+/]+=*$/;
const pbkdf2Async = promisify(pbkdf2);

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802 /
 * 7677, the format of libpq's PQencryptPasswordConn): PBKDF2-HMAC-SHA-256
 * with 4096 iterations from node:crypto, then StoredKey and ServerKey. The
 * password is ASCII (base64url), so SASLprep leaves it unchanged.
 */
export async function scramVerifier(password: string, salt: Buffer = randomBytes(16)): Promise<string> {
  const salted = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, 4096, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  salted.fill(0);
  return `SCRAM-SHA-256$4096:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** Runs `work`, or fails with a TargetError once `ms` have passed (the work may still apply). */
async function withDeadline<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TargetError(`${what} did not finish within ${ms / 1000} s`, true)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
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

/** A grant the target database refused to allow (nothing was created). */
class RefusedGrant extends Error {}
/** The caller gave up (deadline): the transaction rolls back instead of creating the login. */
class Abandoned extends Error {}

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
      // Every CREATE/GRANT/DROP text is unique (it names a new login): prepared, each would stay on the target's
      // backend and in the client's cache for the connection's life.
      prepare: false,
      idle_timeout: 60,
      connect_timeout: CONNECT_TIMEOUT_SEC,
      onnotice: () => undefined,
      connection: {
        application_name: 'coffer-dynamic-secrets',
        statement_timeout: TARGET_STATEMENT_TIMEOUT_MS,
        lock_timeout: TARGET_LOCK_TIMEOUT_MS,
        idle_in_transaction_session_timeout: TARGET_IDLE_IN_TX_TIMEOUT_MS,
      },
    });
    this.pools.set(key, { version, sql });
    return sql;
  }

  /**
   * Creates login `role` with `password`, valid until `validUntil`, member of
   * `grants` — in one transaction: either all of it or nothing. Refused
   * (nothing created) when a grant role does not exist, or when it is — or
   * inherits from — a role that would make the login more than a database
   * user: a superuser, CREATEROLE, REPLICATION or BYPASSRLS role, the
   * issuer's own login, a role made by initdb (every predefined role), or a
   * membership held WITH ADMIN OPTION (the login could hand that role to
   * itself or to anyone, beyond its lease).
   *
   * Past the deadline the caller is answered at once; the transaction, if it
   * is still queued or running, then rolls back at its next step instead of
   * creating a login nobody will end.
   */
  async createLogin(key: string, version: string, c: TargetConnection, role: string, password: string, validUntil: Date, grants: string[]): Promise<void> {
    const until = validUntil.toISOString();
    if (!ROLE_NAME.test(role) || !PASSWORD.test(password) || !TIMESTAMP.test(until)) throw new Error('refusing to create a login from unexpected generated values');
    const verifier = await scramVerifier(password);
    if (!SCRAM_VERIFIER.test(verifier)) throw new Error('refusing to create a login from an unexpected password verifier');
    const sql = this.pool(key, version, c);
    let started = false;
    let abandoned = false;
    const stillWanted = () => {
      if (abandoned) throw new Abandoned();
    };
    const work = sql.begin(async (t) => {
      stillWanted();
      started = true;
      // Not waiting for this commit to reach the target's disk is safe in this direction only: a crash
      // that loses it loses the login, so the credential just does not work. (Drops are synchronous.)
      await t`SET LOCAL synchronous_commit TO OFF`;
      if (grants.length > 0) {
        const found = await t<{ rolname: string }[]>`SELECT rolname FROM pg_roles WHERE rolname IN ${t(grants)}`;
        const missing = grants.filter((g) => !found.some((f) => f.rolname === g));
        if (missing.length > 0) throw new RefusedGrant(`role ${missing.map((m) => JSON.stringify(m)).join(', ')} does not exist in database ${c.database}`);
        const privileged = await t<{ grant: string; via: string; why: string }[]>`
          WITH RECURSIVE up(grant_name, oid) AS (
            SELECT rolname::text, oid FROM pg_roles WHERE rolname IN ${t(grants)}
            UNION
            SELECT up.grant_name, m.roleid FROM pg_auth_members m JOIN up ON m.member = up.oid
          )
          SELECT * FROM (
            SELECT up.grant_name AS grant, r.rolname::text AS via,
                   CASE WHEN r.rolsuper THEN 'SUPERUSER' WHEN r.rolcreaterole THEN 'CREATEROLE' WHEN r.rolreplication THEN 'REPLICATION'
                        WHEN r.rolbypassrls THEN 'BYPASSRLS' WHEN r.rolname = current_user THEN 'the issuer''s own login'
                        ELSE 'a predefined role, which reaches beyond the database' END AS why
            FROM up JOIN pg_roles r ON r.oid = up.oid
            WHERE r.rolsuper OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls OR r.rolname = current_user
               OR r.oid < ${FIRST_NORMAL_OBJECT_ID}
            UNION ALL
            SELECT up.grant_name, r.rolname::text, 'held WITH ADMIN OPTION (the login could grant it to anyone)'
            FROM up JOIN pg_auth_members m ON m.member = up.oid AND m.admin_option JOIN pg_roles r ON r.oid = m.roleid
          ) refused
          ORDER BY 1, 2 LIMIT 1`;
        const p = privileged[0];
        if (p) {
          throw new RefusedGrant(
            p.grant === p.via ? `refusing to grant role "${p.grant}": it is ${p.why}` : `refusing to grant role "${p.grant}": it is a member of "${p.via}", ${p.why}`,
          );
        }
      }
      stillWanted();
      await t`CREATE ROLE ${t(role)} WITH LOGIN INHERIT PASSWORD ${t.unsafe(`'${verifier}'`)} VALID UNTIL ${t.unsafe(`'${until}'`)}`;
      for (const g of grants) {
        stillWanted();
        await t`GRANT ${t(g)} TO ${t(role)}`;
      }
      stillWanted();
    });
    try {
      await withDeadline(TARGET_CALL_DEADLINE_MS, 'creating the login', work);
    } catch (err) {
      if (err instanceof TargetError) {
        abandoned = true;
        throw err;
      }
      if (err instanceof RefusedGrant) throw new TargetError(err.message, false);
      const d = describe(err);
      // An error the server raised rolled the transaction back; a broken connection after BEGIN leaves it open to doubt.
      throw new TargetError(d.message, started && !d.serverSide, d.pgCode);
    }
  }

  /**
   * Ends login `role`, in the order that leaves it no way back in: NOLOGIN
   * (no new session can start), then its sessions terminated and checked
   * gone, then the role dropped. Each step is safe to repeat, so a retry after
   * any failure finishes the job. Idempotent: a role already gone is fine.
   */
  async dropLogin(key: string, version: string, c: TargetConnection, role: string): Promise<'dropped' | 'absent'> {
    if (!ROLE_NAME.test(role)) throw new Error('refusing to drop a role Coffer did not name');
    const sql = this.pool(key, version, c);
    try {
      return await withDeadline(TARGET_CALL_DEADLINE_MS, 'ending the login', this.endLogin(sql, role));
    } catch (err) {
      if (err instanceof TargetError) throw err;
      const d = describe(err);
      throw new TargetError(d.message, true, d.pgCode);
    }
  }

  private async endLogin(sql: postgres.Sql, role: string): Promise<'dropped' | 'absent'> {
    const [found] = await sql<{ oid: number }[]>`SELECT oid::int8 AS oid FROM pg_roles WHERE rolname = ${role}`;
    if (!found) return 'absent';
    try {
      await sql`ALTER ROLE ${sql(role)} NOLOGIN`;
    } catch (err) {
      // 42704: dropped meanwhile (another node, or a concurrent end of the same lease).
      if ((err as { code?: string }).code === '42704') return 'absent';
      throw err;
    }
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usesysid = ${found.oid} AND pid <> pg_backend_pid()`;
    // pg_terminate_backend only signals: wait (bounded) until the sessions are really gone before dropping.
    const until = Date.now() + TERMINATE_WAIT_MS;
    for (;;) {
      const [left] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usesysid = ${found.oid} AND pid <> pg_backend_pid()`;
      if (!left || left.n === 0) break;
      if (Date.now() > until) throw new TargetError(`${left.n} session(s) of login ${role} are still open after being terminated`, true);
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      await sql`DROP ROLE IF EXISTS ${sql(role)}`;
    } catch (err) {
      // 2BP01: the login owns objects or holds privileges: hand them to the issuer's login, then drop.
      if ((err as { code?: string }).code !== '2BP01') throw err;
      await sql.begin(async (t) => {
        await t`REASSIGN OWNED BY ${t(role)} TO CURRENT_USER`;
        await t`DROP OWNED BY ${t(role)}`;
        await t`DROP ROLE IF EXISTS ${t(role)}`;
      });
    }
    return 'dropped';
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
