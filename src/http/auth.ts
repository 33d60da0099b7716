/** Access-token authentication for protected routes (reference §0). */
import type { Actor } from '../context.js';
import { CofferError, forbidden } from '../errors.js';
import type { TokenService } from '../authn/tokens.js';
import type { Authorizer } from '../rbac/authorizer.js';
import { requestInfo, type Ctx } from './request.js';

const TOKEN_HEADER = /^Token token="(.*)"/s;

/** The decoded token JSON from `Authorization: Token token="<base64>"`, or undefined when absent. */
export function presentedToken(c: Ctx): string | undefined {
  const header = c.req.header('authorization');
  if (!header) return undefined;
  const m = TOKEN_HEADER.exec(header);
  if (!m) return undefined;
  // Clients wrap long base64 across lines; whitespace inside is not significant.
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64').toString('utf8');
}

export async function authenticateRequest(c: Ctx, tokens: TokenService, authorizer: Pick<Authorizer, 'roleExists'>): Promise<Actor> {
  const token = presentedToken(c);
  if (token === undefined) {
    throw new CofferError('unauthorized', 'Authorization missing', { auditReason: 'Authorization missing' });
  }
  const claims = await tokens.verify(token);
  // A token whose role has been deleted is refused (Conjur answers 403).
  if (!(await authorizer.roleExists(claims.roleId))) throw forbidden('the token\'s role no longer exists');
  return { account: claims.account, roleId: claims.roleId, login: claims.sub, claims, request: requestInfo(c) };
}

