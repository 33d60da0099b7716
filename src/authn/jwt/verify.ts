/**
 * authn-jwt token verification, identity resolution and host restrictions.
 *
 * Rules follow cyberark/conjur app/domain/authentication/authn_jwt/v2/strategy.rb
 * and v2/resolve_identity.rb, with Coffer's stricter algorithm list, issuer
 * default and `iat` check. Every failure is a 401 whose audit reason carries
 * Conjur's CONJ code.
 *
 * @module
 */
import {
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type CryptoKey,
  type JWTPayload,
  type JWTVerifyOptions,
  type ProtectedHeaderParameters,
} from 'jose';
import { CofferError } from '../../errors.js';
import {
  RESERVED_CLAIMS,
  isRecord,
  isValidClaimPath,
  jwtAuthnError,
  rubyList,
  type JwtAuthenticatorConfig,
} from './config.js';
import type { JwtKeySource } from './jwks.js';

/** Signature algorithms accepted, whatever the key set or token says. */
export const JWT_ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'EdDSA'] as const;
/** Upper bound on clock skew tolerance (security.md: ≤ 60 s). */
export const MAX_CLOCK_TOLERANCE_SEC = 60;
/** Longest token accepted; real CI/OIDC tokens are a few KiB. */
export const MAX_JWT_LENGTH = 32 * 1024;

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Options of {@link verifyJwt}. */
export interface VerifyJwtOptions {
  /** Clock in epoch milliseconds. */
  readonly now?: () => number;
  /** Allowed clock skew for `exp`, `nbf` and `iat`; 0 to 60 seconds, default 0 (Conjur's leeway). */
  readonly clockToleranceSec?: number;
}

function decodeFailed(reason: string): CofferError {
  return jwtAuthnError('CONJ00035E', `Failed to decode token (3rdPartyError ='${reason}')`);
}

/**
 * Verifies a compact JWS against the service configuration: algorithm
 * allow-list, signature by a configured key, `iss`, `aud` (when configured),
 * mandatory `exp`, and `nbf`/`iat` within the clock tolerance.
 *
 * @throws CofferError 401 with a CONJ code in `auditReason`.
 * @example
 * const claims = await verifyJwt(token, config, keySource, { clockToleranceSec: 30 });
 */
export async function verifyJwt(
  jwt: string,
  config: JwtAuthenticatorConfig,
  keySource: JwtKeySource,
  opts: VerifyJwtOptions = {},
): Promise<JWTPayload> {
  const tolerance = clockTolerance(opts.clockToleranceSec);
  assertCompactJws(jwt);
  const header = readHeader(jwt);
  const alg = header.alg;
  if (typeof alg !== 'string' || !(JWT_ALLOWED_ALGORITHMS as readonly string[]).includes(alg)) {
    // Refused before any key lookup, so `none` or HS* tokens never cause a fetch.
    throw decodeFailed('"alg" (Algorithm) Header Parameter value not allowed');
  }
  if (header.kid !== undefined && typeof header.kid !== 'string') throw decodeFailed('invalid "kid" header value');
  const keys = await keySource.getKeys({ alg, kid: header.kid });
  const nowMs = (opts.now ?? Date.now)();
  const payload = await verifyWithCandidates(jwt, keys, {
    algorithms: [...JWT_ALLOWED_ALGORITHMS],
    issuer: config.issuer,
    audience: config.audience,
    requiredClaims: config.audience === undefined ? ['exp'] : ['exp', 'aud'],
    clockTolerance: tolerance,
    currentDate: new Date(nowMs),
  });
  checkIssuedAt(payload, nowMs, tolerance);
  return payload;
}

function clockTolerance(value: number | undefined): number {
  const tolerance = value ?? 0;
  if (!Number.isFinite(tolerance) || tolerance < 0 || tolerance > MAX_CLOCK_TOLERANCE_SEC) {
    throw new RangeError(`clockToleranceSec must be between 0 and ${MAX_CLOCK_TOLERANCE_SEC}`);
  }
  return tolerance;
}

function assertCompactJws(jwt: string): void {
  if (typeof jwt !== 'string' || jwt.length > MAX_JWT_LENGTH || !COMPACT_JWS.test(jwt)) {
    throw jwtAuthnError('CONJ00077E', 'The request body does not contain JWT token');
  }
}

function readHeader(jwt: string): ProtectedHeaderParameters {
  try {
    return decodeProtectedHeader(jwt);
  } catch {
    throw decodeFailed('invalid JWS protected header');
  }
}

/** Tries each candidate key; only a signature mismatch moves on to the next one. */
async function verifyWithCandidates(
  jwt: string,
  keys: readonly CryptoKey[],
  options: JWTVerifyOptions,
): Promise<JWTPayload> {
  for (const key of keys) {
    try {
      return (await jwtVerify(jwt, key, options)).payload;
    } catch (error) {
      if (error instanceof joseErrors.JWSSignatureVerificationFailed) continue;
      throw mapJoseError(error);
    }
  }
  throw decodeFailed('signature verification failed');
}

function mapJoseError(error: unknown): CofferError {
  if (error instanceof joseErrors.JWTExpired) return jwtAuthnError('CONJ00016E', 'Token expired');
  if (
    error instanceof joseErrors.JWTClaimValidationFailed &&
    error.reason === 'missing' &&
    (error.claim === 'exp' || error.claim === 'aud')
  ) {
    return jwtAuthnError('CONJ00091E', `Failed to validate token: mandatory claim '${error.claim}' is missing.`);
  }
  // jose messages name the check, never the token or claim values.
  if (error instanceof joseErrors.JOSEError || error instanceof TypeError) return decodeFailed(error.message);
  return jwtAuthnError('CONJ00015E', "Failed to verify token (3rdPartyError ='unexpected verification error')");
}

/** jose checks `iat` only with maxTokenAge; Conjur (ruby-jwt verify_iat) refuses a future `iat`. */
function checkIssuedAt(payload: JWTPayload, nowMs: number, tolerance: number): void {
  if (payload.iat === undefined) return;
  if (payload.iat > nowMs / 1000 + tolerance) throw decodeFailed('"iat" claim timestamp check failed (in the future)');
}

// ---------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------

/**
 * Value at a `/`-separated claim path. Only own properties of plain objects
 * are followed, so `constructor` or `__proto__` never resolve to built-ins
 * and arrays are not indexed (as in Conjur, where `dig` cannot index them by name).
 */
export function claimAt(payload: Record<string, unknown>, path: string): unknown {
  let current: unknown = payload;
  for (const segment of path.split('/')) {
    if (!isRecord(current) || !Object.hasOwn(current, segment)) return undefined;
    current = current[segment];
  }
  return current;
}

/** Ruby's `blank?`: nil, false, whitespace-only strings, empty arrays and hashes. */
function isBlank(value: unknown): boolean {
  if (value === undefined || value === null || value === false) return true;
  if (typeof value === 'string') return value.trim() === '';
  if (Array.isArray(value)) return value.length === 0;
  if (isRecord(value)) return Object.keys(value).length === 0;
  return false;
}

function claimMissing(name: string): CofferError {
  return jwtAuthnError(
    'CONJ00084E',
    `Claim '${name}' is missing from JWT token. Verify that you configured the host with permitted restrictions.`,
  );
}

/** Every enforced claim must be present in the token (Conjur's gather_enforced_claims). */
export function checkEnforcedClaimsInToken(payload: JWTPayload, config: JwtAuthenticatorConfig): void {
  const missing = config.enforcedClaims.find((claim) => claimAt(payload, claim) === undefined);
  if (missing !== undefined) throw claimMissing(missing);
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

/** The role a token authenticates as. */
export interface JwtIdentity {
  readonly kind: 'host' | 'user';
  /** Identifier without account or kind, e.g. `ci/project-42`. */
  readonly id: string;
  /** Conjur's login form, used in messages: `host/ci/project-42` or `alice`. */
  readonly login: string;
}

/**
 * Exactly one of `token-app-property` and a URL id must be present; Conjur
 * checks this before decoding the token.
 */
export function assertIdentitySource(config: JwtAuthenticatorConfig, urlHostId?: string): void {
  const fromUrl = urlHostId !== undefined && urlHostId.trim() !== '';
  if (fromUrl === (config.tokenAppProperty !== undefined)) {
    throw jwtAuthnError('CONJ00098E', 'JWT identity configuration is invalid');
  }
}

/**
 * Resolves the role to authenticate. With `token-app-property` the identity is
 * the (string) claim value, prefixed by `identity-path`, and always a host.
 * Otherwise the URL id is used: `host/<id>` is a host, anything else a user.
 *
 * @throws CofferError 401: CONJ00098E (both or neither source), CONJ00081E
 *   (claim missing), CONJ00118E (claim not a string), CONJ00101E (malformed id).
 * @example
 * resolveHostIdentity({ project_path: 'group/app' }, config); // { kind: 'host', id: 'gitlab/group/app', … }
 */
export function resolveHostIdentity(
  payload: JWTPayload,
  config: JwtAuthenticatorConfig,
  urlHostId?: string,
): JwtIdentity {
  assertIdentitySource(config, urlHostId);
  if (config.tokenAppProperty === undefined) return identityFromUrl(urlHostId!);
  const tap = config.tokenAppProperty;
  const value = claimAt(payload, tap);
  if (isBlank(value)) throw jwtAuthnError('CONJ00081E', `'${tap}' field not found in the token`);
  if (typeof value !== 'string') {
    throw jwtAuthnError('CONJ00118E', `'${tap}' value in token has type '${rubyClass(value)}'. An identity must be a String.`);
  }
  const id = config.identityPath === undefined ? value : `${config.identityPath}/${value}`;
  assertWellFormedId(id);
  return { kind: 'host', id, login: `host/${id}` };
}

function identityFromUrl(urlId: string): JwtIdentity {
  const isHost = urlId.startsWith('host/');
  const id = isHost ? urlId.slice('host/'.length) : urlId;
  assertWellFormedId(id);
  return isHost ? { kind: 'host', id, login: `host/${id}` } : { kind: 'user', id, login: id };
}

/**
 * Role ids are looked up literally, so this is defence in depth: no empty,
 * `.` or `..` segments, no control characters and no ill-formed Unicode (a
 * claim's `\ud800` escape) in an id built from a claim.
 */
function assertWellFormedId(id: string): void {
  const segments = id.split('/');
  // eslint-disable-next-line no-control-regex
  const bad = /[\u0000-\u001f\u007f]/.test(id) || !id.isWellFormed() || segments.some((s) => s === '' || s === '.' || s === '..');
  if (bad) throw jwtAuthnError('CONJ00101E', 'JWT identity is empty or was not found. (malformed identity)');
}

function rubyClass(value: unknown): string {
  if (Array.isArray(value)) return 'Array';
  if (isRecord(value)) return 'Hash';
  if (typeof value === 'number') return Number.isInteger(value) ? 'Integer' : 'Float';
  if (value === true) return 'TrueClass';
  return typeof value;
}

// ---------------------------------------------------------------------------
// Host restrictions
// ---------------------------------------------------------------------------

/**
 * Checks a role's `authn-jwt/…` annotations against the token (Conjur v2
 * ResolveIdentity#role_annotations_valid?):
 *
 * - at least one `authn-jwt/<service-id>/<claim>` annotation (CONJ00099E);
 * - every enforced claim restricted by one of them, after alias resolution (CONJ00057E);
 * - each service annotation, then each generic `authn-jwt/<claim>` one, must
 *   be non-empty (CONJ00100E), not a reserved or already-aliased claim
 *   (CONJ00069E), a valid claim path (CONJ00119E), present in the token
 *   (CONJ00084E) and equal to the claim value (CONJ00049E). Only string
 *   claims can match; arrays, numbers and booleans never equal an annotation.
 *
 * Annotations for other services (`authn-jwt/<other>/<claim>`) are ignored.
 *
 * @example
 * checkHostRestrictions(claims, config, 'gitlab', { 'authn-jwt/gitlab/project_path': 'group/app' });
 */
export function checkHostRestrictions(
  payload: JWTPayload,
  config: JwtAuthenticatorConfig,
  serviceId: string,
  hostAnnotations: Record<string, string>,
): void {
  const servicePrefix = `authn-jwt/${serviceId}/`;
  const entries = Object.entries(hostAnnotations);
  const service = entries
    .filter(([name]) => name.startsWith(servicePrefix))
    .map(([name, value]) => [name.slice(servicePrefix.length), value] as const);
  if (service.length === 0) {
    throw jwtAuthnError('CONJ00099E', 'Role must have at least one relevant annotation');
  }
  checkEnforcedRestrictions(service.map(([claim]) => claim), config);
  for (const [claim, value] of service) checkRestriction(payload, config, claim, value);
  for (const [claim, value] of genericRestrictions(entries, serviceId)) {
    checkRestriction(payload, config, claim, value);
  }
}

/** `authn-jwt/<claim>` annotations: exactly one segment after the prefix, not the service id itself. */
function genericRestrictions(
  entries: ReadonlyArray<[string, string]>,
  serviceId: string,
): Array<readonly [string, string]> {
  return entries
    .filter(([name]) => name.startsWith('authn-jwt/') && name.split('/').length === 2)
    .map(([name, value]) => [name.slice('authn-jwt/'.length), value] as const)
    .filter(([claim]) => claim !== serviceId);
}

function checkEnforcedRestrictions(annotationClaims: readonly string[], config: JwtAuthenticatorConfig): void {
  if (config.enforcedClaims.length === 0) return;
  const restricted = new Set(annotationClaims.map((name) => config.claimAliases.get(name) ?? name));
  const missing = config.enforcedClaims.filter((claim) => !restricted.has(claim));
  if (missing.length > 0) {
    throw jwtAuthnError('CONJ00057E', `Role does not have the required constraints: '${rubyList(missing)}'`);
  }
}

function aliasTargets(config: JwtAuthenticatorConfig): Set<string> {
  return new Set(config.claimAliases.values());
}

/** One annotation against the token, in Conjur's ClaimContract rule order. */
function checkRestriction(payload: JWTPayload, config: JwtAuthenticatorConfig, annotation: string, expected: string): void {
  if (expected === '') throw jwtAuthnError('CONJ00100E', `Annotation, '${annotation}', is empty`);
  if (RESERVED_CLAIMS.includes(annotation.trim())) {
    throw jwtAuthnError('CONJ00069E', `Role can't have registered or aliased claim. Error: '${annotation}'`);
  }
  if (!isValidClaimPath(annotation)) {
    throw jwtAuthnError(
      'CONJ00119E',
      `Restriction '${annotation}' is invalid and not representing claim path in the token`,
    );
  }
  if (aliasTargets(config).has(annotation)) {
    throw jwtAuthnError(
      'CONJ00069E',
      `Role can't have registered or aliased claim. Error: 'Annotation Claim '${annotation}' cannot also be aliased'`,
    );
  }
  const claim = config.claimAliases.get(annotation) ?? annotation;
  const actual = claimAt(payload, claim);
  if (isBlank(actual)) throw claimMissing(claim === annotation ? claim : `${claim} (annotation: ${annotation})`);
  if (actual !== expected) {
    throw jwtAuthnError(
      'CONJ00049E',
      `Resource restriction '${annotation}' does not match with the corresponding value in the request`,
    );
  }
}
