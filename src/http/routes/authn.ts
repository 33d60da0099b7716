/** The default authenticator (reference §1.1) and token revocation. */
import { recordNotFound, unauthorized } from '../../errors.js';
import { authenticateRequest, presentedToken } from '../auth.js';
import type { RouteDeps } from '../context.js';
import { accessTokenResponse, accountSegment, basicCredentials, identifierFrom, queryParam, rawBody, requestInfo } from '../request.js';

export function registerAuthn({ app, services, config }: RouteDeps): void {
  const { authn } = services;

  app.get('/authn/:account/login', async (c) => {
    const account = accountSegment(c, 1);
    const basic = basicCredentials(c);
    if (!basic || basic.login.trim() === '' || !/[A-Za-z0-9]/.test(basic.login)) {
      throw unauthorized('Unauthorized', { auditReason: 'missing or malformed Basic credentials' });
    }
    const apiKey = await authn.login(account, basic.login, basic.secret, queryParam(c, 'role'), requestInfo(c));
    return c.text(apiKey);
  });

  app.post('/authn/:account/:login{.+}/authenticate', async (c) => {
    const account = accountSegment(c, 1);
    const login = identifierFrom(c, 2, 1);
    const body = await rawBody(c, config.bodyLimit);
    const apiKey = body.toString('utf8');
    body.fill(0);
    const token = await authn.authenticate(account, login, apiKey, requestInfo(c));
    return accessTokenResponse(c, token);
  });

  app.put('/authn/:account/password', async (c) => {
    const account = accountSegment(c, 1);
    const basic = basicCredentials(c);
    if (!basic) throw unauthorized('Unauthorized', { auditReason: 'password change requires Basic credentials' });
    const body = await rawBody(c, config.bodyLimit);
    const password = body.toString('utf8');
    body.fill(0);
    await authn.changePassword(account, basic.login, basic.secret, password, queryParam(c, 'role'), requestInfo(c));
    return c.body(null, 204);
  });

  app.put('/authn/:account/api_key', async (c) => {
    const account = accountSegment(c, 1);
    const basic = basicCredentials(c);
    const role = queryParam(c, 'role');
    if (basic) return c.text(await authn.rotateOwnApiKey(account, basic.login, basic.secret, role, requestInfo(c)));
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    return c.text(await authn.rotateApiKeyFor({ ...actor, account }, role));
  });

  app.get('/authn/:account/api_key', async (c) => {
    const account = accountSegment(c, 1);
    const basic = basicCredentials(c);
    const role = queryParam(c, 'role');
    if (basic) return c.json(await authn.apiKeyInfoBasic(account, basic.login, basic.secret, role, requestInfo(c)));
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    return c.json(await authn.apiKeyInfoFor({ ...actor, account }, role));
  });

  app.delete('/authn/:account/token', async (c) => {
    const account = accountSegment(c, 1);
    if (presentedToken(c) === undefined) throw unauthorized('Authorization missing');
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    // A token of another account is not this account's to revoke.
    if (actor.account !== account) throw recordNotFound(account, 'user', actor.login);
    await authn.revokeToken(actor);
    return c.body(null, 204);
  });
}
