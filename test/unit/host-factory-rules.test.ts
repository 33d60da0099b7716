/** Host-factory request rules: ISO 8601 expirations, token parameters, host ids, annotations. */
import { describe, expect, it } from 'vitest';
import { formatExpiration, parseIso8601, tokenId, tokenRules, HostFactoryTokenHasher, looksLikeToken } from '../../src/hostfactory/tokens.js';
import { factoryNamespace, validateAnnotations, validateHostId } from '../../src/hostfactory/host-request.js';

const NOW = Date.UTC(2030, 0, 1);

describe('parseIso8601', () => {
  it('reads the forms clients send, UTC when no offset is given (as Ruby, unlike Date.parse)', () => {
    expect(parseIso8601('2050-12-31T00:00:00Z')).toBe(Date.UTC(2050, 11, 31));
    expect(parseIso8601('2050-12-31')).toBe(Date.UTC(2050, 11, 31));
    expect(parseIso8601('2050-12-31T00:00:00')).toBe(Date.UTC(2050, 11, 31));
    expect(parseIso8601('2050-12-31T01:30:00+01:30')).toBe(Date.UTC(2050, 11, 31));
    expect(parseIso8601('2050-12-30T19:00:00-0500')).toBe(Date.UTC(2050, 11, 31));
    expect(parseIso8601('2050-12-31T00:00:00.123456Z')).toBe(Date.UTC(2050, 11, 31) + 123);
    expect(parseIso8601('2050-12-31T00:00Z')).toBe(Date.UTC(2050, 11, 31));
    expect(parseIso8601('2048-02-29T00:00:00Z')).toBe(Date.UTC(2048, 1, 29));
  });

  it('refuses impossible dates and anything that is not ISO 8601', () => {
    for (const bad of ['2050-02-30T00:00:00Z', '2049-02-29', '2050-13-01', '2050-12-31T24:00:00Z', '2050-12-31T00:60:00Z',
      '2050-12-31T00:00:00+24:00', 'tomorrow', '12/31/2050', '2050-12-31T00:00:00 01:00', '', 'Thu, 01 Jan 2050 00:00:00 GMT']) {
      expect({ bad, parsed: parseIso8601(bad) }).toEqual({ bad, parsed: undefined });
    }
  });

  it('formats expirations as Conjur does (seconds, Z)', () => {
    expect(formatExpiration(Date.UTC(2050, 11, 31) + 999)).toBe('2050-12-31T00:00:00Z');
  });
});

describe('tokenRules', () => {
  it('defaults count to 1, normalizes and deduplicates CIDRs', () => {
    expect(tokenRules({ expiration: '2050-12-31', cidr: ['10.0.0.1', '10.0.0.1/32', '10.0.0.0/8'] }, NOW)).toEqual({
      expiresAt: Date.UTC(2050, 11, 31),
      count: 1,
      cidr: ['10.0.0.1/32', '10.0.0.0/8'],
    });
    expect(tokenRules({ expiration: '2050-12-31', count: '100', cidr: [] }, NOW).count).toBe(100);
  });

  it('refuses a missing, malformed or past expiration, a bad count and bad CIDRs', () => {
    const bad: [Parameters<typeof tokenRules>[0], RegExp][] = [
      [{ cidr: [] }, /param is missing or the value is empty: expiration/],
      [{ expiration: ' ', cidr: [] }, /param is missing/],
      [{ expiration: '2029-12-31T23:59:59Z', cidr: [] }, /must be in the future/],
      [{ expiration: '2030-01-01T00:00:00Z', cidr: [] }, /must be in the future/],
      [{ expiration: '2050-12-31', count: '1.5', cidr: [] }, /'count' must be an integer from 1 to 100/],
      [{ expiration: '2050-12-31', count: '-1', cidr: [] }, /'count'/],
      [{ expiration: '2050-12-31', cidr: ['1.895.abc.0/32'] }, /^Invalid IP address or CIDR range '1\.895\.abc\.0\/32'$/],
      [{ expiration: '2050-12-31', cidr: ['x'.repeat(500)] }, /^Invalid IP address or CIDR range 'x{64}…'$/],
      [{ expiration: '2050-12-31', cidr: Array.from({ length: 101 }, () => '10.0.0.0/8') }, /at most 100 ranges/],
    ];
    for (const [params, message] of bad) {
      expect(() => tokenRules(params, NOW)).toThrow(message);
    }
  });
});

describe('token hashing', () => {
  it('is keyed: the same token under another pepper hashes differently; the id is 16 hex digits', () => {
    const a = new HostFactoryTokenHasher(Buffer.alloc(32, 1)).hash('abc');
    const b = new HostFactoryTokenHasher(Buffer.alloc(32, 2)).hash('abc');
    expect(a.equals(b)).toBe(false);
    expect(tokenId(a)).toMatch(/^[0-9a-f]{16}$/);
    expect(looksLikeToken('0123456789abcdefghjk')).toBe(true);
    expect(looksLikeToken('short')).toBe(false);
    expect(looksLikeToken('UPPERCASE0123456789ABC')).toBe(false);
  });
});

describe('validateHostId', () => {
  it('confines ids to the factory\'s policy; a root factory may use any id outside conjur/', () => {
    expect(factoryNamespace('ci/jenkins/executors')).toBe('ci/jenkins');
    expect(factoryNamespace('executors')).toBe('');
    expect(validateHostId('ci/jenkins/exec-1', 'ci/jenkins/executors')).toBe('ci/jenkins/exec-1');
    expect(validateHostId('host-01', 'executors')).toBe('host-01');
    expect(() => validateHostId('ci/jenkins-evil/x', 'ci/jenkins/executors')).toThrow(/outside the host factory's policy 'ci\/jenkins'/);
    expect(() => validateHostId('ci/jenkins', 'ci/jenkins/executors')).toThrow(/outside/);
  });

  it('refuses conjur/ ids with Conjur\'s message, and empty, . and .. segments', () => {
    expect(() => validateHostId('conjur/authn-jwt/x', 'executors')).toThrow(/^Invalid id: conjur\/authn-jwt\/x$/);
    expect(() => validateHostId('/conjur/x', 'executors')).toThrow(/^Invalid id: \/conjur\/x$/);
    for (const id of ['/x', 'x/', 'a//b', './x', 'a/../b', '..']) expect(() => validateHostId(id, 'executors')).toThrow(/path segments/);
    expect(() => validateHostId(undefined, 'executors')).toThrow(/param is missing or the value is empty: id/);
    expect(() => validateHostId('a\u0007b', 'executors')).toThrow(/control character/);
    expect(() => validateHostId('a'.repeat(4097), 'executors')).toThrow(/longer than 4096/);
  });
});

describe('validateAnnotations', () => {
  it('keeps names as own properties (no prototype pollution) and refuses duplicates and bad names', () => {
    const out = validateAnnotations([['__proto__', 'x'], ['purpose', 'ci']]);
    expect(Object.keys(out)).toEqual(['__proto__', 'purpose']);
    expect(({} as Record<string, unknown>).purpose).toBeUndefined();
    expect(() => validateAnnotations([['a', '1'], ['a', '2']])).toThrow(/given more than once/);
    expect(() => validateAnnotations([['', '1']])).toThrow(/Invalid annotation name/);
    expect(() => validateAnnotations([['a\nb', '1']])).toThrow(/Invalid annotation name/);
    expect(() => validateAnnotations([['a', 'x'.repeat(4097)]])).toThrow(/at most 4096/);
  });
});
