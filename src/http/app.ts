/** The hono application: middleware, routes, error mapping. */
import { Hono } from 'hono';
import { CofferError } from '../errors.js';
import type { Services } from '../services.js';
import type { HttpConfig } from './context.js';
import { renderError } from './errors.js';
import { clientIp, requestIdFor, type HttpEnv } from './request.js';
import { registerAudit } from './routes/audit.js';
import { registerAuthn } from './routes/authn.js';
import { registerHostFactories } from './routes/host-factories.js';
import { registerAuthnJwt } from './routes/authn-jwt.js';
import { registerMisc } from './routes/misc.js';
import { registerPolicies } from './routes/policies.js';
import { registerPublicKeys } from './routes/public-keys.js';
import { registerResources } from './routes/resources.js';
import { registerRoles } from './routes/roles.js';
import { registerSecrets } from './routes/secrets.js';

export function createApp(services: Services, config: HttpConfig): Hono<HttpEnv> {
  // strict: false — clients add trailing slashes (Ruby's secrets, Go's /resources/acct/).
  const app = new Hono<HttpEnv>({ strict: false });

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
  registerAudit(deps);

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
