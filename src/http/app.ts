/** The hono application: middleware, routes, error mapping. */
import { Hono } from 'hono';
import { PatternRouter } from 'hono/router/pattern-router';
import { randomUUID } from 'node:crypto';
import { CofferError } from '../errors.js';
import type { Services } from '../services.js';
import type { HttpConfig } from './context.js';
import { renderError } from './errors.js';
import { clientIp, requestIdFor, type HttpEnv } from './request.js';
import { registerAudit } from './routes/audit.js';
import { registerAuthn } from './routes/authn.js';
import { registerHostFactories } from './routes/host-factories.js';
import { registerIssuers } from './routes/issuers.js';
import { registerAuthnJwt } from './routes/authn-jwt.js';
import { registerExplain } from './routes/explain.js';
import { registerMisc } from './routes/misc.js';
import { registerPolicies } from './routes/policies.js';
import { registerPublicKeys } from './routes/public-keys.js';
import { registerResources } from './routes/resources.js';
import { registerRoles } from './routes/roles.js';
import { registerSecrets } from './routes/secrets.js';
import { registerUi } from './routes/ui.js';

/**
 * Bounds on a request's path, checked before routing. An identifier is at
 * most 4,096 characters, so at most 2,048 segments and 12,288 bytes when
 * every character is percent-encoded ASCII; the bounds leave room for the
 * route around it, so no addressable id is refused.
 */
export const MAX_PATH_BYTES = 12_800;
export const MAX_PATH_SEGMENTS = 2_100;

/**
 * Refuses a request whose path is beyond the bounds, in time linear in the
 * URL and before any routing or authentication; undefined when it is fine.
 */
export function refuseOversizedTarget(url: string): Response | undefined {
  const start = url.indexOf('/', url.indexOf('://') + 3);
  if (start < 0) return undefined;
  let segments = 0;
  let end = start;
  for (; end < url.length; end++) {
    const ch = url.charCodeAt(end);
    if (ch === 0x3f || ch === 0x23) break; // '?' or '#'
    if (ch === 0x2f) segments++;
  }
  const bytes = end - start;
  if (bytes <= MAX_PATH_BYTES && segments <= MAX_PATH_SEGMENTS) return undefined;
  const limit = bytes > MAX_PATH_BYTES ? `${MAX_PATH_BYTES} bytes` : `${MAX_PATH_SEGMENTS} segments`;
  return new Response(JSON.stringify({ error: { code: 'uri_too_long', message: `The request path is longer than ${limit}` } }), {
    status: 414,
    headers: { 'Content-Type': 'application/json', 'X-Request-Id': randomUUID() },
  });
}

export function createApp(services: Services, config: HttpConfig): Hono<HttpEnv> {
  // strict: false — clients add trailing slashes (Ruby's secrets, Go's /resources/acct/).
  // PatternRouter: one anchored regex per route, so matching is linear in the
  // path. The default SmartRouter picks TrieRouter for our `{.+}` routes, which
  // re-joins the rest of the path at every segment — quadratic: a 14 KB
  // unauthenticated /authn/acct/a/a/…/authenticate took seconds.
  const app = new Hono<HttpEnv>({ strict: false, router: new PatternRouter() });

  app.use('*', async (c, next) => {
    const requestId = requestIdFor(c.req.header('x-request-id'));
    c.set('requestId', requestId);
    c.set('clientIp', clientIp(c.env?.incoming, c.req.header('x-forwarded-for'), config.trustedProxies));
    c.header('X-Request-Id', requestId);
    await next();
    c.res.headers.set('X-Request-Id', requestId);
  });

  const deps = { app, services, config };
  registerMisc(deps);
  registerAuthn(deps);
  registerAuthnJwt(deps);
  registerPolicies(deps);
  registerResources(deps);
  registerRoles(deps);
  registerSecrets(deps);
  registerPublicKeys(deps);
  registerHostFactories(deps);
  registerIssuers(deps);
  registerAudit(deps);
  registerExplain(deps);
  registerUi(deps);

  app.notFound((c) => {
    // Only the first path segment is echoed: the rest may be a credential
    // (a host-factory token in a mistyped DELETE /host_factory_tokens/<token>/…).
    const [first, ...rest] = new URL(c.req.url).pathname.split('/').filter(Boolean);
    const shown = `/${first ?? ''}${rest.length > 0 ? '/…' : ''}`;
    return c.json({ error: { code: 'not_found', message: `No route matches ${c.req.method} ${shown}` } }, 404);
  });
  app.onError((err, c) => {
    const res = renderError(c, err instanceof CofferError ? err : err, (e) => config.logError(e, c.get('requestId')));
    res.headers.set('X-Request-Id', c.get('requestId') ?? '');
    return res;
  });
  return app;
}
