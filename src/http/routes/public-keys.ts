/** GET /public_keys/{account}/user/{id}: no authentication (reference §1.8). */
import { recordNotFound } from '../../errors.js';
import type { RouteDeps } from '../context.js';
import { accountSegment, identifierFrom, segment } from '../request.js';

export function registerPublicKeys({ app, services }: RouteDeps): void {
  app.get('/public_keys/:account/:kind/:id{.+}', (c) => {
    const account = accountSegment(c, 1);
    const kind = segment(c, 2);
    const identifier = identifierFrom(c, 3);
    if (kind !== 'user' && kind !== 'public_key') throw recordNotFound(account, kind, identifier);
    const prefix = `user/${identifier}`;
    const keys = services.store.graph
      .resourcesUnderPath(account, prefix)
      .filter((r) => r.resource_id.startsWith(`${account}:public_key:`))
      .map((r) => services.secrets.readInternal(r.resource_id)?.toString('utf8').trim())
      .filter((k): k is string => !!k)
      .sort();
    return c.text(`${keys.join('\n')}\n`);
  });
}
