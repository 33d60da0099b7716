import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { openStore } from '../../src/store/index.js';
import { Authorizer } from '../../src/rbac/authorizer.js';

function graph() {
  const store = openStore(join(tempDir('coffer-rbac-'), 'c.db'));
  const g = store.graph;
  const role = (kind: string, id: string) => g.insertRole(`a:${kind}:${id}`, 'a', kind, id, null);
  const res = (kind: string, id: string, owner: string) => g.insertResource(`a:${kind}:${id}`, 'a', kind, id, owner, null);
  role('user', 'admin');
  role('user', 'alice');
  role('group', 'devs');
  role('layer', 'ci');
  role('host', 'h1');
  res('user', 'admin', 'a:user:admin');
  res('group', 'devs', 'a:user:admin');
  res('layer', 'ci', 'a:user:admin');
  res('variable', 'db', 'a:user:admin');
  res('variable', 'other', 'a:group:devs');
  g.insertMembership('a:group:devs', 'a:user:admin', true, true, null);
  g.insertMembership('a:group:devs', 'a:user:alice', false, false, null);
  g.insertMembership('a:layer:ci', 'a:host:h1', false, false, null);
  g.insertMembership('a:group:devs', 'a:layer:ci', false, false, null);
  g.insertPermission('a:variable:db', 'execute', 'a:group:devs', null);
  return { store, auth: new Authorizer(g) };
}

describe('RBAC closure and checks', () => {
  it('computes the transitive closure including the role itself', () => {
    const { auth } = graph();
    expect([...auth.allRoles('a:host:h1')].sort()).toEqual(['a:group:devs', 'a:host:h1', 'a:layer:ci']);
  });

  it('grants through membership, grants every privilege to the owner chain, and has no hierarchy', () => {
    const { auth } = graph();
    expect(auth.can('a:host:h1', 'execute', 'a:variable:db')).toBe(true);
    expect(auth.can('a:host:h1', 'read', 'a:variable:db')).toBe(false);
    expect(auth.can('a:user:admin', 'anything-at-all', 'a:variable:db')).toBe(true);
    expect(auth.can('a:user:alice', 'fry', 'a:variable:other')).toBe(true);
    expect(auth.can('a:user:nobody', 'execute', 'a:variable:db')).toBe(false);
  });

  it('hides resources without any relationship (404 not 403)', () => {
    const { auth } = graph();
    expect(() => auth.require('a:user:alice', 'update', 'a:variable:db')).toThrow(/Forbidden/);
    const { auth: a2, store } = graph();
    store.graph.insertRole('a:user:eve', 'a', 'user', 'eve', null);
    expect(() => a2.require('a:user:eve', 'execute', 'a:variable:db')).toThrow(/Variable 'db' not found in account 'a'/);
  });

  it('forgets cached closures when the graph changes', () => {
    const { auth, store } = graph();
    expect(auth.can('a:user:alice', 'execute', 'a:variable:db')).toBe(true);
    store.graph.deleteMembership('a:group:devs', 'a:user:alice', false);
    auth.invalidate();
    expect(auth.can('a:user:alice', 'execute', 'a:variable:db')).toBe(false);
  });

  it('lists permitted roles including the owner chain and members', () => {
    const { auth, store } = graph();
    const r = store.graph.getResource('a:variable:db')!;
    expect(auth.permittedRoles(r, 'execute')).toEqual(['a:group:devs', 'a:host:h1', 'a:layer:ci', 'a:user:admin', 'a:user:alice']);
  });
});
