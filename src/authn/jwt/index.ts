/**
 * The authn-jwt authenticator: configuration, key sources, verification and
 * the end-to-end {@link authenticateJwt} used by
 * `POST /authn-jwt/{service_id}/{account}[/{host id}]/authenticate`.
 *
 * Not covered here (the route's job): whether the authenticator is enabled
 * (CONJ00004E), whether the webservice exists (CONJ00005E), the role's
 * `authenticate` privilege on it (CONJ00006E), `restricted_to` CIDRs, and
 * issuing the access token.
 *
 * @module
 */
import type { JWTPayload } from 'jose';
import { jwtAuthnError, type JwtAuthenticatorConfig } from './config.js';
import type { JwtKeySource } from './jwks.js';
import type { JtiStore } from './replay.js';
import {
  assertIdentitySource,
  checkEnforcedClaimsInToken,
  checkHostRestrictions,
  resolveHostIdentity,
  verifyJwt,
} from './verify.js';

export * from './config.js';
export * from './jwks.js';
export * from './replay.js';
export * from './verify.js';

/** Longest `jti` remembered; longer ones are refused rather than stored. */
export const MAX_JTI_LENGTH = 1024;

/** Input of {@link authenticateJwt}. */
export interface AuthenticateJwtInput {
  /** The compact JWS from the `jwt` form field. */
  readonly jwt: string;
  readonly serviceId: string;
  readonly account: string;
  /** URL-decoded id segment of the route, if any (`host/app` or a user login). */
  readonly urlHostId?: string;
  readonly config: JwtAuthenticatorConfig;
  /** Reuse one per service configuration; see `keySourceFingerprint`. */
  readonly keySource: JwtKeySource;
  /** Replay protection; omit to accept a token more than once within its lifetime. */
  readonly jtiStore?: JtiStore;
  /** Refuse tokens without a `jti` (only meaningful with `jtiStore`). */
  readonly requireJti?: boolean;
  /**
   * Annotations of an existing role (`account:host:id` or `account:user:id`),
   * or `undefined` when no such role exists.
   */
  readonly lookupHostAnnotations: (
    roleId: string,
  ) => Record<string, string> | undefined | Promise<Record<string, string> | undefined>;
  /**
   * The server's own checks on the resolved role (the `authenticate`
   * privilege, `restricted_to`); runs before the jti is consumed so a token
   * refused here can be retried once the policy is fixed.
   */
  readonly authorizeRole?: (roleId: string) => void | Promise<void>;
  /** Clock in epoch milliseconds. */
  readonly now?: () => number;
  /** 0 to 60 seconds; default 0. */
  readonly clockToleranceSec?: number;
}

/**
 * Authenticates a JWT against an authn-jwt service, in Conjur's order:
 * identity configuration, token verification, enforced claims, role lookup,
 * host restrictions; then Coffer's replay check.
 *
 * @returns the full role id to issue an access token for, and the verified claims.
 * @throws CofferError 401 (`unauthorized`) with the CONJ code in `auditReason`.
 * @example
 * const { roleId } = await authenticateJwt({
 *   jwt, serviceId: 'gitlab', account: 'acme', config, keySource, jtiStore,
 *   lookupHostAnnotations: (id) => db.annotationsOf(id),
 * });
 */
export async function authenticateJwt(input: AuthenticateJwtInput): Promise<{ roleId: string; claims: JWTPayload }> {
  const { config, account, serviceId, urlHostId } = input;
  const now = input.now ?? Date.now;
  const tolerance = input.clockToleranceSec ?? 0;
  assertIdentitySource(config, urlHostId);
  const payload = await verifyJwt(input.jwt, config, input.keySource, { now, clockToleranceSec: tolerance });
  checkEnforcedClaimsInToken(payload, config);
  const identity = resolveHostIdentity(payload, config, urlHostId);
  const roleId = `${account}:${identity.kind}:${identity.id}`;
  const annotations = await input.lookupHostAnnotations(roleId);
  if (annotations === undefined) throw jwtAuthnError('CONJ00007E', `'${identity.login}' not found`);
  checkHostRestrictions(payload, config, serviceId, annotations);
  await input.authorizeRole?.(roleId);
  if (input.jtiStore !== undefined) {
    await consumeJti(payload, input.jtiStore, `${account}:${serviceId}`, tolerance, input.requireJti ?? false);
  }
  return { roleId, claims: payload };
}

/** Done last, so tokens refused for other reasons do not use up their jti. */
async function consumeJti(
  payload: JWTPayload,
  store: JtiStore,
  serviceKey: string,
  toleranceSec: number,
  required: boolean,
): Promise<void> {
  const { jti } = payload;
  if (jti === undefined) {
    if (required) throw jwtAuthnError('CONJ00091E', "Failed to validate token: mandatory claim 'jti' is missing.");
    return;
  }
  if (typeof jti !== 'string' || jti === '' || jti.length > MAX_JTI_LENGTH) {
    throw jwtAuthnError('CONJ00035E', "Failed to decode token (3rdPartyError ='invalid \"jti\" claim')");
  }
  // verifyJwt guarantees a numeric exp.
  if (!(await store.markUsed(serviceKey, jti, (payload.exp as number) + toleranceSec))) {
    throw jwtAuthnError('CONJ00035E', "Failed to decode token (3rdPartyError ='token replay: \"jti\" already used')");
  }
}
