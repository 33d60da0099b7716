import { describe, expect, it } from 'vitest';
import { parseDuration, parseRunArgs, RunUsageError } from '../../src/cli/run/args.js';
import { fullIdOf } from '../../src/cli/run/batch-fetch.js';
import { childBaseEnv } from '../../src/cli/commands/run.js';

describe('parseRunArgs', () => {
  it('Should default to secrets.yml and take the command after --', () => {
    expect(parseRunArgs(['--', 'ls', '-la'])).toEqual({
      file: 'secrets.yml', up: false, defines: {}, ignore: [], ignoreAll: false, help: false, command: ['ls', '-la'],
    });
  });

  it('Should read every Summon option, in short, long and = forms', () => {
    const args = parseRunArgs([
      '-f', 'ci/secrets.yml', '--up', '-e', 'prod', '-D', 'A=1', '--D=B=x=y', '--yaml', 'X: y',
      '-i', 'ONE', '--ignore=two/path', '-I', '--timeout', '15m', 'deploy.sh', '--verbose',
    ]);
    expect(args).toEqual({
      file: 'ci/secrets.yml', up: true, environment: 'prod', defines: { A: '1', B: 'x=y' }, yaml: 'X: y',
      ignore: ['ONE', 'two/path'], ignoreAll: true, timeoutMs: 900_000, help: false, command: ['deploy.sh', '--verbose'],
    });
    expect(parseRunArgs(['--environment=staging', '--ignore-all', 'x'])).toMatchObject({ environment: 'staging', ignoreAll: true });
  });

  it('Should stop at the first argument that is not an option, so the command keeps its own options', () => {
    expect(parseRunArgs(['-e', 'prod', 'terraform', 'apply', '-auto-approve']).command).toEqual(['terraform', 'apply', '-auto-approve']);
    expect(parseRunArgs(['-', 'x']).command).toEqual(['-', 'x']);
    expect(parseRunArgs([]).command).toEqual([]);
  });

  it('Should let a later -D win and accept bool values written out', () => {
    expect(parseRunArgs(['-D', 'A=1', '-D', 'A=2', 'x']).defines).toEqual({ A: '2' });
    expect(parseRunArgs(['--up=false', 'x']).up).toBe(false);
  });

  it('Should refuse unknown options, Summon-only options, missing values and -D without a name', () => {
    const msg = (argv: string[]) => {
      try {
        parseRunArgs(argv);
      } catch (err) {
        expect(err).toBeInstanceOf(RunUsageError);
        return (err as Error).message;
      }
      throw new Error('expected a RunUsageError');
    };
    expect(msg(['--bogus', 'x'])).toBe('unknown option --bogus (see coffer run --help)');
    expect(msg(['-p', 'summon-conjur', 'x'])).toMatch(/^-p is not supported/);
    expect(msg(['-f'])).toBe('option -f needs a value');
    expect(msg(['-D', '=v', 'x'])).toMatch(/^-D expects name=value/);
    expect(msg(['-D', 'novalue', 'x'])).toMatch(/^-D expects name=value/);
    expect(msg(['-I=maybe', 'x'])).toMatch(/takes no value/);
  });

  it('Should not echo a malformed -D argument (it may be a value someone typed there)', () => {
    expect(() => parseRunArgs(['-D', 'hunter2', 'x'])).toThrow(RunUsageError);
    expect(() => parseRunArgs(['-D', 'hunter2', 'x'])).not.toThrow(/hunter2/);
    expect(() => parseRunArgs(['-D', '=hunter2', 'x'])).not.toThrow(/hunter2/);
  });
});

describe('parseDuration', () => {
  it('Should read GNU timeout and Go durations', () => {
    expect(parseDuration('90')).toBe(90_000);
    expect(parseDuration('1.5')).toBe(1500);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('15m')).toBe(900_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2d')).toBe(172_800_000);
  });

  it('Should refuse nonsense, zero, ambiguity and more than setTimeout can hold', () => {
    for (const bad of ['', 'soon', '1x', '-5', '0', '0s', '1h30', 'm', '30d']) {
      expect(() => parseDuration(bad)).toThrow(RunUsageError);
    }
  });
});

describe('fullIdOf', () => {
  it('Should name variables the way the batch endpoint (and summon-conjur) does', () => {
    expect(fullIdOf('ci/db/pw', 'acme')).toBe('acme:variable:ci/db/pw');
    expect(fullIdOf('variable:ci/db/pw', 'acme')).toBe('acme:variable:ci/db/pw');
    expect(fullIdOf('other:variable:x', 'acme')).toBe('other:variable:x');
    expect(() => fullIdOf(':x', 'acme')).toThrow(/not a variable id/);
    expect(() => fullIdOf('variable:', 'acme')).toThrow(/not a variable id/);
  });
});

describe('childBaseEnv', () => {
  it('Should drop the credentials the runner used and keep everything else', () => {
    const env = {
      PATH: '/bin', CONJUR_APPLIANCE_URL: 'https://c', CONJUR_AUTHN_LOGIN: 'host/x',
      CONJUR_AUTHN_API_KEY: 'k', COFFER_API_KEY: 'k', CONJUR_AUTHN_TOKEN: 't', COFFER_TOKEN: 't',
    };
    expect(childBaseEnv(env)).toEqual({ PATH: '/bin', CONJUR_APPLIANCE_URL: 'https://c', CONJUR_AUTHN_LOGIN: 'host/x' });
    expect(env.CONJUR_AUTHN_API_KEY).toBe('k'); // the caller's object is untouched
  });
});
