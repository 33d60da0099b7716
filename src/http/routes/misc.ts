/** GET /, /health, /whoami, /authenticators. */
import { loginFromRoleId } from '../../ids.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';

/**
 * The Conjur OSS release whose REST API Coffer implements, reported by `GET /`
 * as Conjur reports its own version. conjur-api-go (the Go CLI, Terraform)
 * refuses `policy load --dry-run` and `policy fetch` below 1.21.1; Coffer has
 * both. Later releases add the v2 APIs (`/branches`, `/groups/…/members`,
 * `/authenticators/{account}` CRUD, `/issuers`) that Coffer does not
 * implement, so claiming one of them would send clients to routes that 404.
 */
export const CONJUR_API_VERSION = '1.21.1';

/** The free space /health requires by default: room for the largest request body twice (the WAL, then the database). */
export function defaultHealthMinFreeBytes(bodyLimit: number, policyBodyLimit: number): number {
  return 2 * Math.max(bodyLimit, policyBodyLimit);
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

export function registerMisc({ app, services, config }: RouteDeps): void {
  app.get('/', (c) => {
    const accept = c.req.header('accept') ?? '';
    // Conjur answers JSON whenever Accept mentions it (conjur-api-go sends "application/json, text/html").
    if (accept.includes('application/json')) return c.json({ version: CONJUR_API_VERSION, coffer_version: config.version });
    // Conjur's status page lists its version as `<dd>Version X</dd>`, which conjur-api-go parses;
    // Coffer's own version is a separate entry that does not start with "Version".
    return c.html(
      `<!doctype html><html><head><title>Coffer</title></head><body><h1>Coffer ${escapeHtml(config.version)}</h1>` +
        '<p>Policy-as-code secrets vault (Conjur-compatible API). Status: OK.</p>' +
        `<dl><dt>Details:</dt><dd>Version ${CONJUR_API_VERSION}</dd><dd>Coffer ${escapeHtml(config.version)}</dd></dl>` +
        '</body></html>',
    );
  });

  // 503 when the database cannot be read, or cannot take writes (full or failing disk: see store/health.ts),
  // so that a load balancer drains the node rather than send it writes that all fail.
  app.get('/health', async (c) => {
    const backend = services.store.backend;
    try {
      await services.store.health.ping();
    } catch {
      return c.json({ status: 'error', backend, database: 'unavailable', version: config.version }, 503);
    }
    const minFree = config.healthMinFreeBytes ?? defaultHealthMinFreeBytes(config.bodyLimit, config.policyBodyLimit);
    const w = await services.store.health.check(services.clock.nowMs(), minFree);
    if (!w.writable) return c.json({ status: 'error', backend, database: 'not_writable', reason: w.reason, version: config.version }, 503);
    return c.json({ status: 'ok', backend, database: 'ok', version: config.version });
  });

  app.get('/whoami', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    await services.audit.record({
      account: actor.account,
      action: 'identity-check',
      operation: 'check',
      result: 'success',
      roleId: actor.roleId,
      resourceId: actor.roleId,
      request: actor.request,
      message: `${actor.roleId} checked its identity using whoami`,
    });
    return c.json({
      client_ip: actor.request.clientIp,
      user_agent: actor.request.userAgent ?? null,
      account: actor.account,
      username: loginFromRoleId(actor.roleId),
      token_issued_at: new Date(actor.claims!.iat * 1000).toISOString(),
    });
  });

  app.get('/authenticators', async (c) => c.json(await services.jwtAuthn.listing()));
}
