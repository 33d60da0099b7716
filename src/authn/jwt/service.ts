/**
 * The authn-jwt authenticator as the server runs it: which services are
 * enabled (configuration ∪ database), their configuration read from the
 * variables under `conjur/authn-jwt/<service-id>`, a cached key source per
 * service, single-use jti in the database, and the audit trail of every
 * attempt. Knows nothing of HTTP.
 *
 * @module
 */
import type { AuditLog, RequestInfo } from '../../audit/log.js';
import { nowIso, type Actor, type Clock } from '../../context.js';
import { CofferError, auditReasonOf, forbidden, recordNotFound } from '../../errors.js';
import { loginFromRoleId } from '../../ids.js';
import type { Authorizer } from '../../rbac/authorizer.js';
import type { SecretsService } from '../../secrets/service.js';
import type { Store } from '../../store/index.js';
import type { AuthnService } from '../service.js';
import { authenticateJwt } from './index.js';
import { JWT_CONFIG_VARIABLES, jwtAuthnError, parseJwtAuthenticatorConfig, type JwtAuthenticatorConfig } from './config.js';
import { createJwtKeySource, keySourceFingerprint, type JwtKeySource, type TextFetcher } from './jwks.js';
import type { JtiStore } from './replay.js';

export interface JwtServiceConfig {
  /** Authenticators enabled by server configuration (`authn`, `authn-jwt/jenkins`, …). */
  enabledByConfig: readonly string[];
  /** Hosts whose JWKS / discovery URLs may use plain http (operator setting). */
  allowHttpHosts: readonly string[];
  /** Allowed clock skew for exp/nbf/iat, 0–60 s. */
  clockToleranceSec: number;
  /** Hosts whose JWKS / discovery URLs may resolve to loopback, private or link-local addresses. */
  allowPrivateHosts: readonly string[];
}

export interface JwtServiceDeps {
  store: Store;
  secrets: SecretsService;
  authn: AuthnService;
  audit: AuditLog;
  authorizer: Authorizer;
  clock: Clock;
  config: JwtServiceConfig;
  /** Replaces the JWKS fetcher (tests). */
  fetchText?: TextFetcher;
}

/** Result of the status check, in Conjur's `{"status":…}` shape. */
export interface JwtStatus {
  httpStatus: 200 | 403 | 500;
  body: { status: 'ok' } | { status: 'error'; error: string };
}

const SERVICE_ID = /^[A-Za-z0-9._-]{1,128}$/;
const webserviceOf = (account: string, serviceId: string) => `${account}:webservice:conjur/authn-jwt/${serviceId}`;
const PURGE_EVERY_MS = 60_000;

export class JwtAuthnService {
  readonly #sources = new Map<string, { fingerprint: string; source: JwtKeySource }>();
  readonly #jti: JtiStore;
  #lastPurgeMs = 0;

  constructor(private readonly d: JwtServiceDeps) {
    this.#jti = {
      markUsed: async (serviceKey, jti, expiresAt) => {
        const nowMs = d.clock.nowMs();
        if (nowMs - this.#lastPurgeMs > PURGE_EVERY_MS) {
          this.#lastPurgeMs = nowMs;
          await d.store.authenticators.purgeExpiredJti(Math.floor(nowMs / 1000));
        }
        // One statement: the check and the record cannot interleave with another use of the jti.
        return d.store.authenticators.markJtiUsed(serviceKey, jti, Math.ceil(expiresAt), Math.floor(nowMs / 1000));
      },
    };
  }

  /** Enabled by configuration for every account, or through the API for this account. */
  async isEnabled(account: string, serviceId: string): Promise<boolean> {
    if (this.d.config.enabledByConfig.includes(`authn-jwt/${serviceId}`)) return true;
    return (await this.d.store.authenticators.enabled(webserviceOf(account, serviceId))) === true;
  }

  /** `GET /authenticators`: installed, configured (a webservice exists), enabled (configuration ∪ API). */
  async listing(): Promise<{ installed: string[]; configured: string[]; enabled: string[] }> {
    const fromDb = (await this.d.store.authenticators.enabledWebservices()).map(authenticatorOfWebservice);
    const configured = (await this.d.store.authenticators.configuredJwtWebservices()).map(authenticatorOfWebservice);
    const sorted = (xs: Iterable<string | undefined>) => [...new Set(xs)].filter((x): x is string => Boolean(x)).sort();
    return {
      installed: ['authn', 'authn-jwt'],
      configured: sorted(['authn', ...configured]),
      enabled: sorted([...this.d.config.enabledByConfig, ...fromDb]),
    };
  }

  /** `POST /authn-jwt/{service_id}/{account}[/{host id}]/authenticate` → the access token JSON. */
  async authenticate(input: { serviceId: string; account: string; urlHostId?: string; jwt: string; request: RequestInfo }): Promise<string> {
    const { serviceId, account, request } = input;
    const webserviceId = webserviceOf(account, serviceId);
    let roleId: string | undefined;
    const event = () => ({
      account,
      action: 'authn',
      operation: 'authenticate',
      roleId,
      resourceId: roleId ?? webserviceId,
      request,
      details: { authenticator: 'authn-jwt', service: webserviceId },
    });
    const who = () => roleId ?? (input.urlHostId ? `${account}:${input.urlHostId}` : 'an unidentified JWT bearer');
    try {
      await this.requireUsable(account, serviceId);
      const config = await this.configOf(account, serviceId);
      const result = await authenticateJwt({
        jwt: input.jwt,
        serviceId,
        account,
        urlHostId: input.urlHostId,
        config,
        keySource: this.keySourceFor(account, serviceId, config),
        jtiStore: this.#jti,
        lookupHostAnnotations: async (id) => {
          if (!(await this.d.store.graph.getRole(id))) return undefined;
          return Object.fromEntries((await this.d.store.graph.annotationsOn(id)).map((a) => [a.name, a.value]));
        },
        authorizeRole: async (id) => {
          roleId = id;
          if (!(await this.d.authorizer.can(id, 'authenticate', webserviceId))) {
            throw jwtAuthnError('CONJ00006E', `'${loginFromRoleId(id)}' does not have 'authenticate' privilege on ${webserviceId}`);
          }
          if (!(await this.d.authn.originAllowed(id, request.clientIp))) {
            throw jwtAuthnError('CONJ00003E', `Origin ${request.clientIp ?? 'unknown'} is not allowed to authenticate as ${id}`);
          }
        },
        now: () => this.d.clock.nowMs(),
        clockToleranceSec: this.d.config.clockToleranceSec,
      });
      roleId = result.roleId;
      const { json } = await this.d.authn.issueToken(account, roleId);
      const { iss, sub, jti } = result.claims;
      await this.d.audit.record({
        ...event(),
        // Which job this was: the registered claims only (never the JWT itself).
        details: { ...event().details, jwt: { iss, sub, jti } },
        result: 'success',
        message: `${roleId} successfully authenticated with authenticator authn-jwt service ${webserviceId}`,
      });
      return json;
    } catch (err) {
      const reason = auditReasonOf(err);
      await this.d.audit.record({
        ...event(),
        result: 'failure',
        reason,
        message: `${who()} failed to authenticate with authenticator authn-jwt service ${webserviceId}: ${reason}`,
      });
      throw err;
    }
  }

  /**
   * `GET /authn-jwt/{service_id}/{account}/status`: the caller needs `read`
   * on `conjur/authn-jwt/{service_id}/status`; then the service must be
   * enabled, defined, correctly configured, and its keys loadable.
   */
  async status(actor: Actor, account: string, serviceId: string): Promise<JwtStatus> {
    const statusWebservice = `${webserviceOf(account, serviceId)}/status`;
    if (actor.account !== account || !(await this.d.authorizer.can(actor.roleId, 'read', statusWebservice))) {
      return {
        httpStatus: 403,
        body: { status: 'error', error: `CONJ00006E '${actor.login}' does not have 'read' privilege on ${statusWebservice}` },
      };
    }
    try {
      await this.requireUsable(account, serviceId);
      const config = await this.configOf(account, serviceId);
      const keys = await this.keySourceFor(account, serviceId, config).probe();
      if (keys === 0) throw jwtAuthnError('CONJ00035E', 'the JSON Web Key Set holds no keys');
      return { httpStatus: 200, body: { status: 'ok' } };
    } catch (err) {
      if (!(err instanceof CofferError)) throw err;
      return { httpStatus: 500, body: { status: 'error', error: err.auditReason ?? err.message } };
    }
  }

  /**
   * `PATCH /authn-jwt/{service_id}/{account}` with `enabled=true|false`:
   * needs `update` on the service's webservice. A service enabled by server
   * configuration cannot be disabled here (409): the operator's file wins
   * and the API must not pretend otherwise.
   */
  async setEnabled(actor: Actor, account: string, serviceId: string, enabled: boolean): Promise<void> {
    const webserviceId = webserviceOf(account, serviceId);
    const event = {
      account,
      action: 'authenticator',
      operation: enabled ? 'enable' : 'disable',
      roleId: actor.roleId,
      resourceId: webserviceId,
      request: actor.request,
    };
    try {
      if (!SERVICE_ID.test(serviceId)) throw recordNotFound(account, 'webservice', `conjur/authn-jwt/${serviceId}`);
      const resource = await this.d.authorizer.requireVisible(actor.roleId, webserviceId);
      if (!(await this.d.authorizer.canOn(actor.roleId, 'update', resource))) throw forbidden();
      if (!enabled && this.d.config.enabledByConfig.includes(`authn-jwt/${serviceId}`)) {
        throw new CofferError(
          'conflict',
          `authn-jwt/${serviceId} is enabled by the server configuration (COFFER_AUTHENTICATORS); remove it there to disable it`,
        );
      }
      // The change and its audit event commit together: no unaudited switch.
      const rows = await this.d.store.tx(async () => {
        await this.d.store.authenticators.setEnabled(webserviceId, enabled, nowIso(this.d.clock));
        return await this.d.audit.recordInTransaction([
          { ...event, result: 'success', message: `${actor.roleId} ${enabled ? 'enabled' : 'disabled'} authenticator authn-jwt/${serviceId}` },
        ]);
      });
      this.d.audit.publish(rows);
    } catch (err) {
      const reason = auditReasonOf(err);
      await this.d.audit.record({
        ...event,
        result: 'failure',
        reason,
        message: `${actor.roleId} failed to ${enabled ? 'enable' : 'disable'} authenticator authn-jwt/${serviceId}: ${reason}`,
      });
      throw err;
    }
  }

  private async requireUsable(account: string, serviceId: string): Promise<void> {
    if (!SERVICE_ID.test(serviceId) || !(await this.isEnabled(account, serviceId))) {
      throw jwtAuthnError('CONJ00004E', `Authenticator 'authn-jwt/${serviceId}' is not enabled`);
    }
    if (!(await this.d.store.accounts.exists(account)) || !(await this.d.store.graph.getResource(webserviceOf(account, serviceId)))) {
      throw jwtAuthnError('CONJ00005E', `Webservice 'authn-jwt/${serviceId}' not found`);
    }
  }

  /** The service's variables; a variable defined without a value reads as ''. */
  private async configOf(account: string, serviceId: string): Promise<JwtAuthenticatorConfig> {
    const values: Record<string, string | undefined> = {};
    for (const name of JWT_CONFIG_VARIABLES) {
      const id = `${account}:variable:conjur/authn-jwt/${serviceId}/${name}`;
      if (!(await this.d.store.graph.getResource(id))) continue;
      const value = await this.d.secrets.readInternal(id);
      values[name] = value === undefined ? '' : value.toString('utf8');
    }
    return parseJwtAuthenticatorConfig(values, { account, serviceId, allowHttpHosts: this.d.config.allowHttpHosts });
  }

  /**
   * Whoever can write a service's jwks-uri could otherwise make the server
   * connect to loopback, private or link-local addresses (cloud metadata, an
   * internal admin port) on every unauthenticated authenticate call. Only
   * hosts the operator named may resolve there: COFFER_JWT_ALLOW_PRIVATE_HOSTS,
   * or COFFER_JWT_ALLOW_HTTP_HOSTS (a host allowed plain http is internal).
   */
  private mayReachPrivateAddresses(config: JwtAuthenticatorConfig): boolean {
    if (config.signingKey.type === 'public-keys') return true;
    const host = new URL(config.signingKey.uri).hostname.toLowerCase().replace(/^\[|\]$/g, '');
    return this.d.config.allowPrivateHosts.includes(host) || config.allowHttpHosts.includes(host);
  }

  /** One key source per service, rebuilt when its key settings change (the JWKS cache lives in it). */
  private keySourceFor(account: string, serviceId: string, config: JwtAuthenticatorConfig): JwtKeySource {
    const key = `${account}\u0000${serviceId}`;
    const fingerprint = keySourceFingerprint(config);
    const cached = this.#sources.get(key);
    if (cached?.fingerprint === fingerprint) return cached.source;
    const source = createJwtKeySource(config, {
      fetchText: this.d.fetchText,
      now: () => this.d.clock.nowMs(),
      denyPrivateAddresses: !this.mayReachPrivateAddresses(config),
    });
    this.#sources.set(key, { fingerprint, source });
    return source;
  }
}

/** `acct:webservice:conjur/authn-jwt/jenkins` → `authn-jwt/jenkins`. */
function authenticatorOfWebservice(resourceId: string): string | undefined {
  const match = /^[^:]+:webservice:conjur\/(authn-jwt\/[A-Za-z0-9._-]+)$/.exec(resourceId);
  return match?.[1];
}
