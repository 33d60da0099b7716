/**
 * Host-factory fields of the resource JSON: its layers and its live tokens.
 * Conjur shows token values to anyone who can see the factory; Coffer shows
 * them only to roles with `update` on it (the privilege that can revoke them),
 * others see each token's expiration and CIDRs — a read grant must not hand
 * out the ability to create hosts (README, "Host factories").
 */
import type { ResourceRow } from '../../store/graph.js';
import type { Services } from '../../services.js';
import { parseFullId } from '../../ids.js';

export async function hostFactoryExtras(services: Services, r: ResourceRow, viewer: string): Promise<Record<string, unknown>> {
  const layers = (await services.store.graph.membershipsOf(r.resource_id))
    .map((m) => m.role_id)
    .filter((id) => parseFullId(id)?.kind === 'layer')
    .sort();
  return { layers, tokens: await services.hostFactories.tokensFor(viewer, r) };
}
