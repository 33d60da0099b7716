-- GET /authenticators (no authentication) lists the authn-jwt webservices of
-- every account; without this index that is a scan of all resources per call.
CREATE INDEX resources_kind_identifier ON resources(kind, identifier);
