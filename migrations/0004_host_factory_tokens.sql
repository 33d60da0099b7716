-- Host-factory tokens (reference §1.9). A token lets whoever holds it create
-- hosts through its host factory, so it is treated like an API key:
--  * token_hash: HMAC-SHA-256 of the token under a server pepper (the lookup
--    key; a database thief cannot test guesses without the data key);
--  * token_sealed: the token encrypted by the barrier (4-byte key version ‖
--    nonce ‖ ciphertext, associated data naming the row), kept only so that
--    roles with `update` on the factory can see live tokens in its resource
--    JSON, as Conjur shows them.
-- Deleting the host factory (policy !delete, or replace) deletes its tokens.
CREATE TABLE host_factory_tokens (
  token_hash       BLOB PRIMARY KEY,
  host_factory_id  TEXT NOT NULL REFERENCES resources(resource_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  token_sealed     BLOB NOT NULL,
  -- Unix time in milliseconds; the token is refused from this instant on.
  expires_at       INTEGER NOT NULL,
  -- JSON array of normalized CIDRs; empty means any client address.
  cidr             TEXT NOT NULL DEFAULT '[]',
  created_at       TEXT NOT NULL
);
CREATE INDEX host_factory_tokens_factory ON host_factory_tokens(host_factory_id, expires_at);
CREATE INDEX host_factory_tokens_expiry ON host_factory_tokens(expires_at);
