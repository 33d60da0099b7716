/** GET /, /health, /whoami, /authenticators. */
import { loginFromRoleId } from '../../ids.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';

export function registerMisc({ app, services, config }: RouteDeps): void {
  app.get('/', (c) => {
    const accept = c.req.header('accept') ?? '';
    if (accept.includes('application/json')) return c.json({ version: config.version });
    return c.html(
      `<!doctype html><html><head><title>Coffer</title></head><body><h1>Coffer ${config.version}</h1>` +
        '<p>Policy-as-code secrets vault (Conjur-compatible API). Status: OK.</p></body></html>',
    );
  });

  app.get('/health', (c) => {
    try {
      services.store.db.prepare('SELECT 1').get();
      return c.json({ status: 'ok', database: 'ok', version: config.version });
    } catch {
      return c.json({ status: 'error', database: 'unavailable', version: config.version }, 503);
    }
  });

  app.get('/whoami', async (c) => {
    const actor = authenticateRequest(c, services.tokens, services.store.graph);
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

  app.get('/authenticators', (c) => c.json(services.jwtAuthn.listing()));
}
