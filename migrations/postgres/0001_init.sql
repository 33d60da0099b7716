-- Coffer schema for PostgreSQL (13 or newer), version 1.
--
-- This one file mirrors the SQLite migrations 0001–0008 (migrations/*.sql)
-- applied in order: the same tables, columns, keys, uniqueness, foreign keys
-- (same ON DELETE behaviour and deferral), CHECK constraints and indexes, so
-- that `coffer store copy` can move every row as it is and rows read back
-- from either backend compare equal. Later schema changes get their own
-- numbered files here (0002_….sql, …), applied in order and recorded by
-- version in schema_migrations (src/store/postgres/migrate.ts creates that
-- table, as src/store/db.ts does for SQLite); the numbers of the two backends
-- are independent of each other.
--
-- Type mapping, chosen so values stay byte-identical to what SQLite stores:
--  * BLOB → BYTEA.
--  * TEXT → TEXT COLLATE "C": SQLite compares text bytewise (BINARY), so
--    ORDER BY, range conditions (e.g. identifier >= 'conjur/authn-jwt/') and
--    ILIKE's case folding (ASCII only under "C", like SQLite's LIKE) must not
--    depend on the database's default locale.
--  * ISO-8601 times stay TEXT, exactly as the application writes them.
--  * INTEGER → BIGINT for sequence numbers and every epoch timestamp (ms or s),
--    INTEGER (int4) for small counters, versions and 0/1 flags. The client
--    parses BIGINT to a JS number (src/store/postgres/client.ts).
--
-- Not mirrored: the FTS5 table audit_fts and its filler state audit_fts_state
-- (migration 0006). PostgreSQL searches messages with a pg_trgm GIN index on
-- audit_events.message instead, kept current by PostgreSQL on every insert.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE accounts (
  name        TEXT COLLATE "C" PRIMARY KEY,
  created_at  TEXT COLLATE "C" NOT NULL
);

-- Server-wide values: key-check, encrypted server secrets (pepper, ...).
CREATE TABLE server_meta (
  name   TEXT COLLATE "C" PRIMARY KEY,
  value  BYTEA NOT NULL
);

-- Data-encryption keys wrapped by the master data key.
CREATE TABLE keyring (
  version      INTEGER PRIMARY KEY,
  nonce        BYTEA NOT NULL,
  wrapped_key  BYTEA NOT NULL,
  state        TEXT COLLATE "C" NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
  created_at   TEXT COLLATE "C" NOT NULL
);

CREATE TABLE roles (
  role_id     TEXT COLLATE "C" PRIMARY KEY,
  account     TEXT COLLATE "C" NOT NULL,
  kind        TEXT COLLATE "C" NOT NULL,
  identifier  TEXT COLLATE "C" NOT NULL,
  policy_id   TEXT COLLATE "C",
  created_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX roles_policy ON roles(policy_id);

CREATE TABLE resources (
  resource_id  TEXT COLLATE "C" PRIMARY KEY,
  account      TEXT COLLATE "C" NOT NULL,
  kind         TEXT COLLATE "C" NOT NULL,
  identifier   TEXT COLLATE "C" NOT NULL,
  owner_id     TEXT COLLATE "C" NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  policy_id    TEXT COLLATE "C",
  created_at   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX resources_owner ON resources(owner_id);
CREATE INDEX resources_policy ON resources(policy_id);
CREATE INDEX resources_account_kind ON resources(account, kind, resource_id);
CREATE INDEX resources_kind_identifier ON resources(kind, identifier);

CREATE TABLE role_memberships (
  role_id       TEXT COLLATE "C" NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  member_id     TEXT COLLATE "C" NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  admin_option  INTEGER NOT NULL DEFAULT 0,
  ownership     INTEGER NOT NULL DEFAULT 0,
  policy_id     TEXT COLLATE "C",
  PRIMARY KEY (role_id, member_id, ownership)
);
CREATE INDEX role_memberships_member ON role_memberships(member_id);
CREATE INDEX role_memberships_policy ON role_memberships(policy_id);

CREATE TABLE permissions (
  resource_id  TEXT COLLATE "C" NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  privilege    TEXT COLLATE "C" NOT NULL,
  role_id      TEXT COLLATE "C" NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  policy_id    TEXT COLLATE "C",
  PRIMARY KEY (resource_id, privilege, role_id)
);
CREATE INDEX permissions_role ON permissions(role_id);
CREATE INDEX permissions_policy ON permissions(policy_id);

CREATE TABLE annotations (
  resource_id  TEXT COLLATE "C" NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  name         TEXT COLLATE "C" NOT NULL,
  value        TEXT COLLATE "C" NOT NULL,
  policy_id    TEXT COLLATE "C",
  PRIMARY KEY (resource_id, name)
);
CREATE INDEX annotations_policy ON annotations(policy_id);

-- API keys are verified against an HMAC-SHA-256 under a server pepper (constant
-- time, no decryption on the hot path); the sealed copy exists only so that
-- password login can return the key, as Conjur's GET /authn/{acct}/login does.
-- Passwords are argon2id hashes.
CREATE TABLE credentials (
  role_id        TEXT COLLATE "C" PRIMARY KEY REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  api_key_hash   BYTEA,
  api_key_sealed BYTEA,
  password_hash  TEXT COLLATE "C",
  restricted_to  TEXT COLLATE "C" NOT NULL DEFAULT '[]',
  updated_at     TEXT COLLATE "C" NOT NULL,
  -- Tokens issued before this unix time (milliseconds) are refused.
  tokens_not_before BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE secrets (
  resource_id  TEXT COLLATE "C" NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  version      BIGINT NOT NULL,   -- a request may name any version up to 2^53 (SQLite INTEGER is 64-bit)
  key_version  INTEGER NOT NULL REFERENCES keyring(version),
  nonce        BYTEA NOT NULL,
  ciphertext   BYTEA NOT NULL,
  expires_at   TEXT COLLATE "C",
  created_at   TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (resource_id, version)
);
CREATE INDEX secrets_key_version ON secrets(key_version);

-- Per-account token signing keys (Ed25519, PKCS#8 private key encrypted).
CREATE TABLE signing_keys (
  account      TEXT COLLATE "C" PRIMARY KEY,
  kid          TEXT COLLATE "C" NOT NULL,
  public_key   BYTEA NOT NULL,
  key_version  INTEGER NOT NULL REFERENCES keyring(version),
  nonce        BYTEA NOT NULL,
  ciphertext   BYTEA NOT NULL,
  created_at   TEXT COLLATE "C" NOT NULL
);

CREATE TABLE policy_versions (
  resource_id    TEXT COLLATE "C" NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  version        BIGINT NOT NULL,
  role_id        TEXT COLLATE "C" NOT NULL,
  client_ip      TEXT COLLATE "C",
  policy_text    TEXT COLLATE "C" NOT NULL,
  policy_sha256  TEXT COLLATE "C" NOT NULL,
  created_at     TEXT COLLATE "C" NOT NULL,
  finished_at    TEXT COLLATE "C",
  PRIMARY KEY (resource_id, version)
);

-- Revoked access tokens, kept until they would have expired anyway.
CREATE TABLE revoked_tokens (
  jti         TEXT COLLATE "C" PRIMARY KEY,
  expires_at  BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens(expires_at);

-- authn-jwt (SQLite 0003): authenticators enabled through the API (Conjur's
-- authenticator_configs); deleting the webservice forgets the flag.
CREATE TABLE authenticator_configs (
  resource_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES resources(resource_id) ON DELETE CASCADE,
  enabled      INTEGER NOT NULL CHECK (enabled IN (0, 1)),
  updated_at   TEXT COLLATE "C" NOT NULL
);

-- A JWT's jti is accepted once while the JWT could still be valid; rows
-- expire with the token (expires_at: epoch seconds, exp + clock tolerance).
CREATE TABLE jwt_jti (
  service_key  TEXT COLLATE "C" NOT NULL,
  jti          TEXT COLLATE "C" NOT NULL,
  expires_at   BIGINT NOT NULL,
  PRIMARY KEY (service_key, jti)
);
CREATE INDEX jwt_jti_expiry ON jwt_jti(expires_at);

-- Host-factory tokens (SQLite 0004). A token lets whoever holds it create
-- hosts through its host factory, so it is treated like an API key:
--  * token_hash: HMAC-SHA-256 of the token under a server pepper (the lookup key);
--  * token_sealed: the token encrypted by the barrier (4-byte key version ‖
--    nonce ‖ ciphertext, associated data naming the row).
-- Deleting the host factory (policy !delete, or replace) deletes its tokens.
CREATE TABLE host_factory_tokens (
  token_hash       BYTEA PRIMARY KEY,
  host_factory_id  TEXT COLLATE "C" NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  token_sealed     BYTEA NOT NULL,
  -- Unix time in milliseconds; the token is refused from this instant on.
  expires_at       BIGINT NOT NULL,
  -- JSON array of normalized CIDRs; empty means any client address.
  cidr             TEXT COLLATE "C" NOT NULL DEFAULT '[]',
  created_at       TEXT COLLATE "C" NOT NULL
);
CREATE INDEX host_factory_tokens_factory ON host_factory_tokens(host_factory_id, expires_at);
CREATE INDEX host_factory_tokens_expiry ON host_factory_tokens(expires_at);

-- The audit log: one hash chain, append-only. seq is assigned by the
-- application (the chain's order), as in SQLite where it is given explicitly.
CREATE TABLE audit_events (
  seq          BIGINT PRIMARY KEY,
  time         TEXT COLLATE "C" NOT NULL,
  account      TEXT COLLATE "C",
  action       TEXT COLLATE "C" NOT NULL,
  operation    TEXT COLLATE "C" NOT NULL,
  result       TEXT COLLATE "C" NOT NULL CHECK (result IN ('success', 'failure')),
  role_id      TEXT COLLATE "C",
  resource_id  TEXT COLLATE "C",
  version      BIGINT,  -- a request may name any version up to 2^53 (SQLite INTEGER is 64-bit)
  client_ip    TEXT COLLATE "C",
  request_id   TEXT COLLATE "C",
  user_agent   TEXT COLLATE "C",
  reason       TEXT COLLATE "C",
  message      TEXT COLLATE "C" NOT NULL,
  details      TEXT COLLATE "C",
  prev_hash    BYTEA NOT NULL,
  hash         BYTEA NOT NULL
);
-- Filter indexes lead with account and keep seq order (SQLite 0002, 0006, 0008).
CREATE INDEX audit_events_account ON audit_events(account, seq);
CREATE INDEX audit_events_account_resource ON audit_events(account, resource_id, seq);
CREATE INDEX audit_events_account_role ON audit_events(account, role_id, seq);
CREATE INDEX audit_events_account_result ON audit_events(account, result, seq);
-- action + result is one range, action alone the merge of its two result ranges (SQLite 0008).
CREATE INDEX audit_events_account_action_result ON audit_events(account, action, result, seq);
CREATE INDEX audit_events_account_time ON audit_events(account, time, seq);
-- q: trigram index of the messages (instead of SQLite's FTS5 audit_fts). It
-- serves `message LIKE/ILIKE '%q%'` directly (PostgreSQL rechecks every
-- candidate); patterns with fewer than three alphanumeric characters in a row
-- cannot use it.
CREATE INDEX audit_events_message_trgm ON audit_events USING gin (message gin_trgm_ops);

-- Append-only: as SQLite's triggers, refuse UPDATE and DELETE (and TRUNCATE,
-- which PostgreSQL has and row triggers do not see).
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Exact seq bounds from time bounds (SQLite 0008; src/store/audit.ts,
-- seqWindow, has the proof). Times are not in seq order when the clock went
-- backwards, so this one row says where they last did: every event with
-- seq > regression_upto has a time >= the time of every event before it, and
-- max_time is the largest time among the events with seq <= regression_upto.
-- The log is empty here, so the row starts as (0, '') — what SQLite's
-- migration computes over an empty log.
CREATE TABLE audit_time_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  regression_upto BIGINT NOT NULL,
  max_time TEXT COLLATE "C" NOT NULL
);
INSERT INTO audit_time_state (id, regression_upto, max_time) VALUES (1, 0, '');

-- Kept true on insert, as SQLite's trigger audit_events_time_state does:
-- the largest time before NEW is the previous event's own time when that
-- event is past the last regression, else the larger of its time and
-- max_time (the earlier events are read when there is no previous event, only
-- ever for the first). Only an event older than that largest time writes the
-- row. A PostgreSQL trigger's WHEN cannot hold subqueries, so the condition
-- is in the function. Like SQLite's, it relies on events being inserted in
-- seq order by one writer at a time (the chain's head is serialized).
CREATE FUNCTION audit_events_time_state() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  s_upto BIGINT;
  s_max TEXT COLLATE "C";
  p_seq BIGINT;
  p_time TEXT COLLATE "C";
  largest TEXT COLLATE "C";
BEGIN
  SELECT regression_upto, max_time INTO s_upto, s_max FROM audit_time_state WHERE id = 1;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  SELECT seq, time INTO p_seq, p_time FROM audit_events WHERE seq = NEW.seq - 1;
  IF p_seq IS NOT NULL AND p_seq > s_upto THEN
    largest := p_time;
  ELSE
    largest := greatest(coalesce(p_time, (SELECT max(time) FROM audit_events WHERE seq < NEW.seq), ''), s_max);
  END IF;
  IF NEW.time < largest THEN
    UPDATE audit_time_state SET max_time = largest, regression_upto = NEW.seq WHERE id = 1;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER audit_events_time_state AFTER INSERT ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_time_state();

-- GET /health's write probe (SQLite 0007): one fixed row whose time is
-- rewritten by a real commit at most once a second.
CREATE TABLE health_probe (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  probed_at TEXT COLLATE "C" NOT NULL
);
INSERT INTO health_probe (id, probed_at) VALUES (1, '');
