/**
 * "Why can X reach Y" (issue 11, GET /explain): whether a role holds a
 * privilege on a resource and every path that grants it — the chain of
 * memberships from the role up to a role holding a `!permit` of the
 * privilege on the resource or owning it, each edge labelled with the policy
 * (id and version) that declared it. No HTTP here: the route is a thin shell.
 *
 * The decision is the authorizer's rule (reference §3): the role holds the
 * privilege when any role in its closure (itself included) owns the resource
 * or holds a permission (resource, privilege). The paths are read from the
 * same rows, so `allowed` is true exactly when there is a path.
 *
 * Work is bounded: the role's closure is read with one recursive query (as
 * every permission check does), its memberships with one query per 10,000
 * roles of the closure, and the search of paths stops after MAX_PATHS paths
 * or MAX_STEPS extensions of a partial path (`paths_truncated`).
 */
import type { MembershipRow, ResourceRow } from '../store/graph.js';
import type { GraphStore } from '../store/index.js';
import type { Authorizer } from './authorizer.js';
import { notFoundFor } from './authorizer.js';

/** Most paths answered; more exist when `paths_truncated`. */
export const MAX_PATHS = 100;
/** Most partial paths extended by one edge in one explanation. */
export const MAX_STEPS = 50_000;
/** Member ids per membership query. */
const MEMBERSHIP_BATCH = 10_000;

export interface PolicyRef {
  /** Full id of the policy that declared the row (`acme:policy:ci`). */
  id: string;
  /** Its version whose load wrote the row; null when not recorded (rows older than migration 0009, or written by the API). */
  version: number | null;
}

export interface ExplainEdge {
  member: string;
  role: string;
  admin_option: boolean;
  /** The member owns the role (an ownership membership, Conjur's owner-is-a-member rule). */
  ownership: boolean;
  policy: PolicyRef | null;
}

export interface ExplainGrant {
  type: 'permit' | 'ownership';
  /** The role holding the permit, or the resource's owner. */
  role: string;
  policy: PolicyRef | null;
}

export interface ExplainPath {
  grant: ExplainGrant;
  /** Memberships from the asked role up to `grant.role`, in order; [] when the role itself holds the grant. */
  edges: ExplainEdge[];
}

export interface Explanation {
  role: string;
  privilege: string;
  resource: string;
  allowed: boolean;
  paths: ExplainPath[];
  paths_truncated: boolean;
  reason: null | 'no_permit';
  message: string;
}

export interface ExplainDeps {
  graph: GraphStore;
  authorizer: Authorizer;
}

export interface ExplainLimits {
  maxPaths?: number;
  maxSteps?: number;
}

const policyRef = (policyId: string | null, version: number | null | undefined): PolicyRef | null =>
  policyId === null ? null : { id: policyId, version: version === undefined || version === null ? null : Number(version) };

/** The ids a viewer must see both of; a missing or invisible one is Conjur's 404 (the same body either way). */
async function requireBothVisible(d: ExplainDeps, viewer: string, roleId: string, resourceId: string): Promise<ResourceRow> {
  // A role is shown (GET /roles) when it exists and its resource is visible: the same rule here.
  if (!(await d.graph.getRole(roleId))) throw notFoundFor(roleId);
  await d.authorizer.requireVisible(viewer, roleId);
  return d.authorizer.requireVisible(viewer, resourceId);
}

/**
 * Explains whether `roleId` holds `privilege` on `resourceId`, as `viewer`
 * may see it (both the role and the resource must be visible to the viewer,
 * else a 404 error is thrown).
 */
export async function explainPermission(
  d: ExplainDeps,
  viewer: string,
  roleId: string,
  privilege: string,
  resourceId: string,
  limits: ExplainLimits = {},
): Promise<Explanation> {
  const maxPaths = limits.maxPaths ?? MAX_PATHS;
  const maxSteps = limits.maxSteps ?? MAX_STEPS;
  const resource = await requireBothVisible(d, viewer, roleId, resourceId);
  const closure = await d.authorizer.allRoles(roleId);

  // The grants held by roles of the closure, per holder: permits first, then ownership.
  const grants = new Map<string, ExplainGrant[]>();
  const addGrant = (g: ExplainGrant) => {
    const list = grants.get(g.role);
    if (list) list.push(g);
    else grants.set(g.role, [g]);
  };
  for (const p of await d.graph.permissionsOn(resource.resource_id)) {
    if (p.privilege === privilege && closure.has(p.role_id)) {
      addGrant({ type: 'permit', role: p.role_id, policy: policyRef(p.policy_id, p.policy_version) });
    }
  }
  if (closure.has(resource.owner_id)) {
    addGrant({ type: 'ownership', role: resource.owner_id, policy: policyRef(resource.policy_id, resource.policy_version) });
  }

  const base = { role: roleId, privilege, resource: resource.resource_id };
  if (grants.size === 0) {
    return {
      ...base,
      allowed: false,
      paths: [],
      paths_truncated: false,
      reason: 'no_permit',
      message: `${roleId} does not hold ${privilege} on ${resource.resource_id}: no role it holds (itself included) has a permit of ${privilege} on it or owns it`,
    };
  }

  // The memberships among the closure (every role a member reaches is in the closure).
  const up = new Map<string, MembershipRow[]>();
  const ids = [...closure];
  for (let i = 0; i < ids.length; i += MEMBERSHIP_BATCH) {
    for (const m of await d.graph.membershipsOfAny(ids.slice(i, i + MEMBERSHIP_BATCH))) {
      if (!closure.has(m.role_id)) continue;
      const list = up.get(m.member_id);
      if (list) list.push(m);
      else up.set(m.member_id, [m]);
    }
  }

  // Roles from which a holder can be reached: only those are worth walking into.
  const down = new Map<string, string[]>();
  for (const rows of up.values()) {
    for (const m of rows) {
      const list = down.get(m.role_id);
      if (list) list.push(m.member_id);
      else down.set(m.role_id, [m.member_id]);
    }
  }
  const useful = new Set<string>(grants.keys());
  const queue = [...grants.keys()];
  while (queue.length > 0) {
    const id = queue.pop()!;
    for (const member of down.get(id) ?? []) {
      if (!useful.has(member)) {
        useful.add(member);
        queue.push(member);
      }
    }
  }

  // Breadth first over simple paths (no role twice), so shorter paths come first.
  interface Partial {
    at: string;
    edges: MembershipRow[];
    onPath: Set<string>;
  }
  const paths: ExplainPath[] = [];
  let truncated = false;
  let steps = 0;
  let frontier: Partial[] = [{ at: roleId, edges: [], onPath: new Set([roleId]) }];
  search: while (frontier.length > 0) {
    const next: Partial[] = [];
    for (const p of frontier) {
      for (const g of grants.get(p.at) ?? []) {
        if (paths.length === maxPaths) {
          truncated = true;
          break search;
        }
        paths.push({ grant: g, edges: p.edges.map(edgeJson) });
      }
      for (const m of up.get(p.at) ?? []) {
        if (!useful.has(m.role_id) || p.onPath.has(m.role_id)) continue;
        if (++steps > maxSteps) {
          truncated = true;
          break search;
        }
        const onPath = new Set(p.onPath);
        onPath.add(m.role_id);
        next.push({ at: m.role_id, edges: [...p.edges, m], onPath });
      }
    }
    frontier = next;
  }

  const count = truncated ? `more than ${paths.length} paths` : paths.length === 1 ? '1 path' : `${paths.length} paths`;
  return {
    ...base,
    allowed: true,
    paths,
    paths_truncated: truncated,
    reason: null,
    message: `${roleId} holds ${privilege} on ${resource.resource_id} through ${count}`,
  };
}

function edgeJson(m: MembershipRow): ExplainEdge {
  return {
    member: m.member_id,
    role: m.role_id,
    admin_option: m.admin_option === 1,
    ownership: m.ownership === 1,
    policy: policyRef(m.policy_id, m.policy_version),
  };
}
