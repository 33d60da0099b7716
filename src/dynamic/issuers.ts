/**
 * Conjur's issuers API (issue 12, item 1): create, list, show, update and
 * delete the issuers of dynamic secrets.
 *
 * Who may do what follows Conjur's IssuersController, whose authorization
 * resource is the policy `conjur/issuers` of the account:
 *  - create: `create` on `{account}:policy:conjur/issuers`;
 *  - list, show, update, delete: `update` on `{account}:policy:conjur/issuers`
 *    (Conjur checks `show` against the per-issuer policy
 *    `conjur/issuers/<id>` it generates; Coffer generates no policy, and
 *    `update` on the parent is what Conjur's owner of that policy holds).
 * Without the privilege — or without the policy — the answer is 403, as
 * Conjur answers. An issuer is audited as resource `{account}:issuer:{id}`.
 *
 * Secret fields of `data` (`password`) are sealed by the barrier (associated
 * data `issuer:<account>:<id>`) and shown as "*****" in every answer.
 * `ca_cert` is a CA certificate — public by nature — and stays readable.
 */
import type { AuditEvent, AuditLog } from '../audit/log.js';
import type { Actor, Clock } from '../context.js';
import { CofferError, auditReasonOf, forbidden } from '../errors.js';
import type { Authorizer } from '../rbac/authorizer.js';
import { Barrier, packSealed, unpackSealed } from '../secrets/barrier.js';
import type { IssuerRow } from '../store/dynamic.js';
import type { Store } from '../store/index.js';
import { PREDEFINED_ROLE_PREFIX, SSL_MODES, type TargetConnection } from './postgresql.js';

export const MASK = '*****';
/** Conjur's rule for issuer ids. */
const ID_PATTERN = /^[A-Za-z0-9+\-_]+$/;
const ID_MAX = 60;
/** Bounds of max_ttl (seconds): Conjur requires a positive integer; Coffer caps it at a day. */
export const MAX_TTL_LIMIT = 86_400;
export const ISSUER_TYPES = ['postgresql'] as const;
const SECRET_FIELDS = new Set(['password']);
const PG_FIELDS = new Set(['host', 'port', 'database', 'username', 'password', 'sslmode', 'ca_cert', 'allowed_grant_roles']);
/** Where the password goes: changing any of these needs the password sent again. */
const CONNECTION_FIELDS = ['host', 'port', 'database', 'username', 'sslmode', 'ca_cert'] as const;
/** Most roles one issuer lets its dynamic variables grant (and one variable may name). */
export const MAX_GRANT_ROLES = 16;
/** Longest a role name may be in PostgreSQL (NAMEDATALEN - 1). */
export const PG_NAME_MAX = 63;

/** The JSON of an issuer as Conjur answers it (data masked). */
export interface IssuerJson {
  id: string;
  type: string;
  max_ttl: number;
  data?: Record<string, unknown>;
  created_at: string;
  modified_at: string;
}

export const issuerAd = (account: string, id: string) => `issuer:${account}:${id}`;
export const issuerResourceId = (account: string, id: string) => `${account}:issuer:${id}`;
export const issuersPolicyId = (account: string) => `${account}:policy:conjur/issuers`;

/** Conjur's 400 for a malformed issuer request. */
const badRequest = (message: string) => new CofferError('bad_request', message);

export interface IssuerDeps {
  store: Store;
  barrier: Barrier;
  audit: AuditLog;
  authorizer: Authorizer;
  clock: Clock;
  /** Called after an issuer's connection settings changed or it was deleted (closes its pool). */
  onChanged?: (account: string, id: string) => Promise<void>;
  /** Ends the leases of a deleted issuer (those the database refuses stay pending for the sweeper). */
  endLeases?: (account: string, id: string) => Promise<void>;
}

export interface CreateIssuerInput {
  id?: unknown;
  type?: unknown;
  max_ttl?: unknown;
  data?: unknown;
  [k: string]: unknown;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function validateMaxTtl(v: unknown): number {
  if (v === undefined || v === null) throw badRequest('max_ttl is a required parameter and must be specified');
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw badRequest("the 'max_ttl' parameter must be a positive integer");
  if (v > MAX_TTL_LIMIT) throw badRequest(`the 'max_ttl' parameter may be at most ${MAX_TTL_LIMIT} seconds`);
  return v;
}

/** The roles an issuer lets its dynamic variables grant (`data.allowed_grant_roles`). */
function validateAllowedGrantRoles(v: unknown, username: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw badRequest("the 'data.allowed_grant_roles' parameter must be an array of role names");
  if (v.length > MAX_GRANT_ROLES) throw badRequest(`the 'data.allowed_grant_roles' parameter may name at most ${MAX_GRANT_ROLES} roles`);
  const out: string[] = [];
  for (const r of v) {
    if (typeof r !== 'string' || r === '' || r.length > PG_NAME_MAX || r.includes('\0')) {
      throw badRequest(`every entry of 'data.allowed_grant_roles' must be a role name of 1 to ${PG_NAME_MAX} characters`);
    }
    if (r.startsWith(PREDEFINED_ROLE_PREFIX)) {
      throw badRequest(`'data.allowed_grant_roles' may not name ${r}: predefined roles (pg_*) reach beyond the database (files, programs, every database, other sessions)`);
    }
    if (r === username) throw badRequest(`'data.allowed_grant_roles' may not name the issuer's own login '${username}': every generated login would hold its privileges`);
    if (!out.includes(r)) out.push(r);
  }
  return out;
}

/**
 * Splits and checks a `postgresql` issuer's data. On an update, `previous`
 * (the current public data and password) supplies the password when it is
 * left out or sent back masked — but only while the connection stays the
 * same: changing where the password goes (host, port, database, username,
 * sslmode, ca_cert) needs it sent again, so that whoever may update an issuer
 * cannot send its stored password to a server of their choice.
 */
function validatePostgresData(
  data: unknown,
  previous?: { pub: Record<string, unknown>; secret: Record<string, string> },
): { pub: Record<string, unknown>; secret: Record<string, string> } {
  if (!isObject(data)) throw badRequest("the 'data' parameter must be a JSON object");
  for (const k of Object.keys(data)) {
    if (!PG_FIELDS.has(k)) {
      throw badRequest(`invalid parameter '${k}' in data: a postgresql issuer takes host, port, database, username, password, sslmode, ca_cert and allowed_grant_roles`);
    }
  }
  const str = (name: string, max: number, required: boolean): string | undefined => {
    const v = data[name];
    if (v === undefined || v === null) {
      if (required) throw badRequest(`data.${name} is a required parameter and must be specified`);
      return undefined;
    }
    if (typeof v !== 'string' || v === '' || v.length > max) throw badRequest(`the 'data.${name}' parameter must be a non-empty string of at most ${max} characters`);
    return v;
  };
  const host = str('host', 255, true)!;
  const database = str('database', 63, true)!;
  const username = str('username', 63, true)!;
  const rawPort = data.port ?? 5432;
  const port = typeof rawPort === 'string' && /^\d{1,5}$/.test(rawPort) ? Number(rawPort) : rawPort;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw badRequest("the 'data.port' parameter must be an integer from 1 to 65535");
  const sslmode = str('sslmode', 20, false);
  if (sslmode !== undefined && !(SSL_MODES as readonly string[]).includes(sslmode)) throw badRequest(`the 'data.sslmode' parameter must be one of ${SSL_MODES.join(', ')}`);
  const caCert = str('ca_cert', 65_536, false);
  if ((sslmode === 'verify-ca' || sslmode === 'verify-full') && caCert === undefined) throw badRequest(`sslmode ${sslmode} needs data.ca_cert`);
  const allowed = validateAllowedGrantRoles(data.allowed_grant_roles, username);
  const pub: Record<string, unknown> = { host, port, database, username };
  if (sslmode !== undefined) pub.sslmode = sslmode;
  if (caCert !== undefined) pub.ca_cert = caCert;
  if (allowed.length > 0) pub.allowed_grant_roles = allowed;
  let password = data.password;
  if ((password === undefined || password === MASK) && previous?.secret.password) {
    const moved: string[] = CONNECTION_FIELDS.filter((f) => previous.pub[f] !== pub[f]);
    const before = Array.isArray(previous.pub.allowed_grant_roles) ? (previous.pub.allowed_grant_roles as unknown[]) : [];
    if (allowed.some((r) => !before.includes(r))) moved.push('allowed_grant_roles');
    if (moved.length > 0) {
      throw badRequest(
        `data.password must be sent again when ${moved.map((f) => `data.${f}`).join(', ')} ${moved.length === 1 ? 'changes' : 'change'}: ` +
          'the stored password only goes where it went before, and only whoever holds it may widen what the issuer grants',
      );
    }
    password = previous.secret.password;
  }
  if (typeof password !== 'string' || password === '' || password.length > 1024) {
    throw badRequest("data.password is a required parameter and must be a non-empty string");
  }
  return { pub, secret: { password } };
}

/** The roles issuer `row` lets its dynamic variables grant. */
export function allowedGrantRoles(row: IssuerRow): string[] {
  const roles = (JSON.parse(row.data_public) as { allowed_grant_roles?: unknown }).allowed_grant_roles;
  return Array.isArray(roles) ? roles.filter((r): r is string => typeof r === 'string') : [];
}

export class IssuerService {
  constructor(private readonly d: IssuerDeps) {}

  /** The issuer JSON of a row: public data plus every secret field masked. */
  static toJson(row: IssuerRow, withData = true): IssuerJson {
    const out: IssuerJson = { id: row.id, type: row.type, max_ttl: row.max_ttl, created_at: row.created_at, modified_at: row.modified_at };
    if (withData) {
      const data = JSON.parse(row.data_public) as Record<string, unknown>;
      for (const f of SECRET_FIELDS) data[f] = MASK;
      out.data = data;
    }
    return out;
  }

  /** How to reach the issuer's database, its password unsealed (server-internal). */
  async connectionOf(row: IssuerRow): Promise<TargetConnection> {
    const plain = await this.d.barrier.decrypt(unpackSealed(row.data_sealed), issuerAd(row.account, row.id));
    try {
      const secret = JSON.parse(plain.toString('utf8')) as Record<string, string>;
      return { ...(JSON.parse(row.data_public) as Omit<TargetConnection, 'password'>), password: secret.password ?? '' };
    } finally {
      Barrier.wipe(plain);
    }
  }

  /** POST /issuers/{account}. */
  async create(actor: Actor, account: string, body: CreateIssuerInput): Promise<IssuerJson> {
    const rawId = typeof body.id === 'string' ? body.id : undefined;
    const event = this.event(actor, account, rawId ?? '', 'add');
    try {
      await this.requirePrivilege(actor, account, 'create');
      const id = body.id;
      if (id === undefined || id === null || id === '') throw badRequest('id is a required parameter and must be specified');
      if (typeof id !== 'string') throw badRequest("the 'id' parameter must be a string");
      if (!ID_PATTERN.test(id)) throw badRequest("invalid 'id' parameter. Only the following characters are supported: A-Z, a-z, 0-9, +, -, and _");
      if (id.length > ID_MAX) throw badRequest(`'id' parameter length exceeded. Limit the length to ${ID_MAX} characters`);
      const maxTtl = validateMaxTtl(body.max_ttl);
      if (body.type === undefined || body.type === null || body.type === '') throw badRequest('type is a required parameter and must be specified');
      if (typeof body.type !== 'string') throw badRequest("the 'type' parameter must be a string");
      if (!(ISSUER_TYPES as readonly string[]).includes(body.type)) throw badRequest(`issuer type '${body.type}' is not supported: Coffer issues ${ISSUER_TYPES.join(', ')}`);
      if (body.data === undefined || body.data === null) throw badRequest('data is a required parameter and must be specified');
      const extra = Object.keys(body).filter((k) => !['id', 'type', 'max_ttl', 'data'].includes(k));
      if (extra.length > 0) throw badRequest('invalid parameter received in the request body. Only id, type, max_ttl and data are allowed');
      const { pub, secret } = validatePostgresData(body.data);
      const now = new Date(this.d.clock.nowMs()).toISOString();
      const sealed = this.seal(account, id, secret);
      const { row, rows } = await this.d.store.tx(async () => {
        const existing = await this.d.store.dynamic.getIssuer(account, id);
        if (existing) {
          throw new CofferError(
            'conflict',
            existing.deleted_at ? `The issuer '${id}' is being deleted: its leases are still being ended` : `The issuer '${id}' already exists`,
            { target: 'issuer', details: { code: 'conflict', target: 'id', message: issuerResourceId(account, id) } },
          );
        }
        const newRow = { account, id, type: body.type as string, max_ttl: maxTtl, data_public: JSON.stringify(pub), data_sealed: sealed, created_at: now, modified_at: now };
        await this.d.store.dynamic.insertIssuer(newRow);
        const audited = await this.d.audit.recordInTransaction([{ ...event, resourceId: issuerResourceId(account, id), result: 'success', message: `${actor.roleId} added issuer ${id} (type ${newRow.type}, max_ttl ${maxTtl})` }]);
        return { row: { ...newRow, deleted_at: null }, rows: audited };
      });
      this.d.audit.publish(rows);
      return IssuerService.toJson(row);
    } catch (err) {
      await this.recordFailure(err, event, `${actor.roleId} tried to add issuer ${rawId ?? '(no id)'}`);
      throw err;
    }
  }

  /** GET /issuers/{account}: Conjur lists without data. */
  async list(actor: Actor, account: string): Promise<IssuerJson[]> {
    const event = this.event(actor, account, '*', 'list');
    try {
      await this.requirePrivilege(actor, account, 'update');
      const rows = await this.d.store.dynamic.listIssuers(account);
      await this.d.audit.record({ ...event, resourceId: issuersPolicyId(account), result: 'success', message: `${actor.roleId} listed the issuers of ${account}` });
      return rows.map((r) => IssuerService.toJson(r, false));
    } catch (err) {
      await this.recordFailure(err, event, `${actor.roleId} tried to list the issuers of ${account}`);
      throw err;
    }
  }

  /** GET /issuers/{account}/{id}. */
  async show(actor: Actor, account: string, id: string): Promise<IssuerJson> {
    const event = this.event(actor, account, id, 'fetch');
    try {
      await this.requirePrivilege(actor, account, 'update');
      const row = await this.live(account, id);
      await this.d.audit.record({ ...event, result: 'success', message: `${actor.roleId} fetched issuer ${id}` });
      return IssuerService.toJson(row);
    } catch (err) {
      await this.recordFailure(err, event, `${actor.roleId} tried to fetch issuer ${id}`);
      throw err;
    }
  }

  /** PATCH /issuers/{account}/{id}: `{max_ttl?, data?}`; max_ttl may not shrink (Conjur). */
  async update(actor: Actor, account: string, id: string, body: Record<string, unknown>): Promise<IssuerJson> {
    const event = this.event(actor, account, id, 'update');
    try {
      await this.requirePrivilege(actor, account, 'update');
      const extra = Object.keys(body).filter((k) => k !== 'max_ttl' && k !== 'data');
      if (extra.length > 0) throw badRequest('invalid parameter received in the request body. Only max_ttl and data are allowed');
      if (body.max_ttl === undefined && body.data === undefined) throw badRequest('give max_ttl, data or both');
      const { row, rows } = await this.d.store.tx(async () => {
        const current = await this.live(account, id);
        const maxTtl = body.max_ttl === undefined ? current.max_ttl : validateMaxTtl(body.max_ttl);
        if (maxTtl < current.max_ttl) throw badRequest('The new max_ttl must be equal or higher than the current max_ttl');
        let dataPublic = current.data_public;
        let sealed = current.data_sealed;
        if (body.data !== undefined) {
          const previous = { pub: JSON.parse(current.data_public) as Record<string, unknown>, secret: await this.unsealSecret(current) };
          const { pub, secret } = validatePostgresData(body.data, previous);
          // A lease's login lives on the database the issuer pointed at when it was fetched: moving the issuer while
          // leases exist would end them on the wrong database (and report logins dropped that still work).
          const moved = CONNECTION_FIELDS.filter((f) => f !== 'sslmode' && f !== 'ca_cert' && previous.pub[f] !== pub[f]);
          const leases = moved.length > 0 ? await this.d.store.dynamic.countIssuerLeases(account, id) : 0;
          if (leases > 0) {
            throw new CofferError(
              'conflict',
              `Issuer '${id}' still has ${leases} lease(s) on ${String(previous.pub.database)} at ${String(previous.pub.host)}:${String(previous.pub.port)}: ` +
                `revoke them (DELETE /leases) or let them expire before changing ${moved.map((f) => `data.${f}`).join(', ')}`,
              { target: 'issuer', details: { code: 'conflict', target: 'data', message: issuerResourceId(account, id) } },
            );
          }
          dataPublic = JSON.stringify(pub);
          sealed = this.seal(account, id, secret);
        }
        const now = new Date(this.d.clock.nowMs()).toISOString();
        await this.d.store.dynamic.updateIssuer(account, id, maxTtl, dataPublic, sealed, now);
        const audited = await this.d.audit.recordInTransaction([
          { ...event, result: 'success', message: `${actor.roleId} updated issuer ${id}${body.data !== undefined ? ' (connection data)' : ''}${body.max_ttl !== undefined ? ` (max_ttl ${maxTtl})` : ''}` },
        ]);
        return { row: { ...current, max_ttl: maxTtl, data_public: dataPublic, data_sealed: sealed, modified_at: now }, rows: audited };
      });
      this.d.audit.publish(rows);
      await this.d.onChanged?.(account, id);
      return IssuerService.toJson(row);
    } catch (err) {
      await this.recordFailure(err, event, `${actor.roleId} tried to update issuer ${id}`);
      throw err;
    }
  }

  /**
   * DELETE /issuers/{account}/{id}: marks the issuer deleted (gone from the
   * API at once) and, unless `keepSecrets`, deletes the dynamic variables
   * that name it; then ends its leases (`endLeases`). The row is removed
   * once none is left.
   */
  async delete(actor: Actor, account: string, id: string, keepSecrets: boolean): Promise<{ deletedVariables: string[] }> {
    const event = this.event(actor, account, id, 'remove');
    try {
      await this.requirePrivilege(actor, account, 'update');
      const { deletedVariables, rows } = await this.d.store.tx(async () => {
        await this.live(account, id);
        await this.d.store.dynamic.markIssuerDeleted(account, id, new Date(this.d.clock.nowMs()).toISOString());
        const events: AuditEvent[] = [{ ...event, result: 'success', message: `${actor.roleId} removed issuer ${id}${keepSecrets ? ' (dynamic variables kept)' : ''}` }];
        const deleted: string[] = [];
        if (!keepSecrets) {
          for (const variableId of await this.d.store.dynamic.variablesOfIssuer(account, id)) {
            await this.d.store.graph.deleteResource(variableId);
            deleted.push(variableId);
            events.push({ ...this.event(actor, account, id, 'remove'), action: 'variable', resourceId: variableId, result: 'success', message: `${actor.roleId} removed dynamic variable ${variableId} of issuer ${id}` });
          }
        }
        return { deletedVariables: deleted, rows: await this.d.audit.recordInTransaction(events) };
      });
      this.d.audit.publish(rows);
      if (deletedVariables.length > 0) this.d.authorizer.invalidate();
      await this.d.endLeases?.(account, id);
      return { deletedVariables };
    } catch (err) {
      await this.recordFailure(err, event, `${actor.roleId} tried to remove issuer ${id}`);
      throw err;
    }
  }

  /** Re-encrypts every issuer's sealed data under the active key (part of `keys rotate`). */
  async reencryptAll(): Promise<number> {
    let n = 0;
    for (const row of await this.d.store.dynamic.sealedIssuers()) {
      const ad = issuerAd(row.account, row.id);
      const plain = await this.d.barrier.decrypt(unpackSealed(row.data_sealed), ad);
      await this.d.store.dynamic.resealIssuer(row.account, row.id, packSealed(this.d.barrier.encrypt(plain, ad)));
      Barrier.wipe(plain);
      n++;
    }
    return n;
  }

  private seal(account: string, id: string, secret: Record<string, string>): Buffer {
    const plain = Buffer.from(JSON.stringify(secret), 'utf8');
    try {
      return packSealed(this.d.barrier.encrypt(plain, issuerAd(account, id)));
    } finally {
      Barrier.wipe(plain);
    }
  }

  private async unsealSecret(row: IssuerRow): Promise<Record<string, string>> {
    const plain = await this.d.barrier.decrypt(unpackSealed(row.data_sealed), issuerAd(row.account, row.id));
    try {
      return JSON.parse(plain.toString('utf8')) as Record<string, string>;
    } finally {
      Barrier.wipe(plain);
    }
  }

  /** The undeleted issuer, or Conjur's 404 "Issuer not found". */
  private async live(account: string, id: string): Promise<IssuerRow> {
    const row = await this.d.store.dynamic.getIssuer(account, id);
    if (!row || row.deleted_at) {
      throw new CofferError('not_found', 'Issuer not found', { target: 'issuer', details: { code: 'not_found', target: 'id', message: issuerResourceId(account, id) } });
    }
    return row;
  }

  private async requirePrivilege(actor: Actor, account: string, privilege: 'create' | 'update'): Promise<void> {
    if (actor.account !== account || !(await this.d.authorizer.can(actor.roleId, privilege, issuersPolicyId(account)))) {
      throw forbidden(`${privilege} privilege on ${issuersPolicyId(account)} is required`);
    }
  }

  private event(actor: Actor, account: string, id: string, operation: string) {
    return {
      account,
      action: 'issuer',
      operation,
      roleId: actor.roleId,
      resourceId: issuerResourceId(account, id),
      request: actor.request,
    };
  }

  private async recordFailure(err: unknown, event: ReturnType<IssuerService['event']>, prefix: string): Promise<void> {
    if (err instanceof CofferError && err.code === 'service_unavailable') return;
    const reason = auditReasonOf(err);
    await this.d.audit.record({ ...event, result: 'failure', reason, message: `${prefix}: ${reason}` });
  }
}
