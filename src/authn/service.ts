/**
 * The default authenticator `authn` (reference §1.1): API-key authenticate,
 * Basic login, password change, API-key rotation. Every attempt is audited
 * before anything is released; failures are throttled per (login, IP).
 */
import type { AuditLog, RequestInfo } from '../audit/log.js';
import type { Actor, Clock } from '../context.js';
import { CofferError, auditReasonOf, forbidden, unauthorized } from '../errors.js';
import { loginFromRoleId, parseFullId, roleIdFromLogin } from '../ids.js';
import type { Authorizer } from '../rbac/authorizer.js';
import type { Store } from '../store/index.js';
import { cidrContains } from '../cidr.js';
import type { Credentials } from './credentials.js';
import { checkPasswordStrength, hashPassword, verifyPassword } from './passwords.js';
import type { AuthThrottle } from './throttle.js';
import type { TokenClaims, TokenService } from './tokens.js';
import { parseTokenTtl } from './ttl.js';

export interface AuthnConfig {
  /** Default access-token lifetime in seconds (Conjur: 480). */
  tokenTtlSeconds: number;
  /** Upper bound for any token lifetime, including per-role annotations (Conjur: 5 h). */
  maxTokenTtlSeconds: number;
}

export interface AuthnDeps {
  store: Store;
  credentials: Credentials;
  tokens: TokenService;
  audit: AuditLog;
  authorizer: Authorizer;
  throttle: AuthThrottle;
  clock: Clock;
  config: AuthnConfig;
  /**
   * Called once a token's revocation is recorded (dynamic secrets end the
   * leases fetched with it). Its failures never undo the revocation.
   */
  onTokenRevoked?: (jti: string) => Promise<void>;
  /** A role's API key was rotated (the tokens it held stopped working): ends what they fetched. */
  onCredentialsChanged?: (account: string, roleId: string) => Promise<void>;
}

const AUTHN_SERVICE = (account: string) => `${account}:webservice:conjur/authn`;

export class AuthnService {
  constructor(private readonly d: AuthnDeps) {}

  /** True when the client IP is allowed by the role's `restricted_to` (empty = anywhere). */
  async originAllowed(roleId: string, clientIp: string | undefined): Promise<boolean> {
    const raw = (await this.d.store.credentials.get(roleId))?.restricted_to ?? '[]';
    const cidrs = JSON.parse(raw) as string[];
    if (cidrs.length === 0) return true;
    if (!clientIp) return false;
    return cidrs.some((c) => cidrContains(c, clientIp));
  }

  /** Token lifetime for a role: annotation `authn/token-ttl` capped by the server maximum. */
  async ttlFor(roleId: string): Promise<number> {
    const annotation = await this.d.authorizer.annotation(roleId, 'authn/token-ttl');
    const ttl = annotation === undefined ? this.d.config.tokenTtlSeconds : parseTokenTtl(annotation) ?? this.d.config.tokenTtlSeconds;
    return Math.max(1, Math.min(ttl, this.d.config.maxTokenTtlSeconds));
  }

  /** Issues an access token for a role that has proven its identity (any authenticator). */
  async issueToken(account: string, roleId: string): Promise<{ json: string; claims: TokenClaims }> {
    return this.d.tokens.issue(account, loginFromRoleId(roleId), await this.ttlFor(roleId));
  }

  /** POST /authn/{account}/{login}/authenticate with the raw API key. Returns the token JSON. */
  async authenticate(account: string, login: string, apiKey: string, request: RequestInfo): Promise<string> {
    const roleId = roleIdFromLogin(account, login);
    const throttleKey = `${roleId}\u0000${request.clientIp ?? ''}`;
    const event = {
      account,
      action: 'authn',
      operation: 'authenticate',
      roleId,
      resourceId: roleId,
      request,
      details: { authenticator: 'authn', service: AUTHN_SERVICE(account) },
    };
    try {
      this.d.throttle.check(throttleKey);
      // Taken before the credentials are read: see the check after issuing.
      const notBeforeSeen = this.d.tokens.notBeforeOf(roleId);
      const cred = (await this.d.store.accounts.exists(account)) ? await this.d.store.credentials.get(roleId) : undefined;
      const valid = this.d.credentials.hasher.verify(apiKey.trim(), cred?.api_key_hash);
      if (!valid) {
        this.d.throttle.fail(throttleKey);
        throw unauthorized('Unauthorized', {
          auditReason: cred ? 'CONJ00002E Invalid credentials' : `CONJ00007E '${login}' not found`,
        });
      }
      if (!(await this.originAllowed(roleId, request.clientIp))) {
        this.d.throttle.fail(throttleKey);
        throw unauthorized('Unauthorized', {
          auditReason: `CONJ00003E Origin ${request.clientIp ?? 'unknown'} is not allowed to authenticate as ${roleId}`,
        });
      }
      const { json } = await this.issueToken(account, roleId);
      // The key was checked several awaits ago. A rotation (or re-creation)
      // finishing since then stamps its "not before" before this token's
      // issue time, so the token would outlive the key it was issued for:
      // refuse it, as if the key had been presented after the rotation.
      if (this.d.tokens.notBeforeOf(roleId) !== notBeforeSeen) {
        throw unauthorized('Unauthorized', { auditReason: 'CONJ00002E Invalid credentials (the API key changed during authentication)' });
      }
      await this.d.audit.record({
        ...event,
        result: 'success',
        message: `${roleId} successfully authenticated with authenticator authn service ${AUTHN_SERVICE(account)}`,
      });
      this.d.throttle.succeed(throttleKey);
      return json;
    } catch (err) {
      await this.auditFailure(err, {
        ...event,
        message: `${roleId} failed to authenticate with authenticator authn service ${AUTHN_SERVICE(account)}`,
      });
      throw err;
    }
  }

  /**
   * Verifies Basic credentials (API key first, then password). Used by login,
   * password change and self API-key rotation. Unknown roles cost the same.
   */
  private async verifyBasic(account: string, login: string, secret: string, request: RequestInfo): Promise<string> {
    const roleId = roleIdFromLogin(account, login);
    const throttleKey = `${roleId}\u0000${request.clientIp ?? ''}`;
    this.d.throttle.check(throttleKey);
    const cred = login.trim() !== '' && (await this.d.store.accounts.exists(account)) ? await this.d.store.credentials.get(roleId) : undefined;
    let ok = this.d.credentials.hasher.verify(secret, cred?.api_key_hash);
    if (!ok) ok = await verifyPassword(cred?.password_hash, secret);
    if (!ok || !cred) {
      this.d.throttle.fail(throttleKey);
      throw unauthorized('Unauthorized', {
        auditReason: cred ? 'CONJ00002E Invalid credentials' : `CONJ00007E '${login}' not found`,
      });
    }
    if (!(await this.originAllowed(roleId, request.clientIp))) {
      this.d.throttle.fail(throttleKey);
      throw unauthorized('Unauthorized', { auditReason: `CONJ00003E Origin ${request.clientIp ?? 'unknown'} is not allowed` });
    }
    this.d.throttle.succeed(throttleKey);
    return roleId;
  }

  /** GET /authn/{account}/login with Basic credentials → the role's API key. */
  async login(account: string, login: string, secret: string, roleParam: string | undefined, request: RequestInfo): Promise<string> {
    const roleId = roleIdFromLogin(account, login);
    const event = { account, action: 'authn', operation: 'login', roleId, resourceId: roleId, request };
    try {
      this.requireSelf(account, roleId, roleParam);
      await this.verifyBasic(account, login, secret, request);
      const apiKey = await this.d.credentials.reveal(roleId);
      if (!apiKey) throw unauthorized('Unauthorized', { auditReason: 'role has no API key' });
      await this.d.audit.record({ ...event, result: 'success', message: `${roleId} successfully logged in with authenticator authn` });
      return apiKey;
    } catch (err) {
      await this.auditFailure(err, { ...event, message: `${roleId} failed to login with authenticator authn` });
      throw err;
    }
  }

  /** PUT /authn/{account}/password: Basic credentials of the same user; hosts get 403. */
  async changePassword(account: string, login: string, secret: string, newPassword: string, roleParam: string | undefined, request: RequestInfo): Promise<void> {
    const roleId = roleIdFromLogin(account, login);
    const event = { account, action: 'password', operation: 'change', roleId, resourceId: roleId, request };
    try {
      this.requireSelf(account, roleId, roleParam);
      await this.verifyBasic(account, login, secret, request);
      if (parseFullId(roleId)?.kind !== 'user') throw forbidden('only users have passwords');
      checkPasswordStrength(newPassword);
      // Hashed first (argon2, slow), then written: the write holds the store only for itself.
      const hash = await hashPassword(newPassword);
      await this.d.store.credentials.setPasswordHash(roleId, hash);
      await this.d.audit.record({ ...event, result: 'success', message: `${roleId} successfully changed their password` });
    } catch (err) {
      await this.auditFailure(err, { ...event, message: `${roleId} failed to change their password` });
      throw err;
    }
  }

  /** PUT /authn/{account}/api_key with Basic credentials: rotate one's own key. */
  async rotateOwnApiKey(account: string, login: string, secret: string, roleParam: string | undefined, request: RequestInfo): Promise<string> {
    const roleId = roleIdFromLogin(account, login);
    const event = { account, action: 'api-key', operation: 'rotate', roleId, resourceId: roleId, request };
    try {
      this.requireSelf(account, roleId, roleParam);
      await this.verifyBasic(account, login, secret, request);
      const apiKey = await this.d.credentials.rotate(roleId);
      await this.d.audit.record({ ...event, result: 'success', message: `${roleId} successfully rotated their API key` });
      await this.d.onCredentialsChanged?.(account, roleId).catch(() => undefined);
      return apiKey;
    } catch (err) {
      await this.auditFailure(err, { ...event, message: `${roleId} failed to rotate their API key` });
      throw err;
    }
  }

  /**
   * PUT /authn/{account}/api_key?role=… with an access token: rotate another
   * role's key (needs `update` on it). A token on one's own record is 401.
   */
  async rotateApiKeyFor(actor: Actor, roleParam: string | undefined): Promise<string> {
    const targetId = roleParam === undefined ? actor.roleId : this.roleParamId(actor.account, roleParam);
    const event = { account: actor.account, action: 'api-key', operation: 'rotate', roleId: actor.roleId, resourceId: targetId, request: actor.request };
    try {
      if (targetId === actor.roleId) {
        throw unauthorized('Credential strength is insufficient', { auditReason: 'Credential strength is insufficient' });
      }
      const resource = await this.d.authorizer.requireVisible(actor.roleId, targetId);
      if (!(await this.d.authorizer.canOn(actor.roleId, 'update', resource))) throw forbidden();
      const kind = parseFullId(targetId)?.kind;
      if ((kind !== 'user' && kind !== 'host') || !(await this.d.store.credentials.get(targetId))) {
        throw new CofferError('method_not_allowed', `CONJ00126E Operation is not supported for ${kind ?? 'this'} type`);
      }
      const apiKey = await this.d.credentials.rotate(targetId);
      await this.d.audit.record({
        ...event,
        result: 'success',
        message: `${actor.roleId} successfully rotated the api key for ${targetId}`,
      });
      await this.d.onCredentialsChanged?.(actor.account, targetId).catch(() => undefined);
      return apiKey;
    } catch (err) {
      await this.auditFailure(err, { ...event, message: `${actor.roleId} failed to rotate the api key for ${targetId}` });
      throw err;
    }
  }

  /** GET /authn/{account}/api_key: when the key was last rotated. */
  async apiKeyInfo(account: string, roleId: string): Promise<{ role: string; timestamp: string }> {
    const cred = await this.d.store.credentials.get(roleId);
    if (!cred) throw new CofferError('method_not_allowed', 'CONJ00126E Operation is not supported for this role type');
    return { role: roleId, timestamp: cred.updated_at };
  }

  /** Basic-authenticated variant of apiKeyInfo. */
  async apiKeyInfoBasic(account: string, login: string, secret: string, roleParam: string | undefined, request: RequestInfo) {
    // Audited like the other Basic paths: a wrong password or an origin
    // outside restricted_to is an authentication failure wherever it happens.
    const roleId = roleIdFromLogin(account, login);
    const event = { account, action: 'api-key', operation: 'show', roleId, resourceId: roleId, request };
    try {
      await this.verifyBasic(account, login, secret, request);
      this.requireSelf(account, roleId, roleParam);
      const info = await this.apiKeyInfo(account, roleId);
      await this.d.audit.record({ ...event, result: 'success', message: `${roleId} successfully read when their API key was last rotated` });
      return info;
    } catch (err) {
      await this.auditFailure(err, { ...event, message: `${roleId} failed to read when their API key was last rotated` });
      throw err;
    }
  }

  /** Token-authenticated variant: self, or another role with `update` on it. */
  async apiKeyInfoFor(actor: Actor, roleParam: string | undefined): Promise<{ role: string; timestamp: string }> {
    const targetId = roleParam === undefined ? actor.roleId : this.roleParamId(actor.account, roleParam);
    if (targetId !== actor.roleId) {
      const resource = await this.d.authorizer.requireVisible(actor.roleId, targetId);
      if (!(await this.d.authorizer.canOn(actor.roleId, 'update', resource))) throw forbidden();
    }
    return this.apiKeyInfo(actor.account, targetId);
  }

  /** DELETE /authn/{account}/token: revoke the presented token. */
  async revokeToken(actor: Actor): Promise<void> {
    if (!actor.claims) throw unauthorized('Unauthorized');
    await this.d.tokens.revoke(actor.claims);
    await this.d.audit.record({
      account: actor.account,
      action: 'authn',
      operation: 'revoke-token',
      result: 'success',
      roleId: actor.roleId,
      resourceId: actor.roleId,
      request: actor.request,
      message: `${actor.roleId} revoked its access token`,
      details: { jti: actor.claims.jti },
    });
    // Leases that cannot be ended now stay pending and are retried by the sweeper.
    await this.d.onTokenRevoked?.(actor.claims.jti).catch(() => undefined);
  }

  /** Basic-authenticated calls act on the caller only: `?role=` naming another role is 401 (Conjur). */
  private requireSelf(account: string, roleId: string, roleParam: string | undefined): void {
    if (roleParam !== undefined && this.roleParamId(account, roleParam) !== roleId) {
      throw unauthorized('Unauthorized', { auditReason: 'Operation attempted against foreign user' });
    }
  }

  /** `?role=` accepts `kind:id` or `account:kind:id`; a non-role kind stays as given (405 later). */
  private roleParamId(account: string, role: string): string {
    const parts = role.split(':');
    if (parts.length >= 3) return role;
    if (parts.length === 2 && parts[0] && parts[1]) return `${account}:${role}`;
    return roleIdFromLogin(account, role);
  }

  private async auditFailure(err: unknown, e: { account: string; action: string; operation: string; message: string; roleId?: string; resourceId?: string; request: RequestInfo; details?: unknown }) {
    // A failure that cannot be recorded turns into the audit's 503 (fail closed).
    const reason = auditReasonOf(err);
    await this.d.audit.record({ ...e, result: 'failure', reason, message: `${e.message}: ${reason}` });
  }
}

