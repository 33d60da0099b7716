import { describe, it, expect } from 'vitest';
import { parsePolicy } from '../../src/policy/parse.js';
import { KNOWN_POLICY_ATTRIBUTES, resolvePolicy } from '../../src/policy/resolve.js';
import type { RecordStatement, ResolveContext, ResolvedPolicy, Statement } from '../../src/policy/types.js';
import { PolicyError } from '../../src/errors.js';

const yaml = (...lines: string[]): string => lines.join('\n') + '\n';

const ROOT: ResolveContext = { account: 'acme', policyId: 'root', policyOwner: 'acme:user:admin' };
const into = (policyId: string, policyOwner = 'acme:user:admin'): ResolveContext => ({
  account: 'acme',
  policyId,
  policyOwner,
});

function resolve(text: string, ctx: ResolveContext = ROOT): ResolvedPolicy {
  return resolvePolicy(parsePolicy(text), ctx);
}

const records = (r: ResolvedPolicy): RecordStatement[] =>
  r.statements.filter((s): s is RecordStatement => s.type === 'record');

/** `[id, owner]` of every record, in output order. */
const idsAndOwners = (text: string, ctx: ResolveContext = ROOT): [string, string][] =>
  records(resolve(text, ctx)).map((r) => [r.id, r.owner]);

/** Statements without positions, for compact comparisons. */
const bare = (statements: Statement[]): Omit<Statement, 'position'>[] =>
  statements.map(({ position: _position, ...rest }) => rest);

function resolveError(text: string, ctx: ResolveContext = ROOT): PolicyError {
  try {
    resolve(text, ctx);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('expected resolvePolicy to throw');
}

function expectError(
  text: string,
  expected: { code?: string; message: string; line: number; column: number },
  ctx: ResolveContext = ROOT,
): void {
  const err = resolveError(text, ctx);
  expect({ code: err.code, message: err.message, line: err.line, column: err.column }).toEqual({
    code: 'validation_failed',
    ...expected,
  });
}

describe('resolvePolicy: accounts', () => {
  it('gives records and references the account of the load', () => {
    const r = resolve(yaml('- !group g', '- !grant', '  role: !group g', '  member: !user alice'));
    expect(bare(r.statements)).toEqual([
      { type: 'record', kind: 'group', id: 'acme:group:g', owner: 'acme:user:admin', hasRole: true, hasResource: true, annotations: {} },
      { type: 'grant', role: 'acme:group:g', member: 'acme:user:alice', adminOption: false },
    ]);
  });

  it('keeps an explicit account on records and references (cross-account)', () => {
    const r = resolve(
      yaml('- !user', '  id: bob', '  account: other', '- !grant', '  role: !group g', '  member: !user { id: carol, account: other }'),
    );
    expect(r.statements.map((s) => (s.type === 'record' ? s.id : s.type === 'grant' ? s.member : ''))).toEqual([
      'other:user:bob',
      'other:user:carol',
    ]);
  });

  it('owns the body of a cross-account policy by that account\'s policy role', () => {
    // Conjur's AccountResolver gives body records the account of the load, not the policy's.
    expect(idsAndOwners(yaml('- !policy', '  id: p', '  account: other', '  body:', '  - !variable v'))).toEqual([
      ['other:policy:p', 'acme:user:admin'],
      ['acme:variable:p/v', 'other:policy:p'],
    ]);
  });
});

describe('resolvePolicy: namespaces', () => {
  it('prefixes records and references with the enclosing policy id', () => {
    const r = resolve(
      yaml(
        '- !policy',
        '  id: db',
        '  body:',
        '  - !group admins',
        '  - !policy',
        '    id: inner',
        '    body:',
        '    - !variable password',
        '    - !permit',
        '      role: !group admins',
        '      privilege: read',
        '      resource: !variable password',
      ),
    );
    expect(bare(r.statements)).toEqual([
      expect.objectContaining({ id: 'acme:policy:db', owner: 'acme:user:admin' }),
      expect.objectContaining({ id: 'acme:group:db/admins', owner: 'acme:policy:db' }),
      expect.objectContaining({ id: 'acme:policy:db/inner', owner: 'acme:policy:db' }),
      expect.objectContaining({ id: 'acme:variable:db/inner/password', owner: 'acme:policy:db/inner' }),
      { type: 'permit', role: 'acme:group:db/inner/admins', privilege: 'read', resource: 'acme:variable:db/inner/password' },
    ]);
  });

  it('leaves ids starting with / absolute (cucumber policy_load_modes: permit to /everyone)', () => {
    const r = resolve(
      yaml('- !variable a', '- !permit', '  role: !group /everyone', '  privilege: read', '  resource: !variable a'),
      into('dev/db'),
    );
    expect(bare(r.statements.filter((s) => s.type === 'permit'))).toEqual([
      { type: 'permit', role: 'acme:group:everyone', privilege: 'read', resource: 'acme:variable:dev/db/a' },
    ]);
  });

  it('makes a blank id inside a policy the policy id itself', () => {
    expect(idsAndOwners(yaml('- !policy', '  id: prod/frontend', '  body:', '  - !layer'))).toEqual([
      ['acme:policy:prod/frontend', 'acme:user:admin'],
      ['acme:layer:prod/frontend', 'acme:policy:prod/frontend'],
    ]);
  });

  it('makes a blank !webservice inside conjur/authn-jwt/x that authenticator (JWT setup)', () => {
    const r = resolve(yaml('- !webservice', '- !variable jwks-uri'), into('conjur/authn-jwt/x'));
    expect(records(r).map((s) => s.id)).toEqual([
      'acme:webservice:conjur/authn-jwt/x',
      'acme:variable:conjur/authn-jwt/x/jwks-uri',
    ]);
  });

  it('reports a blank id outside any policy with Conjur\'s type name', () => {
    expectError(yaml('- !user alice', '- !variable'), { message: 'variable has a blank id', line: 2, column: 3 });
    expectError(yaml('- !host-factory', '  layers: [ !layer l ]'), { message: 'host_factory has a blank id', line: 1, column: 3 });
    expectError(yaml('- !policy', '  body: []'), { message: 'policy has a blank id', line: 1, column: 3 });
    expectError(yaml('- !user', '  id: "  "'), { message: 'user has a blank id', line: 1, column: 3 });
  });

  it('reports an empty resource as "resource has a blank id" (cucumber policy_load_errors)', () => {
    expectError(yaml('- !user bob', '', '- !permit', '  role: !user bob', '  privilege: [ execute ]', '  resource:'), {
      message: 'resource has a blank id',
      line: 6,
      column: 12,
    });
  });

  it('reports an empty reference inside a policy as a reference without kind', () => {
    expectError(yaml('- !grant', '  role:', '  member: !user a'), { message: 'role has a blank id', line: 2, column: 8 });
    expectError(yaml('- !grant', '  role:', '  member: !user a'), { message: "role 'p' has no kind", line: 2, column: 8 }, into('p'));
  });
});

describe('resolvePolicy: relative paths', () => {
  it('resolves ../ in a permit role (cucumber policy_reference)', () => {
    const r = resolve(
      yaml(
        '- !policy',
        '  id: prod',
        '  body:',
        '  - !layer frontend',
        '  - !policy',
        '    id: database',
        '    body:',
        '    - !variable password',
        '    - !permit',
        '      role: !layer ../frontend',
        '      privilege: [ read, execute ]',
        '      resource: !variable password',
      ),
    );
    expect(bare(r.statements.filter((s) => s.type === 'permit'))).toEqual([
      { type: 'permit', role: 'acme:layer:prod/frontend', privilege: 'read', resource: 'acme:variable:prod/database/password' },
      { type: 'permit', role: 'acme:layer:prod/frontend', privilege: 'execute', resource: 'acme:variable:prod/database/password' },
    ]);
  });

  it('resolves ../ in owners, grant members and revoke members', () => {
    const r = resolve(
      yaml(
        '- !group admins',
        '- !variable',
        '  id: v',
        '  owner: !group ../admins',
        '- !grant',
        '  role: !group g',
        '  member: !group ../../x',
        '- !revoke',
        '  role: !group g',
        '  member: !host ../h',
      ),
      into('a/b'),
    );
    expect(bare(r.statements)).toEqual([
      expect.objectContaining({ id: 'acme:group:a/b/admins' }),
      expect.objectContaining({ id: 'acme:variable:a/b/v', owner: 'acme:group:a/admins' }),
      { type: 'grant', role: 'acme:group:a/b/g', member: 'acme:group:x', adminOption: false },
      { type: 'revoke', role: 'acme:group:a/b/g', member: 'acme:host:a/h' },
    ]);
  });

  it('strips a leading / from owners and members (absolute references)', () => {
    const r = resolve(yaml('- !variable', '  id: v', '  owner: !group /security', '- !grant', '  role: !group g', '  member: !host /ci/h'), into('app'));
    expect(bare(r.statements)).toEqual([
      expect.objectContaining({ id: 'acme:variable:app/v', owner: 'acme:group:security' }),
      { type: 'grant', role: 'acme:group:app/g', member: 'acme:host:ci/h', adminOption: false },
    ]);
  });

  it('resolves ../ in annotation values relative to the record id', () => {
    const [v] = records(resolve(yaml('- !variable', '  id: password', '  annotations:', '    peer: ../other/password', '    plain: a/b'), into('prod/db')));
    expect(v?.annotations).toEqual({ peer: 'prod/db/other/password', plain: 'a/b' });
  });

  it('refuses a path that climbs above the root', () => {
    expectError(yaml('- !permit', '  role: !group ../x', '  privilege: read', '  resource: !variable v'), {
      message: 'Invalid relative reference: ../x',
      line: 2,
      column: 9,
    });
    expectError(
      yaml('- !grant', '  role: !group g', '  member: !group ../../x'),
      { message: 'Invalid relative reference: a/../../x', line: 3, column: 11 },
      into('a'),
    );
  });

  it('does not resolve host-factory layers (cucumber host_factory: myapp/../default)', () => {
    const hf = records(resolve(yaml('- !layer default', '- !policy', '  id: myapp', '  body:', '  - !host-factory', '    layers: [ !layer ../default ]')))[2];
    expect(hf).toMatchObject({ id: 'acme:host_factory:myapp', layers: ['acme:layer:myapp/../default'] });
  });
});

describe('resolvePolicy: user ids', () => {
  it('renames users inside a namespace to name@ns-with-dashes (cucumber policy_dry_run)', () => {
    expect(idsAndOwners(yaml('- !user bob'), into('dev/db'))).toEqual([['acme:user:bob@dev-db', 'acme:policy:dev/db']]);
  });

  it('keeps root users as they are', () => {
    expect(idsAndOwners(yaml('- !user bob'))).toEqual([['acme:user:bob', 'acme:user:admin']]);
  });

  it('renames references to users the same way', () => {
    const r = resolve(
      yaml(
        '- !policy',
        '  id: a/b',
        '  body:',
        '  - !user alice',
        '  - !permit',
        '    role: !user alice',
        '    privilege: read',
        '    resource: !user alice',
        '  - !grant',
        '    role: !group g',
        '    members: [ !user /carol, !user ../dave, !user /x/erin ]',
      ),
    );
    expect(bare(r.statements.slice(2))).toEqual([
      { type: 'permit', role: 'acme:user:alice@a-b', privilege: 'read', resource: 'acme:user:alice@a-b' },
      { type: 'grant', role: 'acme:group:a/b/g', member: 'acme:user:carol', adminOption: false },
      { type: 'grant', role: 'acme:group:a/b/g', member: 'acme:user:dave@a', adminOption: false },
      { type: 'grant', role: 'acme:group:a/b/g', member: 'acme:user:erin@x', adminOption: false },
    ]);
    expect(records(r)[1]?.id).toBe('acme:user:alice@a-b');
  });

  it('renames !resource records of kind user but not !role records', () => {
    const ids = records(resolve(yaml('- !resource { id: carol, kind: user }', '- !role { id: dave, kind: user }'), into('a'))).map((s) => s.id);
    expect(ids).toEqual(['acme:user:carol@a', 'acme:user:a/dave']);
  });

  it('refuses .. left in a user reference where paths are not resolved', () => {
    expectError(
      yaml('- !permit', '  role: !group g', '  privilege: read', '  resource: !user ../bob'),
      { message: 'Invalid relative reference: a/b/../bob', line: 4, column: 13 },
      into('a/b'),
    );
  });
});

describe('resolvePolicy: owners', () => {
  it('owns root-level records by the load owner, not policy:root (cucumber ownership)', () => {
    expect(idsAndOwners(yaml('- !user bob', '- !variable v'))).toEqual([
      ['acme:user:bob', 'acme:user:admin'],
      ['acme:variable:v', 'acme:user:admin'],
    ]);
  });

  it('owns records in a policy by the policy role (cucumber ownership: db/password)', () => {
    expect(idsAndOwners(yaml('- !policy', '  id: db', '  body:', '  - !variable password'))).toEqual([
      ['acme:policy:db', 'acme:user:admin'],
      ['acme:variable:db/password', 'acme:policy:db'],
    ]);
  });

  it('owns a nested policy by the enclosing policy role', () => {
    expect(idsAndOwners(yaml('- !policy', '  id: a', '  body:', '  - !policy', '    id: b', '    body: []'))).toEqual([
      ['acme:policy:a', 'acme:user:admin'],
      ['acme:policy:a/b', 'acme:policy:a'],
    ]);
  });

  it('owns top-level policies of a non-root load by the loaded policy', () => {
    expect(idsAndOwners(yaml('- !policy', '  id: v1', '  body: []'), into('jenkins', 'acme:group:ops'))).toEqual([
      ['acme:policy:jenkins/v1', 'acme:policy:jenkins'],
    ]);
  });

  it('keeps an explicit owner, namespaced like any reference', () => {
    expect(idsAndOwners(yaml('- !group admins', '- !variable', '  id: v', '  owner: !group admins'), into('app'))).toEqual([
      ['acme:group:app/admins', 'acme:policy:app'],
      ['acme:variable:app/v', 'acme:group:app/admins'],
    ]);
  });

  it('gives !role records the default owner and no resource; !resource records no role', () => {
    const r = records(resolve(yaml('- !role { id: r, kind: chain }', '- !resource { id: s, kind: chain }'), into('p')));
    expect(r).toEqual([
      expect.objectContaining({ kind: 'chain', id: 'acme:chain:p/r', owner: 'acme:policy:p', hasRole: true, hasResource: false }),
      expect.objectContaining({ kind: 'chain', id: 'acme:chain:p/s', owner: 'acme:policy:p', hasRole: false, hasResource: true }),
    ]);
  });

  it('does not emit the enclosing policy of a non-root load', () => {
    const r = resolve(yaml('- !variable v'), into('dev/db'));
    expect(records(r).map((s) => s.id)).toEqual(['acme:variable:dev/db/v']);
  });

  it('still counts the enclosing policy as declared', () => {
    expectError(yaml('- !policy', '  body: []'), { message: "policy 'dev/db' is declared more than once", line: 1, column: 3 }, into('dev/db'));
  });
});

describe('resolvePolicy: ordering', () => {
  it('puts records first and keeps other statements in document order', () => {
    const r = resolve(
      yaml(
        '- !grant',
        '  role: !group g',
        '  member: !user a',
        '- !user a',
        '- !permit',
        '  role: !user a',
        '  privilege: read',
        '  resource: !variable v',
        '- !group g',
        '- !variable v',
      ),
    );
    expect(r.statements.map((s) => (s.type === 'record' ? s.id : s.type))).toEqual([
      'acme:user:a',
      'acme:group:g',
      'acme:variable:v',
      'grant',
      'permit',
    ]);
  });

  it('creates an owner declared later before the records it owns', () => {
    expect(idsAndOwners(yaml('- !user', '  id: alice', '  owner: !group admins', '- !variable v', '- !group admins'))).toEqual([
      ['acme:group:admins', 'acme:user:admin'],
      ['acme:user:alice', 'acme:group:admins'],
      ['acme:variable:v', 'acme:user:admin'],
    ]);
  });

  it('creates layers before the host factory that uses them', () => {
    const ids = records(resolve(yaml('- !host-factory', '  id: hf', '  layers: [ !layer l ]', '- !layer l'))).map((s) => s.id);
    expect(ids).toEqual(['acme:layer:l', 'acme:host_factory:hf']);
  });

  it('refuses an ownership cycle', () => {
    expectError(yaml('- !group', '  id: a', '  owner: !group b', '- !group', '  id: b', '  owner: !group a'), {
      message: "Dependency cycle encountered between group 'a' and group 'b'",
      line: 4,
      column: 3,
    });
  });

  it('refuses longer cycles too', () => {
    const err = resolveError(
      yaml('- !group { id: a, owner: !group c }', '- !group { id: b, owner: !group a }', '- !group { id: c, owner: !group b }'),
    );
    expect(err.code).toBe('validation_failed');
    expect(err.message).toMatch(/^Dependency cycle encountered between group '[abc]' and group '[abc]'$/);
  });

  it('ignores a record owning itself', () => {
    expect(idsAndOwners(yaml('- !group', '  id: a', '  owner: !group a'))).toEqual([['acme:group:a', 'acme:group:a']]);
  });
});

describe('resolvePolicy: duplicates', () => {
  it('refuses a record declared twice, pointing at the second', () => {
    expectError(yaml('- !user alice', '- !variable x', '- !user alice'), {
      message: "user 'alice' is declared more than once",
      line: 3,
      column: 3,
    });
  });

  it('compares ids after resolution', () => {
    expectError(yaml('- !variable db/x', '- !policy', '  id: db', '  body:', '  - !variable x'), {
      message: "variable 'db/x' is declared more than once",
      line: 5,
      column: 5,
    });
  });

  it('mirrors Conjur for an absolute user id, which becomes name@-ns instead of clashing', () => {
    expect(records(resolve(yaml('- !user bob', '- !user /dev/db/bob'), into('dev/db'))).map((s) => s.id)).toEqual([
      'acme:user:bob@dev-db',
      'acme:user:bob@-dev-db',
    ]);
  });

  it('uses Conjur\'s wording for every kind', () => {
    expect(resolveError(yaml('- !host-factory { id: h, layers: [] }', '- !host-factory { id: h, layers: [] }')).message).toBe(
      "host factory 'h' is declared more than once",
    );
    expect(resolveError(yaml('- !role { id: g, kind: group }', '- !role { id: g, kind: group }')).message).toBe(
      "group role 'g' is declared more than once",
    );
    expect(resolveError(yaml('- !resource { id: v, kind: variable }', '- !resource { id: v, kind: variable }')).message).toBe(
      "variable resource 'v' is declared more than once",
    );
    expect(resolveError(yaml('- !user { id: a, account: other }', '- !user { id: a, account: other }')).message).toBe(
      "user 'a' in account 'other' is declared more than once",
    );
  });

  it('allows the same id for different record types', () => {
    expect(records(resolve(yaml('- !layer app', '- !host-factory { id: app, layers: [ !layer app ] }', '- !webservice app'))).map((s) => s.id)).toEqual([
      'acme:layer:app',
      'acme:host_factory:app',
      'acme:webservice:app',
    ]);
  });

  it('declares a record reached twice through an alias once', () => {
    const r = resolve(yaml('- !policy', '  id: a', '  body:', '  - &u !user alice', '- *u'));
    expect(records(r).map((s) => s.id)).toEqual(['acme:policy:a', 'acme:user:alice@a']);
  });
});

describe('resolvePolicy: absolute ids', () => {
  it('refuses an absolute declared id', () => {
    expectError(yaml('- !policy', '  id: p', '  body:', '  - !group /g'), { message: 'Illegal absolute id: /g', line: 4, column: 5 });
  });

  it('refuses an absolute grant/revoke role, permit/deny resource and deleted record', () => {
    expect(resolveError(yaml('- !grant', '  role: !group /g', '  member: !user a')).message).toBe('Illegal absolute id: /g');
    expect(resolveError(yaml('- !revoke', '  role: !group /g', '  member: !user a')).message).toBe('Illegal absolute id: /g');
    expect(resolveError(yaml('- !permit', '  role: !user a', '  privilege: read', '  resource: !variable /v')).message).toBe(
      'Illegal absolute id: /v',
    );
    expect(resolveError(yaml('- !deny', '  role: !user a', '  privilege: read', '  resource: !variable /v')).message).toBe(
      'Illegal absolute id: /v',
    );
    expect(resolveError(yaml('- !delete', '  record: !variable /v')).message).toBe('Illegal absolute id: /v');
  });
});

describe('resolvePolicy: statements', () => {
  it('expands grants over roles × members with admin option', () => {
    const r = resolve(
      yaml('- !grant', '  roles: [ !group a, !group b ]', '  members:', '  - !user u', '  - !member { role: !host h, admin: true }'),
    );
    expect(bare(r.statements)).toEqual([
      { type: 'grant', role: 'acme:group:a', member: 'acme:user:u', adminOption: false },
      { type: 'grant', role: 'acme:group:a', member: 'acme:host:h', adminOption: true },
      { type: 'grant', role: 'acme:group:b', member: 'acme:user:u', adminOption: false },
      { type: 'grant', role: 'acme:group:b', member: 'acme:host:h', adminOption: true },
    ]);
    expect(r.statements[0]?.position).toEqual({ line: 1, column: 3 });
  });

  it('expands permits and denies over resources × privileges × roles', () => {
    const r = resolve(
      yaml(
        '- !permit',
        '  roles: [ !user a, !user b ]',
        '  privileges: [ read, execute ]',
        '  resource: !variable v',
        '- !deny',
        '  role: !user a',
        '  privilege: update',
        '  resources: [ !variable v, !variable w ]',
      ),
    );
    expect(bare(r.statements)).toEqual([
      { type: 'permit', role: 'acme:user:a', privilege: 'read', resource: 'acme:variable:v' },
      { type: 'permit', role: 'acme:user:b', privilege: 'read', resource: 'acme:variable:v' },
      { type: 'permit', role: 'acme:user:a', privilege: 'execute', resource: 'acme:variable:v' },
      { type: 'permit', role: 'acme:user:b', privilege: 'execute', resource: 'acme:variable:v' },
      { type: 'deny', role: 'acme:user:a', privilege: 'update', resource: 'acme:variable:v' },
      { type: 'deny', role: 'acme:user:a', privilege: 'update', resource: 'acme:variable:w' },
    ]);
  });

  it('expands revokes and namespaces deleted records', () => {
    const r = resolve(
      yaml('- !revoke', '  role: !group g', '  members: [ !user a, !host h ]', '- !delete', '  records: [ !variable a, !user bob ]'),
      into('dev/db'),
    );
    expect(bare(r.statements)).toEqual([
      { type: 'revoke', role: 'acme:group:dev/db/g', member: 'acme:user:a@dev-db' },
      { type: 'revoke', role: 'acme:group:dev/db/g', member: 'acme:host:dev/db/h' },
      { type: 'delete', id: 'acme:variable:dev/db/a' },
      { type: 'delete', id: 'acme:user:bob@dev-db' },
    ]);
  });

  it('emits nothing for a grant without members, like Conjur', () => {
    expect(resolve(yaml('- !grant', '  role: !group g')).statements).toEqual([]);
  });

  it('keeps a record\'s position', () => {
    expect(records(resolve(yaml('', '- !variable', '  id: v')))[0]?.position).toEqual({ line: 2, column: 3 });
  });
});

describe('resolvePolicy: record details', () => {
  it('turns kind, mime_type, uidnumber and gidnumber into conjur/ annotations', () => {
    const r = records(
      resolve(
        yaml(
          '- !variable { id: v, kind: password, mime_type: text/plain, annotations: { description: d } }',
          '- !user { id: u, uidnumber: 1000 }',
          '- !group { id: g, gidnumber: 2000 }',
        ),
      ),
    );
    expect(r.map((s) => s.annotations)).toEqual([
      { description: 'd', 'conjur/kind': 'password', 'conjur/mime_type': 'text/plain' },
      { 'conjur/uidnumber': '1000' },
      { 'conjur/gidnumber': '2000' },
    ]);
  });

  it('lets an explicit conjur/ annotation win over the attribute (loader uses ||=)', () => {
    const [v] = records(resolve(yaml('- !variable', '  id: v', '  kind: password', '  annotations:', '    conjur/kind: ssh key')));
    expect(v?.annotations).toEqual({ 'conjur/kind': 'ssh key' });
  });

  it('keeps a __proto__ annotation as an ordinary annotation', () => {
    const [v] = records(resolve(yaml('- !variable', '  id: v', '  annotations:', '    __proto__: x')));
    expect(Object.getPrototypeOf(v?.annotations)).toBe(Object.prototype);
    expect(Object.keys(v?.annotations ?? {})).toEqual(['__proto__']);
    expect(v?.annotations['__proto__']).toBe('x');
  });

  it('normalizes restricted_to (cucumber cidr_restrictions)', () => {
    const r = records(
      resolve(
        yaml(
          '- !user { id: alice, restricted_to: 192.168.101.1 }',
          '- !user { id: bob, restricted_to: 192.168.0.0/16 }',
          '- !host { id: serviceA, restricted_to: [ 192.168.0.1, 192.168.1.10/32 ] }',
          '- !host serviceB',
        ),
      ),
    );
    expect(r.map((s) => s.restrictedTo)).toEqual([['192.168.101.1/32'], ['192.168.0.0/16'], ['192.168.0.1/32', '192.168.1.10/32'], undefined]);
  });

  it('refuses an invalid restricted_to with validation_failed at the value', () => {
    expectError(yaml('- !host', '  id: serviceA', '  restricted_to: 10.0.0.1/24'), {
      message: "Invalid IP address or CIDR range '10.0.0.1/24': Value has bits set to right of mask. Did you mean '10.0.0.0/24'?",
      line: 3,
      column: 18,
    });
    expectError(yaml('- !host', '  id: serviceA', '  restricted_to: [ 1.2.3.4, dap.my-company.net ]'), {
      message: "Invalid IP address or CIDR range 'dap.my-company.net'",
      line: 3,
      column: 29,
    });
  });

  it('passes public keys through for users', () => {
    const [u] = records(resolve(yaml('- !user', '  id: alice', '  public_keys:', '  - ssh-rsa AAAA laptop', '  - ssh-ed25519 BBBB phone')));
    expect(u?.publicKeys).toEqual(['ssh-rsa AAAA laptop', 'ssh-ed25519 BBBB phone']);
  });

  it('lists host-factory layers as full ids (cucumber host_factory)', () => {
    const r = records(resolve(yaml('- !layer', '  id: myapp', '', '- !host-factory', '  id: myapp', '  layers: [ !layer myapp ]')));
    expect(r[1]).toMatchObject({ kind: 'host_factory', id: 'acme:host_factory:myapp', hasRole: true, hasResource: true, layers: ['acme:layer:myapp'] });
  });

  it('refuses a host factory without layers (cucumber host_factory, policy_invalid)', () => {
    const err = resolveError(
      yaml(
        '- !policy',
        '  id: another-app',
        '  body:',
        '  - !policy',
        '    id: hosts',
        '    annotations:',
        '      description: Layer & Host Factory for machines that can read secrets',
        '    body:',
        '    - !layer',
        '    - !host-factory',
      ),
    );
    expect({ code: err.code, message: err.message, line: err.line, column: err.column }).toEqual({
      code: 'policy_invalid',
      message: "Host factory 'another-app/hosts' does not include any layers",
      line: 10,
      column: 7,
    });
  });
});

describe('resolvePolicy: warnings', () => {
  it('warns once per annotation named like a policy attribute', () => {
    const r = resolve(
      yaml('- !variable', '  id: a', '  annotations: { kind: x, owner: y }', '- !variable', '  id: b', '  annotations: { kind: z, description: d }'),
    );
    expect(r.warnings).toEqual([
      "Annotation 'kind' matches a known policy attribute. This annotation will not be treated as a standard attribute and may not have the intended effect.",
      "Annotation 'owner' matches a known policy attribute. This annotation will not be treated as a standard attribute and may not have the intended effect.",
    ]);
  });

  it('does not warn for the kind attribute itself or ordinary annotations', () => {
    expect(resolve(yaml('- !variable { id: a, kind: password, annotations: { description: d } }')).warnings).toEqual([]);
  });

  it('knows Conjur\'s list of policy attributes', () => {
    expect(KNOWN_POLICY_ATTRIBUTES).toEqual(
      'id owner body user annotations restricted_to permit deny role privileges resource grant revoke member host-factory layers layer variable kind mime_type delete record group host webservice'.split(
        ' ',
      ),
    );
  });
});

describe('resolvePolicy: aliases and purity', () => {
  it('keeps the id an aliased record got where it was anchored', () => {
    const r = resolve(
      yaml(
        '- !policy',
        '  id: db',
        '  body:',
        '  - &pw !variable password',
        '- !permit',
        '  role: !user bob',
        '  privilege: read',
        '  resource: *pw',
      ),
    );
    expect(bare(r.statements.filter((s) => s.type === 'permit'))).toEqual([
      { type: 'permit', role: 'acme:user:bob', privilege: 'read', resource: 'acme:variable:db/password' },
    ]);
  });

  it('does not modify the parsed document', () => {
    const parsed = parsePolicy(yaml('- !policy', '  id: a', '  body:', '  - !user bob', '  - !grant', '    role: !group g', '    member: !user ../c'));
    const first = resolvePolicy(parsed, ROOT);
    const second = resolvePolicy(parsed, ROOT);
    expect(second).toEqual(first);
    expect(((parsed.statements[0] as { body: { id: string }[] }).body[0])?.id).toBe('bob');
  });
});
