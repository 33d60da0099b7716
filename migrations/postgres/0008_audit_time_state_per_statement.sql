-- audit_time_state (0001) kept by one trigger call per INSERT statement
-- instead of one per event. A group commit inserts its whole batch in one
-- statement (audit_append, 0005) while holding the write lock every node's
-- commits wait for. Measured with pgbench on copies of one 50,000-event log,
-- a batch of 31 fetch events: 3.10 against 3.33 ms of database time (medians
-- of four alternating runs, synchronous_commit off), and after the clock went
-- back, when the row trigger rewrote the state row for every event of the
-- batch, 3.05-3.25 against 4.0-5.0 ms.
--
-- Same state as the row trigger's (the PostgreSQL store test compares it with
-- SQLite's row trigger after every statement of 1–6 events over a clock that
-- goes backwards). With M_i the largest time of the events before the
-- statement's i-th: the row trigger's `largest` for that event is M_i
-- (by the state's invariant), and it writes the row when the event's time is
-- below M_i, so after the statement the row holds the last such event's seq
-- and its M_i, or is untouched. M_i is the larger of the largest time before
-- the statement (found as the row trigger found it for the statement's first
-- event) and the largest time among the statement's events before the i-th.
-- Like the row trigger, it relies on events being inserted in seq order,
-- consecutively, by one writer at a time.
DROP TRIGGER audit_events_time_state ON audit_events;
DROP FUNCTION audit_events_time_state();
CREATE FUNCTION audit_events_time_state() RETURNS trigger LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
  s_upto BIGINT;
  s_max TEXT COLLATE "C";
  first_seq BIGINT;
  p_seq BIGINT;
  p_time TEXT COLLATE "C";
  before_first TEXT COLLATE "C";
  r_seq BIGINT;
  r_max TEXT COLLATE "C";
BEGIN
  SELECT regression_upto, max_time INTO s_upto, s_max FROM audit_time_state WHERE id = 1;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  SELECT min(n.seq) INTO first_seq FROM new_events n;
  IF first_seq IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT a.seq, a.time INTO p_seq, p_time FROM audit_events a WHERE a.seq = first_seq - 1;
  IF p_seq IS NOT NULL AND p_seq > s_upto THEN
    before_first := p_time;
  ELSE
    before_first := greatest(coalesce(p_time, (SELECT max(a.time) FROM audit_events a WHERE a.seq < first_seq), ''), s_max);
  END IF;
  SELECT b.seq, b.largest INTO r_seq, r_max
    FROM (SELECT n.seq, n.time,
            greatest(before_first, max(n.time) OVER (ORDER BY n.seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) AS largest
          FROM new_events n) b
    WHERE b.time < b.largest
    ORDER BY b.seq DESC
    LIMIT 1;
  IF FOUND THEN
    UPDATE audit_time_state SET max_time = r_max, regression_upto = r_seq WHERE id = 1;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER audit_events_time_state AFTER INSERT ON audit_events
  REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION audit_events_time_state();
