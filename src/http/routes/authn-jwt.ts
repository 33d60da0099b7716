/** The JWT authenticator (reference §1.2, §1.3): authenticate, status, enable/disable. */
import { argumentError, badRequest, CofferError } from '../../errors.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';
import type { Ctx } from '../request.js';
import { accessTokenResponse, accountSegment, formOrJson, identifierFrom, rawBody, requestInfo, segment } from '../request.js';

/** The `jwt` form field of the body. Never read from the query string: URLs end up in logs. */
async function jwtField(c: Ctx, limit: number): Promise<string> {
  const body = await rawBody(c, limit);
  const jwt = new URLSearchParams(body.toString('utf8')).get('jwt');
  body.fill(0);
  // Conjur answers a missing field with an empty 400.
  if (jwt === null || jwt === '') throw badRequest("The request body does not contain the 'jwt' field");
  return jwt;
}

export function registerAuthnJwt({ app, services, config }: RouteDeps): void {
  const { jwtAuthn } = services;

  const authenticate = async (c: Ctx, urlHostId: string | undefined) => {
    const serviceId = segment(c, 1);
    const account = accountSegment(c, 2);
    const jwt = await jwtField(c, config.bodyLimit);
    const token = await jwtAuthn.authenticate({ serviceId, account, urlHostId, jwt, request: requestInfo(c) });
    return accessTokenResponse(c, token);
  };

  app.post('/authn-jwt/:service_id/:account/authenticate', (c) => authenticate(c, undefined));
  app.post('/authn-jwt/:service_id/:account/:id{.+}/authenticate', (c) => authenticate(c, identifierFrom(c, 3, 1)));

  app.get('/authn-jwt/:service_id/:account/status', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const { httpStatus, body } = await jwtAuthn.status(actor, accountSegment(c, 2), segment(c, 1));
    return c.json(body, httpStatus);
  });

  app.patch('/authn-jwt/:service_id/:account', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const account = accountSegment(c, 2);
    const enabled = (await formOrJson(c, config.bodyLimit)).get('enabled');
    if (enabled !== 'true' && enabled !== 'false') throw argumentError("'enabled' must be true or false");
    if (actor.account !== account) throw new CofferError('not_found', `Account '${account}' not found`);
    await jwtAuthn.setEnabled({ ...actor, account }, account, segment(c, 1), enabled === 'true');
    return c.body(null, 204);
  });
}
