/**
 * The composition root of the domain: builds every service from the store,
 * the barrier, the configuration and the clock. The HTTP layer and the CLI
 * receive this object; nothing else constructs services.
 */
import { AuditLog, type AuditSink } from './audit/log.js';
import { ApiKeyHasher } from './authn/api-keys.js';
import { Credentials } from './authn/credentials.js';
import { AuthnService } from './authn/service.js';
import { AuthThrottle } from './authn/throttle.js';
import { TokenService } from './authn/tokens.js';
import { nowIso, nowSeconds, type Clock } from './context.js';
import { PolicyLoader } from './policy/loader.js';
import { DEFAULT_POLICY_LIMITS, type PolicyLimits } from './policy/limits.js';
import { DEFAULT_PARSE_POOL_OPTIONS, sharedParsePool } from './policy/parse-pool.js';
import { Authorizer } from './rbac/authorizer.js';
import type { Barrier } from './secrets/barrier.js';
import { SecretsService } from './secrets/service.js';
import type { Store } from './store/index.js';
import { AuditReader } from './audit/reader.js';
import { HostFactoryService } from './hostfactory/service.js';
import { JwtAuthnService } from './authn/jwt/service.js';
import type { TextFetcher } from './authn/jwt/jwks.js';
import { IssuerService } from './dynamic/issuers.js';
import { DynamicSecrets, DEFAULT_SWEEP_INTERVAL_MS, MAX_LEASES_PER_ISSUER } from './dynamic/leases.js';

export interface ServiceConfig {
  tokenTtlSeconds: number;
  maxTokenTtlSeconds: number;
  secretVersionLimit: number;
  policyVersionLimit: number;
  authnMaxFailures: number;
  authnFailureWindowMs: number;
  /** Authenticators enabled by configuration for every account (`authn`, `authn-jwt/<service-id>`). */
  authenticators: string[];
  /** Hosts whose JWKS / OIDC discovery URLs may use plain http. */
  jwtAllowHttpHosts: string[];
  /** Hosts whose JWKS / OIDC discovery URLs may resolve to non-public addresses. */
  jwtAllowPrivateHosts: string[];
  /** Clock skew allowed when checking a JWT's exp, nbf and iat (0–60 s). */
  jwtClockSkewSeconds: number;
  /** Bounds on one policy's YAML (nodes, nesting depth, aliases). */
  policyLimits: PolicyLimits;
  /** Heap cap of the policy parser worker, in MB. */
  policyParseMemoryMb: number;
  /** How often the lease sweeper runs (dynamic secrets; at most 10 s). */
  leaseSweepIntervalMs: number;
  maxLeasesPerIssuer: number;
}

export const DEFAULT_SERVICE_CONFIG: ServiceConfig = {
  tokenTtlSeconds: 480,
  maxTokenTtlSeconds: 5 * 3600,
  secretVersionLimit: 20,
  policyVersionLimit: 20,
  authnMaxFailures: 10,
  authnFailureWindowMs: 60_000,
  authenticators: ['authn'],
  jwtAllowHttpHosts: [],
  jwtAllowPrivateHosts: [],
  jwtClockSkewSeconds: 30,
  policyLimits: { ...DEFAULT_POLICY_LIMITS },
  policyParseMemoryMb: DEFAULT_PARSE_POOL_OPTIONS.memoryMb,
  leaseSweepIntervalMs: DEFAULT_SWEEP_INTERVAL_MS,
  maxLeasesPerIssuer: MAX_LEASES_PER_ISSUER,
};

export interface ServiceDeps {
  store: Store;
  barrier: Barrier;
  clock: Clock;
  config: ServiceConfig;
  auditSinks?: AuditSink[];
  onSinkError?: (err: unknown) => void;
  /** Replaces the JWKS fetcher (tests). */
  jwksFetchText?: TextFetcher;
}

export async function createServices(deps: ServiceDeps) {
  const { store, barrier, clock, config } = deps;
  const authorizer = new Authorizer(store.graph, () => store.inTransaction());
  const audit = new AuditLog({
    store: store.audit,
    sinks: deps.auditSinks,
    nowIso: () => nowIso(clock),
    onSinkError: deps.onSinkError,
  });
  const tokens = new TokenService({
    barrier,
    secrets: store.secrets,
    tokens: store.tokens,
    credentials: store.credentials,
    now: () => nowSeconds(clock),
    nowMs: () => clock.nowMs(),
  });
  await tokens.load();
  const hasher = new ApiKeyHasher(await barrier.serverSecret('api-key-pepper'));
  const credentials = new Credentials(store.credentials, barrier, hasher, tokens, clock);
  // Dynamic secrets: issuers, then the leases of what they issue (the sweeper is started by the server).
  let dynamic!: DynamicSecrets;
  const issuers = new IssuerService({ store, barrier, audit, authorizer, clock, onChanged: (account, id) => dynamic.closeIssuer(account, id), endLeases: (account, id) => dynamic.endLeasesOfIssuer(account, id) });
  dynamic = new DynamicSecrets({
    store,
    audit,
    authorizer,
    clock,
    issuers,
    sweepIntervalMs: Math.min(config.leaseSweepIntervalMs, 10_000),
    maxLeasesPerIssuer: config.maxLeasesPerIssuer,
    isTokenRevoked: async (actor) => actor.claims !== undefined && (await tokens.isRevokedNow(actor.claims)),
  });
  const throttle = new AuthThrottle(clock, config.authnMaxFailures, config.authnFailureWindowMs);
  const authn = new AuthnService({
    store,
    credentials,
    tokens,
    audit,
    authorizer,
    throttle,
    clock,
    config: { tokenTtlSeconds: config.tokenTtlSeconds, maxTokenTtlSeconds: config.maxTokenTtlSeconds },
    onTokenRevoked: (jti) => dynamic.endLeasesOfToken(jti),
    onCredentialsChanged: (account, roleId) => dynamic.endLeasesOf(account, [roleId], "its role's API key was rotated"),
  });
  const secrets = new SecretsService({ store, barrier, audit, authorizer, dynamic, config: { versionLimit: config.secretVersionLimit } });
  const parsePool = sharedParsePool({ ...DEFAULT_PARSE_POOL_OPTIONS, memoryMb: config.policyParseMemoryMb });
  const policies = new PolicyLoader({
    store,
    authorizer,
    audit,
    createCredentials: (roleId, restrictedTo) => credentials.create(roleId, restrictedTo),
    writeSecret: async (resourceId, value) => void (await secrets.writeVersion(resourceId, value)),
    versionLimit: config.policyVersionLimit,
    parse: (text) => parsePool.parse(text, config.policyLimits),
    onRemoved: (account, ids) => dynamic.endLeasesOf(account, ids, 'its role or variable was deleted'),
  });
  const jwtAuthn = new JwtAuthnService({
    store,
    secrets,
    authn,
    audit,
    authorizer,
    clock,
    fetchText: deps.jwksFetchText,
    config: {
      enabledByConfig: config.authenticators,
      allowHttpHosts: config.jwtAllowHttpHosts,
      allowPrivateHosts: config.jwtAllowPrivateHosts,
      clockToleranceSec: config.jwtClockSkewSeconds,
    },
  });
  const auditReader = new AuditReader({ store: store.audit, graph: store.graph, authorizer });
  const hostFactories = new HostFactoryService({
    store,
    barrier,
    authorizer,
    audit,
    credentials,
    clock,
    onCredentialsChanged: (account, roleId) => dynamic.endLeasesOf(account, [roleId], "its host was re-enrolled (API key rotated)"),
  });
  await hostFactories.init();
  // Rows another node (or a CLI command) changed: drop or update what this node caches of them.
  store.changes.subscribe((change) => {
    switch (change.topic) {
      case 'graph':
        return authorizer.invalidate();
      case 'revoked':
        return tokens.noteRevoked(change.jti, change.expiresAt);
      case 'notBefore':
        return tokens.setNotBefore(change.roleId, change.atMs);
      case 'tokens':
        return void tokens.load().catch(() => undefined);
      case 'keyring':
        return void barrier.loadKeyring().catch(() => undefined);
    }
  });
  return { store, barrier, clock, config, authorizer, audit, tokens, credentials, throttle, authn, secrets, policies, auditReader, jwtAuthn, hostFactories, issuers, dynamic };
}

export type Services = Awaited<ReturnType<typeof createServices>>;
