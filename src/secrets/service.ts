/**
 * Variable values (reference §1.5, §5): versioned, encrypted by the barrier
 * with associated data `secret:<resource id>:<version>`, newest N kept.
 *
 * Every fetch — allowed or denied — is recorded by the audit log and the
 * record is durable before a byte of the value is returned; if it cannot be
 * written the caller gets 503 and the plaintext is wiped.
 */
import type { AuditEvent, AuditLog } from '../audit/log.js';
import type { Actor } from '../context.js';
import { CofferError, auditReasonOf, forbidden, unprocessable } from '../errors.js';
import { parseFullId } from '../ids.js';
import type { Authorizer } from '../rbac/authorizer.js';
import type { Store } from '../store/index.js';
import type { SecretRow } from '../store/secrets.js';
import { Barrier } from './barrier.js';
import { isAudited, type DynamicSecrets, type DynamicSpec } from '../dynamic/leases.js';

export interface SecretsConfig {
  /** Versions kept per variable (Conjur: 20). */
  versionLimit: number;
}

export interface SecretsDeps {
  store: Store;
  barrier: Barrier;
  audit: AuditLog;
  authorizer: Authorizer;
  config: SecretsConfig;
  /** Dynamic variables (issue 12): fetched values are minted by their issuer. */
  dynamic?: DynamicSecrets;
}

export interface FetchedValue {
  value: Buffer;
  version: number;
  mimeType: string;
}

/** Per-id outcome of the Coffer batch endpoint. */
export type BatchOutcome = { ok: true; value: Buffer } | { ok: false; code: string; message: string; status: number };

const PUBLIC_KEY_LINE = /^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+=*( \S.*)?$/;

export const secretAd = (resourceId: string, version: number) => `secret:${resourceId}:${version}`;

export function emptyOrMissing(resourceId: string): CofferError {
  return new CofferError('not_found', `CONJ00076E Variable ${resourceId} is empty or not found.`, {
    auditReason: `CONJ00076E Variable ${resourceId} is empty or not found.`,
  });
}

export class SecretsService {
  constructor(private readonly d: SecretsDeps) {}

  /** POST /secrets/{account}/{kind}/{id}: store a new version (`update` required). */
  async setValue(actor: Actor, resourceId: string, value: Buffer): Promise<void> {
    const event = this.event(actor, 'update', resourceId);
    try {
      const resource = await this.d.authorizer.requireVisible(actor.roleId, resourceId);
      if (!(await this.d.authorizer.canOn(actor.roleId, 'update', resource))) throw forbidden();
      const dynamicSpec = await this.d.dynamic?.specOf(resourceId);
      if (dynamicSpec) {
        throw unprocessable(`Variable ${resourceId} is dynamic: issuer '${dynamicSpec.issuerId}' issues a new value at each fetch, and no value can be set`);
      }
      if (value.length === 0) throw unprocessable("'value' may not be empty");
      if (resource.kind === 'public_key' && !PUBLIC_KEY_LINE.test(value.toString('utf8').trim())) {
        throw unprocessable('Invalid public key format: expected "<type> <base64> [name]", e.g. ssh-ed25519 AAAA… alice@host');
      }
      // The version number is read inside the transaction and is part of the
      // associated data, so the value is sealed there too (microseconds).
      const rows = await this.d.store.tx(async () => {
        // Again inside the transaction (no cache there): a policy load that took the privilege away and
        // committed since the check above must win — on another node as much as on this one.
        if (!(await this.d.authorizer.can(actor.roleId, 'update', resourceId))) throw forbidden();
        const written = await this.writeVersion(resourceId, value);
        return this.d.audit.recordInTransaction([
          { ...event, result: 'success', version: written ?? null, message: `${actor.roleId} updated ${resourceId}` },
        ]);
      });
      this.d.audit.publish(rows);
    } catch (err) {
      await this.recordFailure(err, event, `${actor.roleId} tried to update ${resourceId}`);
      throw err;
    }
  }

  /**
   * Writes a new version unless it equals the current value; returns the new
   * version number, or undefined when nothing changed. Call inside a transaction.
   */
  async writeVersion(resourceId: string, value: Buffer): Promise<number | undefined> {
    const latest = await this.d.store.secrets.latest(resourceId);
    if (latest) {
      const current = await this.open(latest);
      const same = current.equals(value);
      Barrier.wipe(current);
      if (same) return undefined;
    }
    const version = (latest?.version ?? 0) + 1;
    const sealed = this.d.barrier.encrypt(value, secretAd(resourceId, version));
    await this.d.store.secrets.insert({
      resource_id: resourceId,
      version,
      key_version: sealed.keyVersion,
      nonce: sealed.nonce,
      ciphertext: sealed.ciphertext,
    });
    await this.d.store.secrets.prune(resourceId, this.d.config.versionLimit);
    return version;
  }

  /** POST /secrets/{account}/variable/{id}?expirations: clear expiry on every version. */
  async clearExpirations(actor: Actor, resourceId: string): Promise<void> {
    const event = this.event(actor, 'update', resourceId);
    try {
      const resource = await this.d.authorizer.requireVisible(actor.roleId, resourceId);
      if (!(await this.d.authorizer.canOn(actor.roleId, 'update', resource))) throw forbidden();
      const rows = await this.d.store.tx(async () => {
        await this.d.store.secrets.clearExpirations(resourceId);
        return this.d.audit.recordInTransaction([
          { ...event, operation: 'expire', result: 'success', message: `${actor.roleId} cleared the expiration of ${resourceId}` },
        ]);
      });
      this.d.audit.publish(rows);
    } catch (err) {
      await this.recordFailure(err, event, `${actor.roleId} tried to expire ${resourceId}`);
      throw err;
    }
  }

  /** GET /secrets/{account}/variable/{id}[?version=N] (`execute` required). */
  async fetch(actor: Actor, resourceId: string, version?: number): Promise<FetchedValue> {
    const event = this.event(actor, 'fetch', resourceId, version);
    let value: Buffer | undefined;
    try {
      // Holding execute implies visibility, so the common (allowed) case costs
      // one cached decision; visibility is only worked out to choose 404 vs 403.
      if (!(await this.d.authorizer.can(actor.roleId, 'execute', resourceId))) {
        const resource = await this.d.store.graph.getResource(resourceId);
        if (!resource || !(await this.d.authorizer.isVisible(actor.roleId, resource))) {
          // Conjur logs an invisible-but-existing variable as Forbidden while answering 404.
          throw new CofferError('not_found', emptyOrMissing(resourceId).message, { auditReason: resource ? 'Forbidden' : emptyOrMissing(resourceId).message });
        }
        throw forbidden();
      }
      const spec = await this.d.dynamic?.specOf(resourceId);
      if (spec) {
        if (version !== undefined) throw unprocessable(`Variable ${resourceId} is dynamic: it has no versions`);
        // The issue, its lease row and its audit event (success or failure) are the dynamic service's.
        const issued = await this.d.dynamic!.issue(actor, spec);
        return { value: issued.value, version: 0, mimeType: 'application/json' };
      }
      const row = version === undefined ? await this.d.store.secrets.latest(resourceId) : await this.d.store.secrets.byVersion(resourceId, version);
      if (!row) throw emptyOrMissing(resourceId);
      value = await this.open(row);
      await this.d.audit.record({
        ...event,
        result: 'success',
        version: row.version,
        message: `${actor.roleId} fetched ${version === undefined ? '' : `version ${row.version} of `}${resourceId}`,
      });
      const mimeType = (await this.d.authorizer.annotation(resourceId, 'conjur/mime_type')) || 'application/octet-stream';
      return { value, version: row.version, mimeType };
    } catch (err) {
      Barrier.wipe(value);
      if (!isAudited(err)) await this.recordFailure(err, event, `${actor.roleId} tried to fetch ${resourceId}`);
      throw err;
    }
  }

  /**
   * Conjur's GET /secrets?variable_ids=: all-or-nothing. `execute` is checked
   * for every id first (403, without a visibility check), then existence and
   * value (404 naming the first missing). One audit event per variable.
   */
  async fetchAllOrNothing(actor: Actor, ids: string[]): Promise<Map<string, Buffer>> {
    const values = new Map<string, Buffer>();
    const events: AuditEvent[] = [];
    let failure: unknown;
    for (const id of ids) {
      if (!(await this.d.authorizer.can(actor.roleId, 'execute', id)) && (await this.d.store.graph.getResource(id))) {
        failure = forbidden();
        events.push({ ...this.event(actor, 'fetch', id), result: 'failure', reason: 'Forbidden', message: `${actor.roleId} tried to fetch ${id}: Forbidden` });
        break;
      }
    }
    // Dynamic variables are issued only once every id has passed: a refused batch mints nothing.
    const issued: string[] = [];
    if (!failure) {
      const specs = new Map<string, DynamicSpec>();
      const rows = new Map<string, SecretRow>();
      for (const id of ids) {
        const allowed = parseFullId(id)?.kind === 'variable' && (await this.d.authorizer.can(actor.roleId, 'execute', id));
        let spec: DynamicSpec | undefined;
        try {
          spec = allowed ? await this.d.dynamic?.specOf(id) : undefined;
        } catch (err) {
          failure = err;
          events.push({ ...this.event(actor, 'fetch', id), result: 'failure', reason: auditReasonOf(err), message: `${actor.roleId} tried to fetch ${id}: ${auditReasonOf(err)}` });
          break;
        }
        const row = allowed && !spec ? await this.d.store.secrets.latest(id) : undefined;
        if (!spec && !row) {
          failure = emptyOrMissing(id);
          events.push({ ...this.event(actor, 'fetch', id), result: 'failure', reason: (failure as CofferError).message, message: `${actor.roleId} tried to fetch ${id}: ${(failure as CofferError).message}` });
          break;
        }
        if (spec) specs.set(id, spec);
        else rows.set(id, row!);
      }
      if (!failure) {
        for (const id of ids) {
          if (values.has(id)) continue;
          const spec = specs.get(id);
          if (spec) {
            try {
              // Its lease row and audit event (success or failure) are written by the dynamic service.
              const credential = await this.d.dynamic!.issue(actor, spec);
              values.set(id, credential.value);
              issued.push(credential.leaseId);
            } catch (err) {
              failure = err;
              break;
            }
            continue;
          }
          const row = rows.get(id)!;
          values.set(id, await this.open(row));
          events.push({ ...this.event(actor, 'fetch', id, row.version), result: 'success', version: row.version, message: `${actor.roleId} fetched ${id}` });
        }
      }
    }
    if (failure) {
      for (const v of values.values()) Barrier.wipe(v);
      if (issued.length > 0) await this.d.dynamic!.takeBack(issued);
    }
    try {
      await Promise.all(events.map((e) => this.d.audit.record(e)));
    } catch (err) {
      for (const v of values.values()) Barrier.wipe(v);
      if (!failure && issued.length > 0) await this.d.dynamic!.takeBack(issued).catch(() => undefined);
      throw err;
    }
    if (failure) throw failure;
    return values;
  }

  /** Coffer's POST /secrets/{account}/batch: one outcome per id instead of all-or-nothing. */
  async fetchEach(actor: Actor, ids: string[]): Promise<Map<string, BatchOutcome>> {
    const outcomes = new Map<string, BatchOutcome>();
    const events: AuditEvent[] = [];
    const issued: string[] = [];
    for (const id of new Set(ids)) {
      const event = this.event(actor, 'fetch', id);
      const resource = await this.d.store.graph.getResource(id);
      const notFound = emptyOrMissing(id);
      if (!resource || parseFullId(id)?.kind !== 'variable' || !(await this.d.authorizer.isVisible(actor.roleId, resource))) {
        outcomes.set(id, { ok: false, code: 'not_found', message: notFound.message, status: 404 });
        events.push({ ...event, result: 'failure', reason: resource ? 'Forbidden' : notFound.message, message: `${actor.roleId} tried to fetch ${id}: ${resource ? 'Forbidden' : notFound.message}` });
        continue;
      }
      if (!(await this.d.authorizer.canOn(actor.roleId, 'execute', resource))) {
        outcomes.set(id, { ok: false, code: 'forbidden', message: `Forbidden: execute privilege on ${id} is required`, status: 403 });
        events.push({ ...event, result: 'failure', reason: 'Forbidden', message: `${actor.roleId} tried to fetch ${id}: Forbidden` });
        continue;
      }
      let spec: DynamicSpec | undefined;
      try {
        spec = await this.d.dynamic?.specOf(id);
      } catch (err) {
        const e = err as CofferError;
        outcomes.set(id, { ok: false, code: e.code, message: e.message, status: e.code === 'unprocessable_entity' ? 422 : 500 });
        events.push({ ...event, result: 'failure', reason: auditReasonOf(err), message: `${actor.roleId} tried to fetch ${id}: ${auditReasonOf(err)}` });
        continue;
      }
      if (spec) {
        try {
          // Lease row and audit event (success or failure) are the dynamic service's.
          const credential = await this.d.dynamic!.issue(actor, spec);
          outcomes.set(id, { ok: true, value: credential.value });
          issued.push(credential.leaseId);
        } catch (err) {
          if (!(err instanceof CofferError) || err.code === 'service_unavailable') {
            for (const o of outcomes.values()) if (o.ok) Barrier.wipe(o.value);
            if (issued.length > 0) await this.d.dynamic!.takeBack(issued).catch(() => undefined);
            throw err;
          }
          outcomes.set(id, { ok: false, code: err.code, message: err.message, status: err.code === 'bad_gateway' ? 502 : 422 });
          if (!isAudited(err)) events.push({ ...event, result: 'failure', reason: auditReasonOf(err), message: `${actor.roleId} tried to fetch ${id}: ${auditReasonOf(err)}` });
        }
        continue;
      }
      const row = await this.d.store.secrets.latest(id);
      if (!row) {
        outcomes.set(id, { ok: false, code: 'not_found', message: notFound.message, status: 404 });
        events.push({ ...event, result: 'failure', reason: notFound.message, message: `${actor.roleId} tried to fetch ${id}: ${notFound.message}` });
        continue;
      }
      outcomes.set(id, { ok: true, value: await this.open(row) });
      events.push({ ...event, result: 'success', version: row.version, message: `${actor.roleId} fetched ${id}` });
    }
    try {
      await Promise.all(events.map((e) => this.d.audit.record(e)));
    } catch (err) {
      for (const o of outcomes.values()) if (o.ok) Barrier.wipe(o.value);
      if (issued.length > 0) await this.d.dynamic!.takeBack(issued).catch(() => undefined);
      throw err;
    }
    return outcomes;
  }

  /** Version metadata for the resource JSON. */
  versions(resourceId: string): Promise<{ version: number; expires_at: string | null }[]> {
    return this.d.store.secrets.versions(resourceId);
  }

  /** Latest value without authorization or audit (server-internal reads: authenticator configuration). */
  async readInternal(resourceId: string): Promise<Buffer | undefined> {
    const row = await this.d.store.secrets.latest(resourceId);
    return row ? this.open(row) : undefined;
  }

  private async open(row: SecretRow): Promise<Buffer> {
    return this.d.barrier.decrypt(
      { keyVersion: row.key_version, nonce: row.nonce, ciphertext: row.ciphertext },
      secretAd(row.resource_id, row.version),
    );
  }

  private event(actor: Actor, action: 'fetch' | 'update', resourceId: string, version?: number) {
    return {
      account: actor.account,
      action,
      operation: action,
      roleId: actor.roleId,
      resourceId,
      version: version ?? null,
      request: actor.request,
    };
  }

  private async recordFailure(err: unknown, event: ReturnType<SecretsService['event']>, prefix: string): Promise<void> {
    if (err instanceof CofferError && err.code === 'service_unavailable') return;
    const reason = auditReasonOf(err);
    await this.d.audit.record({ ...event, result: 'failure', reason, message: `${prefix}: ${reason}` });
  }
}
