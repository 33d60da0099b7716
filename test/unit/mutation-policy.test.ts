/**
 * Policy loads in process (no HTTP), aimed at mutants of src/policy/apply.ts
 * and the loader (npm run mutation -- --module policy): what each load mode
 * does to rows this policy wrote and to rows another policy wrote (owner,
 * admin option, restricted_to), what PUT keeps and what it removes, `!delete`
 * cascading to what a record owns, public keys, hosts enrolled through a host
 * factory, and the change list the audit event of every load carries.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../helpers/tmp.js';
import { createAccountIn, openVault, type Vault } from '../../src/server.js';
import type { Actor } from '../../src/context.js';
import type { LoadMode, LoadResponse } from '../../src/policy/loader.js';

const open: Vault[] = [];
afterEach(async () => {
  for (const v of open.splice(0)) await v.close();
});

const A = 'acme';
const id = (kind: string, identifier: string) => `${A}:${kind}:${identifier}`;

async function vault() {
  const v = await openVault({ dataDir: tempDir('coffer-mut-policy-'), masterKey: randomBytes(32) });
  open.push(v);
  await createAccountIn(v, A);
  const s = v.services;
  const admin: Actor = { account: A, roleId: id('user', 'admin'), login: 'admin', request: { clientIp: '127.0.0.1' } };
  const load = (policy: string, mode: LoadMode, text: string, actor: Actor = admin) =>
    s.policies.load(actor, policy, mode, text, false) as Promise<LoadResponse>;
  /** The change list of the newest policy audit event. */
  const lastChanges = async () => {
    const [row] = await s.store.audit.query({ account: A, scopes: [{ type: 'all', account: A }], action: 'policy', order: 'desc', limit: 1 });
    expect(row!.result).toBe('success');
    return JSON.parse(row!.details!) as { added: string[]; changed: string[]; removed: string[] };
  };
  const holds = async (role: string, held: string) => (await s.authorizer.allRoles(role)).has(held);
  const g = s.store.graph;
  return { s, g, admin, load, lastChanges, holds };
}

describe('the change list in the audit event of a load', () => {
  it('names exactly what was added, and nothing when the same text is loaded again', async () => {
    const { load, lastChanges } = await vault();
    const text = `
- !user alice
- !variable v
- !permit { role: !user alice, privilege: read, resource: !variable v }
`;
    await load('root', 'add', text);
    expect(await lastChanges()).toEqual({
      added: [
        'added role acme:user:alice',
        'added resource acme:user:alice',
        'added ownership of acme:user:admin in acme:user:alice',
        'added resource acme:variable:v',
        'added permission of acme:user:alice to read on acme:variable:v',
      ],
      changed: [],
      removed: [],
    });
    await load('root', 'add', text);
    expect(await lastChanges()).toEqual({ added: [], changed: [], removed: [] });
    await load('root', 'update', text);
    expect(await lastChanges()).toEqual({ added: [], changed: [], removed: [] });
  });

  it('names what !revoke and !deny removed', async () => {
    const { load, lastChanges, holds, s } = await vault();
    await load('root', 'add', `
- !user alice
- !group g
- !variable v
- !grant { role: !group g, member: !user alice }
- !permit { role: !user alice, privilege: [read, execute], resource: !variable v }
`);
    await load('root', 'update', `
- !revoke { role: !group g, member: !user alice }
- !deny { role: !user alice, privilege: execute, resource: !variable v }
`);
    expect(await lastChanges()).toEqual({
      added: [],
      changed: [],
      removed: ['removed membership of acme:user:alice in acme:group:g', 'removed permission of acme:user:alice to execute on acme:variable:v'],
    });
    expect(await holds(id('user', 'alice'), id('group', 'g'))).toBe(false);
    expect(await s.authorizer.can(id('user', 'alice'), 'execute', id('variable', 'v'))).toBe(false);
    expect(await s.authorizer.can(id('user', 'alice'), 'read', id('variable', 'v'))).toBe(true);
  });
});

describe('restricted_to by load mode', () => {
  it('POST merges, PATCH replaces (it can narrow), and an unchanged list is no change', async () => {
    const { load, lastChanges, s } = await vault();
    const host = (cidr: string) => `- !host { id: h, restricted_to: [${cidr}] }`;
    await load('root', 'add', host('10.0.0.0/8'));
    const h = id('host', 'h');
    await load('root', 'add', host('192.168.0.0/16'));
    expect(await s.authn.originAllowed(h, '10.1.2.3')).toBe(true);
    expect(await s.authn.originAllowed(h, '192.168.1.1')).toBe(true);
    expect((await lastChanges()).changed).toEqual(['changed restricted_to of acme:host:h']);
    await load('root', 'update', host('192.168.0.0/16'));
    expect((await lastChanges()).changed).toEqual(['changed restricted_to of acme:host:h']);
    expect(await s.authn.originAllowed(h, '10.1.2.3')).toBe(false);
    expect(await s.authn.originAllowed(h, '192.168.1.1')).toBe(true);
    await load('root', 'update', host('192.168.0.0/16'));
    expect((await lastChanges()).changed).toEqual([]);
  });

  it('a load into another policy cannot change the restricted_to of a host the root policy declared', async () => {
    const { load, lastChanges, s } = await vault();
    await load('root', 'add', `
- !policy { id: ci, body: [] }
- !host { id: ci/h, restricted_to: [10.0.0.0/8] }
`);
    const h = id('host', 'ci/h');
    for (const mode of ['update', 'replace'] as const) {
      await load('ci', mode, '- !host { id: h, restricted_to: [192.168.0.0/16] }');
      expect((await lastChanges()).changed).toEqual([]);
      expect(await s.authn.originAllowed(h, '10.1.2.3')).toBe(true);
      expect(await s.authn.originAllowed(h, '192.168.1.1')).toBe(false);
    }
  });
});

describe('owner and admin option by load mode', () => {
  const group = (owner: string) => `
- !user alice
- !user bob
- !group { id: devs, owner: !user ${owner} }
`;

  it('PATCH moves ownership: the old owner no longer holds the role, the new one holds it with admin', async () => {
    const { load, lastChanges, holds, g } = await vault();
    const devs = id('group', 'devs');
    await load('root', 'add', group('alice'));
    expect(await holds(id('user', 'alice'), devs)).toBe(true);
    // POST never updates.
    await load('root', 'add', group('bob'));
    expect((await g.getResource(devs))!.owner_id).toBe(id('user', 'alice'));
    expect((await lastChanges()).changed).toEqual([]);
    await load('root', 'update', group('bob'));
    expect((await lastChanges()).changed).toEqual(['changed owner of acme:group:devs from acme:user:alice to acme:user:bob']);
    expect((await g.getResource(devs))!.owner_id).toBe(id('user', 'bob'));
    expect(await holds(id('user', 'alice'), devs)).toBe(false);
    expect(await holds(id('user', 'bob'), devs)).toBe(true);
    expect(await g.getMembership(devs, id('user', 'bob'), true)).toMatchObject({ admin_option: 1, ownership: 1 });
    expect(await g.getMembership(devs, id('user', 'alice'), true)).toBeUndefined();
    // A record that is only a resource (a variable) changes owner without becoming a role anyone holds.
    await load('root', 'add', '- !variable { id: v, owner: !user alice }');
    await load('root', 'update', `${group('bob')}- !variable { id: v, owner: !user bob }\n`);
    expect((await g.getResource(id('variable', 'v')))!.owner_id).toBe(id('user', 'bob'));
    expect(await holds(id('user', 'bob'), id('variable', 'v'))).toBe(false);
    expect(await holds(id('user', 'alice'), id('variable', 'v'))).toBe(false);
    // And back again: the ownership row bob got is the one removed.
    await load('root', 'update', group('alice'));
    expect(await holds(id('user', 'bob'), devs)).toBe(false);
    expect(await holds(id('user', 'alice'), devs)).toBe(true);
  });

  it('PATCH changes the admin option of a grant this policy made; POST and another policy do not', async () => {
    const { load, lastChanges, g } = await vault();
    await load('root', 'add', `
- !policy { id: sub, body: [] }
- !user alice
- !group sub/g
- !grant { role: !group sub/g, member: !user alice }
`);
    const m = async () => (await g.getMembership(id('group', 'sub/g'), id('user', 'alice'), false))!.admin_option;
    // Policy sub names the group it sees as g; the grant row is root's.
    await load('sub', 'update', '- !grant { role: !group g, member: !member { role: !user /alice, admin: true } }');
    expect(await m()).toBe(0);
    const adminGrant = '- !grant { role: !group sub/g, member: !member { role: !user alice, admin: true } }';
    await load('root', 'add', adminGrant);
    expect(await m()).toBe(0);
    await load('root', 'update', adminGrant);
    expect(await m()).toBe(1);
    expect((await lastChanges()).changed).toEqual(['changed admin option of acme:user:alice in acme:group:sub/g']);
    await load('root', 'update', adminGrant);
    expect((await lastChanges()).changed).toEqual([]);
    await load('root', 'update', '- !grant { role: !group sub/g, member: !user alice }');
    expect(await m()).toBe(0);
  });
});

describe('PUT keeps what the text still declares and removes the rest', () => {
  const full = `
- !user alice
- !group g
- !layer l
- !host-factory { id: f, layers: [ !layer l ] }
- !variable { id: v, annotations: { team: blue } }
- !grant { role: !group g, member: !user alice }
- !permit { role: !user alice, privilege: [read, execute], resource: !variable v }
`;

  it('the same text again changes nothing: grants, permits, annotations and host-factory layers stay', async () => {
    const { load, lastChanges, holds, g, s } = await vault();
    await load('root', 'replace', full);
    expect((await lastChanges()).added).toContain('added membership of acme:host_factory:f in acme:layer:l');
    // The factory joins its layer without the admin option (it cannot grant the layer to others).
    expect(await g.getMembership(id('layer', 'l'), id('host_factory', 'f'), false)).toMatchObject({ admin_option: 0 });
    await load('root', 'replace', full);
    expect(await lastChanges()).toEqual({ added: [], changed: [], removed: [] });
    expect(await holds(id('user', 'alice'), id('group', 'g'))).toBe(true);
    expect(await s.authorizer.can(id('user', 'alice'), 'execute', id('variable', 'v'))).toBe(true);
    expect((await g.getAnnotation(id('variable', 'v'), 'team'))?.value).toBe('blue');
    expect(await g.getMembership(id('layer', 'l'), id('host_factory', 'f'), false)).toBeDefined();
  });

  it('a permit, grant or annotation the text drops is removed, and the audit event says so', async () => {
    const { load, lastChanges, holds, g, s } = await vault();
    await load('root', 'replace', full);
    await load('root', 'replace', full.replace('[read, execute]', '[read]').replace('{ team: blue }', '{}').replace(/- !grant.*\n/, ''));
    expect(await lastChanges()).toEqual({
      added: [],
      changed: [],
      removed: [
        'removed membership of acme:user:alice in acme:group:g',
        'removed permission of acme:user:alice to execute on acme:variable:v',
        'removed annotation team on acme:variable:v',
      ],
    });
    expect(await holds(id('user', 'alice'), id('group', 'g'))).toBe(false);
    expect(await s.authorizer.can(id('user', 'alice'), 'execute', id('variable', 'v'))).toBe(false);
    expect(await s.authorizer.can(id('user', 'alice'), 'read', id('variable', 'v'))).toBe(true);
    expect(await g.getAnnotation(id('variable', 'v'), 'team')).toBeUndefined();
  });

  it('dropping a record takes its permissions with it, listed once', async () => {
    const { load, lastChanges, s, g } = await vault();
    await load('root', 'replace', full);
    await load('root', 'replace', full.replace(/- !variable.*\n/, '').replace(/- !permit.*\n/, ''));
    expect((await lastChanges()).removed).toEqual(['removed resource acme:variable:v']);
    expect(await g.getResource(id('variable', 'v'))).toBeUndefined();
    expect(await s.authorizer.can(id('user', 'alice'), 'read', id('variable', 'v'))).toBe(false);
  });
});

describe('!delete', () => {
  it('deletes what the record owns, transitively', async () => {
    const { load, g } = await vault();
    await load('root', 'add', `
- !group owners
- !group { id: sub, owner: !group owners }
- !variable { id: v, owner: !group owners }
- !variable { id: w, owner: !group sub }
- !variable keep
`);
    await load('root', 'update', '- !delete { record: !group owners }');
    for (const gone of [id('group', 'owners'), id('group', 'sub'), id('variable', 'v'), id('variable', 'w')]) {
      expect(await g.getResource(gone), gone).toBeUndefined();
    }
    expect(await g.getResource(id('variable', 'keep'))).toBeDefined();
  });
});

describe('public keys', () => {
  it('each line becomes a public_key resource named by its third field (else "key") holding the trimmed line', async () => {
    const { load, lastChanges, g, s } = await vault();
    const text = `
- !user
  id: alice
  public_keys:
  - "  ssh-rsa   AAAAB3NzaC1yc2EAAAADAQABAAABAQ   alice@laptop  "
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI
`;
    await load('root', 'add', text);
    const named = id('public_key', 'user/alice/alice@laptop');
    const unnamed = id('public_key', 'user/alice/key');
    expect(await g.getResource(named)).toMatchObject({ kind: 'public_key', owner_id: id('user', 'alice') });
    expect(await g.getResource(unnamed)).toMatchObject({ kind: 'public_key', owner_id: id('user', 'alice') });
    expect((await s.secrets.readInternal(named))?.toString()).toBe('ssh-rsa   AAAAB3NzaC1yc2EAAAADAQABAAABAQ   alice@laptop');
    expect((await s.secrets.readInternal(unnamed))?.toString()).toBe('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI');
    expect((await lastChanges()).added).toContain(`added resource ${named}`);
    // Loading it again keeps the resources and adds nothing.
    await load('root', 'update', text);
    expect((await lastChanges()).added).toEqual([]);
    expect(await g.getResource(named)).toBeDefined();
  });
});

describe('records that exist outside any policy', () => {
  it('a host enrolled through a host factory cannot be declared by a policy; the account admin can be named', async () => {
    const { load, s, admin } = await vault();
    await load('root', 'add', `
- !layer l
- !host-factory { id: f, layers: [ !layer l ] }
`);
    const [t] = await s.hostFactories.createTokens(admin, { hostFactory: 'host_factory:f', expiration: '2999-01-01T00:00:00Z', cidr: [] });
    await s.hostFactories.createHost(t!.token, { id: 'enrolled', annotations: [] }, { clientIp: '127.0.0.1' });
    await expect(load('root', 'add', '- !host enrolled')).rejects.toMatchObject({
      code: 'policy_invalid',
      message: expect.stringContaining("Host 'enrolled' was enrolled through host factory 'f' and cannot be declared by a policy"),
    });
    await expect(load('root', 'add', '- !user admin')).resolves.toMatchObject({ created_roles: {} });
  });
});

describe('references and refusals', () => {
  it('a missing owner, layer, role, member or resource is 422 policy_invalid naming it, for every statement kind, and the load fails as a whole', async () => {
    const { load, g, s } = await vault();
    await load('root', 'add', '- !user alice\n- !variable v\n- !group g');
    const cases: [string, string][] = [
      ['- !variable { id: w, owner: !user nobody }', "User 'nobody' not found in account 'acme'"],
      ['- !host-factory { id: f, layers: [ !layer nope ] }', "Layer 'nope' not found in account 'acme'"],
      ['- !grant { role: !group g, member: !user nobody }', "User 'nobody' not found in account 'acme'"],
      ['- !grant { role: !group nope, member: !user alice }', "Group 'nope' not found in account 'acme'"],
      ['- !permit { role: !user alice, privilege: read, resource: !variable nope }', "Variable 'nope' not found in account 'acme'"],
      ['- !permit { role: !user nobody, privilege: read, resource: !variable v }', "User 'nobody' not found in account 'acme'"],
    ];
    const deletions: [string, string][] = [
      ['- !revoke { role: !group nope, member: !user alice }', "Group 'nope' not found in account 'acme'"],
      ['- !revoke { role: !group g, member: !user nobody }', "User 'nobody' not found in account 'acme'"],
      ['- !deny { role: !user alice, privilege: read, resource: !variable nope }', "Variable 'nope' not found in account 'acme'"],
      ['- !deny { role: !user nobody, privilege: read, resource: !variable v }', "User 'nobody' not found in account 'acme'"],
    ];
    const all = [...cases.map(([t, m]) => ['add', t, m]), ...deletions.map(([t, m]) => ['update', t, m])] as [LoadMode, string, string][];
    for (const [mode, text, message] of all) {
      await expect(load('root', mode, text), text).rejects.toMatchObject({ code: 'policy_invalid', message });
    }
    // Nothing of the refused loads was kept.
    expect(await g.getResource(id('variable', 'w'))).toBeUndefined();
    expect(await g.getResource(id('host_factory', 'f'))).toBeUndefined();
    // A failed load is audited as a policy failure.
    const [row] = await s.store.audit.query({ account: A, scopes: [{ type: 'all', account: A }], action: 'policy', order: 'desc', limit: 1 });
    expect(row).toMatchObject({ action: 'policy', operation: 'update', result: 'failure' });
  });

  it('warnings: an annotation named like a policy attribute is reported; none otherwise', async () => {
    const { load } = await vault();
    const plain = await load('root', 'add', '- !user { id: alice, annotations: { team: blue } }');
    expect(plain).not.toHaveProperty('warnings');
    const warned = await load('root', 'add', '- !user { id: bob, annotations: { owner: x } }');
    expect(warned.warnings).toEqual([expect.stringContaining("Annotation 'owner' matches a known policy attribute")]);
  });

  it('PUT on root needs update on every resource, even with update on the root policy itself', async () => {
    const { load, s } = await vault();
    await load('root', 'add', `
- !user deployer
- !variable mine
- !variable other
- !permit { role: !user deployer, privilege: [read, update], resource: !policy root }
- !permit { role: !user deployer, privilege: update, resource: !variable mine }
`);
    const deployer: Actor = { account: A, roleId: id('user', 'deployer'), login: 'deployer', request: { clientIp: '127.0.0.1' } };
    // PATCH needs update on the policy only; PUT also on everything beneath it.
    await expect(load('root', 'update', '- !variable extra', deployer)).resolves.toMatchObject({ version: expect.any(Number) });
    await expect(load('root', 'replace', '- !variable extra', deployer)).rejects.toMatchObject({ code: 'forbidden' });
    expect(await s.store.graph.getResource(id('variable', 'other'))).toBeDefined();
  });
});
