/**
 * src/rbac/views.ts (npm run mutation -- --module rbac-views): the JSON shapes
 * of resources, roles and grants, and the dry-run item with its redaction of
 * ids the viewer cannot see. Over a small in-memory graph, so each field, each
 * optional `policy` and each redaction is asserted exactly (key order too,
 * where the API sorts).
 */
import { describe, expect, it } from 'vitest';
import { baseResourceJson, conjurTime, dryRunItem, grantJson, REDACTED, roleJson } from '../../src/rbac/views.js';
import type { AnnotationRow, MembershipRow, PermissionRow, ResourceRow, RoleRow } from '../../src/store/graph.js';
import type { GraphStore } from '../../src/store/index.js';
import type { Authorizer } from '../../src/rbac/authorizer.js';

const T = '2024-01-02T03:04:05.678Z';

function resource(id: string, owner: string, policy: string | null = null): ResourceRow {
  const [account, kind, identifier] = [id.split(':')[0]!, id.split(':')[1]!, id.split(':').slice(2).join(':')];
  return { resource_id: id, account, kind, identifier, owner_id: owner, policy_id: policy, created_at: T };
}
function role(id: string, policy: string | null = null): RoleRow {
  const [account, kind, identifier] = [id.split(':')[0]!, id.split(':')[1]!, id.split(':').slice(2).join(':')];
  return { role_id: id, account, kind, identifier, policy_id: policy, created_at: T };
}

interface Graph {
  resources: ResourceRow[];
  roles: RoleRow[];
  memberships: MembershipRow[];
  permissions: PermissionRow[];
  annotations: AnnotationRow[];
}

function fakeGraph(g: Graph): GraphStore {
  const graph = {
    getResource: async (id: string) => g.resources.find((r) => r.resource_id === id),
    getRole: async (id: string) => g.roles.find((r) => r.role_id === id),
    permissionsOn: async (id: string) => g.permissions.filter((p) => p.resource_id === id),
    permissionsOf: async (id: string) => g.permissions.filter((p) => p.role_id === id),
    annotationsOn: async (id: string) => g.annotations.filter((a) => a.resource_id === id),
    membersOf: async (id: string) => g.memberships.filter((m) => m.role_id === id),
    membershipsOf: async (id: string) => g.memberships.filter((m) => m.member_id === id),
  };
  return graph as unknown as GraphStore;
}

/** The viewer sees exactly the resources listed. */
const seeing = (visible: string[]) =>
  ({ isVisible: async (_viewer: string, r: ResourceRow) => visible.includes(r.resource_id) }) as unknown as Authorizer;

const A = 'acme';
const G: Graph = {
  resources: [
    resource(`${A}:policy:root`, `${A}:user:admin`),
    resource(`${A}:policy:app`, `${A}:user:admin`, `${A}:policy:root`),
    resource(`${A}:user:admin`, `${A}:user:admin`),
    resource(`${A}:host:app/web`, `${A}:policy:app`, `${A}:policy:app`),
    resource(`${A}:group:app/readers`, `${A}:policy:app`, `${A}:policy:app`),
    resource(`${A}:group:secret-team`, `${A}:user:admin`, `${A}:policy:root`),
    resource(`${A}:variable:app/db`, `${A}:policy:app`, `${A}:policy:app`),
    resource(`${A}:variable:app/zz`, `${A}:policy:app`, `${A}:policy:app`),
    resource(`${A}:variable:app/aa`, `${A}:group:secret-team`, `${A}:policy:app`),
  ],
  roles: [
    role(`${A}:policy:root`),
    role(`${A}:policy:app`, `${A}:policy:root`),
    role(`${A}:user:admin`),
    role(`${A}:host:app/web`, `${A}:policy:app`),
    role(`${A}:group:app/readers`, `${A}:policy:app`),
    role(`${A}:group:secret-team`, `${A}:policy:root`),
    // A role with no resource row (as a bare `!role` would leave).
    role(`${A}:layer:orphan`, `${A}:policy:app`),
  ],
  memberships: [
    { role_id: `${A}:group:app/readers`, member_id: `${A}:host:app/web`, admin_option: 0, ownership: 0, policy_id: `${A}:policy:app` },
    { role_id: `${A}:group:secret-team`, member_id: `${A}:host:app/web`, admin_option: 1, ownership: 0, policy_id: null },
    { role_id: `${A}:group:app/readers`, member_id: `${A}:policy:app`, admin_option: 1, ownership: 1, policy_id: null },
    { role_id: `${A}:group:app/readers`, member_id: `${A}:group:secret-team`, admin_option: 0, ownership: 0, policy_id: null },
  ],
  permissions: [
    { resource_id: `${A}:variable:app/zz`, privilege: 'read', role_id: `${A}:host:app/web`, policy_id: `${A}:policy:app` },
    { resource_id: `${A}:variable:app/db`, privilege: 'read', role_id: `${A}:host:app/web`, policy_id: null },
    { resource_id: `${A}:variable:app/db`, privilege: 'execute', role_id: `${A}:host:app/web`, policy_id: null },
    { resource_id: `${A}:variable:app/aa`, privilege: 'execute', role_id: `${A}:host:app/web`, policy_id: null },
    { resource_id: `${A}:variable:app/db`, privilege: 'read', role_id: `${A}:group:secret-team`, policy_id: null },
    { resource_id: `${A}:variable:app/db`, privilege: 'read', role_id: `${A}:group:app/readers`, policy_id: null },
  ],
  annotations: [
    { resource_id: `${A}:variable:app/db`, name: 'description', value: 'the database', policy_id: `${A}:policy:app` },
    { resource_id: `${A}:variable:app/db`, name: 'owner-team', value: 'x', policy_id: null },
    { resource_id: `${A}:host:app/web`, name: 'authn/api-key', value: 'true', policy_id: null },
  ],
};

describe('conjurTime and grantJson', () => {
  it('prints UTC as +00:00 and leaves other offsets alone', () => {
    expect(conjurTime('2024-01-02T03:04:05.678Z')).toBe('2024-01-02T03:04:05.678+00:00');
    expect(conjurTime('2024-01-02T03:04:05.678+02:00')).toBe('2024-01-02T03:04:05.678+02:00');
    expect(conjurTime('Zulu-ish')).toBe('Zulu-ish');
  });

  it('renders flags as booleans (1 only) and the policy only when there is one', () => {
    expect(grantJson(G.memberships[0]!)).toStrictEqual({
      admin_option: false,
      ownership: false,
      role: `${A}:group:app/readers`,
      member: `${A}:host:app/web`,
      policy: `${A}:policy:app`,
    });
    expect(grantJson(G.memberships[2]!)).toStrictEqual({
      admin_option: true,
      ownership: true,
      role: `${A}:group:app/readers`,
      member: `${A}:policy:app`,
    });
    expect(grantJson({ ...G.memberships[2]!, admin_option: 2, ownership: 2 })).toMatchObject({ admin_option: false, ownership: false });
  });
});

describe('baseResourceJson and roleJson', () => {
  it('lists permissions and annotations with their policy only when set, and the resource policy only when set', async () => {
    const graph = fakeGraph(G);
    const db = await baseResourceJson(graph, G.resources.find((r) => r.resource_id === `${A}:variable:app/db`)!);
    expect(db).toStrictEqual({
      created_at: '2024-01-02T03:04:05.678+00:00',
      id: `${A}:variable:app/db`,
      owner: `${A}:policy:app`,
      policy: `${A}:policy:app`,
      permissions: [
        { privilege: 'read', role: `${A}:host:app/web` },
        { privilege: 'execute', role: `${A}:host:app/web` },
        { privilege: 'read', role: `${A}:group:secret-team` },
        { privilege: 'read', role: `${A}:group:app/readers` },
      ],
      annotations: [
        { name: 'description', value: 'the database', policy: `${A}:policy:app` },
        { name: 'owner-team', value: 'x' },
      ],
    });
    const zz = await baseResourceJson(graph, G.resources.find((r) => r.resource_id === `${A}:variable:app/zz`)!);
    expect(zz.permissions).toStrictEqual([{ privilege: 'read', role: `${A}:host:app/web`, policy: `${A}:policy:app` }]);
    const admin = await baseResourceJson(graph, G.resources.find((r) => r.resource_id === `${A}:user:admin`)!);
    expect(admin).toStrictEqual({
      created_at: '2024-01-02T03:04:05.678+00:00',
      id: `${A}:user:admin`,
      owner: `${A}:user:admin`,
      permissions: [],
      annotations: [],
    });
  });

  it('renders a role with its members, the policy only when set, and nothing for an unknown role', async () => {
    const graph = fakeGraph(G);
    expect(await roleJson(graph, `${A}:group:app/readers`)).toStrictEqual({
      created_at: '2024-01-02T03:04:05.678+00:00',
      id: `${A}:group:app/readers`,
      policy: `${A}:policy:app`,
      members: [
        grantJson(G.memberships[0]!),
        grantJson(G.memberships[2]!),
        grantJson(G.memberships[3]!),
      ],
    });
    expect(await roleJson(graph, `${A}:user:admin`)).toStrictEqual({
      created_at: '2024-01-02T03:04:05.678+00:00',
      id: `${A}:user:admin`,
      members: [],
    });
    expect(await roleJson(graph, `${A}:user:nobody`)).toBeUndefined();
  });
});

describe('dryRunItem: what the dry-run report shows, and redaction', () => {
  const restricted = async (id: string) => (id === `${A}:host:app/web` ? ['10.0.0.0/8'] : []);

  it('a role: permissions by privilege (sorted, ids redacted unless visible), members, memberships, restricted_to', async () => {
    const viewer = `${A}:user:viewer`;
    const visible = [`${A}:policy:app`, `${A}:variable:app/db`, `${A}:variable:app/zz`, `${A}:group:app/readers`, `${A}:host:app/web`];
    const item = await dryRunItem(fakeGraph(G), seeing(visible), viewer, `${A}:host:app/web`, restricted);
    expect(item).toStrictEqual({
      identifier: `${A}:host:app/web`,
      id: 'app/web',
      type: 'host',
      owner: `${A}:policy:app`,
      policy: `${A}:policy:app`,
      permissions: { execute: [REDACTED, `${A}:variable:app/db`], read: [`${A}:variable:app/db`, `${A}:variable:app/zz`] },
      annotations: { 'authn/api-key': 'true' },
      members: [],
      memberships: [REDACTED, `${A}:group:app/readers`],
      restricted_to: ['10.0.0.0/8'],
    });
    expect(Object.keys(item!.permissions as object)).toEqual(['execute', 'read']);
  });

  it('a role whose owner the viewer cannot see, with members some of which are hidden', async () => {
    const item = await dryRunItem(fakeGraph(G), seeing([`${A}:policy:app`]), 'v', `${A}:group:app/readers`, restricted);
    expect(item).toStrictEqual({
      identifier: `${A}:group:app/readers`,
      id: 'app/readers',
      type: 'group',
      owner: `${A}:policy:app`,
      policy: `${A}:policy:app`,
      permissions: { read: [REDACTED] },
      annotations: {},
      members: [REDACTED, REDACTED, `${A}:policy:app`],
      memberships: [],
      restricted_to: [],
    });
    const hidden = await dryRunItem(fakeGraph(G), seeing([]), 'v', `${A}:group:app/readers`, restricted);
    expect(hidden!.owner).toBe(REDACTED);
    expect(hidden!.members).toEqual([REDACTED, REDACTED, REDACTED]);
  });

  it('a resource-only record: permitted roles by privilege, sorted, hidden ones redacted; no role fields', async () => {
    const visible = [`${A}:host:app/web`, `${A}:group:app/readers`];
    const item = await dryRunItem(fakeGraph(G), seeing(visible), 'v', `${A}:variable:app/db`, restricted);
    expect(item).toStrictEqual({
      identifier: `${A}:variable:app/db`,
      id: 'app/db',
      type: 'variable',
      owner: REDACTED,
      policy: `${A}:policy:app`,
      permitted: { execute: [`${A}:host:app/web`], read: [REDACTED, `${A}:group:app/readers`, `${A}:host:app/web`] },
      annotations: { description: 'the database', 'owner-team': 'x' },
    });
    expect(Object.keys(item!.permitted as object)).toEqual(['execute', 'read']);
  });

  it('a role without a resource row: no owner, its policy from the role; an unknown id: nothing', async () => {
    const item = await dryRunItem(fakeGraph(G), seeing([]), 'v', `${A}:layer:orphan`, restricted);
    expect(item).toStrictEqual({
      identifier: `${A}:layer:orphan`,
      id: 'orphan',
      type: 'layer',
      owner: undefined,
      policy: `${A}:policy:app`,
      permissions: {},
      annotations: {},
      members: [],
      memberships: [],
      restricted_to: [],
    });
    expect(await dryRunItem(fakeGraph(G), seeing([]), 'v', `${A}:variable:nope`, restricted)).toBeUndefined();
    // A resource without a policy and without a role: policy stays undefined.
    const g2 = { ...G, resources: [...G.resources, resource(`${A}:webservice:svc`, `${A}:user:admin`)] };
    const svc = await dryRunItem(fakeGraph(g2), seeing([`${A}:user:admin`]), 'v', `${A}:webservice:svc`, restricted);
    expect(svc).toStrictEqual({
      identifier: `${A}:webservice:svc`,
      id: 'svc',
      type: 'webservice',
      owner: `${A}:user:admin`,
      policy: undefined,
      permitted: {},
      annotations: {},
    });
  });

  it('an owner id with no resource row is redacted even for a viewer who sees everything', async () => {
    const g2 = { ...G, resources: [...G.resources, resource(`${A}:variable:ghost-owned`, `${A}:user:deleted`, null)] };
    const all = g2.resources.map((r) => r.resource_id).concat(`${A}:user:deleted`);
    const item = await dryRunItem(fakeGraph(g2), seeing(all), 'v', `${A}:variable:ghost-owned`, restricted);
    expect(item!.owner).toBe(REDACTED);
  });
});
