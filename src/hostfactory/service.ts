/**
 * Host factories (reference §1.9): tokens that let machines enrol themselves
 * as hosts of a factory's layers — the way elastic CI executors get an
 * identity without an operator loading policy for each one.
 *
 *  - createTokens: `execute` on the factory; tokens stored hashed (lookup)
 *    and sealed (shown to `update` holders), with expiry and CIDRs;
 *  - revokeToken: `update` on the factory;
 *  - createHost: authorized by the token alone; creates (or re-keys) a host
 *    owned by the factory, inside its policy, member of its layers — one
 *    transaction with its audit event;
 *  - tokensFor: the live tokens as a viewer may see them.
 *
 * Every action is audited (action `host-factory`), success and failure;
 * events name a token only by `tokenId` (a prefix of its keyed hash).
 */
import type { AuditEvent, AuditLog, RequestInfo } from '../audit/log.js';
import type { Credentials } from '../authn/credentials.js';
import { cidrContains } from '../cidr.js';
import type { Actor, Clock } from '../context.js';
import { CofferError, auditReasonOf, argumentError, forbidden, notFound, unauthorized } from '../errors.js';
import { fullId, makeFullId, parseFullId } from '../ids.js';
import type { Authorizer } from '../rbac/authorizer.js';
import { Barrier, packSealed, unpackSealed } from '../secrets/barrier.js';
import type { HostFactoryTokenRow } from '../store/host-factories.js';
import type { ResourceRow } from '../store/graph.js';
import type { Store } from '../store/index.js';
import { validateAnnotations, validateHostId } from './host-request.js';
import {
  HostFactoryTokenHasher,
  formatExpiration,
  generateHostFactoryToken,
  looksLikeToken,
  tokenId,
  tokenRules,
} from './tokens.js';

/** The barrier's name for the HMAC key of token lookups. */
export const HOST_FACTORY_PEPPER = 'host-factory-token-pepper';

/**
 * Expired tokens are kept this long so that their use is audited as
 * "expired" rather than "unknown", then purged when new tokens are created.
 */
const EXPIRED_TOKEN_RETENTION_MS = 7 * 24 * 3600 * 1000;

export interface HostFactoryDeps {
  store: Store;
  barrier: Barrier;
  authorizer: Authorizer;
  audit: AuditLog;
  credentials: Credentials;
  clock: Clock;
  /** An enrolled host was re-enrolled (its API key rotated, its tokens dead): ends what they fetched. */
  onCredentialsChanged?: (account: string, roleId: string) => Promise<void>;
}

export interface TokenParams {
  hostFactory?: string;
  expiration?: string;
  count?: string;
  cidr: string[];
}

/** A token as `POST /host_factory_tokens` returns it and `update` holders see it. */
export interface IssuedToken {
  expiration: string;
  cidr: string[];
  token: string;
}

/** A token as the factory's resource JSON shows it; `token` only for `update` holders. */
export interface TokenView {
  expiration: string;
  cidr: string[];
  token?: string;
}

export interface HostParams {
  id?: string;
  annotations: [string, string][];
}

export interface CreatedHost {
  hostId: string;
  hostFactoryId: string;
  apiKey: string;
  /** False when an existing host of the factory had its key rotated. */
  created: boolean;
}

/** Events about a factory belong to its account (so that account's auditors see them), whoever acted. */
function accountOf<T extends string | null>(factoryId: string | undefined, fallback: T): string | T {
  return (factoryId === undefined ? undefined : parseFullId(factoryId)?.account) ?? fallback;
}

const sealAd = (factoryId: string, hash: Buffer) => `host-factory-token:${factoryId}:${hash.toString('hex')}`;

export class HostFactoryService {
  #hasher: HostFactoryTokenHasher | undefined;

  constructor(private readonly d: HostFactoryDeps) {}

  /** Reads (on first use: creates) the token pepper. Call once, before the service is used. */
  async init(): Promise<void> {
    this.#hasher = new HostFactoryTokenHasher(await this.d.barrier.serverSecret(HOST_FACTORY_PEPPER));
  }

  private get hasher(): HostFactoryTokenHasher {
    if (!this.#hasher) throw new Error('HostFactoryService.init() must complete before the service is used');
    return this.#hasher;
  }

  /** POST /host_factory_tokens: `count` tokens for a factory the actor may `execute`. */
  async createTokens(actor: Actor, params: TokenParams): Promise<IssuedToken[]> {
    const event = { account: actor.account, action: 'host-factory', operation: 'create-tokens', roleId: actor.roleId, request: actor.request };
    let factoryId: string | undefined;
    try {
      if (params.hostFactory === undefined || params.hostFactory.trim() === '') {
        throw argumentError('param is missing or the value is empty: host_factory');
      }
      factoryId = makeFullId(params.hostFactory.trim(), actor.account);
      const kind = parseFullId(factoryId)?.kind;
      if (kind !== 'host_factory') throw argumentError(`Invalid resource kind: ${kind ?? ''}`);
      await this.d.authorizer.require(actor.roleId, 'execute', factoryId);
      const rules = tokenRules(params, this.d.clock.nowMs());
      const id = factoryId;
      // Generating, hashing (HMAC) and sealing a token takes microseconds, so
      // it stays in the transaction, next to the row it becomes.
      const { issued, rows } = await this.d.store.tx(async () => {
        await this.d.store.hostFactories.purgeExpired(this.d.clock.nowMs() - EXPIRED_TOKEN_RETENTION_MS);
        const issued: IssuedToken[] = [];
        const ids: string[] = [];
        for (let i = 0; i < rules.count; i++) {
          const token = generateHostFactoryToken();
          const hash = this.hasher.hash(token);
          await this.d.store.hostFactories.insert({
            token_hash: hash,
            host_factory_id: id,
            token_sealed: packSealed(this.d.barrier.encrypt(Buffer.from(token, 'utf8'), sealAd(id, hash))),
            expires_at: rules.expiresAt,
            cidr: JSON.stringify(rules.cidr),
            created_at: new Date(this.d.clock.nowMs()).toISOString(),
          });
          issued.push({ expiration: formatExpiration(rules.expiresAt), cidr: rules.cidr, token });
          ids.push(tokenId(hash));
        }
        const rows = await this.d.audit.recordInTransaction([
          {
            ...event,
            account: accountOf(id, actor.account),
            result: 'success',
            resourceId: id,
            details: { tokens: ids, expiration: formatExpiration(rules.expiresAt), cidr: rules.cidr },
            message: `${actor.roleId} created ${rules.count} host-factory token${rules.count === 1 ? '' : 's'} for ${id}`,
          },
        ]);
        return { issued, rows };
      });
      this.d.audit.publish(rows);
      return issued;
    } catch (err) {
      // The factory id is the caller's input: the failure goes to another
      // account's log only when that factory exists and the caller can see it.
      const factory = factoryId === undefined ? undefined : await this.d.store.graph.getResource(factoryId);
      const visible = factory !== undefined && (await this.d.authorizer.isVisible(actor.roleId, factory));
      await this.auditFailure(err, {
        ...event,
        account: visible ? accountOf(factoryId, actor.account) : actor.account,
        resourceId: factoryId ?? null,
        message: `${actor.roleId} failed to create host-factory tokens for ${factoryId ?? 'a host factory'}`,
      });
      throw err;
    }
  }

  /** DELETE /host_factory_tokens/{token}: needs `update` on the token's factory. */
  async revokeToken(actor: Actor, token: string): Promise<void> {
    const hash = looksLikeToken(token) ? this.hasher.hash(token) : undefined;
    const id = hash ? tokenId(hash) : 'malformed';
    const event = { account: actor.account, action: 'host-factory', operation: 'revoke-token', roleId: actor.roleId, request: actor.request, details: { token: id } };
    let factoryId: string | undefined;
    try {
      const row = hash ? await this.d.store.hostFactories.byHash(hash) : undefined;
      // The token itself is never echoed: its URL is the only place it appears.
      if (!row) throw notFound('Host factory token not found', { target: 'host_factory_token', auditReason: 'unknown or already revoked token' });
      factoryId = row.host_factory_id;
      // A token of a factory the caller cannot see is as unknown as a missing one.
      if (!(await this.d.authorizer.can(actor.roleId, 'update', factoryId))) {
        const factory = await this.d.store.graph.getResource(factoryId);
        if (!factory || !(await this.d.authorizer.isVisible(actor.roleId, factory))) {
          throw notFound('Host factory token not found', { target: 'host_factory_token', auditReason: 'the token\'s host factory is not visible' });
        }
        throw forbidden(`update privilege on ${factoryId} is required to revoke its tokens`);
      }
      const fid = factoryId;
      const rows = await this.d.store.tx(async () => {
        if (!(await this.d.store.hostFactories.delete(row.token_hash))) {
          throw notFound('Host factory token not found', { target: 'host_factory_token', auditReason: 'already revoked' });
        }
        return await this.d.audit.recordInTransaction([
          { ...event, account: accountOf(fid, actor.account), result: 'success', resourceId: fid, message: `${actor.roleId} revoked host-factory token ${id} of ${fid}` },
        ]);
      });
      this.d.audit.publish(rows);
    } catch (err) {
      await this.auditFailure(err, {
        ...event,
        account: accountOf(factoryId, actor.account),
        resourceId: factoryId ?? null,
        message: `${actor.roleId} failed to revoke host-factory token ${id}`,
      });
      throw err;
    }
  }

  /**
   * POST /host_factories/hosts: the raw token is the only credential. A bad,
   * unknown, revoked, expired or out-of-CIDR token is a plain 401 (Conjur
   * makes them indistinguishable; the audit event says which).
   */
  async createHost(rawToken: string | undefined, params: HostParams, request: RequestInfo): Promise<CreatedHost> {
    const hash = rawToken !== undefined && looksLikeToken(rawToken) ? this.hasher.hash(rawToken) : undefined;
    const id = hash ? tokenId(hash) : 'none';
    let factoryId: string | undefined;
    let hostId: string | undefined;
    const event = { action: 'host-factory', operation: 'create-host', request };
    try {
      const result = await this.d.store.tx(async () => {
        const token = hash ? await this.d.store.hostFactories.byHash(hash) : undefined;
        if (!token) throw unauthorized('Unauthorized', { auditReason: hash ? 'unknown or revoked host-factory token' : 'missing or malformed host-factory token' });
        factoryId = token.host_factory_id;
        this.requireUsable(token, request.clientIp);
        const factory = await this.d.store.graph.getResource(factoryId);
        if (!factory) throw unauthorized('Unauthorized', { auditReason: 'the token\'s host factory no longer exists' });
        if (factory.kind !== 'host_factory') throw argumentError(`Invalid resource kind: ${factory.kind}`);
        const identifier = validateHostId(params.id, factory.identifier);
        hostId = fullId(factory.account, 'host', identifier);
        const annotations = validateAnnotations(params.annotations);
        const created = await this.createOrRekey(factory, hostId, identifier, annotations);
        const rows = await this.d.audit.recordInTransaction([
          {
            ...event,
            account: factory.account,
            result: 'success',
            roleId: factory.resource_id,
            resourceId: hostId,
            details: { host_factory: factory.resource_id, token: id, created: created.created, layers: created.layers },
            message: created.created
              ? `${factory.resource_id} created host ${hostId} (token ${id})`
              : `${factory.resource_id} rotated the API key of its host ${hostId} (token ${id})`,
          },
        ]);
        return { ...created, rows, hostId, hostFactoryId: factory.resource_id };
      });
      this.d.authorizer.invalidate();
      this.d.audit.publish(result.rows);
      if (!result.created) await this.d.onCredentialsChanged?.(accountOf(result.hostId, null) ?? '', result.hostId).catch(() => undefined);
      return { hostId: result.hostId, hostFactoryId: result.hostFactoryId, apiKey: result.apiKey, created: result.created };
    } catch (err) {
      // The rolled-back transaction may have taught the cache about rows that no longer exist.
      this.d.authorizer.invalidate();
      await this.auditFailure(err, {
        ...event,
        account: accountOf(factoryId, null),
        roleId: factoryId ?? null,
        resourceId: hostId ?? factoryId ?? null,
        details: { token: id },
        message: `${factoryId ?? 'a host factory token'} failed to create host ${hostId ?? params.id ?? ''}`.trimEnd(),
      });
      throw err;
    }
  }

  /** Live tokens of a factory; the values only for roles with `update` on it (see README). */
  async tokensFor(viewerRoleId: string, factory: ResourceRow): Promise<TokenView[]> {
    const rows = await this.d.store.hostFactories.liveFor(factory.resource_id, this.d.clock.nowMs());
    const reveal = rows.length > 0 && (await this.d.authorizer.canOn(viewerRoleId, 'update', factory));
    const views: TokenView[] = [];
    for (const row of rows) {
      const view: TokenView = { expiration: formatExpiration(row.expires_at), cidr: JSON.parse(row.cidr) as string[] };
      if (reveal) view.token = await this.reveal(row);
      views.push(view);
    }
    return views;
  }

  /** Re-encrypts every sealed token under the active data key (part of `keys rotate`). */
  async reencryptAll(): Promise<number> {
    let n = 0;
    for (const row of await this.d.store.hostFactories.sealedTokens()) {
      const ad = sealAd(row.host_factory_id, row.token_hash);
      const token = await this.d.barrier.decrypt(unpackSealed(row.token_sealed), ad);
      await this.d.store.hostFactories.reseal(row.token_hash, packSealed(this.d.barrier.encrypt(token, ad)));
      Barrier.wipe(token);
      n++;
    }
    return n;
  }

  private async reveal(row: HostFactoryTokenRow): Promise<string> {
    const plain = await this.d.barrier.decrypt(unpackSealed(row.token_sealed), sealAd(row.host_factory_id, row.token_hash));
    const token = plain.toString('utf8');
    Barrier.wipe(plain);
    return token;
  }

  /** 401 unless the token is still valid and allows the client address. */
  private requireUsable(row: HostFactoryTokenRow, clientIp: string | undefined): void {
    if (row.expires_at <= this.d.clock.nowMs()) {
      throw unauthorized('Unauthorized', { auditReason: `host-factory token expired at ${formatExpiration(row.expires_at)}` });
    }
    const cidrs = JSON.parse(row.cidr) as string[];
    if (cidrs.length > 0 && !(clientIp !== undefined && cidrs.some((c) => cidrContains(c, clientIp)))) {
      throw unauthorized('Unauthorized', { auditReason: `origin ${clientIp ?? 'unknown'} is outside the token's cidr ${cidrs.join(',')}` });
    }
  }

  /**
   * Inside the caller's transaction: a new host owned by the factory (its
   * role joined to the factory's layers), or — for a host the factory already
   * owns — a rotated API key, which also invalidates its outstanding access
   * tokens. A host owned by anyone else is 403.
   */
  private async createOrRekey(factory: ResourceRow, hostId: string, identifier: string, annotations: Record<string, string>) {
    const g = this.d.store.graph;
    const layers = (await g.membershipsOf(factory.resource_id))
      .map((m) => m.role_id)
      .filter((roleId) => parseFullId(roleId)?.kind === 'layer');
    const existingRole = await g.getRole(hostId);
    const existingResource = await g.getResource(hostId);
    let apiKey: string;
    let created: boolean;
    if (existingRole || existingResource) {
      if (!existingRole || existingResource?.owner_id !== factory.resource_id) {
        throw forbidden(`${hostId} exists and is not owned by ${factory.resource_id}`);
      }
      // Conjur: "find-or-create credentials", then rotate; annotations of an existing host are left alone.
      apiKey = (await this.d.store.credentials.get(hostId)) ? await this.d.credentials.rotate(hostId) : await this.d.credentials.create(hostId, []);
      created = false;
    } else {
      // Rows carry no policy (as in Conjur's HostBuilder): a policy replace
      // does not remove enrolled hosts; deleting the factory does (it owns them).
      await g.insertRole(hostId, factory.account, 'host', identifier, null);
      await g.insertResource(hostId, factory.account, 'host', identifier, factory.resource_id, null);
      await g.insertMembership(hostId, factory.resource_id, true, true, null);
      for (const [name, value] of Object.entries(annotations)) await g.insertAnnotation(hostId, name, value, null);
      apiKey = await this.d.credentials.create(hostId, []);
      created = true;
    }
    // Joined to every layer on re-enrolment too, as Conjur's HostBuilder documents.
    for (const layer of layers) await g.insertMembership(layer, hostId, false, false, null);
    return { apiKey, created, layers };
  }

  private async auditFailure(err: unknown, e: Omit<AuditEvent, 'result'>): Promise<void> {
    // A failure that cannot be recorded becomes the audit's 503 (fail closed).
    const reason = auditReasonOf(err);
    await this.d.audit.record({ ...e, result: 'failure', reason, message: `${e.message}: ${reason}` });
  }
}
