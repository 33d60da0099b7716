/**
 * Authorizer decisions at their edges, aimed at mutants of
 * src/rbac/authorizer.ts (npm run mutation -- --module rbac): a permission
 * (not ownership) makes a resource visible, a privilege on one resource says
 * nothing about another, cached decisions and closures are dropped by
 * invalidate(), 403 vs 404 with their codes, permitted roles walk members.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { openStore } from '../../src/store/index.js';
import { Authorizer, notFoundFor } from '../../src/rbac/authorizer.js';

async function graph() {
  const store = openStore(join(tempDir('coffer-mut-rbac-'), 'c.db'));
  const g = store.graph;
  const role = async (kind: string, id: string) => g.insertRole(`a:${kind}:${id}`, 'a', kind, id, null);
  const res = async (kind: string, id: string, owner: string) => g.insertResource(`a:${kind}:${id}`, 'a', kind, id, owner, null);
  for (const [k, id] of [['user', 'admin'], ['user', 'reader'], ['user', 'runner'], ['user', 'eve'], ['group', 'ops'], ['host', 'h']] as const) await role(k, id);
  await res('variable', 'x', 'a:user:admin');
  await res('variable', 'y', 'a:user:admin');
  await res('variable', 'owned', 'a:group:ops');
  await g.insertPermission('a:variable:x', 'read', 'a:user:reader', null);
  await g.insertPermission('a:variable:x', 'execute', 'a:user:runner', null);
  await g.insertMembership('a:group:ops', 'a:host:h', false, false, null);
  return { store, g, auth: new Authorizer(g) };
}

describe('Authorizer edges', () => {
  it('a permission makes a resource visible without ownership; no relationship hides it', async () => {
    const { auth, g } = await graph();
    const x = (await g.getResource('a:variable:x'))!;
    const y = (await g.getResource('a:variable:y'))!;
    expect(await auth.isVisible('a:user:reader', x)).toBe(true);
    expect(await auth.isVisible('a:user:reader', y)).toBe(false);
    expect(await auth.isVisible('a:user:eve', x)).toBe(false);
    expect(await auth.isVisible('a:host:h', (await g.getResource('a:variable:owned'))!)).toBe(true);
    expect(await auth.isVisible('a:user:admin', y)).toBe(true);
  });

  it('read is not execute, a privilege on x is none on y, and a missing resource is nothing', async () => {
    const { auth } = await graph();
    expect(await auth.can('a:user:reader', 'read', 'a:variable:x')).toBe(true);
    expect(await auth.can('a:user:reader', 'execute', 'a:variable:x')).toBe(false);
    expect(await auth.can('a:user:runner', 'execute', 'a:variable:x')).toBe(true);
    expect(await auth.can('a:user:runner', 'read', 'a:variable:x')).toBe(false);
    expect(await auth.can('a:user:runner', 'execute', 'a:variable:y')).toBe(false);
    expect(await auth.can('a:user:admin', 'execute', 'a:variable:missing')).toBe(false);
    expect(await auth.can('a:host:h', 'update', 'a:variable:owned')).toBe(true);
    expect(await auth.can('a:host:h', 'update', 'a:variable:x')).toBe(false);
  });

  it('require: 403 forbidden when visible without the privilege, 404 not_found when invisible or missing', async () => {
    const { auth } = await graph();
    expect((await auth.require('a:user:runner', 'execute', 'a:variable:x')).resource_id).toBe('a:variable:x');
    await expect(auth.require('a:user:reader', 'execute', 'a:variable:x')).rejects.toThrow(expect.objectContaining({ code: 'forbidden' }));
    await expect(auth.require('a:user:eve', 'execute', 'a:variable:x')).rejects.toThrow(expect.objectContaining({ code: 'not_found' }));
    await expect(auth.requireVisible('a:user:admin', 'a:variable:nope')).rejects.toThrow(/Variable 'nope' not found in account 'a'/);
    expect((await auth.requireVisible('a:user:reader', 'a:variable:x')).owner_id).toBe('a:user:admin');
  });

  it('cached decisions and closures are dropped by invalidate(), and only then', async () => {
    const { auth, g } = await graph();
    expect(auth.graphGeneration).toBe(0);
    expect(await auth.can('a:user:eve', 'execute', 'a:variable:owned')).toBe(false);
    expect([...(await auth.allRoles('a:user:eve'))]).toEqual(['a:user:eve']);
    await g.insertMembership('a:group:ops', 'a:user:eve', false, false, null);
    // Still cached until invalidated.
    expect(await auth.can('a:user:eve', 'execute', 'a:variable:owned')).toBe(false);
    auth.invalidate();
    expect(auth.graphGeneration).toBe(1);
    expect(await auth.can('a:user:eve', 'execute', 'a:variable:owned')).toBe(true);
    expect([...(await auth.allRoles('a:user:eve'))].sort()).toEqual(['a:group:ops', 'a:user:eve']);
    expect(await auth.can('a:user:eve', 'execute', 'a:variable:y')).toBe(false);
    await g.insertPermission('a:variable:y', 'execute', 'a:user:eve', null);
    expect(await auth.can('a:user:eve', 'execute', 'a:variable:y')).toBe(false);
    auth.invalidate();
    expect(await auth.can('a:user:eve', 'execute', 'a:variable:y')).toBe(true);
  });

  it('permitted roles: the owner, the permission holders and all their members, sorted, without duplicates', async () => {
    const { auth, g } = await graph();
    await g.insertMembership('a:group:ops', 'a:user:runner', false, false, null);
    await g.insertPermission('a:variable:owned', 'execute', 'a:user:runner', null);
    expect(await auth.permittedRoles((await g.getResource('a:variable:owned'))!, 'execute')).toEqual(['a:group:ops', 'a:host:h', 'a:user:runner']);
    expect(await auth.permittedRoles((await g.getResource('a:variable:x'))!, 'read')).toEqual(['a:user:admin', 'a:user:reader']);
  });

  it('notFoundFor names the kind and id, or the raw text when it is not a full id', async () => {
    expect(notFoundFor('a:variable:db/pw')).toMatchObject({ code: 'not_found', message: "Variable 'db/pw' not found in account 'a'" });
    expect(notFoundFor('garbage')).toMatchObject({ code: 'not_found', message: "Resource 'garbage' not found in account ''" });
  });

  it('a membership cycle in the database ends the closure and the permitted-roles walk', async () => {
    const { auth, g } = await graph();
    await g.insertRole('a:group:g1', 'a', 'group', 'g1', null);
    await g.insertRole('a:group:g2', 'a', 'group', 'g2', null);
    await g.insertMembership('a:group:g1', 'a:group:g2', false, false, null);
    await g.insertMembership('a:group:g2', 'a:group:g1', false, false, null);
    await g.insertMembership('a:group:g1', 'a:user:eve', false, false, null);
    await g.insertPermission('a:variable:y', 'execute', 'a:group:g2', null);
    expect([...(await auth.allRoles('a:group:g1'))].sort()).toEqual(['a:group:g1', 'a:group:g2']);
    expect(await auth.can('a:user:eve', 'execute', 'a:variable:y')).toBe(true);
    expect(await auth.permittedRoles((await g.getResource('a:variable:y'))!, 'execute')).toEqual(['a:group:g1', 'a:group:g2', 'a:user:admin', 'a:user:eve']);
  });
});
