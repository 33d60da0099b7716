-- Dynamic secrets (issue 12): issuers and the leases of the credentials they
-- mint; the same tables as SQLite's migration 0010 (see there for the columns).
--
-- No change-feed triggers (0002's convention is for rows nodes cache): no node
-- caches these rows. Each fetch reads its issuer row; a node's connection pool
-- to an issuer's database is keyed by the row's modified_at, so an update made
-- on another node is picked up by the next fetch there.
CREATE TABLE issuers (
  account      TEXT COLLATE "C" NOT NULL,
  id           TEXT COLLATE "C" NOT NULL,
  type         TEXT COLLATE "C" NOT NULL,
  max_ttl      BIGINT NOT NULL,
  data_public  TEXT COLLATE "C" NOT NULL,
  data_sealed  BYTEA NOT NULL,
  created_at   TEXT COLLATE "C" NOT NULL,
  modified_at  TEXT COLLATE "C" NOT NULL,
  deleted_at   TEXT COLLATE "C",
  PRIMARY KEY (account, id)
);

CREATE TABLE dynamic_leases (
  id               TEXT COLLATE "C" PRIMARY KEY,
  account          TEXT COLLATE "C" NOT NULL,
  issuer_id        TEXT COLLATE "C" NOT NULL,
  variable_id      TEXT COLLATE "C" NOT NULL,
  role_id          TEXT COLLATE "C" NOT NULL,
  token_jti        TEXT COLLATE "C",
  db_role          TEXT COLLATE "C" NOT NULL,
  expires_at       BIGINT NOT NULL,
  created_at       TEXT COLLATE "C" NOT NULL,
  state            TEXT COLLATE "C" NOT NULL DEFAULT 'active',
  revoke_reason    TEXT COLLATE "C",
  attempts         BIGINT NOT NULL DEFAULT 0,
  last_error       TEXT COLLATE "C",
  next_attempt_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX dynamic_leases_due ON dynamic_leases(expires_at);
CREATE INDEX dynamic_leases_retry ON dynamic_leases(state, next_attempt_at);
CREATE INDEX dynamic_leases_jti ON dynamic_leases(token_jti);
CREATE INDEX dynamic_leases_issuer ON dynamic_leases(account, issuer_id);
CREATE INDEX dynamic_leases_account ON dynamic_leases(account, created_at);
