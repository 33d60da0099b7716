/**
 * Host-factory request rules exactly at their limits, aimed at mutants of
 * src/hostfactory/ (npm run mutation -- --module hostfactory): count 0/1/100/101,
 * CIDR lists and lengths at the cap, token shapes at 15/16/128/129 characters,
 * annotation counts and sizes at the cap, offsets and fractions of ISO 8601.
 */
import { describe, expect, it } from 'vitest';
import { MAX_TOKEN_CIDRS, MAX_TOKENS_PER_REQUEST, formatExpiration, looksLikeToken, parseIso8601, tokenId, tokenRules } from '../../src/hostfactory/tokens.js';
import { MAX_ANNOTATIONS, factoryNamespace, validateAnnotations, validateHostId } from '../../src/hostfactory/host-request.js';

const NOW = Date.UTC(2030, 0, 1);
const rules = (p: Partial<Parameters<typeof tokenRules>[0]>) => tokenRules({ expiration: '2050-12-31', cidr: [], ...p }, NOW);

describe('tokenRules at its limits', () => {
  it('count: 1 and 100 accepted, 0 and 101 refused; blank means 1', () => {
    expect(MAX_TOKENS_PER_REQUEST).toBe(100);
    expect(rules({ count: '1' }).count).toBe(1);
    expect(rules({ count: ' 100 ' }).count).toBe(100);
    expect(rules({ count: '  ' }).count).toBe(1);
    expect(rules({ count: '007' }).count).toBe(7);
    for (const bad of ['0', '101', '1000000', '1e2', '0x10', 'two']) expect(() => rules({ count: bad }), bad).toThrow(/'count' must be an integer from 1 to 100/);
  });

  it('expiration: one millisecond after now is accepted, now is refused', () => {
    expect(rules({ expiration: '2030-01-01T00:00:00.001Z' }).expiresAt).toBe(NOW + 1);
    expect(() => rules({ expiration: '2030-01-01T00:00:00.000Z' })).toThrow(/future/);
    expect(() => rules({ expiration: 'garbage' })).toThrow(/must be an ISO 8601 date-time/);
  });

  it(`CIDRs: ${MAX_TOKEN_CIDRS} accepted, one more refused; 64 characters accepted, 65 refused; trimmed`, () => {
    const many = Array.from({ length: MAX_TOKEN_CIDRS }, (_, i) => `10.0.${i}.0/24`);
    expect(rules({ cidr: many }).cidr).toHaveLength(MAX_TOKEN_CIDRS);
    expect(() => rules({ cidr: [...many, '10.1.0.0/24'] })).toThrow(/at most 100 ranges/);
    const padded = `${' '.repeat(55)}10.0.0.1`; // 63 characters, trimmed
    expect(rules({ cidr: [padded] }).cidr).toEqual(['10.0.0.1/32']);
    expect(rules({ cidr: [`${' '.repeat(56)}10.0.0.1`] }).cidr).toEqual(['10.0.0.1/32']); // exactly 64
    expect(() => rules({ cidr: [`${' '.repeat(57)}10.0.0.1`] })).toThrow(/Invalid IP address or CIDR range/); // 65
  });
});

describe('token shape', () => {
  it('16 to 128 lowercase base32-ish characters', () => {
    expect(looksLikeToken('a'.repeat(16))).toBe(true);
    expect(looksLikeToken('0'.repeat(128))).toBe(true);
    expect(looksLikeToken('a'.repeat(15))).toBe(false);
    expect(looksLikeToken('a'.repeat(129))).toBe(false);
    expect(looksLikeToken(`${'a'.repeat(20)}\n`)).toBe(false);
    expect(looksLikeToken(`x${'a'.repeat(20)}-`)).toBe(false);
    expect(looksLikeToken(` ${'a'.repeat(20)}`)).toBe(false);
  });

  it('the id is the first 8 bytes of the hash in hex', () => {
    expect(tokenId(Buffer.from('0123456789abcdef0123', 'hex'))).toBe('0123456789abcdef');
  });
});

describe('host ids and annotations at their limits', () => {
  it('a namespace is everything before the last slash', () => {
    expect(factoryNamespace('a/b/c')).toBe('a/b');
    expect(factoryNamespace('/x')).toBe('');
    expect(validateHostId('ci/x', 'ci/f')).toBe('ci/x');
    expect(() => validateHostId('cix', 'ci/f')).toThrow(/outside/);
    expect(() => validateHostId('', 'f')).toThrow(/param is missing/);
    expect(() => validateHostId('conjurx/../a', 'f')).toThrow(/path segments/);
    expect(validateHostId('conjurx/a', 'f')).toBe('conjurx/a');
    expect(validateHostId('.a/..b', 'f')).toBe('.a/..b');
  });

  it(`${MAX_ANNOTATIONS} annotations accepted, one more refused; names up to 255, values up to 4096, no NUL or control characters`, () => {
    const fifty = Array.from({ length: MAX_ANNOTATIONS }, (_, i): [string, string] => [`n${i}`, 'v']);
    expect(Object.keys(validateAnnotations(fifty))).toHaveLength(MAX_ANNOTATIONS);
    expect(() => validateAnnotations([...fifty, ['extra', 'v']])).toThrow(/At most 50 annotations/);
    expect(validateAnnotations([['n'.repeat(255), 'v'.repeat(4096)]])).toEqual({ ['n'.repeat(255)]: 'v'.repeat(4096) });
    expect(() => validateAnnotations([['n'.repeat(256), 'v']])).toThrow(/Invalid annotation name/);
    expect(() => validateAnnotations([['a\u007f', 'v']])).toThrow(/Invalid annotation name/);
    expect(() => validateAnnotations([['a\u001f', 'v']])).toThrow(/Invalid annotation name/);
    expect(() => validateAnnotations([['a', 'x\u0000y']])).toThrow(/no NUL/);
    expect(validateAnnotations([['a b', 'line\nbreak\ttab']])).toEqual({ 'a b': 'line\nbreak\ttab' });
    expect(validateAnnotations([])).toEqual({});
  });
});

describe('ISO 8601 offsets and fractions', () => {
  it('applies offsets in both directions, with and without a colon, up to 23:59', () => {
    const base = Date.UTC(2050, 5, 15, 12, 0, 0);
    expect(parseIso8601('2050-06-15T12:00:00+00:00')).toBe(base);
    expect(parseIso8601('2050-06-15T12:00:00+0230')).toBe(base - 150 * 60_000);
    expect(parseIso8601('2050-06-15T12:00:00-02:30')).toBe(base + 150 * 60_000);
    expect(parseIso8601('2050-06-15T12:00:00+05')).toBe(base - 5 * 3600_000);
    expect(parseIso8601('2050-06-15T12:00:00+23:59')).toBe(base - (23 * 60 + 59) * 60_000);
    expect(parseIso8601('2050-06-15T12:00:00+00:60')).toBeUndefined();
    expect(parseIso8601('2050-06-15T12:00:00z')).toBe(base);
    expect(parseIso8601(' 2050-06-15 12:00:00 ')).toBe(base);
    expect(parseIso8601('2050-06-15T12:00:00,5Z')).toBe(base + 500);
    expect(parseIso8601('2050-06-15T12:00:00.9999Z')).toBe(base + 999);
    expect(parseIso8601('2050-06-15T23:59:59Z')).toBe(Date.UTC(2050, 5, 15, 23, 59, 59));
    expect(parseIso8601('2050-06-15T12:00:60Z')).toBeUndefined();
    expect(parseIso8601('2050-00-15')).toBeUndefined();
    expect(parseIso8601('2050-06-00')).toBeUndefined();
    expect(parseIso8601('2050-06-31')).toBeUndefined();
    expect(parseIso8601('2050-12-31')).toBe(Date.UTC(2050, 11, 31));
    expect(parseIso8601('2050-01-01')).toBe(Date.UTC(2050, 0, 1));
    expect(parseIso8601('x2050-01-01')).toBeUndefined();
    expect(parseIso8601('2050-01-01x')).toBeUndefined();
  });

  it('formats with whole seconds', () => {
    expect(formatExpiration(Date.UTC(2050, 0, 2, 3, 4, 5) + 678)).toBe('2050-01-02T03:04:05Z');
  });
});
