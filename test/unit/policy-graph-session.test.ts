/**
 * GraphSession (src/policy/graph-session.ts) answers reads from what it read
 * up front and queues inserts. Whatever sequence of reads and writes a policy
 * load makes, every read must answer what the store itself would answer at
 * that moment, and the tables must end identical. Checked against a second
 * store that takes every call directly.
 */
import { describe, it, expect, afterEach } from 'vitest';
import fc from 'fast-check';
import { openStore, type SqliteStore } from '../../src/store/index.js';
import { GraphSession } from '../../src/policy/graph-session.js';
import type { Statement } from '../../src/policy/types.js';

const ROLES = ['a:user:u0', 'a:user:u1', 'a:layer:l0', 'a:layer:l1', 'a:group:g0'];
const RESOURCES = [...ROLES, 'a:variable:v0', 'a:variable:v1', 'a:policy:p0'];
const PRIVS = ['read', 'execute'];
const NAMES = ['team', 'owner'];
const POLICIES = ['a:policy:root', 'a:policy:p0'];

type Op =
  | { op: 'insertRole'; id: string; policy: string }
  | { op: 'insertResource'; id: string; owner: string; policy: string; version: number | null }
  | { op: 'setOwner'; id: string; owner: string; version: number | null }
  | { op: 'insertMembership'; role: string; member: string; admin: boolean; ownership: boolean; policy: string; version: number | null }
  | { op: 'setAdminOption'; role: string; member: string; ownership: boolean; admin: boolean; version: number | null }
  | { op: 'deleteMembership'; role: string; member: string; ownership: boolean }
  | { op: 'insertPermission'; resource: string; privilege: string; role: string; policy: string; version: number | null }
  | { op: 'deletePermission'; resource: string; privilege: string; role: string }
  | { op: 'insertAnnotation'; resource: string; name: string; value: string; policy: string }
  | { op: 'updateAnnotation'; resource: string; name: string; value: string }
  | { op: 'deleteAnnotation'; resource: string; name: string }
  | { op: 'deleteRole'; id: string }
  | { op: 'deleteResource'; id: string }
  | { op: 'read' };

const role = fc.constantFrom(...ROLES);
const resource = fc.constantFrom(...RESOURCES);
const policy = fc.constantFrom(...POLICIES);
/** The policy version a load records on the rows it writes (null: none known). */
const version = fc.constantFrom(null, 1, 2);
// Deletions are rarer: each one makes the session forget what it read (a delete can cascade), after which every read goes to the store.
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('insertRole' as const), id: role, policy }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('insertResource' as const), id: resource, owner: role, policy, version }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('setOwner' as const), id: resource, owner: role, version }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('insertMembership' as const), role, member: role, admin: fc.boolean(), ownership: fc.boolean(), policy, version }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('setAdminOption' as const), role, member: role, ownership: fc.boolean(), admin: fc.boolean(), version }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('deleteMembership' as const), role, member: role, ownership: fc.boolean() }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('insertPermission' as const), resource, privilege: fc.constantFrom(...PRIVS), role, policy, version }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('deletePermission' as const), resource, privilege: fc.constantFrom(...PRIVS), role }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('insertAnnotation' as const), resource, name: fc.constantFrom(...NAMES), value: fc.constantFrom('x', 'y'), policy }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('updateAnnotation' as const), resource, name: fc.constantFrom(...NAMES), value: fc.constantFrom('x', 'y', 'z') }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('deleteAnnotation' as const), resource, name: fc.constantFrom(...NAMES) }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('deleteRole' as const), id: role }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('deleteResource' as const), id: resource }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('read' as const) }), weight: 4 },
);

/** The statements prefetch looks at: which ids a load names (a random subset, so some reads are answered from memory and some are not). */
const prefetchArb = fc.array(
  fc.oneof(
    fc.record({ type: fc.constant('record'), id: resource, owner: role, layers: fc.subarray(ROLES.slice(2, 4)), annotations: fc.constantFrom({}, { team: 'x' }) }),
    fc.record({ type: fc.constant('grant'), role, member: role }),
    fc.record({ type: fc.constant('permit'), role, resource, privilege: fc.constantFrom(...PRIVS) }),
    fc.record({ type: fc.constant('delete'), id: resource }),
  ),
  { minLength: 1, maxLength: 8 },
);

const parts = (id: string) => {
  const [account, kind, ...rest] = id.split(':');
  return [account!, kind!, rest.join(':')] as const;
};

const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

function open(): SqliteStore {
  const s = openStore(':memory:');
  stores.push(s);
  return s;
}

/** Whether `op` is a call a policy load can make in this state (apply checks existence first); invalid ones are skipped on both sides. */
async function valid(ref: SqliteStore, op: Op): Promise<boolean> {
  const g = ref.graph;
  switch (op.op) {
    case 'insertRole':
      return !(await g.getRole(op.id));
    case 'insertResource':
      return !(await g.getResource(op.id)) && !!(await g.getRole(op.owner));
    case 'setOwner':
      return !!(await g.getResource(op.id)) && !!(await g.getRole(op.owner));
    case 'insertMembership':
      return !!(await g.getRole(op.role)) && !!(await g.getRole(op.member));
    case 'insertPermission':
      return !!(await g.getResource(op.resource)) && !!(await g.getRole(op.role));
    case 'insertAnnotation':
      return !!(await g.getResource(op.resource)) && !(await g.getAnnotation(op.resource, op.name));
    default:
      return true;
  }
}

async function apply(g: Pick<GraphSession, keyof GraphSession>, op: Op): Promise<unknown> {
  switch (op.op) {
    case 'insertRole':
      return g.insertRole(op.id, ...parts(op.id), op.policy);
    case 'insertResource':
      return g.insertResource(op.id, ...parts(op.id), op.owner, op.policy, op.version);
    case 'setOwner':
      return g.setOwner(op.id, op.owner, op.version);
    case 'insertMembership':
      return g.insertMembership(op.role, op.member, op.admin, op.ownership, op.policy, op.version);
    case 'setAdminOption':
      return g.setAdminOption(op.role, op.member, op.ownership, op.admin, op.version);
    case 'deleteMembership':
      return g.deleteMembership(op.role, op.member, op.ownership);
    case 'insertPermission':
      return g.insertPermission(op.resource, op.privilege, op.role, op.policy, op.version);
    case 'deletePermission':
      return g.deletePermission(op.resource, op.privilege, op.role);
    case 'insertAnnotation':
      return g.insertAnnotation(op.resource, op.name, op.value, op.policy);
    case 'updateAnnotation':
      return g.updateAnnotation(op.resource, op.name, op.value);
    case 'deleteAnnotation':
      return g.deleteAnnotation(op.resource, op.name);
    case 'deleteRole':
      return g.deleteRole(op.id);
    case 'deleteResource':
      return g.deleteResource(op.id);
    case 'read': {
      // Every row the universe can hold, and the list reads a load makes.
      const strip = <T extends object | undefined>(row: T) => (row ? { ...row, created_at: undefined } : row);
      const answers: unknown[] = [];
      for (const r of ROLES) {
        answers.push(strip(await g.getRole(r)), (await g.resourcesOwnedBy(r)).map((x) => x.resource_id).sort(), await g.membersOf(r), await g.membershipsOf(r));
        for (const m of ROLES) for (const o of [false, true]) answers.push(await g.getMembership(r, m, o));
      }
      for (const x of RESOURCES) {
        answers.push(strip(await g.getResource(x)));
        for (const n of NAMES) answers.push(await g.getAnnotation(x, n));
        for (const p of PRIVS) for (const r of ROLES) answers.push(await g.getPermission(x, p, r));
      }
      return answers;
    }
  }
}

const TABLES = ['roles', 'resources', 'role_memberships', 'permissions', 'annotations'];
const dump = (s: SqliteStore) =>
  Object.fromEntries(
    TABLES.map((t) => [t, (s.db.prepare(`SELECT * FROM ${t}`).all() as Record<string, unknown>[]).map((r) => ({ ...r, created_at: undefined })).sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)))]),
  );

describe('GraphSession: a policy load through the session reads and writes what the store would', () => {
  it('property: any sequence of the calls a load makes gives the same answers and the same tables as direct calls', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 25 }), prefetchArb, fc.array(opArb, { minLength: 10, maxLength: 40 }), async (seed, named, ops) => {
        const ref = open();
        const under = open();
        // Most calls need existing rows: start from every role (and its resource) present.
        const base: Op[] = [
          ...ROLES.map((id): Op => ({ op: 'insertRole', id, policy: 'a:policy:root' })),
          ...ROLES.map((id): Op => ({ op: 'insertResource', id, owner: id, policy: 'a:policy:root', version: 1 })),
        ];
        for (const op of [...base, ...seed]) {
          if (!(await valid(ref, op)) || op.op === 'read') continue;
          await apply(ref.graph as never, op);
          await apply(under.graph as never, op);
        }
        expect(dump(under)).toEqual(dump(ref));
        const session = new GraphSession(under.graph);
        await session.prefetch(named as unknown as Statement[]);
        for (const op of ops) {
          if (!(await valid(ref, op))) continue;
          const expected = await apply(ref.graph as never, op);
          const actual = await apply(session, op);
          expect({ op, answer: actual }).toEqual({ op, answer: expected });
        }
        await session.flush();
        expect(dump(under)).toEqual(dump(ref));
        await ref.close();
        await under.close();
        stores.length = 0;
      }),
      { numRuns: 300 },
    );
  }, 120_000);
});
