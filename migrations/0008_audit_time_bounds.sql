-- Audit queries with since/until and with action alone or action + result
-- (issue 9, item 3). Before, `until` far in the past walked the account's
-- index from its newest event down to the range (659 ms over 1M events), and
-- action=…&result=… walked every event of the action checking result
-- (417 ms when nothing matched).

-- action + result is one range of this index; action alone is the merge of
-- its two result ranges (result is 'success' or 'failure', see 0001). It
-- replaces (account, action, seq): the write path keeps the same number of
-- indexes.
DROP INDEX audit_events_account_action;
CREATE INDEX audit_events_account_action_result ON audit_events(account, action, result, seq);

-- Exact seq bounds from time bounds. Times are not in seq order when the
-- clock went backwards (they are recorded as they were, never clamped), so
-- this one row says where they last did:
--   every event with seq > regression_upto has a time >= the time of every
--   event before it, and max_time is the largest time among the events with
--   seq <= regression_upto.
-- A query turns its time range into a seq window with it (src/store/audit.ts:
-- seqWindow, where the proof is).
CREATE TABLE audit_time_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  regression_upto INTEGER NOT NULL,
  max_time TEXT NOT NULL
);
-- Over the events already logged: one scan in seq order (a one-off cost at
-- upgrade, a few seconds per million events). `before` is the largest time
-- before an event, `upto` the largest up to and including it; the last event
-- whose time is below `before` is the last regression (a bare column beside
-- max() comes from the row holding the maximum). No regression: (0, '').
INSERT INTO audit_time_state (id, regression_upto, max_time)
SELECT 1, coalesce(max(seq), 0), coalesce(upto, '')
FROM (
  SELECT seq, time,
    max(time) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before,
    max(time) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS upto
  FROM audit_events
)
WHERE time < before;

-- Kept true on insert without a write per event: the largest time before NEW
-- is the previous event's own time when that event is past the last
-- regression (its time is then >= every time before it), else the larger of
-- its time and max_time. Seqs are contiguous (one global chain), so the
-- previous event is seq - 1; were it missing (only ever for the first event),
-- the earlier events are read instead. Only an event older than that largest
-- time writes the row.
CREATE TRIGGER audit_events_time_state AFTER INSERT ON audit_events
WHEN NEW.time < (
  SELECT CASE WHEN p.seq > s.regression_upto THEN p.time
    ELSE max(coalesce(p.time, (SELECT max(time) FROM audit_events WHERE seq < NEW.seq), ''), s.max_time) END
  FROM audit_time_state s LEFT JOIN audit_events p ON p.seq = NEW.seq - 1
  WHERE s.id = 1
)
BEGIN
  UPDATE audit_time_state SET
    max_time = (
      SELECT CASE WHEN p.seq > s.regression_upto THEN p.time
        ELSE max(coalesce(p.time, (SELECT max(time) FROM audit_events WHERE seq < NEW.seq), ''), s.max_time) END
      FROM audit_time_state s LEFT JOIN audit_events p ON p.seq = NEW.seq - 1
      WHERE s.id = 1
    ),
    regression_upto = NEW.seq
  WHERE id = 1;
END;
