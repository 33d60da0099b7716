/** GET /public_keys/{account}/user/{id}: no authentication (reference §1.8). */
import { recordNotFound } from '../../errors.js';
import type { RouteDeps } from '../context.js';
import { accountSegment, identifierFrom, segment } from '../request.js';

export function registerPublicKeys({ app, services }: RouteDeps): void {
  app.get('/public_keys/:account/:kind/:id{.+}', async (c) => {
    const account = accountSegment(c, 1);
    const kind = segment(c, 2);
    const identifier = identifierFrom(c, 3);
    if (kind !== 'user' && kind !== 'public_key') throw recordNotFound(account, kind, identifier);
    const prefix = `user/${identifier}`;
    const keys: string[] = [];
    for (const r of await services.store.graph.resourcesUnderPath(account, prefix)) {
      if (!r.resource_id.startsWith(`${account}:public_key:`)) continue;
      const key = (await services.secrets.readInternal(r.resource_id))?.toString('utf8').trim();
      if (key) keys.push(key);
    }
    keys.sort();
    return c.text(`${keys.join('\n')}\n`);
  });
}
