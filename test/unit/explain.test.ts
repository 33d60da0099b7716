/**
 * src/rbac/explain.ts on the SQLite store: a membership cycle ends, the path
 * bounds (paths and steps) set paths_truncated, paths are simple and
 * shortest first, `allowed` agrees with the authorizer's decision on a
 * random graph, and a role or resource the viewer cannot see is a 404.
 */
import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import fc from 'fast-check';
import { tempDir } from '../helpers/tmp.js';
import { openStore } from '../../src/store/index.js';
import { Authorizer } from '../../src/rbac/authorizer.js';
import { explainPermission } from '../../src/rbac/explain.js';

async function setup() {
  const store = openStore(join(tempDir('coffer-explain-'), 'c.db'));
  const g = store.graph;
  const role = async (id: string) => {
    const [, kind, name] = id.split(':') as [string, string, string];
    await g.insertRole(id, 'a', kind, name, null);
    await g.insertResource(id, 'a', kind, name, 'a:user:admin', null);
  };
  await role('a:user:admin');
  return { store, g, role, auth: new Authorizer(g) };
}

describe('explainPermission', () => {
  it('ends on a membership cycle and lists each simple path once', async () => {
    const { g, role, auth } = await setup();
    for (const r of ['a:group:g1', 'a:group:g2', 'a:user:eve']) await role(r);
    await g.insertResource('a:variable:y', 'a', 'variable', 'y', 'a:user:admin', null);
    await g.insertMembership('a:group:g1', 'a:group:g2', false, false, null);
    await g.insertMembership('a:group:g2', 'a:group:g1', false, false, null);
    await g.insertMembership('a:group:g1', 'a:user:eve', false, false, null);
    await g.insertPermission('a:variable:y', 'execute', 'a:group:g2', null);
    const r = await explainPermission({ graph: g, authorizer: auth }, 'a:user:admin', 'a:user:eve', 'execute', 'a:variable:y');
    expect(r.allowed).toBe(true);
    expect(r.paths.map((p) => p.edges.map((e) => e.role))).toEqual([['a:group:g1', 'a:group:g2']]);
    expect(r.paths[0]!.grant).toEqual({ type: 'permit', role: 'a:group:g2', policy: null });
  });

  it('stops at the path bound and at the step bound with paths_truncated, shortest paths first', async () => {
    const { g, role, auth } = await setup();
    // A ladder: eve → l0 → … each level has two groups, both members of both next ones: 2^depth paths.
    await role('a:user:eve');
    const depth = 8;
    for (let d = 0; d <= depth; d++) for (const s of ['x', 'y']) await role(`a:group:${s}${d}`);
    for (const s of ['x', 'y']) await g.insertMembership(`a:group:${s}0`, 'a:user:eve', false, false, null);
    for (let d = 0; d < depth; d++) {
      for (const s of ['x', 'y']) for (const t of ['x', 'y']) await g.insertMembership(`a:group:${t}${d + 1}`, `a:group:${s}${d}`, false, false, null);
    }
    await g.insertResource('a:variable:v', 'a', 'variable', 'v', 'a:user:admin', null);
    await g.insertPermission('a:variable:v', 'read', `a:group:x${depth}`, null);
    await g.insertPermission('a:variable:v', 'read', 'a:group:x1', null);
    const deps = { graph: g, authorizer: auth };
    const all = await explainPermission(deps, 'a:user:admin', 'a:user:eve', 'read', 'a:variable:v', { maxPaths: 1000 });
    expect(all.paths_truncated).toBe(false);
    // Two ways to x1, and 2^(depth) ways to x<depth>.
    expect(all.paths).toHaveLength(2 + 2 ** depth);
    const lengths = all.paths.map((p) => p.edges.length);
    expect(lengths).toEqual([...lengths].sort((a, b) => a - b));
    for (const p of all.paths) expect(new Set(p.edges.map((e) => e.role)).size).toBe(p.edges.length);

    const capped = await explainPermission(deps, 'a:user:admin', 'a:user:eve', 'read', 'a:variable:v', { maxPaths: 10 });
    expect(capped.paths).toHaveLength(10);
    expect(capped.paths_truncated).toBe(true);
    expect(capped.paths.slice(0, 2).map((p) => p.edges.length)).toEqual([2, 2]);
    expect(capped.message).toContain('more than 10 paths');

    const stepped = await explainPermission(deps, 'a:user:admin', 'a:user:eve', 'read', 'a:variable:v', { maxSteps: 20 });
    expect(stepped.paths_truncated).toBe(true);
    expect(stepped.allowed).toBe(true);
  });

  it('answers allowed exactly when the authorizer allows, on random graphs', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 7 })), { maxLength: 20 }),
        fc.array(fc.integer({ min: 0, max: 7 }), { maxLength: 3 }),
        fc.integer({ min: 0, max: 7 }),
        async (edges, permitted, owner) => {
          const { g, role, auth } = await setup();
          for (let i = 0; i < 8; i++) await role(`a:group:r${i}`);
          await g.insertResource('a:variable:v', 'a', 'variable', 'v', `a:group:r${owner}`, null);
          await g.insertPermission('a:variable:v', 'read', 'a:user:admin', null); // the viewer sees it
          for (const [m, r] of edges) if (m !== r) await g.insertMembership(`a:group:r${r}`, `a:group:r${m}`, false, false, null);
          for (const p of permitted) await g.insertPermission('a:variable:v', 'execute', `a:group:r${p}`, null);
          for (let i = 0; i < 8; i++) {
            const r = await explainPermission({ graph: g, authorizer: auth }, 'a:user:admin', `a:group:r${i}`, 'execute', 'a:variable:v');
            expect(r.allowed).toBe(await auth.can(`a:group:r${i}`, 'execute', 'a:variable:v'));
            expect(r.allowed).toBe(r.paths.length > 0);
            for (const p of r.paths) {
              // Each path is a chain of real memberships from the role to the grant's holder.
              let at = `a:group:r${i}`;
              for (const e of p.edges) {
                expect(e.member).toBe(at);
                expect(await g.getMembership(e.role, e.member, false)).toBeDefined();
                at = e.role;
              }
              expect(at).toBe(p.grant.role);
            }
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('throws not_found when the viewer cannot see the role or the resource', async () => {
    const { g, role, auth } = await setup();
    await role('a:user:viewer');
    await role('a:host:h');
    await g.insertResource('a:variable:v', 'a', 'variable', 'v', 'a:user:admin', null);
    const deps = { graph: g, authorizer: auth };
    await expect(explainPermission(deps, 'a:user:viewer', 'a:host:h', 'read', 'a:variable:v')).rejects.toMatchObject({ code: 'not_found' });
    await g.insertPermission('a:host:h', 'read', 'a:user:viewer', null);
    auth.invalidate();
    await expect(explainPermission(deps, 'a:user:viewer', 'a:host:h', 'read', 'a:variable:v')).rejects.toMatchObject({ code: 'not_found' });
    await g.insertPermission('a:variable:v', 'read', 'a:user:viewer', null);
    auth.invalidate();
    expect((await explainPermission(deps, 'a:user:viewer', 'a:host:h', 'read', 'a:variable:v')).reason).toBe('no_permit');
  });
});
