-- Every audit filter is served by an index (issue 9, item 3). Before, a
-- query filtered by result or q walked every event of the account on the
-- event loop (117–238 ms per page at 211k–643k events).
--
-- result: like resource, role and action, an index leading with account
-- that keeps seq order, so a page is an index range.
CREATE INDEX audit_events_account_result ON audit_events(account, result, seq);
-- since/until: the events of a time range (a narrow range is read whole from
-- this index; see src/store/audit.ts). Replaces the account-less time index.
CREATE INDEX audit_events_account_time ON audit_events(account, time, seq);
DROP INDEX audit_events_time;

-- q: a trigram full-text index of the messages, rowid = seq. It only narrows
-- the candidates (its case folding is a superset of LIKE's ASCII folding);
-- every candidate is still checked with the exact `message LIKE '%q%'`.
-- Contentless: the messages stay in audit_events only.
CREATE VIRTUAL TABLE audit_fts USING fts5(message, content = '', tokenize = 'trigram case_sensitive 0');
-- Not filled on the write path: trigram-indexing every message in the
-- transaction of its event halved audited fetch throughput on a large log.
-- It is filled in batches instead, while the server is idle and before any
-- q query (which first brings it up to the log's head), so a q query always
-- searches every event logged before it. audit_fts_state says how far it goes.
CREATE TABLE audit_fts_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  indexed_upto INTEGER NOT NULL
);
INSERT INTO audit_fts (rowid, message) SELECT seq, message FROM audit_events;
INSERT INTO audit_fts_state (id, indexed_upto) SELECT 1, coalesce(max(seq), 0) FROM audit_events;
