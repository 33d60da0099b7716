-- authn-jwt: authenticators enabled through the API (Conjur's
-- authenticator_configs) and single-use JWT ids.

-- PATCH /authn-jwt/{service_id}/{account} stores the flag against the
-- service's webservice; deleting the webservice forgets it.
CREATE TABLE authenticator_configs (
  resource_id  TEXT PRIMARY KEY REFERENCES resources(resource_id) ON DELETE CASCADE,
  enabled      INTEGER NOT NULL CHECK (enabled IN (0, 1)),
  updated_at   TEXT NOT NULL
);

-- A JWT's jti is accepted once while the JWT could still be valid; rows
-- expire with the token (expires_at: epoch seconds, exp + clock tolerance).
CREATE TABLE jwt_jti (
  service_key  TEXT NOT NULL,
  jti          TEXT NOT NULL,
  expires_at   INTEGER NOT NULL,
  PRIMARY KEY (service_key, jti)
) WITHOUT ROWID;
CREATE INDEX jwt_jti_expiry ON jwt_jti(expires_at);
