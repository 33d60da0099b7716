/**
 * The authorizer's cache against the asynchronous store, aimed at mutants of
 * src/rbac/authorizer.ts (npm run mutation -- --module rbac): what a
 * transaction sees is never cached (a rolled-back grant, a dry run, must not
 * outlive it), and a closure or decision read while the graph changed is
 * answered but not cached; the same for role existence. No invalidate() is called after the transaction,
 * so only the authorizer's own rules keep the cache right.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../helpers/tmp.js';
import { createAccountIn, openVault, type Vault } from '../../src/server.js';
import type { Actor } from '../../src/context.js';

const open: Vault[] = [];
afterEach(async () => {
  for (const v of open.splice(0)) await v.close();
});

const ALICE = 'acme:user:alice';
const OPS = 'acme:group:ops';
const V = 'acme:variable:v';

async function vault() {
  const v = await openVault({ dataDir: tempDir('coffer-mut-rbac-cache-'), masterKey: randomBytes(32) });
  open.push(v);
  await createAccountIn(v, 'acme');
  const s = v.services;
  const admin: Actor = { account: 'acme', roleId: 'acme:user:admin', login: 'admin', request: {} };
  await s.policies.load(admin, 'root', 'add', `
- !user alice
- !group ops
- !variable v
- !permit { role: !group ops, privilege: execute, resource: !variable v }
`, false);
  return { s, g: s.store.graph, auth: s.authorizer };
}

class Rollback extends Error {}

describe('the authorizer cache and transactions', () => {
  it('a grant rolled back with its transaction is not remembered: neither the closure nor the decision', async () => {
    const { s, g, auth } = await vault();
    expect(await auth.can(ALICE, 'execute', V)).toBe(false);
    auth.invalidate(); // start from an empty cache
    await expect(s.store.tx(async () => {
      await g.insertMembership(OPS, ALICE, false, false, null);
      // Inside the transaction the grant is visible…
      expect((await auth.allRoles(ALICE)).has(OPS)).toBe(true);
      expect(await auth.can(ALICE, 'execute', V)).toBe(true);
      throw new Rollback();
    })).rejects.toBeInstanceOf(Rollback);
    // …and after the rollback it is gone, without anyone calling invalidate().
    expect((await auth.allRoles(ALICE)).has(OPS)).toBe(false);
    expect(await auth.can(ALICE, 'execute', V)).toBe(false);
  });

  it('a decision cached before a transaction is not what the transaction sees', async () => {
    const { s, g, auth } = await vault();
    expect(await auth.can(ALICE, 'execute', V)).toBe(false);
    expect((await auth.allRoles(ALICE)).has(OPS)).toBe(false);
    await expect(s.store.tx(async () => {
      await g.insertMembership(OPS, ALICE, false, false, null);
      expect((await auth.allRoles(ALICE)).has(OPS)).toBe(true);
      expect(await auth.can(ALICE, 'execute', V)).toBe(true);
      throw new Rollback();
    })).rejects.toBeInstanceOf(Rollback);
  });

  it("role existence (what refuses a deleted role's token) follows the transaction and is not remembered after its rollback", async () => {
    const { s, g, auth } = await vault();
    const ghost = 'acme:user:ghost';
    expect(await auth.roleExists(ALICE)).toBe(true);
    expect(await auth.roleExists(ghost)).toBe(false);
    await expect(s.store.tx(async () => {
      await g.deleteRole(ALICE);
      await g.insertRole(ghost, 'acme', 'user', 'ghost', null);
      expect(await auth.roleExists(ALICE)).toBe(false);
      expect(await auth.roleExists(ghost)).toBe(true);
      throw new Rollback();
    })).rejects.toBeInstanceOf(Rollback);
    auth.invalidate();
    expect(await auth.roleExists(ALICE)).toBe(true);
    await expect(s.store.tx(async () => {
      await g.insertRole(ghost, 'acme', 'user', 'ghost', null);
      expect(await auth.roleExists(ghost)).toBe(true);
      throw new Rollback();
    })).rejects.toBeInstanceOf(Rollback);
    expect(await auth.roleExists(ghost)).toBe(false);
  });

  it('a closure or decision read while the graph changed is answered but not cached', async () => {
    const { g, auth } = await vault();
    const closure = auth.allRoles(ALICE);
    const decision = auth.can(ALICE, 'execute', V);
    const write = g.insertMembership(OPS, ALICE, false, false, null);
    auth.invalidate(); // the writer's invalidate, while both reads are in flight
    await Promise.all([closure, decision, write]);
    expect((await auth.allRoles(ALICE)).has(OPS)).toBe(true);
    expect(await auth.can(ALICE, 'execute', V)).toBe(true);
  });

  it('outside a transaction, a closure, a fact and a decision are read from the store once, then served from the cache', async () => {
    const { g, auth } = await vault();
    auth.invalidate();
    const calls = { roleClosure: 0, getRole: 0, getResource: 0, getAnnotation: 0 };
    for (const name of Object.keys(calls) as (keyof typeof calls)[]) {
      const original = (g[name] as (...a: unknown[]) => unknown).bind(g);
      (g as unknown as Record<string, unknown>)[name] = (...a: unknown[]) => {
        calls[name]++;
        return original(...a);
      };
    }
    expect((await auth.allRoles(ALICE)).has(ALICE)).toBe(true);
    expect((await auth.allRoles(ALICE)).has(ALICE)).toBe(true);
    expect(calls.roleClosure).toBe(1);
    expect(await auth.roleExists(ALICE)).toBe(true);
    expect(await auth.roleExists(ALICE)).toBe(true);
    expect(calls.getRole).toBe(1);
    expect(await auth.annotation(V, 'conjur/mime_type')).toBeUndefined();
    expect(await auth.annotation(V, 'conjur/mime_type')).toBeUndefined();
    expect(calls.getAnnotation).toBe(1);
    expect(await auth.can(ALICE, 'execute', V)).toBe(false);
    expect(await auth.can(ALICE, 'execute', V)).toBe(false);
    expect(calls.getResource).toBe(1);
    // invalidate() drops all of it.
    auth.invalidate();
    await auth.allRoles(ALICE);
    await auth.roleExists(ALICE);
    await auth.can(ALICE, 'execute', V);
    expect(calls).toMatchObject({ roleClosure: 2, getRole: 2, getResource: 2 });
  });

  it('a decision made from a closure read before a graph change is answered but not cached', async () => {
    const { g, auth } = await vault();
    auth.invalidate();
    const roleClosure = g.roleClosure.bind(g);
    let first = true;
    g.roleClosure = async (id: string) => {
      const roles = await roleClosure(id);
      if (first) {
        first = false;
        // A grant commits right after the closure was read; its writer invalidates now.
        await g.insertMembership(OPS, ALICE, false, false, null);
        auth.invalidate();
      }
      return roles;
    };
    // Decided from the closure before the grant: answered, but not kept.
    expect(await auth.can(ALICE, 'execute', V)).toBe(false);
    expect(await auth.can(ALICE, 'execute', V)).toBe(true);
  });
});
