/**
 * The API key's text for chosen random bytes (src/authn/api-keys.ts), aimed
 * at the mutants that random keys reach with probability 2^-32 per group
 * (npm run mutation -- --module authn): a zero uint32 is the digit '0', not
 * nothing. node:crypto's randomBytes is wrapped so that a test can choose the
 * bytes of one call; every other call is the real one.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { generateApiKey } from '../../src/authn/api-keys.js';

vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return { ...real, randomBytes: vi.fn(real.randomBytes) };
});

afterEach(() => vi.mocked(randomBytes).mockClear());

/** The key generateApiKey makes of these 32 bytes. */
function keyOf(bytes: Buffer): string {
  expect(bytes).toHaveLength(32);
  vi.mocked(randomBytes).mockReturnValueOnce(bytes as never);
  const key = generateApiKey();
  expect(vi.mocked(randomBytes)).toHaveBeenLastCalledWith(32);
  return key;
}

const groups = (...n: number[]) => {
  const b = Buffer.alloc(32);
  n.forEach((v, i) => b.writeUInt32BE(v, i * 4));
  return b;
};

describe("API keys in Conjur's form: 8 uint32 groups, each Crockford base32", () => {
  it("a zero group is the digit '0' (all zero: eight of them)", () => {
    expect(keyOf(Buffer.alloc(32))).toBe('00000000');
    expect(keyOf(groups(1, 0, 0, 0, 0, 0, 0, 31))).toBe('1000000z');
  });

  it('each group is big-endian, most significant digit first, lowercase, without i l o u', () => {
    expect(keyOf(groups(32, 0xffffffff, 18, 21, 24, 27, 1024, 0))).toBe('103zzzzzzjnrv1000');
  });

  it('the bytes are wiped once the key is made', () => {
    const bytes = groups(5, 6, 7, 8, 9, 10, 11, 12);
    expect(keyOf(bytes)).toBe('56789abc');
    expect(bytes.equals(Buffer.alloc(32))).toBe(true);
  });
});
