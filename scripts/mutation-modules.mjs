/**
 * The security-critical modules that `npm run mutation` mutates (issue 13
 * item 5), one Stryker run each.
 *  - mutate: Stryker `mutate` patterns; `file.ts:from-to` restricts a file to a line range.
 *  - tests: the test files run against that module's mutants (Stryker's
 *    `testFiles`). Every in-process e2e test imports the whole server, so
 *    without a list each module's initial run is the whole suite (15–25 min
 *    here); the list names the tests that exercise the module's decisions.
 *    A mutant only an unlisted test would kill counts as survived, so a list
 *    can only understate a score. MUTATION_ALL_TESTS=1 ignores the lists.
 * Shared by stryker.config.mjs, scripts/mutation.mjs and scripts/mutation-summary.mjs.
 */
const MATRIX = ['test/e2e/security-matrix.test.ts', 'test/e2e/boundaries.test.ts'];

export const MODULES = {
  // The chain hash and its verifier (the online verify in reader.ts uses ChainVerifier).
  audit: {
    mutate: ['src/audit/chain.ts'],
    tests: ['test/unit/audit-chain.test.ts', 'test/unit/mutation-audit-chain.test.ts', 'test/unit/audit-canonical.test.ts',
      'test/e2e/audit-chain-independent.test.ts', 'test/e2e/audit-api.test.ts', 'test/e2e/secrets-audit.test.ts'],
  },
  hostfactory: {
    mutate: ['src/hostfactory/**/*.ts'],
    tests: ['test/unit/host-factory-rules.test.ts', 'test/unit/mutation-hostfactory.test.ts', 'test/unit/mutation-hostfactory-service.test.ts',
      'test/e2e/host-factory.test.ts', ...MATRIX],
  },
  // Every privilege decision: closures, can/canOn, visibility (404 vs 403), permitted roles.
  rbac: {
    mutate: ['src/rbac/authorizer.ts'],
    tests: ['test/unit/rbac.test.ts', 'test/unit/mutation-rbac.test.ts', 'test/unit/mutation-rbac-cache.test.ts',
      'test/e2e/policy-deny-revoke-delete.test.ts', ...MATRIX],
  },
  // Resource/role JSON and the dry-run view with its redaction of ids the viewer cannot see.
  'rbac-views': {
    mutate: ['src/rbac/views.ts'],
    tests: ['test/unit/rbac.test.ts', 'test/unit/mutation-rbac-views.test.ts', 'test/e2e/policy-deny-revoke-delete.test.ts', 'test/e2e/cli-inspect.test.ts', ...MATRIX],
  },
  // Value writes and every fetch path (single, versions, both batch forms): execute vs read, 404 vs 403.
  secrets: {
    mutate: ['src/secrets/service.ts'],
    tests: ['test/e2e/secrets-audit.test.ts', 'test/e2e/cli-policy-variable.test.ts', 'test/e2e/policy-deny-revoke-delete.test.ts',
      'test/e2e/secret-writes.test.ts', 'test/e2e/dynamic-secrets.test.ts', ...MATRIX],
  },
  // The envelope encryption (barrier) and data-key rotation.
  'secrets-barrier': {
    mutate: ['src/secrets/barrier.ts', 'src/secrets/rotation.ts'],
    tests: ['test/unit/barrier.test.ts', 'test/unit/mutation-secrets.test.ts', 'test/e2e/secrets-audit.test.ts', ...MATRIX],
  },
  // Policy loads: the writes (apply) and the loader's per-mode privilege
  // checks (load/authorize/run/requireUpdateBeneath and isDeletion; not the
  // dry-run report). The line ranges follow src/policy/loader.ts: check them when it changes.
  policy: {
    mutate: ['src/policy/apply.ts', 'src/policy/loader.ts:58-184', 'src/policy/loader.ts:262-264'],
    tests: ['test/unit/mutation-policy.test.ts', 'test/e2e/policy-deny-revoke-delete.test.ts', 'test/e2e/policy-examples.test.ts', 'test/e2e/policy-ids.test.ts',
      'test/e2e/cli-policy-variable.test.ts', 'test/e2e/cli-inspect.test.ts', 'test/e2e/authn-policy.test.ts', ...MATRIX],
  },
  // API keys and access tokens (src/authn/ takes three runs: each is long on two cores).
  authn: {
    mutate: ['src/authn/api-keys.ts', 'src/authn/tokens.ts'],
    tests: ['test/unit/tokens.test.ts', 'test/unit/mutation-authn.test.ts', 'test/unit/mutation-authn-tokens.test.ts',
      'test/unit/mutation-authn-api-keys.test.ts', 'test/e2e/authn-policy.test.ts',
      'test/e2e/token-lifetime.test.ts', 'test/e2e/cli-auth.test.ts', ...MATRIX],
  },
  // Passwords and credentials (creation, rotation, sealed copy), TTLs, throttle.
  'authn-creds': {
    mutate: ['src/authn/passwords.ts', 'src/authn/credentials.ts', 'src/authn/ttl.ts', 'src/authn/throttle.ts'],
    tests: ['test/unit/tokens.test.ts', 'test/unit/mutation-authn.test.ts', 'test/unit/mutation-authn-creds.test.ts', 'test/e2e/authn-policy.test.ts',
      'test/e2e/token-lifetime.test.ts', 'test/e2e/cli-auth.test.ts', ...MATRIX],
  },
  // The authn service: authenticate, Basic login, password change, key rotation, restricted_to.
  'authn-service': {
    mutate: ['src/authn/service.ts'],
    tests: ['test/unit/mutation-authn-service.test.ts', 'test/unit/tokens.test.ts', 'test/unit/mutation-authn.test.ts', 'test/e2e/authn-policy.test.ts',
      'test/e2e/token-lifetime.test.ts', 'test/e2e/cli-auth.test.ts', ...MATRIX],
  },
  // authn-jwt: config, JWKS, verification, replay.
  'authn-jwt': {
    mutate: ['src/authn/jwt/**/*.ts'],
    tests: ['test/unit/authn-jwt.test.ts', 'test/unit/mutation-authn-jwt.test.ts', 'test/e2e/authn-jwt.test.ts', ...MATRIX],
  },
};

/** Where a module's reports and incremental file live. */
export const reportDir = (module) => `reports/mutation/${module}`;
