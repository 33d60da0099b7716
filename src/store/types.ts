/**
 * The asynchronous store interface every backend implements (SQLite in
 * src/store/sqlite.ts, PostgreSQL in src/store/postgres/). Domain code awaits
 * these methods and never learns which backend answers.
 *
 * Each table family's interface is the asynchronous form of the SQLite
 * family's functions (`Async<…>`): one source for the method names and row
 * types, so a backend that forgets a method or changes a row type fails to
 * compile.
 */
import type { AccountsStore as SqliteAccounts } from './accounts.js';
import type { AuditFilter, AuditRow, RangeCountQuery, RangeCountRow, RollupQuery, RollupRow } from './audit.js';
import type { AuthenticatorsStore as SqliteAuthenticators } from './authenticators.js';
import type { CredentialsStore as SqliteCredentials } from './credentials.js';
import type { DynamicStore as SqliteDynamic } from './dynamic.js';
import type { GraphStore as SqliteGraph } from './graph.js';
import type { HostFactoriesStore as SqliteHostFactories } from './host-factories.js';
import type { KeyringStore as SqliteKeyring } from './keyring.js';
import type { PolicyVersionsStore as SqlitePolicyVersions } from './policy-versions.js';
import type { SecretsStore as SqliteSecrets } from './secrets.js';
import type { TokensStore as SqliteTokens } from './tokens.js';
import type { WritableReport } from './health.js';

/** The same methods, each answering a Promise. */
export type Async<S> = {
  [K in keyof S]: S[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};

export type AccountsStore = Async<SqliteAccounts>;
export type AuthenticatorsStore = Async<SqliteAuthenticators>;
export type CredentialsStore = Async<SqliteCredentials>;
export type DynamicStore = Async<SqliteDynamic>;
export type GraphStore = Async<SqliteGraph>;
export type HostFactoriesStore = Async<SqliteHostFactories>;
export type KeyringStore = Async<SqliteKeyring>;
export type PolicyVersionsStore = Async<SqlitePolicyVersions>;
export type SecretsStore = Async<SqliteSecrets>;
export type TokensStore = Async<SqliteTokens>;

/** The chain's last event, as the next one links to it. */
export interface AuditHead {
  seq: number;
  hash: Buffer;
}

/** A batch of events as the audit log links them into its chain. */
export interface ChainBatch {
  /** The events as rows linked to `head`, hashes included. */
  chain(head: AuditHead | undefined): AuditRow[];
  /** A row's hash input after the previous hash: the chain's canonical encoding, a JSON array `[seq, …]`. */
  encode(row: AuditRow): string;
}

export interface AuditStore {
  /** The chain's last event (inside a transaction: the head this transaction extends). */
  head(): Promise<AuditHead | undefined>;
  /**
   * The group commit: in a write transaction of its own, appends the batch
   * linked to the chain's head and answers its rows once committed. The
   * backend may link the rows itself where the head is (PostgreSQL does, in
   * one statement); it answers rows equal to `batch.chain(head)` for the
   * head they were linked to, or fails. `expected` is the head the caller
   * wrote last, the likeliest head. Never called inside a transaction.
   */
  appendChained(batch: ChainBatch, expected?: AuditHead): Promise<AuditRow[]>;
  insert(row: AuditRow): Promise<void>;
  /** Appends consecutive events in order (a group commit's batch). */
  insertAll(rows: AuditRow[]): Promise<void>;
  /** Adds up to `max` not yet indexed events to the full-text index (one transaction); returns how many. */
  indexSearchBatch(max: number): Promise<number>;
  /**
   * Whether the full-text index is also filled while the log is busy, every SEARCH_INDEX_BUSY_EVENTS events, off
   * the request path (PostgreSQL: the database does the work, on a connection of its own). Otherwise it is filled
   * once the log is quiet, and a q query catches it up first (SQLite: the fill would hold the node's one thread).
   */
  readonly indexSearchWhileBusy?: boolean;
  /** Up to `limit` events after `afterSeq`, in sequence order. */
  page(afterSeq: number, limit: number): Promise<AuditRow[]>;
  /**
   * A filtered page. A backend that must walk many index entries does so in
   * bounded slices and lets other requests run between them.
   */
  query(f: AuditFilter): Promise<AuditRow[]>;
  /** The backend's query plan of `f`, one line per step (tests check that no plan scans the table). */
  explain(f: AuditFilter): Promise<string[]>;
  /** Rows of the audit_counts rollup (migration 0009) of one grain and bucket-key range. */
  countRollup(q: RollupQuery): Promise<RollupRow[]>;
  /** The account's events in a time range counted per action and result (served by its time index). */
  countRange(q: RangeCountQuery): Promise<RangeCountRow[]>;
  /** The plans of a rollup read and a range count, one line per step. */
  explainCounts(r: RollupQuery, c: RangeCountQuery): Promise<string[]>;
}

export interface StorageHealth {
  /** Whether the database can still take writes (GET /health); cached for a second. */
  check(nowMs: number, minFreeBytes: number): Promise<WritableReport>;
  /** A statement failed: forget the cached report if it was a storage failure. */
  noteFailure(err: unknown): void;
  /** One trivial read: the database answers at all. */
  ping(): Promise<void>;
}

/**
 * A change another node (or a CLI command) made to rows this node caches.
 * `graph`, `tokens` and `keyring` mean: reload that part in full.
 */
export type StoreChange =
  | { topic: 'graph' }
  | { topic: 'keyring' }
  | { topic: 'tokens' }
  | { topic: 'revoked'; jti: string; expiresAt: number }
  | { topic: 'notBefore'; roleId: string; atMs: number };

export interface ChangeFeed {
  /**
   * Calls `fn` for every committed change to cached rows, from any node (this
   * one included). SQLite: never — one process owns the file, and it updates
   * its caches where it makes the change.
   */
  subscribe(fn: (change: StoreChange) => void): void;
}

export interface Store {
  readonly backend: 'sqlite' | 'postgres';
  changes: ChangeFeed;
  accounts: AccountsStore;
  audit: AuditStore;
  authenticators: AuthenticatorsStore;
  credentials: CredentialsStore;
  /** Issuers and dynamic-secret leases (issue 12). */
  dynamic: DynamicStore;
  graph: GraphStore;
  hostFactories: HostFactoriesStore;
  keyring: KeyringStore;
  policyVersions: PolicyVersionsStore;
  secrets: SecretsStore;
  tokens: TokensStore;
  health: StorageHealth;
  /**
   * Runs `fn` in one transaction: every store call made while it runs (in
   * its async context) joins it. Nested calls become savepoints. Only store
   * calls should be awaited inside: the transaction holds the write lock.
   */
  tx<T>(fn: () => Promise<T>): Promise<T>;
  /** Whether the caller runs inside a transaction of this store (its async context). */
  inTransaction(): boolean;
  close(): Promise<void>;
}
