-- Coffer schema, version 1: accounts, the RBAC graph, credentials, secrets,
-- keyring, policy versions, tokens and the append-only audit log.
-- Ids are Conjur's full ids: account:kind:identifier.

CREATE TABLE accounts (
  name        TEXT PRIMARY KEY,
  created_at  TEXT NOT NULL
);

-- Server-wide values: key-check, encrypted server secrets (pepper, ...).
CREATE TABLE server_meta (
  name   TEXT PRIMARY KEY,
  value  BLOB NOT NULL
);

-- Data-encryption keys wrapped by the master data key.
CREATE TABLE keyring (
  version      INTEGER PRIMARY KEY,
  nonce        BLOB NOT NULL,
  wrapped_key  BLOB NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
  created_at   TEXT NOT NULL
);

CREATE TABLE roles (
  role_id     TEXT PRIMARY KEY,
  account     TEXT NOT NULL,
  kind        TEXT NOT NULL,
  identifier  TEXT NOT NULL,
  policy_id   TEXT,
  created_at  TEXT NOT NULL
);
CREATE INDEX roles_policy ON roles(policy_id);

CREATE TABLE resources (
  resource_id  TEXT PRIMARY KEY,
  account      TEXT NOT NULL,
  kind         TEXT NOT NULL,
  identifier   TEXT NOT NULL,
  owner_id     TEXT NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  policy_id    TEXT,
  created_at   TEXT NOT NULL
);
CREATE INDEX resources_owner ON resources(owner_id);
CREATE INDEX resources_policy ON resources(policy_id);
CREATE INDEX resources_account_kind ON resources(account, kind, resource_id);

CREATE TABLE role_memberships (
  role_id       TEXT NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  member_id     TEXT NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  admin_option  INTEGER NOT NULL DEFAULT 0,
  ownership     INTEGER NOT NULL DEFAULT 0,
  policy_id     TEXT,
  PRIMARY KEY (role_id, member_id, ownership)
);
CREATE INDEX role_memberships_member ON role_memberships(member_id);
CREATE INDEX role_memberships_policy ON role_memberships(policy_id);

CREATE TABLE permissions (
  resource_id  TEXT NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  privilege    TEXT NOT NULL,
  role_id      TEXT NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  policy_id    TEXT,
  PRIMARY KEY (resource_id, privilege, role_id)
);
CREATE INDEX permissions_role ON permissions(role_id);
CREATE INDEX permissions_policy ON permissions(policy_id);

CREATE TABLE annotations (
  resource_id  TEXT NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  name         TEXT NOT NULL,
  value        TEXT NOT NULL,
  policy_id    TEXT,
  PRIMARY KEY (resource_id, name)
);
CREATE INDEX annotations_policy ON annotations(policy_id);

-- API keys are verified against an HMAC-SHA-256 under a server pepper (constant
-- time, no decryption on the hot path); the sealed copy exists only so that
-- password login can return the key, as Conjur's GET /authn/{acct}/login does.
-- Passwords are argon2id hashes.
CREATE TABLE credentials (
  role_id        TEXT PRIMARY KEY REFERENCES roles(role_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  api_key_hash   BLOB,
  api_key_sealed BLOB,
  password_hash  TEXT,
  restricted_to  TEXT NOT NULL DEFAULT '[]',
  updated_at     TEXT NOT NULL,
  -- Tokens issued before this unix time (milliseconds) are refused.
  tokens_not_before INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE secrets (
  resource_id  TEXT NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  version      INTEGER NOT NULL,
  key_version  INTEGER NOT NULL REFERENCES keyring(version),
  nonce        BLOB NOT NULL,
  ciphertext   BLOB NOT NULL,
  expires_at   TEXT,
  created_at   TEXT NOT NULL,
  PRIMARY KEY (resource_id, version)
);
CREATE INDEX secrets_key_version ON secrets(key_version);

-- Per-account token signing keys (Ed25519, PKCS#8 private key encrypted).
CREATE TABLE signing_keys (
  account      TEXT PRIMARY KEY,
  kid          TEXT NOT NULL,
  public_key   BLOB NOT NULL,
  key_version  INTEGER NOT NULL REFERENCES keyring(version),
  nonce        BLOB NOT NULL,
  ciphertext   BLOB NOT NULL,
  created_at   TEXT NOT NULL
);

CREATE TABLE policy_versions (
  resource_id    TEXT NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  version        INTEGER NOT NULL,
  role_id        TEXT NOT NULL,
  client_ip      TEXT,
  policy_text    TEXT NOT NULL,
  policy_sha256  TEXT NOT NULL,
  created_at     TEXT NOT NULL,
  finished_at    TEXT,
  PRIMARY KEY (resource_id, version)
);

-- Revoked access tokens, kept until they would have expired anyway.
CREATE TABLE revoked_tokens (
  jti         TEXT PRIMARY KEY,
  expires_at  INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens(expires_at);

CREATE TABLE audit_events (
  seq          INTEGER PRIMARY KEY,
  time         TEXT NOT NULL,
  account      TEXT,
  action       TEXT NOT NULL,
  operation    TEXT NOT NULL,
  result       TEXT NOT NULL CHECK (result IN ('success', 'failure')),
  role_id      TEXT,
  resource_id  TEXT,
  version      INTEGER,
  client_ip    TEXT,
  request_id   TEXT,
  user_agent   TEXT,
  reason       TEXT,
  message      TEXT NOT NULL,
  details      TEXT,
  prev_hash    BLOB NOT NULL,
  hash         BLOB NOT NULL
);
CREATE INDEX audit_events_resource ON audit_events(resource_id, seq);
CREATE INDEX audit_events_role ON audit_events(role_id, seq);
CREATE INDEX audit_events_action ON audit_events(action, seq);
CREATE INDEX audit_events_account ON audit_events(account, seq);
CREATE INDEX audit_events_time ON audit_events(time);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
  SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
  SELECT RAISE(ABORT, 'audit_events is append-only');
END;
