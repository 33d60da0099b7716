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
-- Filled in the same transaction as the event (a trigger, so no insert path
-- can forget it), and backfilled here for the events already logged.
CREATE TRIGGER audit_events_fts AFTER INSERT ON audit_events
BEGIN
  INSERT INTO audit_fts (rowid, message) VALUES (new.seq, new.message);
END;
INSERT INTO audit_fts (rowid, message) SELECT seq, message FROM audit_events;
