import { describe, it, expect } from 'vitest';
import { parsePolicy } from '../../src/policy/parse.js';
import type {
  ParsedDelete,
  ParsedGrant,
  ParsedPermit,
  ParsedRecord,
  ParsedRevoke,
  ParsedStatement,
} from '../../src/policy/parse.js';
import { PolicyError } from '../../src/errors.js';

/** Joins lines so line/column numbers in the tests are easy to read. */
const yaml = (...lines: string[]): string => lines.join('\n') + '\n';

function parseError(text: string): PolicyError {
  try {
    parsePolicy(text);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('expected parsePolicy to throw');
}

function expectError(text: string, message: string, line: number, column: number): void {
  const err = parseError(text);
  expect({ code: err.code, message: err.message, line: err.line, column: err.column }).toEqual({
    code: 'policy_invalid',
    message,
    line,
    column,
  });
}

const only = (text: string): ParsedStatement => {
  const { statements } = parsePolicy(text);
  expect(statements).toHaveLength(1);
  return statements[0]!;
};
const record = (text: string): ParsedRecord => only(text) as ParsedRecord;

describe('parsePolicy: documents', () => {
  it.each(['', '# only a comment\n', '---\n', '--- # empty\n...\n'])('treats %j as an empty policy', (text) => {
    expect(parsePolicy(text)).toEqual({ statements: [] });
  });

  it('refuses more than one document', () => {
    // Points at the `---` that starts the second document.
    expectError(yaml('- !user a', '---', '- !user b'), 'A policy must be a single YAML document', 2, 1);
  });

  it('refuses a mapping at the root', () => {
    expectError(yaml('id: alice'), 'Unexpected mapping: a policy must be a sequence of statements', 1, 1);
  });

  it('refuses a scalar at the root, null included', () => {
    expectError(yaml('alice'), 'Unexpected scalar: a policy must be a sequence of statements', 1, 1);
    expectError(yaml('~'), 'Unexpected scalar: a policy must be a sequence of statements', 1, 1);
  });

  it('reports YAML syntax errors with their position', () => {
    expectError(
      yaml('- !user', '  id: [alice', '- !user bob'),
      'Flow sequence in block collection must be sufficiently indented and end with a ]',
      3,
      1,
    );
    expectError(yaml("- !user 'alice"), "Missing closing 'quote", 2, 1);
  });

  it('turns runaway nesting into a policy error, not a crash', () => {
    const deep = '['.repeat(5000) + ']'.repeat(5000);
    const err = parseError(deep);
    expect(err.code).toBe('policy_invalid');
    expect(err.message).toBe('Policy is nested too deeply: more than 64 levels (limit: 64)');
  });
});

describe('parsePolicy: tags', () => {
  it('makes a tagged scalar a record with that id', () => {
    expect(record(yaml('- !user alice'))).toEqual({
      node: 'record',
      tag: 'user',
      id: 'alice',
      position: { line: 1, column: 3 },
    });
  });

  it('reads a tagged scalar as a string, whatever it looks like', () => {
    expect(record(yaml('- !variable 0x10')).id).toBe('0x10');
    expect(record(yaml('- !variable "quoted name"')).id).toBe('quoted name');
  });

  it('gives a tagged empty scalar a blank id', () => {
    expect(record(yaml('- !layer')).id).toBe('');
  });

  it('positions records at their tag or anchor, even when the value is empty', () => {
    const { statements } = parsePolicy(yaml('- !user a', '- !layer', '- &x !host', '-   !group  ', '- !variable', '  id: v'));
    expect(statements.map((s) => s.position)).toEqual([
      { line: 1, column: 3 },
      { line: 2, column: 3 },
      { line: 3, column: 3 },
      { line: 4, column: 5 },
      { line: 5, column: 3 },
    ]);
  });

  it('knows every statement tag', () => {
    const tags = ['user', 'host', 'group', 'layer', 'policy', 'variable', 'webservice', 'host-factory'];
    const { statements } = parsePolicy(tags.map((t) => `- !${t} x`).join('\n'));
    expect(statements.map((s) => (s as ParsedRecord).tag)).toEqual(tags);
    expect(record(yaml('- !role', '  id: r', '  kind: group'))).toMatchObject({ tag: 'role', id: 'r', kind: 'group' });
    expect(record(yaml('- !resource', '  id: r', '  kind: chain'))).toMatchObject({ tag: 'resource', kind: 'chain' });
  });

  it('refuses unknown tags with Conjur\'s message and position', () => {
    expectError(yaml('- !user alice', '- !foo bar'), "Unrecognized data type '!foo'", 2, 3);
    expectError(yaml('- !user', '  owner: !robot x'), "Unrecognized data type '!robot'", 2, 10);
  });

  it('refuses tags Conjur knows but Coffer does not support', () => {
    expectError(yaml('- !include other.yml'), "Unrecognized data type '!include'", 1, 3);
    expectError(yaml('- !automatic-role', '  record: !layer l', '  role_name: use_host'), "Unrecognized data type '!automatic-role'", 1, 3);
    expectError(yaml('- !managed-role x'), "Unrecognized data type '!managed-role'", 1, 3);
  });

  it('refuses YAML language tags that could construct objects', () => {
    expectError(yaml('- !!js/function "function () {}"'), "Unrecognized data type '!!js/function'", 1, 3);
    expectError(yaml('- !!binary aGVsbG8='), "Unrecognized data type '!!binary'", 1, 3);
    expectError(yaml('- !<tag:example.com,2000:user> x'), "Unrecognized data type 'tag:example.com,2000:user'", 1, 3);
    expectError(yaml('- ! bare'), "Unrecognized data type '!'", 1, 3);
  });

  it('ignores core tags Conjur ignores (!!str)', () => {
    expect(record(yaml('- !user', '  id: !!str 123')).id).toBe('123');
  });
});

describe('parsePolicy: record attributes', () => {
  it('reads id, account, owner and annotations', () => {
    const r = record(
      yaml(
        '- !variable',
        '  id: db/password',
        '  account: other',
        '  owner: !group admins',
        '  annotations:',
        '    description: The password',
        '    rotation: 10',
        '    ratio: 1.50',
        '    enabled: true',
        '    empty:',
      ),
    );
    expect(r).toMatchObject({ tag: 'variable', id: 'db/password', account: 'other' });
    expect(r.owner).toEqual({ node: 'record', tag: 'group', id: 'admins', position: { line: 4, column: 10 } });
    // Annotation values are strings, exactly as written.
    expect([...(r.annotations ?? [])]).toEqual([
      ['description', 'The password'],
      ['rotation', '10'],
      ['ratio', '1.50'],
      ['enabled', 'true'],
      ['empty', ''],
    ]);
  });

  it('reads !variable kind and mime_type', () => {
    const r = record(yaml('- !variable', '  id: key', '  kind: private key', '  mime_type: application/x-pem-file'));
    expect(r).toMatchObject({ variableKind: 'private key', mimeType: 'application/x-pem-file' });
    expect(r.kind).toBeUndefined();
  });

  it('reads !user uidnumber, public_keys and restricted_to', () => {
    const r = record(
      yaml(
        '- !user',
        '  id: alice',
        '  uidnumber: 1000',
        '  public_keys:',
        '  - ssh-rsa AAAA alice@laptop',
        '  restricted_to: 10.0.0.1',
      ),
    );
    expect(r).toMatchObject({ uidnumber: 1000, publicKeys: ['ssh-rsa AAAA alice@laptop'] });
    expect(r.restrictedTo).toEqual([{ value: '10.0.0.1', position: { line: 6, column: 18 } }]);
  });

  it('accepts restricted_to as a list', () => {
    const r = record(yaml('- !host', '  id: a', '  restricted_to: [ 192.168.0.1, 192.168.1.10/32 ]'));
    expect(r.restrictedTo?.map((c) => c.value)).toEqual(['192.168.0.1', '192.168.1.10/32']);
  });

  it('reads !group gidnumber', () => {
    expect(record(yaml('- !group', '  id: g', '  gidnumber: 2000')).gidnumber).toBe(2000);
  });

  it('reads a policy body, flattening nested lists', () => {
    const r = record(yaml('- !policy', '  id: db', '  body:', '  - !variable a', '  - [ !variable b, [ !variable c ] ]'));
    expect(r.body?.map((s) => (s as ParsedRecord).id)).toEqual(['a', 'b', 'c']);
  });

  it('gives a policy without body an empty body', () => {
    expect(record(yaml('- !policy db')).body).toEqual([]);
  });

  it('reads !host-factory layers, typing untagged entries as layers', () => {
    const r = record(yaml('- !host-factory', '  id: hf', '  layers: [ !layer a, b ]', '  role: !group owners'));
    expect(r.layers?.map((l) => [l.tag, l.id])).toEqual([
      ['layer', 'a'],
      ['layer', 'b'],
    ]);
    expect(r.role).toMatchObject({ tag: 'group', id: 'owners' });
  });

  it('accepts the singular layer attribute', () => {
    expect(record(yaml('- !host-factory', '  id: hf', '  layer: !layer a')).layers?.map((l) => l.id)).toEqual(['a']);
  });

  it('accepts an untagged mapping where a role is expected (a !role)', () => {
    const r = record(yaml('- !user', '  id: a', '  owner: { id: admins, kind: group }'));
    expect(r.owner).toMatchObject({ tag: 'role', id: 'admins', kind: 'group' });
  });
});

describe('parsePolicy: statements', () => {
  it('reads a grant with plural attributes', () => {
    const g = only(
      yaml('- !grant', '  roles: [ !group a, !group b ]', '  members:', '  - !user alice', '  - !host h'),
    ) as ParsedGrant;
    expect(g.node).toBe('grant');
    expect(g.roles.map((r) => r.id)).toEqual(['a', 'b']);
    expect(g.members.map((m) => [m.role.tag, m.role.id, m.admin])).toEqual([
      ['user', 'alice', false],
      ['host', 'h', false],
    ]);
    expect(g.position).toEqual({ line: 1, column: 3 });
  });

  it('reads a grant with singular attributes', () => {
    const g = only(yaml('- !grant', '  role: !group a', '  member: !user alice')) as ParsedGrant;
    expect(g.roles.map((r) => r.id)).toEqual(['a']);
    expect(g.members.map((m) => m.role.id)).toEqual(['alice']);
  });

  it('gives admin option through !member and untagged member mappings', () => {
    const g = only(
      yaml(
        '- !grant',
        '  role: !group a',
        '  members:',
        '  - !member { role: !user alice, admin: true }',
        '  - { role: !user bob, admin: yes }',
        '  - role: !user carol',
        '    admin: false',
        '  - !member',
        '    roles: !user dave',
      ),
    ) as ParsedGrant;
    expect(g.members.map((m) => [m.role.id, m.admin])).toEqual([
      ['alice', true],
      ['bob', true],
      ['carol', false],
      ['dave', false],
    ]);
  });

  it('reads a revoke', () => {
    const r = only(yaml('- !revoke', '  role: !group a', '  members: [ !user alice ]')) as ParsedRevoke;
    expect(r.node).toBe('revoke');
    expect(r.roles.map((x) => x.id)).toEqual(['a']);
    expect(r.members.map((x) => [x.tag, x.id])).toEqual([['user', 'alice']]);
  });

  it('reads a permit, privileges as strings', () => {
    const p = only(
      yaml('- !permit', '  roles: !layer frontend', '  privileges: [ read, execute ]', '  resources: [ !variable a, !webservice w ]'),
    ) as ParsedPermit;
    expect(p).toMatchObject({ node: 'permit', privileges: ['read', 'execute'] });
    expect(p.roles.map((r) => r.id)).toEqual(['frontend']);
    expect(p.resources.map((r) => [r.tag, r.id])).toEqual([
      ['variable', 'a'],
      ['webservice', 'w'],
    ]);
  });

  it('reads a permit with singular attributes', () => {
    const p = only(yaml('- !permit', '  role: !user bob', '  privilege: fry', '  resource: !variable a')) as ParsedPermit;
    expect(p.privileges).toEqual(['fry']);
  });

  it('reads a deny', () => {
    const d = only(yaml('- !deny', '  role: !user bob', '  privilege: read', '  resource: !variable a')) as ParsedPermit;
    expect(d.node).toBe('deny');
  });

  it('reads a delete', () => {
    const d = only(yaml('- !delete', '  record: !variable a')) as ParsedDelete;
    expect(d.records.map((r) => [r.tag, r.id])).toEqual([['variable', 'a']]);
  });

  it('reads an empty resource value as a blank resource reference (Conjur: "resource has a blank id")', () => {
    const p = only(yaml('- !permit', '  role: !user bob', '  privilege: [ execute ]', '  resource:')) as ParsedPermit;
    expect(p.resources).toHaveLength(1);
    expect(p.resources[0]).toMatchObject({ tag: 'resource', id: '' });
  });
});

describe('parsePolicy: anchors and aliases', () => {
  it('shares the record an alias points at', () => {
    const { statements } = parsePolicy(
      yaml('- &pw !variable password', '- !permit', '  role: !user bob', '  privilege: read', '  resource: *pw'),
    );
    const permit = statements[1] as ParsedPermit;
    expect(permit.resources[0]).toBe(statements[0]);
  });

  it('expands an alias to a whole list', () => {
    const g = parsePolicy(
      yaml(
        '- !group &devs-group developers',
        '- !grant',
        '  role: *devs-group',
        '  members: &devs',
        '    - !user alice',
        '    - !user bob',
        '- !grant',
        '  role: !group other',
        '  members: *devs',
      ),
    ).statements[2] as ParsedGrant;
    expect(g.members.map((m) => m.role.id)).toEqual(['alice', 'bob']);
  });

  it('flattens aliased lists of statements', () => {
    const { statements } = parsePolicy(
      yaml('- &vars', '  - !variable a', '  - !variable b', '- !policy', '  id: p', '  body: *vars'),
    );
    expect(statements.map((s) => (s as ParsedRecord).id)).toEqual(['a', 'b', 'p']);
    expect((statements[2] as ParsedRecord).body).toEqual([statements[0], statements[1]]);
  });

  it('lists a statement reached twice through aliases once', () => {
    const { statements } = parsePolicy(yaml('- &u !user alice', '- *u'));
    expect(statements).toHaveLength(1);
  });

  it('keeps alias bombs linear', () => {
    const lines = ['- &a [ !user u ]'];
    for (let i = 1; i < 30; i++) lines.push(`- &a${i} [ ${Array(10).fill(i === 1 ? '*a' : `*a${i - 1}`).join(', ')} ]`);
    expect(parsePolicy(yaml(...lines)).statements).toHaveLength(1);
  });

  it('refuses an unknown alias', () => {
    expectError(yaml('- !user alice', '- *nope'), "Unknown anchor 'nope'", 2, 3);
  });

  it('refuses a redefined anchor, like Conjur', () => {
    expectError(yaml('- &a !user a', '- &a !user b'), 'Duplicate anchor a', 2, 3);
  });

  it('refuses an alias inside its own anchor', () => {
    expectError(yaml('- &a [ *a ]'), "Alias '*a' refers to a node that contains it", 1, 8);
    expectError(yaml('&root', '- !user a', '- *root'), "Alias '*root' refers to a node that contains it", 3, 3);
  });
});

describe('parsePolicy: attribute errors', () => {
  it('refuses unknown attributes, naming Conjur\'s type', () => {
    expectError(yaml('- !user', '  id: alice', '  k: v'), "No such attribute 'k' on type User", 3, 3);
    expectError(yaml('- !host-factory', '  id: hf', '  hosts: []'), "No such attribute 'hosts' on type HostFactory", 3, 3);
    expectError(yaml('- !grant', '  role: !group g', '  admin: true'), "No such attribute 'admin' on type Grant", 3, 3);
  });

  it('refuses attributes a type lacks even if a sibling type has them', () => {
    expectError(yaml('- !host', '  id: h', '  uidnumber: 5'), "No such attribute 'uidnumber' on type Host", 3, 3);
    expectError(yaml('- !role', '  id: r', '  kind: group', '  owner: !user a'), "No such attribute 'owner' on type Role", 4, 3);
    expectError(yaml('- !variable', '  id: v', '  body: []'), "No such attribute 'body' on type Variable", 3, 3);
  });

  it('refuses YAML merge keys (treated as an unknown attribute)', () => {
    expectError(yaml('- !user', '  <<: { id: alice }'), "No such attribute '<<' on type User", 2, 3);
    expectError(yaml('%YAML 1.1', '---', '- !user', '  id: a', '  <<: { owner: !user b }'), "No such attribute '<<' on type User", 5, 3);
  });

  it('refuses a repeated attribute', () => {
    expectError(yaml('- !user', '  id: alice', '  id: bob'), 'Duplicate attribute: id', 3, 3);
  });

  it('refuses the singular and plural form of the same attribute together', () => {
    expectError(
      yaml('- !grant', '  role: !group g', '  member: !user a', '  members: [ !user b ]'),
      'Duplicate attribute: members',
      4,
      3,
    );
  });

  it('refuses a repeated annotation', () => {
    expectError(yaml('- !user', '  id: a', '  annotations:', '    x: 1', '    x: 2'), 'Duplicate attribute: x', 5, 5);
  });

  it('refuses an untagged mapping where no type can be inferred', () => {
    expectError(yaml('- id: alice'), 'No type given or inferred for sequence entry', 1, 3);
    expectError(yaml('- !policy', '  id: p', '  body:', '  - id: x'), 'No type given or inferred for sequence entry', 4, 5);
    expectError(yaml('- !user', '  id: { a: b }'), "Attribute 'id' can't be a mapping", 2, 7);
  });

  it('refuses an untagged scalar as a statement', () => {
    expectError(yaml('- !user a', '- alice'), 'No type given or inferred for sequence entry', 2, 3);
  });

  it('refuses a member as a statement', () => {
    expectError(yaml('- !member { role: !user a }'), 'Expected a policy statement, got Member', 1, 3);
  });

  it('checks attribute types like Conjur', () => {
    expectError(
      yaml('- !grant', '  role: !variable v', '  member: !user a'),
      "Expected a Role for field 'role', got Variable",
      2,
      9,
    );
    expectError(yaml('- !grant', '  role: admins', '  member: !user a'), "Expected a Role for field 'role', got String", 2, 9);
    expectError(
      yaml('- !permit', '  role: !user a', '  privilege: read', '  resource: !role { id: r, kind: group }'),
      "Expected a Resource for field 'resource', got Role",
      4,
      13,
    );
    expectError(yaml('- !host-factory', '  layers: [ !group g ]'), "Expected a Layer for field 'layer', got Group", 2, 13);
    expectError(yaml('- !user', '  id: a', '  uidnumber: abc'), "Expected a integer for field 'uidnumber', got String", 3, 14);
    expectError(yaml('- !user', '  id: a', '  owner: !variable v'), "Expected a Role for field 'owner', got Variable", 3, 10);
    expectError(yaml('- !user', '  id: [ a, b ]'), "Expected a string for field 'id', got Array", 2, 7);
    expectError(
      yaml('- !grant', '  role: !group g', '  member: !member { role: !user a, admin: maybe }'),
      "Expected a boolean for field 'admin', got String",
      3,
      43,
    );
    expectError(yaml('- !user', '  id: a', '  annotations: [ x ]'), "Expected a hash for field 'annotations', got Array", 3, 16);
    expectError(yaml('- !user', '  id: a', '  annotations:', '    x: [ 1 ]'), "Expected a string for annotation 'x', got Array", 4, 8);
    expectError(yaml('- !policy', '  id: p', '  body: !user a'), "Expected a sequence for field 'body', got User", 3, 9);
  });

  it('refuses an untagged scalar member (Conjur cannot build a Member from a string)', () => {
    expectError(yaml('- !grant', '  role: !group g', '  members: [ alice ]'), "Expected a Member for field 'member', got String", 3, 14);
  });

  it('checks revoke members as roles, so a member mapping is refused', () => {
    expectError(
      yaml('- !revoke', '  role: !group g', '  member: { role: !user a }'),
      "Expected a Role for field 'member', got Member",
      3,
      11,
    );
  });

  it('requires a kind on !role and !resource', () => {
    expectError(yaml('- !role r'), "Missing attribute 'kind' on type Role", 1, 3);
    expectError(yaml('- !resource', '  id: r'), "Missing attribute 'kind' on type Resource", 1, 3);
  });

  it('requires a record on !delete and a role on !member', () => {
    expectError(yaml('- !delete {}'), "Missing attribute 'record' on type Delete", 1, 3);
    expectError(yaml('- !grant', '  role: !group g', '  member: !member { admin: true }'), "Missing attribute 'role' on type Member", 3, 11);
  });

  it('refuses a scalar for a type that has no id', () => {
    expectError(yaml('- !grant everything'), "No such attribute 'id' on type Grant", 1, 3);
    expectError(yaml('- !delete', '  record: alice'), "Expected a Resource for field 'record', got String", 2, 11);
  });

  it('refuses an untagged mapping as a deleted record (Conjur\'s abstract Record type)', () => {
    expectError(yaml('- !delete', '  record: { id: a }'), "No such attribute 'id' on type Record", 2, 13);
  });
});
