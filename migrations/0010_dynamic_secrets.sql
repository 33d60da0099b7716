-- Dynamic secrets (issue 12): issuers and the leases of the credentials they mint.
--
-- issuers: Conjur's issuers API. `data_public` is the JSON of the non-secret
-- fields of `data` (host, port, database, username, sslmode); `data_sealed` the
-- barrier-packed JSON of the secret ones (password, ca_cert), associated data
-- `issuer:<account>:<id>`. A deleted issuer keeps its row (deleted_at set,
-- invisible to the API) until the sweeper has ended every lease it issued: the
-- row holds the only credentials that can drop those database roles.
CREATE TABLE issuers (
  account      TEXT NOT NULL,
  id           TEXT NOT NULL,
  type         TEXT NOT NULL,
  max_ttl      INTEGER NOT NULL,
  data_public  TEXT NOT NULL,
  data_sealed  BLOB NOT NULL,
  created_at   TEXT NOT NULL,
  modified_at  TEXT NOT NULL,
  deleted_at   TEXT,
  PRIMARY KEY (account, id)
);

-- One row per credential handed out. It holds no secret (the password is
-- returned once and never stored), so nothing here is sealed. No foreign key
-- to resources: deleting the variable must not forget a live database login.
--  state: 'active' until the lease ends, then 'revoking' while the database
--  role has not been dropped yet (the sweeper retries); the row is deleted,
--  together with the audit event, once the role is gone.
CREATE TABLE dynamic_leases (
  id               TEXT PRIMARY KEY,
  account          TEXT NOT NULL,
  issuer_id        TEXT NOT NULL,
  variable_id      TEXT NOT NULL,
  role_id          TEXT NOT NULL,
  token_jti        TEXT,
  db_role          TEXT NOT NULL,
  -- Unix milliseconds.
  expires_at       INTEGER NOT NULL,
  created_at       TEXT NOT NULL,
  state            TEXT NOT NULL DEFAULT 'active',
  revoke_reason    TEXT,
  attempts         INTEGER NOT NULL DEFAULT 0,
  last_error       TEXT,
  next_attempt_at  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX dynamic_leases_due ON dynamic_leases(expires_at);
CREATE INDEX dynamic_leases_retry ON dynamic_leases(state, next_attempt_at);
CREATE INDEX dynamic_leases_jti ON dynamic_leases(token_jti);
CREATE INDEX dynamic_leases_issuer ON dynamic_leases(account, issuer_id);
CREATE INDEX dynamic_leases_account ON dynamic_leases(account, created_at);
