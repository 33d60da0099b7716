-- The trigram index of audit messages (q) leaves the group commit's path, as
-- SQLite's full-text index did from the start (src/store/audit.ts): it moves
-- to audit_search, a copy of (seq, message) that nodes fill in the
-- background (src/store/postgres/audit.ts, indexSearchBatch), and a q query
-- reads the events not copied yet from audit_events itself, so it sees every
-- committed event whatever the lag.
--
-- Why: every group commit maintained the trigram index of its events while
-- holding the cluster's write lock, and every few thousand events one commit
-- also merged the index's pending list (gin fastupdate) — a commit several
-- times longer than the others, which every fetch waiting on it paid. Measured
-- with one node process at 64 connections (alternating runs, README):
-- p99 32–37 ms with this change against 44–48 ms before.
--
-- An existing log is not copied here: a node's start bounds its migrations
-- (5 s), and copying and indexing a large log takes longer. The nodes' fills
-- copy it in the background after the upgrade; until they have, a q query
-- reads the events not copied yet directly (slower, never incomplete).
--
-- The rows of audit_search are always a prefix of the chain: events become
-- visible in seq order (each writer holds the write lock until it commits),
-- and a fill copies the events after the highest seq copied, in order.
CREATE TABLE audit_search (
  seq      BIGINT PRIMARY KEY,
  message  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_search_message_trgm ON audit_search USING gin (message gin_trgm_ops);
DROP INDEX audit_events_message_trgm;

-- Derived, and append-only like the log it copies (the refusal names its table).
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER audit_search_no_update BEFORE UPDATE ON audit_search
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_search_no_delete BEFORE DELETE ON audit_search
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_search_no_truncate BEFORE TRUNCATE ON audit_search
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
