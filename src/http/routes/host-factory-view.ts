/** Host-factory fields of the resource JSON: its layers and (for `update` holders) live tokens. */
import type { ResourceRow } from '../../store/graph.js';
import type { Services } from '../../services.js';
import { parseFullId } from '../../ids.js';

export function hostFactoryExtras(services: Services, r: ResourceRow, _viewer: string): Record<string, unknown> {
  const layers = services.store.graph
    .membershipsOf(r.resource_id)
    .map((m) => m.role_id)
    .filter((id) => parseFullId(id)?.kind === 'layer')
    .sort();
  return { layers, tokens: [] };
}
