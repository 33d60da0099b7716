import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { openStore } from '../../src/store/index.js';
import { Authorizer } from '../../src/rbac/authorizer.js';

async function graph() {
  const store = openStore(join(tempDir('coffer-rbac-'), 'c.db'));
  const g = store.graph;
  const role = async (kind: string, id: string) => g.insertRole(`a:${kind}:${id}`, 'a', kind, id, null);
  const res = async (kind: string, id: string, owner: string) => g.insertResource(`a:${kind}:${id}`, 'a', kind, id, owner, null);
  await role('user', 'admin');
  await role('user', 'alice');
  await role('group', 'devs');
  await role('layer', 'ci');
  await role('host', 'h1');
  await res('user', 'admin', 'a:user:admin');
  await res('group', 'devs', 'a:user:admin');
  await res('layer', 'ci', 'a:user:admin');
  await res('variable', 'db', 'a:user:admin');
  await res('variable', 'other', 'a:group:devs');
  await g.insertMembership('a:group:devs', 'a:user:admin', true, true, null);
  await g.insertMembership('a:group:devs', 'a:user:alice', false, false, null);
  await g.insertMembership('a:layer:ci', 'a:host:h1', false, false, null);
  await g.insertMembership('a:group:devs', 'a:layer:ci', false, false, null);
  await g.insertPermission('a:variable:db', 'execute', 'a:group:devs', null);
  return { store, auth: new Authorizer(g) };
}

describe('RBAC closure and checks', () => {
  it('computes the transitive closure including the role itself', async () => {
    const { auth } = await graph();
    expect([...(await auth.allRoles('a:host:h1'))].sort()).toEqual(['a:group:devs', 'a:host:h1', 'a:layer:ci']);
  });

  it('grants through membership, grants every privilege to the owner chain, and has no hierarchy', async () => {
    const { auth } = await graph();
    expect(await auth.can('a:host:h1', 'execute', 'a:variable:db')).toBe(true);
    expect(await auth.can('a:host:h1', 'read', 'a:variable:db')).toBe(false);
    expect(await auth.can('a:user:admin', 'anything-at-all', 'a:variable:db')).toBe(true);
    expect(await auth.can('a:user:alice', 'fry', 'a:variable:other')).toBe(true);
    expect(await auth.can('a:user:nobody', 'execute', 'a:variable:db')).toBe(false);
  });

  it('hides resources without any relationship (404 not 403)', async () => {
    const { auth } = await graph();
    await expect(auth.require('a:user:alice', 'update', 'a:variable:db')).rejects.toThrow(/Forbidden/);
    const { auth: a2, store } = await graph();
    await store.graph.insertRole('a:user:eve', 'a', 'user', 'eve', null);
    await expect(a2.require('a:user:eve', 'execute', 'a:variable:db')).rejects.toThrow(/Variable 'db' not found in account 'a'/);
  });

  it('forgets cached closures when the graph changes', async () => {
    const { auth, store } = await graph();
    expect(await auth.can('a:user:alice', 'execute', 'a:variable:db')).toBe(true);
    await store.graph.deleteMembership('a:group:devs', 'a:user:alice', false);
    auth.invalidate();
    expect(await auth.can('a:user:alice', 'execute', 'a:variable:db')).toBe(false);
  });

  it('lists permitted roles including the owner chain and members', async () => {
    const { auth, store } = await graph();
    const r = (await store.graph.getResource('a:variable:db'))!;
    expect(await auth.permittedRoles(r, 'execute')).toEqual(['a:group:devs', 'a:host:h1', 'a:layer:ci', 'a:user:admin', 'a:user:alice']);
  });
});
