-- GET /health's write probe (src/store/health.ts): one row whose time is
-- rewritten by a real commit at most once a second, so /health can tell a
-- database that still takes writes from one on a full, read-only or failing
-- disk (a no-op UPDATE writes nothing and would prove nothing). One fixed row:
-- the table never grows.
CREATE TABLE health_probe (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  probed_at TEXT NOT NULL
);
INSERT INTO health_probe (id, probed_at) VALUES (1, '');
