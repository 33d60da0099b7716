/**
 * Helpers for the route-by-route security matrix (test/e2e/security-matrix.test.ts):
 * a digest of every table a refused request must leave alone, and a search
 * for planted canaries (secret values, API keys, tokens) in a response.
 */
import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { Reply } from './http.js';
import type { Store } from '../../src/store/index.js';
import type { PostgresStore } from '../../src/store/postgres/index.js';
import type { PgSql } from '../../src/store/postgres/client.js';
import { dbOf } from './sqlite.js';

/**
 * The append-only audit log (audit_events and its full-text index, the
 * audit_fts* tables) records refusals by design; every other table must be
 * byte-for-byte the same after a refused request.
 */
/**
 * The audit log and what is derived from it (the search index — SQLite's audit_fts*, PostgreSQL's audit_search of
 * its migration 0006 —, the time-bounds row of migration 0008, the per-minute/hour/day counts of migration 0009):
 * every request changes them.
 */
export const isAuditTable = (name: string) =>
  name === 'audit_events' || name.startsWith('audit_fts') || name === 'audit_search' || name === 'audit_time_state' || name === 'audit_counts';

/** Tables a refusal could corrupt; the digest must cover at least these (a guard against the listing going wrong). */
export const DIGEST_REQUIRED_TABLES = [
  'accounts', 'roles', 'role_memberships', 'resources', 'permissions', 'annotations', 'credentials', 'secrets',
  'policy_versions', 'revoked_tokens', 'host_factory_tokens', 'authenticator_configs', 'jwt_jti', 'keyring', 'signing_keys',
];

/** Per-table SHA-256 over every row (`SELECT * … ORDER BY` every column), all tables but the audit log, on either backend. */
export async function tableDigest(store: Store): Promise<Record<string, string>> {
  if (store.backend === 'postgres') return postgresDigest((store as PostgresStore).sql);
  return sqliteDigest(dbOf(store));
}

function digestRows(rows: unknown[][]): string {
  const h = createHash('sha256');
  for (const row of rows) {
    for (const cell of row) {
      const bytes = Buffer.isBuffer(cell) ? `b:${cell.toString('base64')}` : `${typeof cell}:${String(cell)}`;
      h.update(`${bytes.length}:${bytes}`);
    }
    h.update('\n');
  }
  return `${rows.length} rows ${h.digest('hex').slice(0, 16)}`;
}

function sqliteDigest(db: Database.Database): Record<string, string> {
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[])
    .map((t) => t.name)
    .filter((n) => !isAuditTable(n));
  const out: Record<string, string> = {};
  for (const table of tables) {
    const columns = (db.prepare(`PRAGMA table_info("${table}")`).all() as unknown[]).length;
    const order = Array.from({ length: columns }, (_, i) => i + 1).join(', ');
    out[table] = digestRows(db.prepare(`SELECT * FROM "${table}" ORDER BY ${order}`).raw().all() as unknown[][]);
  }
  return out;
}

async function postgresDigest(sql: PgSql): Promise<Record<string, string>> {
  const tables = (await sql<{ name: string }[]>`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name COLLATE "C"`)
    .map((t) => t.name)
    .filter((n) => !isAuditTable(n));
  const out: Record<string, string> = {};
  for (const table of tables) {
    const [{ n }] = (await sql.unsafe(`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '${table}'`)) as unknown as [{ n: number }];
    const order = Array.from({ length: n }, (_, i) => i + 1).join(', ');
    const rows = (await sql.unsafe(`SELECT * FROM "${table}" ORDER BY ${order}`).values()) as unknown as unknown[][];
    out[table] = digestRows(rows);
  }
  return out;
}

/** Canaries (named) found in a response's body or headers. */
export function leakedCanaries(reply: Reply, canaries: ReadonlyMap<string, string>): string[] {
  const headerText = [...reply.headers.entries()].map(([k, v]) => `${k}: ${v}`).join('\n');
  const found: string[] = [];
  for (const [name, value] of canaries) {
    if (value.length < 8) continue;
    if (reply.text.includes(value)) found.push(`${name} in body`);
    if (headerText.includes(value)) found.push(`${name} in headers`);
  }
  return found;
}

/** The pieces of an access token that must never be echoed: its JSON, its base64 form, payload and signature. */
export function tokenCanaries(name: string, tokenJson: string): [string, string][] {
  const out: [string, string][] = [
    [`${name} (token JSON)`, tokenJson],
    [`${name} (token base64)`, Buffer.from(tokenJson).toString('base64')],
  ];
  try {
    const t = JSON.parse(tokenJson) as { payload?: string; signature?: string };
    if (t.payload) out.push([`${name} (token payload)`, t.payload]);
    if (t.signature) out.push([`${name} (token signature)`, t.signature]);
  } catch {
    // a token that is not JSON has no parts to plant
  }
  return out;
}

/** The same token with its signature altered in one character: well-formed, but not signed by the server. */
export function garble(tokenJson: string): string {
  const t = JSON.parse(tokenJson) as { signature: string };
  const sig = t.signature;
  const i = Math.floor(sig.length / 2);
  t.signature = `${sig.slice(0, i)}${sig[i] === 'A' ? 'B' : 'A'}${sig.slice(i + 1)}`;
  return JSON.stringify(t);
}
