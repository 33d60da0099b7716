/**
 * `coffer store copy`: moves an SQLite installation to an empty PostgreSQL
 * database whole — accounts, the graph, policy versions, credentials, sealed
 * values and signing keys, the keyring, host-factory tokens, revocations and
 * the audit chain — in one PostgreSQL transaction, then checks that every
 * table holds as many rows as the source and that the copied chain verifies
 * to the same head. Values stay sealed: the same data key opens them, since
 * the barrier's associated data names rows by ids that do not change.
 * Dynamic-secret issuers (their sealed admin logins) and leases are copied
 * too, so the new nodes' sweeper still ends the logins the old server issued.
 *
 * Not copied: SQLite's own search index (audit_fts, audit_fts_state;
 * PostgreSQL's audit_search is filled from the copied events in the same
 * transaction), its health probe row,
 * and audit_time_state and audit_counts, which PostgreSQL's insert triggers
 * rebuild from the copied events.
 */
import type { Db } from './db.js';
import { ChainVerifier, type VerifyResult } from '../audit/chain.js';
import type { AuditRow } from './audit.js';
import type { PgSql } from './postgres/client.js';

/** Tables in an order that satisfies their foreign keys (PostgreSQL checks them at commit anyway). */
export const COPIED_TABLES = [
  'accounts',
  'server_meta',
  'keyring',
  'roles',
  'resources',
  'role_memberships',
  'permissions',
  'annotations',
  'credentials',
  'secrets',
  'signing_keys',
  'policy_versions',
  'revoked_tokens',
  'authenticator_configs',
  'jwt_jti',
  'host_factory_tokens',
  'issuers',
  'dynamic_leases',
  'audit_events',
] as const;

/** SQLite tables left out on purpose (see above); every other table must be in COPIED_TABLES. */
export const NOT_COPIED_TABLES = ['audit_fts', 'audit_fts_state', 'health_probe', 'audit_time_state', 'audit_counts', 'schema_migrations'] as const;

/** Most bound parameters in one INSERT (PostgreSQL's limit is 65,535). */
const MAX_PARAMS = 60_000;

export class CopyRefusedError extends Error {}

export interface CopyReport {
  rows: Record<string, number>;
  chain: VerifyResult;
}

/** Tables of the target that already hold rows (a copy goes into an empty database only). */
export async function nonEmptyTables(pg: PgSql): Promise<string[]> {
  const out: string[] = [];
  for (const table of COPIED_TABLES) {
    const [row] = (await pg.unsafe(`SELECT EXISTS (SELECT 1 FROM ${table}) AS any`)) as unknown as { any: boolean }[];
    if (row!.any) out.push(table);
  }
  return out;
}

export async function copySqliteToPostgres(lite: Db, pg: PgSql, onProgress?: (table: string, rows: number) => void): Promise<CopyReport> {
  const busy = await nonEmptyTables(pg);
  if (busy.length > 0) {
    throw new CopyRefusedError(`the target database is not empty (rows in ${busy.join(', ')}); copy into a new, empty database`);
  }
  const rows: Record<string, number> = {};
  let chain!: VerifyResult;
  await pg.begin(async (t) => {
    for (const table of COPIED_TABLES) {
      const statement = lite.prepare(`SELECT * FROM ${table}`);
      const columns = statement.columns().map((c) => c.name);
      const batchSize = Math.max(1, Math.floor(MAX_PARAMS / columns.length));
      const insert = (n: number) =>
        `INSERT INTO ${table} (${columns.join(', ')}) VALUES ` +
        Array.from({ length: n }, (_, r) => `(${columns.map((__, c) => `$${r * columns.length + c + 1}`).join(', ')})`).join(', ');
      let count = 0;
      // The SQLite iterator stays open across the awaits: nothing else runs on that connection meanwhile.
      const source = statement.iterate() as IterableIterator<Record<string, unknown>>;
      for (;;) {
        const batch: unknown[] = [];
        let n = 0;
        while (n < batchSize) {
          const next = source.next();
          if (next.done) break;
          for (const column of columns) batch.push(next.value[column]);
          n++;
        }
        if (n === 0) break;
        await t.unsafe(insert(n), batch as never[]);
        count += n;
        onProgress?.(table, count);
        if (n < batchSize) break;
      }
      rows[table] = count;
    }
    // The search index in one statement now rather than by the nodes' fills later: until then a q query would read
    // the whole copied log without an index.
    await t.unsafe('INSERT INTO audit_search (seq, message) SELECT seq, message FROM audit_events ORDER BY seq');
    await t.unsafe('ANALYZE audit_search');
    // Verified inside the transaction, so a copy that does not match its source leaves the target empty.
    for (const table of COPIED_TABLES) {
      const [row] = (await t.unsafe(`SELECT count(*)::int8 AS n FROM ${table}`)) as unknown as { n: number }[];
      const copied = row!.n;
      const source = (lite.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
      if (copied !== source) throw new Error(`after the copy, ${table} holds ${copied} rows in PostgreSQL but ${source} in SQLite`);
    }
    const verifier = new ChainVerifier();
    for (let after = 0; ; ) {
      const page = (await t`SELECT * FROM audit_events WHERE seq > ${after} ORDER BY seq LIMIT 5000`) as unknown as AuditRow[];
      if (page.length === 0) break;
      for (const event of page) verifier.push(event);
      after = page[page.length - 1]!.seq;
    }
    chain = verifier.result();
    const head = (lite.prepare('SELECT max(seq) AS s FROM audit_events').get() as { s: number | null }).s ?? 0;
    if (!chain.ok) throw new CopyRefusedError(`the audit chain does not verify (seq ${chain.firstBadSeq}: ${chain.reason}); nothing was copied`);
    if (chain.lastSeq !== head) throw new Error(`the copied audit chain ends at seq ${chain.lastSeq}, the source's at ${head}`);
  });
  return { rows, chain };
}
