/**
 * Host factory (reference §1.9): token creation and revocation with an access
 * token, host enrolment with a raw host-factory token. Bodies are form or
 * JSON (Conjur's BodyParser); parameters may also come in the query string.
 */
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';
import { formOrJson, requestInfo, segment, type Ctx } from '../request.js';
import { resourceJson } from './resources.js';

/** These requests carry a few short parameters; nothing justifies the general body limit. */
const HOST_FACTORY_BODY_LIMIT = 64 * 1024;

/** `annotations[name]=value` (form) or `{"annotations":{"name":"value"}}` (JSON, flattened by formOrJson). */
const ANNOTATION_PARAM = /^annotations\[(.*)\]$/s;

/**
 * The host-factory token from `Authorization: Token token="<token>"`. Unlike
 * access tokens it is sent raw, not base64 (Conjur's HostFactoriesController).
 */
function hostFactoryToken(c: Ctx): string | undefined {
  const m = /^Token token="([^"\r\n]*)"/.exec(c.req.header('authorization') ?? '');
  return m ? m[1]!.trim() : undefined;
}

export function registerHostFactories({ app, services, config }: RouteDeps): void {
  const limit = Math.min(config.bodyLimit, HOST_FACTORY_BODY_LIMIT);

  app.post('/host_factory_tokens', async (c) => {
    // Authenticate before reading the body, so anonymous clients cannot make us buffer it.
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const params = await formOrJson(c, limit);
    const tokens = await services.hostFactories.createTokens(actor, {
      hostFactory: params.get('host_factory') ?? undefined,
      expiration: params.get('expiration') ?? undefined,
      count: params.get('count') ?? undefined,
      cidr: [...params.getAll('cidr[]'), ...params.getAll('cidr')],
    });
    return c.json(tokens);
  });

  app.delete('/host_factory_tokens/:token', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    await services.hostFactories.revokeToken(actor, segment(c, 1));
    return c.body(null, 204);
  });

  app.post('/host_factories/hosts', async (c) => {
    const token = hostFactoryToken(c);
    // Without a token the request is refused (401, audited) before its body is read.
    const params = token === undefined ? new URLSearchParams() : await formOrJson(c, limit);
    const annotations: [string, string][] = [];
    for (const [name, value] of params) {
      const m = ANNOTATION_PARAM.exec(name);
      if (m) annotations.push([m[1]!, value]);
    }
    const host = await services.hostFactories.createHost(token, { id: params.get('id') ?? undefined, annotations }, requestInfo(c));
    const resource = (await services.store.graph.getResource(host.hostId))!;
    return c.json({ ...(await resourceJson(services, resource, host.hostFactoryId)), api_key: host.apiKey }, 201);
  });
}
