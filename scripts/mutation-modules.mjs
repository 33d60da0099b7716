/**
 * The security-critical modules that `npm run mutation` mutates (issue 13
 * item 5), one Stryker run each. Each entry is a list of Stryker `mutate`
 * patterns; `file.ts:from-to` restricts a file to a line range.
 * Shared by stryker.config.mjs, scripts/mutation.mjs and
 * scripts/mutation-summary.mjs.
 */
export const MODULES = {
  // The chain hash and its verifier (the online verify in reader.ts uses ChainVerifier).
  audit: ['src/audit/chain.ts'],
  hostfactory: ['src/hostfactory/**/*.ts'],
  rbac: ['src/rbac/**/*.ts'],
  secrets: ['src/secrets/**/*.ts'],
  // Policy loads: the writes (apply) and the loader's per-mode privilege
  // checks (load/run/requireUpdateBeneath and isDeletion; not the dry-run report).
  policy: ['src/policy/apply.ts', 'src/policy/loader.ts:55-160', 'src/policy/loader.ts:234-236'],
  // API keys, passwords, tokens, credentials, the authn service and throttle.
  authn: ['src/authn/*.ts'],
  // authn-jwt: config, JWKS, verification, replay.
  'authn-jwt': ['src/authn/jwt/**/*.ts'],
};

/** Where a module's reports and incremental file live. */
export const reportDir = (module) => `reports/mutation/${module}`;
