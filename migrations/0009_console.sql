-- The console (issue 11): the policy version that declared each edge of the
-- role graph (GET /explain), and per-minute/hour/day event counts for the
-- audit histogram (GET /audit/{account}/histogram).

-- Version of the policy (policy_id) whose load wrote the row: the load that
-- added the membership or permission (or last changed its admin option), and
-- for a resource the load that added it or last changed its owner (the
-- ownership grant GET /explain reports). NULL for rows written before this
-- migration, and for rows no policy load wrote (POST /roles ?members).
ALTER TABLE role_memberships ADD COLUMN policy_version INTEGER;
ALTER TABLE permissions ADD COLUMN policy_version INTEGER;
ALTER TABLE resources ADD COLUMN policy_version INTEGER;

-- Event counts per account, grain ('m' minute, 'h' hour, 'd' day), bucket
-- start (the time's first 16, 13 or 10 characters: 2026-12-01T10:07,
-- 2026-12-01T10, 2026-12-01), action and result. Derived from audit_events
-- only (like audit_time_state): a histogram of an account-wide auditor reads
-- at most a few rows per bucket instead of every event. Events without an
-- account are not counted (no audit query reads them).
CREATE TABLE audit_counts (
  account  TEXT NOT NULL,
  grain    TEXT NOT NULL CHECK (grain IN ('m', 'h', 'd')),
  start    TEXT NOT NULL,
  action   TEXT NOT NULL,
  result   TEXT NOT NULL,
  n        INTEGER NOT NULL,
  PRIMARY KEY (account, grain, start, action, result)
) WITHOUT ROWID;

INSERT INTO audit_counts (account, grain, start, action, result, n)
SELECT account, g.grain, substr(time, 1, g.len), action, result, count(*)
FROM audit_events, (SELECT 'm' AS grain, 16 AS len UNION ALL SELECT 'h', 13 UNION ALL SELECT 'd', 10) AS g
WHERE account IS NOT NULL
GROUP BY account, g.grain, substr(time, 1, g.len), action, result;

CREATE TRIGGER audit_events_counts AFTER INSERT ON audit_events
WHEN NEW.account IS NOT NULL
BEGIN
  INSERT INTO audit_counts (account, grain, start, action, result, n)
  VALUES
    (NEW.account, 'm', substr(NEW.time, 1, 16), NEW.action, NEW.result, 1),
    (NEW.account, 'h', substr(NEW.time, 1, 13), NEW.action, NEW.result, 1),
    (NEW.account, 'd', substr(NEW.time, 1, 10), NEW.action, NEW.result, 1)
  ON CONFLICT (account, grain, start, action, result) DO UPDATE SET n = n + 1;
END;
