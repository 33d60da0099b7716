-- The console (issue 11), as SQLite's 0009: the policy version that declared
-- each edge of the role graph (GET /explain), and per-minute/hour/day event
-- counts for the audit histogram (GET /audit/{account}/histogram).

-- Version of the policy (policy_id) whose load wrote the row; NULL for rows
-- written before this migration and rows no policy load wrote.
ALTER TABLE role_memberships ADD COLUMN policy_version BIGINT;
ALTER TABLE permissions ADD COLUMN policy_version BIGINT;
ALTER TABLE resources ADD COLUMN policy_version BIGINT;

-- Event counts per account, grain ('m', 'h', 'd'), bucket start (the time's
-- first 16, 13 or 10 characters), action and result; derived from
-- audit_events only (`coffer store copy` does not copy it: the trigger below
-- rebuilds it from the copied events).
CREATE TABLE audit_counts (
  account  TEXT COLLATE "C" NOT NULL,
  grain    TEXT COLLATE "C" NOT NULL CHECK (grain IN ('m', 'h', 'd')),
  start    TEXT COLLATE "C" NOT NULL,
  action   TEXT COLLATE "C" NOT NULL,
  result   TEXT COLLATE "C" NOT NULL,
  n        BIGINT NOT NULL,
  PRIMARY KEY (account, grain, start, action, result)
);

INSERT INTO audit_counts (account, grain, start, action, result, n)
SELECT account, g.grain, left(time, g.len), action, result, count(*)
FROM audit_events CROSS JOIN (VALUES ('m', 16), ('h', 13), ('d', 10)) AS g(grain, len)
WHERE account IS NOT NULL
GROUP BY account, g.grain, left(time, g.len), action, result;

-- One statement-level trigger: a multi-row INSERT (a group commit, a store
-- copy) adds its events' counts in one upsert per bucket. Appends are
-- serialized by the store's advisory lock, so the upserts never race.
CREATE FUNCTION audit_events_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit_counts (account, grain, start, action, result, n)
  SELECT e.account, g.grain, left(e.time, g.len), e.action, e.result, count(*)
  FROM new_events e CROSS JOIN (VALUES ('m', 16), ('h', 13), ('d', 10)) AS g(grain, len)
  WHERE e.account IS NOT NULL
  GROUP BY e.account, g.grain, left(e.time, g.len), e.action, e.result
  ON CONFLICT (account, grain, start, action, result) DO UPDATE SET n = audit_counts.n + EXCLUDED.n;
  RETURN NULL;
END
$$;
CREATE TRIGGER audit_events_counts AFTER INSERT ON audit_events
  REFERENCING NEW TABLE AS new_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_counts();
