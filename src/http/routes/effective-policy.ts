/**
 * GET /policies/{account}/policy/{id}: the effective policy — the records
 * under the policy as they are now, rendered as policy YAML that loads back
 * to the same graph. Nested policies become nested `!policy` bodies; grants
 * and permits are listed after the records with absolute role references.
 */
import { Document, YAMLMap, YAMLSeq, Scalar } from 'yaml';
import { badRequest, recordNotFound, unprocessable } from '../../errors.js';
import { fullId, parseFullId } from '../../ids.js';
import type { ResourceRow } from '../../store/graph.js';
import type { Services } from '../../services.js';

const MAX_DEPTH = 64;
const MAX_LIMIT = 100_000;
const TAGS: Record<string, string> = {
  user: '!user', host: '!host', group: '!group', layer: '!layer', policy: '!policy',
  variable: '!variable', webservice: '!webservice', host_factory: '!host-factory',
};

function intParam(raw: string | undefined, name: string, max: number, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw badRequest(`'${name}' must be a non-negative integer`);
  const n = Number(raw);
  if (n > max) throw unprocessable(`'${name}' may be at most ${max}`);
  return n;
}

function ref(kind: string, identifier: string, relativeTo?: string): Scalar {
  // Subjects (a grant's role, a permit's resource) may not be absolute, so
  // they are written relative to the loaded policy; members and owners are absolute.
  let value = `/${identifier}`;
  if (relativeTo === 'root') value = identifier;
  else if (relativeTo !== undefined && identifier.startsWith(`${relativeTo}/`)) value = identifier.slice(relativeTo.length + 1);
  const s = new Scalar(value);
  s.tag = TAGS[kind] ?? '!role';
  return s;
}

export async function effectivePolicyYaml(
  services: Services,
  viewer: string,
  account: string,
  policyIdentifier: string,
  opts: { depth?: string; limit?: string; json: boolean },
): Promise<string | unknown[]> {
  const policyId = fullId(account, 'policy', policyIdentifier);
  const { graph } = services.store;
  const policy = await graph.getResource(policyId);
  // Only roles holding the policy's owner role may read it; others learn nothing.
  if (!policy || !(await services.authorizer.allRoles(viewer)).has(policy.owner_id)) {
    throw recordNotFound(account, 'policy', policyIdentifier);
  }
  const depth = intParam(opts.depth, 'depth', MAX_DEPTH, MAX_DEPTH);
  const limit = intParam(opts.limit, 'limit', MAX_LIMIT, MAX_LIMIT);
  const root = policyIdentifier === 'root';
  const prefix = root ? '' : `${policyIdentifier}/`;
  const userSuffix = root ? '' : `@${policyIdentifier.replace(/\//g, '-')}`;
  const inScope = (r: ResourceRow) =>
    r.kind !== 'public_key' &&
    r.resource_id !== policyId &&
    (root || r.identifier.startsWith(prefix) || (r.kind === 'user' && r.identifier.endsWith(userSuffix)));
  const records = (await graph.listResources({ account, viewerRoles: [...(await services.authorizer.allRoles(viewer))] }))
    .filter(inScope)
    .slice(0, limit);
  const policies = new Set(records.filter((r) => r.kind === 'policy').map((r) => r.identifier));

  /** The namespace a record lives in: its longest enclosing policy under the target. */
  const namespaceOf = (r: ResourceRow): string => {
    let path = r.identifier;
    if (r.kind === 'user' && path.includes('@')) {
      const ns = path.slice(path.lastIndexOf('@') + 1);
      return [...policies].find((p) => p.replace(/\//g, '-') === ns) ?? policyIdentifier;
    }
    while (path.includes('/')) {
      path = path.slice(0, path.lastIndexOf('/'));
      if (policies.has(path)) return path;
    }
    return policyIdentifier;
  };
  const localId = (r: ResourceRow, ns: string): string => {
    if (r.kind === 'user' && r.identifier.includes('@')) return r.identifier.slice(0, r.identifier.lastIndexOf('@'));
    return ns === 'root' || (root && ns === policyIdentifier) ? r.identifier : r.identifier.slice(ns.length + 1);
  };

  const doc = new Document([]);
  const bodies = new Map<string, YAMLSeq>([[policyIdentifier, doc.contents as YAMLSeq]]);
  const levels = (ns: string) => (ns === policyIdentifier ? 0 : ns.slice(prefix.length).split('/').length);
  const grants: YAMLMap[] = [];
  for (const r of records) {
    const ns = namespaceOf(r);
    if (levels(ns) >= depth + 1) continue;
    const body = bodies.get(ns);
    if (!body) continue;
    const node = new YAMLMap();
    node.tag = TAGS[r.kind] ?? '!resource';
    node.set('id', localId(r, ns));
    const owner = parseFullId(r.owner_id)!;
    node.set('owner', ref(owner.kind, owner.identifier));
    const annotations = await graph.annotationsOn(r.resource_id);
    if (annotations.length) node.set('annotations', Object.fromEntries(annotations.map((a) => [a.name, a.value])));
    if (r.kind === 'user' || r.kind === 'host') {
      const cidrs = JSON.parse((await services.store.credentials.get(r.resource_id))?.restricted_to ?? '[]') as string[];
      if (cidrs.length) node.set('restricted_to', cidrs);
    }
    if (r.kind === 'policy') {
      const inner = new YAMLSeq();
      node.set('body', inner);
      bodies.set(r.identifier, inner);
    }
    body.add(node);
    for (const m of await graph.membersOf(r.resource_id)) {
      if (m.ownership === 1) continue;
      const member = parseFullId(m.member_id)!;
      const g = new YAMLMap();
      g.tag = '!grant';
      g.set('role', ref(r.kind, r.identifier, policyIdentifier));
      const mem = ref(member.kind, member.identifier);
      if (m.admin_option === 1) {
        const wrapped = new YAMLMap();
        wrapped.tag = '!member';
        wrapped.set('role', mem);
        wrapped.set('admin', true);
        g.set('member', wrapped);
      } else g.set('member', mem);
      grants.push(g);
    }
    for (const p of await graph.permissionsOn(r.resource_id)) {
      const role = parseFullId(p.role_id)!;
      const perm = new YAMLMap();
      perm.tag = '!permit';
      perm.set('role', ref(role.kind, role.identifier));
      perm.set('privilege', p.privilege);
      perm.set('resource', ref(r.kind, r.identifier, policyIdentifier));
      grants.push(perm);
    }
  }
  for (const g of grants) (doc.contents as YAMLSeq).add(g);
  if (opts.json) return doc.toJS() as unknown[];
  return doc.toString();
}
