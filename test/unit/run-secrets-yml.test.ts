import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SecretsYmlError, findSecretsFile, parseSecretsYml, type SecretSpec } from '../../src/cli/run/secrets-yml.js';

const parse = (text: string, defines: Record<string, string> = {}, env?: string): SecretSpec[] =>
  parseSecretsYml(text, env === undefined ? { defines } : { defines, env });

const one = (text: string, defines: Record<string, string> = {}): SecretSpec => {
  const specs = parse(text, defines);
  expect(specs).toHaveLength(1);
  return specs[0]!;
};

function errorOf(fn: () => unknown): SecretsYmlError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SecretsYmlError);
    return err as SecretsYmlError;
  }
  throw new Error('expected an error');
}

describe('parseSecretsYml: values and tags', () => {
  it('Should read an untagged value as a literal, in document order', () => {
    expect(parse('B: two\nA: one\n')).toEqual([
      { name: 'B', kind: 'literal', value: 'two', toFile: false },
      { name: 'A', kind: 'literal', value: 'one', toFile: false },
    ]);
  });

  it('Should keep scalars as written, like Summon reading the raw YAML node', () => {
    const specs = parse('HEX: 0x1F\nFLOAT: 1.50\nBOOL: yes\nTILDE: ~\nEMPTY:\nQUOTED: "a b"\n');
    expect(Object.fromEntries(specs.map((s) => [s.name, s.value]))).toEqual({
      HEX: '0x1F',
      FLOAT: '1.50',
      BOOL: 'yes',
      TILDE: '~',
      EMPTY: '',
      QUOTED: 'a b',
    });
  });

  it('Should keep block scalars with their newline', () => {
    expect(one('CERT: |\n  line1\n  line2\n').value).toBe('line1\nline2\n');
  });

  it('Should make !var a variable to fetch', () => {
    expect(one('DB: !var prod/db/password')).toEqual({ name: 'DB', kind: 'var', value: 'prod/db/password', toFile: false });
  });

  it('Should read !var:field NAME path as one field of the variable at path (Coffer addition)', () => {
    expect(one('PGUSER: !var:field username data/dynamic/pg-ci\n')).toEqual({ name: 'PGUSER', kind: 'var', value: 'data/dynamic/pg-ci', toFile: false, field: 'username' });
    expect(one('PGPASSWORD: !var:field:file  password   data/$E/pg\n', { E: 'dynamic' })).toEqual({ name: 'PGPASSWORD', kind: 'var', value: 'data/dynamic/pg', toFile: true, field: 'password' });
    expect(errorOf(() => parse('X: !var:field username\n')).message).toContain('needs a field name and a variable path');
    expect(errorOf(() => parse('X: !field username data/x\n')).message).toContain('goes with !var');
  });

  it('Should make !file a literal written to a file', () => {
    expect(one('KEY: !file some literal')).toEqual({ name: 'KEY', kind: 'literal', value: 'some literal', toFile: true });
  });

  it('Should combine var and file in either order', () => {
    expect(one('PEM: !var:file certs/pem')).toMatchObject({ kind: 'var', toFile: true, value: 'certs/pem' });
    expect(one('PEM: !file:var certs/pem')).toMatchObject({ kind: 'var', toFile: true });
  });

  it('Should treat !str, !int, !bool, !float and core tags as literals', () => {
    for (const tag of ['!str', '!int', '!bool', '!float', '!!str', '!!int']) {
      expect(one(`X: ${tag} 12`)).toEqual({ name: 'X', kind: 'literal', value: '12', toFile: false });
    }
    expect(one('X: !str:file text')).toMatchObject({ kind: 'literal', toFile: true });
  });

  it('Should parse default= anywhere in the tag', () => {
    expect(one("U: !var:default='admin':file db/user")).toEqual({
      name: 'U',
      kind: 'var',
      value: 'db/user',
      toFile: true,
      defaultValue: 'admin',
    });
    expect(one("U: !default='admin':var db/user")).toMatchObject({ kind: 'var', defaultValue: 'admin' });
  });

  it('Should make a lone default= a literal with a default', () => {
    expect(one("MODE: !default='fast'")).toEqual({ name: 'MODE', kind: 'literal', value: '', toFile: false, defaultValue: 'fast' });
    expect(one("MODE: !str:default='fast' slow")).toMatchObject({ value: 'slow', defaultValue: 'fast' });
  });

  it('Should run a default to the last quote, like Summon\'s greedy pattern', () => {
    expect(one("U: !var:default='a:b'c':file p").defaultValue).toBe("a:b'c");
  });

  it('Should drop an empty default, which Summon never applies', () => {
    expect(one("U: !var:default='' p")).not.toHaveProperty('defaultValue');
  });

  it('Should resolve aliases', () => {
    expect(parse('A: &p !var shared/path\nB: *p\n').map((s) => [s.name, s.kind, s.value])).toEqual([
      ['A', 'var', 'shared/path'],
      ['B', 'var', 'shared/path'],
    ]);
  });

  it('Should return no specs for an empty document or an empty map', () => {
    expect(parse('')).toEqual([]);
    expect(parse('# only a comment\n')).toEqual([]);
    expect(parse('{}')).toEqual([]);
    expect(parse('', {}, 'production')).toEqual([]);
  });
});

describe('parseSecretsYml: errors', () => {
  it('Should reject an unknown tag and give its line', () => {
    const err = errorOf(() => parse('A: one\nB: !secret x\n'));
    expect(err.line).toBe(2);
    expect(err.message).toMatch(/^secrets\.yml line 2: unknown tag !secret on B/);
  });

  it('Should reject tags Summon would match only by substring', () => {
    expect(errorOf(() => parse('A: !variable x')).message).toMatch(/unknown tag !variable/);
    expect(errorOf(() => parse('A: !var:files x')).message).toMatch(/unknown tag/);
    expect(errorOf(() => parse('A: !<tag:example.com,2000:x> x')).message).toMatch(/unknown tag/);
  });

  it('Should reject default= without quotes', () => {
    expect(errorOf(() => parse('A: !var:default=admin x')).message).toMatch(/unknown tag !var:default=admin/);
  });

  it('Should reject a !var without a path', () => {
    expect(errorOf(() => parse('A: x\nB: !var\n')).message).toBe('secrets.yml line 2: B: !var needs a variable path');
    expect(errorOf(() => parse('B: !var $P', { P: '' })).message).toMatch(/needs a variable path/);
  });

  it('Should report YAML syntax errors with a line', () => {
    const err = errorOf(() => parse('A: [1\nB: 2\n'));
    expect(err.line).toBeGreaterThanOrEqual(1);
    expect(err.message).toMatch(/^secrets\.yml line \d+: /);
  });

  it('Should reject duplicate keys', () => {
    expect(errorOf(() => parse('A: 1\nA: 2\n')).message).toMatch(/line 2: .*unique/);
  });

  it('Should reject a document that is not a map', () => {
    expect(errorOf(() => parse('- a\n- b\n')).message).toMatch(/expected a map/);
    expect(errorOf(() => parse('just text')).message).toMatch(/expected a map/);
  });

  it('Should reject names that cannot be environment variables', () => {
    expect(errorOf(() => parse('"A=B": x')).message).toMatch(/invalid environment variable name/);
    expect(errorOf(() => parse('"": x')).message).toMatch(/invalid environment variable name/);
  });

  it('Should reject a tagged map or list, which cannot be a path', () => {
    expect(errorOf(() => parse('A: !var\n  x: 1\n')).message).toMatch(/A: a tagged value must be a single string/);
  });
});

describe('parseSecretsYml: interpolation', () => {
  it('Should substitute $name and ${name} from the defines', () => {
    expect(one('P: !var $ENV/db/${APP}_pw', { ENV: 'prod', APP: 'shop' }).value).toBe('prod/db/shop_pw');
  });

  it('Should take the longest word after $', () => {
    expect(() => parse('P: $ENV_x', { ENV: 'prod' })).toThrow(/variable ENV_x not declared/);
    expect(one('P: ${ENV}_x', { ENV: 'prod' }).value).toBe('prod_x');
  });

  it('Should turn $$ into $', () => {
    expect(one('PROFIT: $$ $$ $$').value).toBe('$ $ $');
    expect(one('P: $$ENV', { ENV: 'x' }).value).toBe('$ENV');
  });

  it('Should name the undeclared variable and its line', () => {
    const err = errorOf(() => parse('A: ok\nRAILS_ENV: $ENVIRONMENT\n', { ENV: 'production' }));
    expect(err.line).toBe(2);
    expect(err.message).toContain('variable ENVIRONMENT not declared');
  });

  it('Should not read interpolation from anywhere but the defines', () => {
    expect(() => parse('P: $HOME')).toThrow(/variable HOME not declared/);
    expect(() => parse('P: $constructor')).toThrow(/variable constructor not declared/);
  });

  it('Should leave a $ that starts no name alone', () => {
    expect(one("P: 'cost $-x or ${ or $. or $'").value).toBe('cost $-x or ${ or $. or $');
  });

  it('Should count digits as name characters, as Go\'s \\w does', () => {
    expect(() => parse('P: costs $5')).toThrow(/variable 5 not declared/);
  });

  it('Should insert define values verbatim, without expanding them again', () => {
    expect(one('P: $A', { A: '$B=x' }).value).toBe('$B=x');
  });

  it('Should interpolate literals and !file too, but never keys or defaults', () => {
    const specs = parse("WHAT_IS_$ENV: $ENV\nF: !file:default='$ENV' $ENV/x\n", { ENV: 'world' });
    expect(specs[0]).toMatchObject({ name: 'WHAT_IS_$ENV', value: 'world' });
    expect(specs[1]).toMatchObject({ value: 'world/x', defaultValue: '$ENV', toFile: true });
  });
});

describe('parseSecretsYml: environments', () => {
  const sections = [
    'common:',
    '  SHARED: !var common/shared',
    '  OVERRIDDEN: from-common',
    'production:',
    '  DB: !var prod/db',
    '  OVERRIDDEN: from-production',
    'staging:',
    '  DB: !var staging/db',
    '',
  ].join('\n');

  it('Should pick the section and merge common under it', () => {
    expect(parse(sections, {}, 'production')).toEqual([
      { name: 'DB', kind: 'var', value: 'prod/db', toFile: false },
      { name: 'OVERRIDDEN', kind: 'literal', value: 'from-production', toFile: false },
      { name: 'SHARED', kind: 'var', value: 'common/shared', toFile: false },
    ]);
  });

  it('Should use a default section when there is no common one', () => {
    const text = 'default:\n  A: from-default\nqa:\n  B: b\n';
    expect(parse(text, {}, 'qa').map((s) => s.name)).toEqual(['B', 'A']);
  });

  it('Should merge only common when both common and default exist, as Summon does', () => {
    const text = 'common:\n  A: a\ndefault:\n  B: b\nqa:\n  C: c\n';
    expect(parse(text, {}, 'qa').map((s) => s.name)).toEqual(['C', 'A']);
  });

  it('Should allow selecting the common section itself', () => {
    expect(parse(sections, {}, 'common').map((s) => s.name)).toEqual(['SHARED', 'OVERRIDDEN']);
  });

  it('Should fail for an environment that is not there', () => {
    expect(errorOf(() => parse(sections, {}, 'dev')).message).toBe("No such environment 'dev' found in secrets file");
  });

  it('Should fail when a top-level value is not a section', () => {
    const text = 'production:\n  A: a\nLOOSE: value\n';
    expect(errorOf(() => parse(text, {}, 'production')).message).toBe(
      "No such environment 'production' found in secrets file",
    );
    expect(() => parse('production:\nstaging:\n  A: a\n', {}, 'staging')).toThrow(/No such environment/);
  });

  it('Should interpolate only the sections in use', () => {
    const text = 'production:\n  A: !var $ENV/a\nstaging:\n  B: $UNDECLARED\n';
    expect(parse(text, { ENV: 'prod' }, 'production')[0]!.value).toBe('prod/a');
  });

  it('Should read sections as empty literals without -e, which Summon does not reject', () => {
    expect(parse(sections)).toEqual([
      { name: 'common', kind: 'literal', value: '', toFile: false },
      { name: 'production', kind: 'literal', value: '', toFile: false },
      { name: 'staging', kind: 'literal', value: '', toFile: false },
    ]);
  });

  it('Should treat an empty -e as no environment', () => {
    expect(parse('A: a\n', {}, '')).toHaveLength(1);
  });
});

describe('findSecretsFile', () => {
  let top = '';
  afterEach(() => {
    if (top) rmSync(top, { recursive: true, force: true });
  });

  function tree(): { top: string; deep: string } {
    top = mkdtempSync(join(tmpdir(), 'coffer-find-'));
    const deep = join(top, 'a', 'b', 'c');
    mkdirSync(deep, { recursive: true });
    return { top, deep };
  }

  it('Should resolve the name against the start directory without --up', () => {
    expect(findSecretsFile('/srv/app', 'secrets.yml', false)).toBe('/srv/app/secrets.yml');
    expect(findSecretsFile('/srv/app', '/etc/s.yml', false)).toBe('/etc/s.yml');
  });

  it('Should find the file in the start directory', () => {
    const { deep } = tree();
    writeFileSync(join(deep, 'secrets.yml'), '');
    expect(findSecretsFile(deep, 'secrets.yml', true)).toBe(join(deep, 'secrets.yml'));
  });

  it('Should walk up to a parent directory', () => {
    const { top: root, deep } = tree();
    writeFileSync(join(root, 'secrets.yml'), '');
    expect(findSecretsFile(deep, 'secrets.yml', true)).toBe(join(root, 'secrets.yml'));
  });

  it('Should handle a relative name with directories', () => {
    const { top: root, deep } = tree();
    mkdirSync(join(root, 'conf'));
    writeFileSync(join(root, 'conf', 's.yml'), '');
    expect(findSecretsFile(deep, 'conf/s.yml', true)).toBe(join(root, 'conf', 's.yml'));
  });

  it('Should fail with Summon\'s message at the root', () => {
    const { deep } = tree();
    const name = `no-such-file-${process.pid}-${Date.now()}.yml`;
    expect(() => findSecretsFile(deep, name, true)).toThrow(
      `unable to locate file specified (${name}): reached root of file system`,
    );
  });

  it('Should refuse an absolute path with --up', () => {
    expect(() => findSecretsFile('/tmp', '/foo/bar/baz', true)).toThrow(
      'file specified (/foo/bar/baz) is an absolute path: will not recurse up',
    );
  });
});
